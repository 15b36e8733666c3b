"""Airflow for the local stack: its own virtual environment, its home, its settings.

Airflow 3 and dbt cannot share one dependency set, so Airflow lives in ``.venv-airflow``
(``make install`` creates it) and its DAG calls the ``musify`` CLI of this environment.
Everything Airflow needs is passed as ``AIRFLOW__*`` variables: nothing in the user's
own ``airflow.cfg`` changes, and every server binds 127.0.0.1.

Airflow's UI and REST API can start work (trigger runs), so they require a login: one
``admin`` user of Airflow's simple auth manager, whose password Musify generates once
and keeps in ``MUSIFY_HOME/airflow/passwords.json``, readable by its owner only.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import subprocess
import sys
from datetime import datetime
from pathlib import Path

from musify.errors import MusifyError
from musify.settings import Settings

DAGS_FOLDER = Path(__file__).resolve().parent / "dags"
DAG_ID = "musify_hourly"
#: The one user of the local Airflow: an admin (it may trigger and clear runs).
ADMIN_USER = "admin"
#: ``make install`` puts Airflow's venv beside Musify's own (``.venv-airflow`` next to
#: ``.venv``), wherever Musify is installed: the default when MUSIFY_AIRFLOW_VENV is unset.
DEFAULT_AIRFLOW_VENV = Path(sys.prefix).parent / ".venv-airflow"


class AirflowError(MusifyError):
    """Airflow is missing or one of its commands failed."""


def airflow_bin(settings: Settings) -> Path:
    venv = Path(settings.airflow_venv) if settings.airflow_venv else DEFAULT_AIRFLOW_VENV
    exe = venv / "bin" / "airflow"
    if not exe.exists():
        raise AirflowError(
            f"Airflow is not installed at {venv} (run `make install`, or set "
            "MUSIFY_AIRFLOW_VENV to a virtual environment with apache-airflow 3)"
        )
    return exe


def musify_cli() -> str:
    """The musify executable of this environment, for the DAG's tasks."""
    exe = Path(sys.executable).parent / "musify"
    return str(exe) if exe.exists() else "musify"


def airflow_home(settings: Settings) -> Path:
    return (settings.home / "airflow").resolve()


def passwords_path(settings: Settings) -> Path:
    """The simple auth manager's password file (``{"admin": "..."}``)."""
    return airflow_home(settings) / "passwords.json"


def ensure_admin_password(settings: Settings) -> tuple[str, bool]:
    """The admin password of the local Airflow; generated (file mode 0600) when there is
    none yet. Returns it and whether it was generated now (to be shown once)."""
    path = passwords_path(settings)
    settings.ensure_dirs()
    path.parent.mkdir(parents=True, exist_ok=True)
    password = secrets.token_urlsafe(18)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps({ADMIN_USER: password}) + "\n")
        return password, True
    try:
        stored = json.loads(path.read_text())[ADMIN_USER]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise AirflowError(
            f"{path} is not a valid Airflow password file ({exc.__class__.__name__}); "
            "delete it and a new admin password is generated at the next `musify up`"
        ) from None
    if not isinstance(stored, str) or not stored:
        raise AirflowError(f"{path} has no password for {ADMIN_USER}: delete it to get a new one")
    path.chmod(0o600)  # keep it private even if someone loosened it
    return stored, False


def airflow_environ(
    settings: Settings,
    *,
    api_port: int = 8080,
    dag_start: datetime | None = None,
    base: dict[str, str] | None = None,
) -> dict[str, str]:
    """The environment for every Airflow process of the local stack."""
    home = airflow_home(settings)
    env = dict(os.environ if base is None else base)
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            # Two cores: one task at a time besides the sensor keeps Spark fed.
            "AIRFLOW__CORE__PARALLELISM": "2",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{db_path(settings)}",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(api_port),
            "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{api_port}",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{api_port}/execution/",
            # The UI and REST API can trigger runs: every request must log in, as the
            # one admin whose password ensure_admin_password keeps.
            "AIRFLOW__CORE__AUTH_MANAGER": (
                "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
            ),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN_USER}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords_path(settings)),
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
            "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
            "AIRFLOW_VAR_MUSIFY_CLI": musify_cli(),
            "MUSIFY_HOME": str(settings.home.resolve()),
            "NO_PROXY": "*",
        }
    )
    if dag_start is not None:
        env["AIRFLOW_VAR_MUSIFY_DAG_START"] = dag_start.isoformat()
    return env


def run_airflow(
    settings: Settings,
    args: list[str],
    env: dict[str, str],
    timeout: float = 600,
    niceness: int = 0,
) -> subprocess.CompletedProcess[str]:
    """Run one airflow command to completion; AirflowError with its output tail on failure.
    ``niceness`` > 0 runs it at a lower CPU priority (what else starts meanwhile goes
    first)."""
    airflow_home(settings).mkdir(parents=True, exist_ok=True)
    argv = [str(airflow_bin(settings)), *args]
    with subprocess.Popen(
        argv,
        env=env,
        cwd=airflow_home(settings),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        if niceness > 0:
            with contextlib.suppress(OSError):  # gone already, or not permitted
                os.setpriority(os.PRIO_PROCESS, proc.pid, niceness)
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise
    res = subprocess.CompletedProcess(argv, proc.returncode, stdout, stderr)
    if res.returncode != 0:
        tail = "\n".join((res.stdout + res.stderr).strip().splitlines()[-15:])
        raise AirflowError(f"airflow {' '.join(args)} failed ({res.returncode}):\n{tail}")
    return res


def migrate(settings: Settings, env: dict[str, str], niceness: int = 0) -> None:
    run_airflow(settings, ["db", "migrate"], env, niceness=niceness)


#: The pool the DAGs' warehouse tasks share (``dags/musify_hourly.py``): one writer.
POOL = ("musify_warehouse", 1, "one writer of the warehouse")


def db_path(settings: Settings) -> Path:
    return airflow_home(settings) / "airflow.db"


def _release(settings: Settings) -> list[str]:
    """The Airflow distributions installed in Airflow's venv (their dist-info names carry
    the versions): a database migrated by them needs no migration by them again."""
    venv = airflow_bin(settings).parent.parent
    return sorted(p.name for p in venv.glob("lib/python*/site-packages/apache_airflow*.dist-info"))


def _pool_slots(settings: Settings) -> int | None:
    import sqlite3

    path = db_path(settings)
    if not path.is_file():
        return None
    try:
        con = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=5.0)
        try:
            row = con.execute("select slots from slot_pool where pool = ?", (POOL[0],)).fetchone()
        finally:
            con.close()
    except sqlite3.Error:
        return None
    return int(row[0]) if row else None


def prepare_database(settings: Settings, env: dict[str, str], niceness: int = 0) -> bool:
    """Migrate Airflow's database and set Musify's pool in it, unless this home's
    database was prepared by the same Airflow release and still holds the pool (the two
    commands take ~8 s of every restart on two cores; a new or upgraded Airflow, or a
    deleted database or pool, prepares it again). Returns whether it ran them."""
    stamp = airflow_home(settings) / "prepared.json"
    want = {"airflow": _release(settings), "pool": [POOL[0], POOL[1]]}
    try:
        done = json.loads(stamp.read_text()) == want
    except (OSError, ValueError):
        done = False
    if done and _pool_slots(settings) == POOL[1]:
        return False
    stamp.unlink(missing_ok=True)
    migrate(settings, env, niceness=niceness)
    run_airflow(settings, ["pools", "set", POOL[0], str(POOL[1]), POOL[2]], env)
    stamp.write_text(json.dumps(want) + "\n")
    return True
