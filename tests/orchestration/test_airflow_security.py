"""Airflow under `musify up` cannot be used to run commands: every request logs in, and
hostile run parameters are refused by Airflow when a run is triggered (REST API and CLI)
and again by each task, which starts the CLI without a shell."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from musify.orchestration import airflow_env
from musify.settings import Settings
from tests.conftest import _free_port
from tests.warehouse.lake_events import START

pytestmark = [pytest.mark.airflow]

HOUR = "2024-03-18T00:00:00+00:00"


def _hostile(marker: Path) -> list[str]:
    return [
        f"{HOUR}; touch {marker}",
        f"$(touch {marker})",
        f"`touch {marker}`",
        f"{HOUR}\ntouch {marker}",
        f"{HOUR} --steps publish",
    ]


def test_the_admin_password_is_generated_once_and_private(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home")
    password, created = airflow_env.ensure_admin_password(settings)
    assert created and len(password) >= 20
    path = airflow_env.passwords_path(settings)
    assert path.stat().st_mode & 0o777 == 0o600
    assert settings.home.stat().st_mode & 0o777 == 0o700
    assert airflow_env.ensure_admin_password(settings) == (password, False)
    env = airflow_env.airflow_environ(settings)
    assert env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS"] == "False"
    assert env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"] == str(path)
    path.write_text("{not json")
    with pytest.raises(airflow_env.AirflowError, match=r"passwords\.json"):
        airflow_env.ensure_admin_password(settings)


_TASK_GUARD = """
import json, sys
sys.path.insert(0, sys.argv[1])
import musify_hourly as dag
out = {}
for value in json.loads(sys.argv[2]):
    try:
        dag.run_step("load", value, value)
        out[value] = "ran"
    except Exception as exc:
        out[value] = type(exc).__name__
print(json.dumps(out))
"""


def test_tasks_refuse_hostile_windows_without_a_shell(tmp_path: Path) -> None:
    """Even a run that reached a task (say, created by a direct database write) runs
    nothing with a window that is not a whole hour."""
    settings = Settings(home=tmp_path / "home")
    marker = tmp_path / "pwned"
    env = airflow_env.airflow_environ(settings, dag_start=START)
    env["AIRFLOW_VAR_MUSIFY_CLI"] = "/bin/sh"  # would run anything it is handed
    python = airflow_env.airflow_bin(settings).parent / "python"
    res = subprocess.run(
        [
            str(python),
            "-c",
            _TASK_GUARD,
            str(airflow_env.DAGS_FOLDER),
            json.dumps(_hostile(marker)),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    outcome = json.loads(res.stdout.strip().splitlines()[-1])
    assert set(outcome.values()) == {"AirflowFailException"}, outcome
    assert not marker.exists()


def _request(
    url: str, body: dict[str, Any] | None = None, token: str | None = None
) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method="GET" if body is None else "POST")
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Settings, str, str]]:
    """A migrated Airflow with the DAGs serialized and its API server running as
    `musify up` runs it (no scheduler: a run that got created would stay queued)."""
    settings = Settings(home=tmp_path_factory.mktemp("airflow") / "home")
    port = _free_port()
    env = airflow_env.airflow_environ(settings, api_port=port, dag_start=START)
    password, _ = airflow_env.ensure_admin_password(settings)
    airflow_env.migrate(settings, env)
    airflow_env.run_airflow(settings, ["dags", "reserialize"], env)
    exe = str(airflow_env.airflow_bin(settings))
    log = (settings.home / "api.log").open("wb")
    proc = subprocess.Popen(
        [exe, "api-server", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        cwd=airflow_env.airflow_home(settings),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if _request(f"{base}/api/v2/monitor/health")[0] == 200:
                    break
            except OSError:
                pass
            assert proc.poll() is None, (settings.home / "api.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the API server did not start"
            time.sleep(1)
        yield settings, base, password
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _runs(base: str, token: str) -> list[dict[str, Any]]:
    status, body = _request(f"{base}/api/v2/dags/musify_backfill/dagRuns", token=token)
    assert status == 200, body
    runs: list[dict[str, Any]] = body["dag_runs"]
    return runs


@pytest.mark.slow
def test_the_rest_api_requires_login_and_refuses_hostile_params(
    api: tuple[Settings, str, str], tmp_path: Path
) -> None:
    _, base, password = api
    marker = tmp_path / "pwned"
    trigger = f"{base}/api/v2/dags/musify_backfill/dagRuns"
    conf = {"start": HOUR, "end": "2024-03-18T02:00:00+00:00"}

    # without a login: nothing
    status, _ = _request(trigger, {"logical_date": None, "conf": conf})
    assert status in (401, 403)
    status, _ = _request(f"{base}/auth/token", {"username": "admin", "password": "admin"})
    assert status == 401
    status, body = _request(f"{base}/auth/token", {"username": "admin", "password": password})
    assert status in (200, 201), body
    token = body["access_token"]

    for value in _hostile(marker):
        for key in ("start", "end"):
            status, body = _request(
                trigger, {"logical_date": None, "conf": {**conf, key: value}}, token
            )
            assert status == 400, (value, body)
            assert key in json.dumps(body)
    assert _runs(base, token) == []

    # the same request with a valid window is accepted: the refusals above were the params
    status, body = _request(trigger, {"logical_date": None, "conf": conf}, token)
    assert status == 200, body
    assert [r["conf"] for r in _runs(base, token)] == [conf]
    assert not marker.exists()


def _cli_runs(exe: str, env: dict[str, str]) -> list[Any]:
    out = subprocess.run(
        [exe, "dags", "list-runs", "musify_backfill", "-o", "json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    ).stdout
    lines = [ln for ln in out.splitlines() if ln.startswith("[")]
    runs: list[Any] = json.loads(lines[-1]) if lines else []
    return runs


@pytest.mark.slow
def test_the_cli_refuses_hostile_params(api: tuple[Settings, str, str], tmp_path: Path) -> None:
    settings, _, _ = api
    marker = tmp_path / "pwned"
    env = airflow_env.airflow_environ(settings, dag_start=START)
    exe = str(airflow_env.airflow_bin(settings))
    before = _cli_runs(exe, env)
    for value in _hostile(marker)[:2]:
        conf = json.dumps({"start": value, "end": "2024-03-18T02:00:00+00:00"})
        for args in (
            ["dags", "trigger", "musify_backfill", "--conf", conf],
            ["dags", "test", "musify_backfill", "--conf", conf],
        ):
            res = subprocess.run(
                [exe, *args], env=env, capture_output=True, text=True, timeout=300, check=False
            )
            out = res.stdout + res.stderr
            assert res.returncode != 0 or "state=failed" in out, out[-2000:]
            assert "Invalid input for param start" in out or "AirflowFailException" in out, out[
                -2000:
            ]
    assert _cli_runs(exe, env) == before
    assert not marker.exists()
