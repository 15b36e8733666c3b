"""The local stack behind ``musify up``: every component as a supervised child process.

Start order: the broker (kept running across ``musify up``/``down``: Tansu keeps topics
in memory only), the Spark stream, the generator (a short history, then live) and the
dashboard, then Airflow (database migration, then API server, DAG processor and
scheduler): the stream's JVM starts while Airflow migrates.
The generator and the stream resume from Kafka and from their checkpoint, Airflow from
its database, so a component that dies is simply started again: nothing is lost and
nothing is duplicated. Ctrl-C, SIGTERM or ``musify down`` stops the children in reverse
order, each with SIGTERM first (the stream finishes its micro-batch).

The run's fixed facts (history start, seed, users, the first hour the DAG publishes)
are chosen at the first ``musify up`` and kept in ``MUSIFY_HOME/run/stack.json``, so a
restart regenerates exactly the same events and Kafka/the lake see no duplicates.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from musify import locks, procs
from musify.errors import MusifyError, UsageError
from musify.orchestration import airflow_env
from musify.settings import Settings

#: The stream's micro-batch period under ``musify up`` when MUSIFY_STREAM_TRIGGER is
#: empty: shorter than ``musify stream``'s 2 minutes so that the dashboard's live
#: section moves twice a minute (each commit adds a snapshot: 2,880 a day per table
#: within the 24 h retention, benchmarks/README.md).
UP_TRIGGER = "30s"
#: ...and for its first two minutes, so that the live section shows data and moves
#: within a minute of start-up (benchmarks/README.md, "`musify up` as make run runs it").
UP_WARMUP_TRIGGER = "5s"
#: Airflow starts once the stream has committed its first micro-batch, or after this.
FIRST_BATCH_WAIT = 120.0
#: How long each component may take to stop on SIGTERM before it is killed.
STOP_TIMEOUT = {"stream": 240.0, "generator": 30.0}
DEFAULT_STOP_TIMEOUT = 30.0
#: Components whose leader stops its own children in order, so SIGTERM reaches the
#: leader alone (the stream stops its query, then its JVM; procs.stop_group).
LEADER_FIRST = frozenset({"stream"})
#: A component that keeps dying is restarted at most this often, then left stopped.
MAX_RESTARTS = 5


class StackError(MusifyError):
    """The local stack could not start or stop."""


def stop_component(name: str, pid: int, proc: subprocess.Popen[bytes] | None = None) -> bool:
    """Stop one component's process group; True when it stopped on SIGTERM."""
    timeout = STOP_TIMEOUT.get(name, DEFAULT_STOP_TIMEOUT)
    return procs.stop_group(pid, timeout, proc, leader_first=name in LEADER_FIRST)


@dataclass(frozen=True)
class UpOptions:
    users: int = 1000
    history: timedelta = timedelta(days=2)
    #: The last N complete hours of the history are published by hourly DAG runs (so
    #: Airflow has runs to show at once); older history by one backfill run.
    catchup_hours: int = 2
    trigger: str | None = None
    seed: int = 1
    #: Above 1: the history is replayed at this pace (``musify generate --replay``), and
    #: every hour of it is published by its own hourly DAG run as the stream passes it.
    speed: float = 1.0
    config: Path | None = None
    airflow: bool = True
    dashboard: bool = True
    generator_workers: int = 1


@dataclass
class Plan:
    """The facts of a stack fixed at its first start (``run/stack.json``)."""

    history_start: datetime
    dag_start: datetime
    users: int
    seed: int
    config: str | None
    speed: float = 1.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "history_start": self.history_start.isoformat(),
            "dag_start": self.dag_start.isoformat(),
            "users": self.users,
            "seed": self.seed,
            "config": self.config,
            "speed": self.speed,
        }


def plan_path(settings: Settings) -> Path:
    return settings.run_dir / "stack.json"


def up_path(settings: Settings) -> Path:
    return settings.run_dir / "up.json"


def up_lock_path(settings: Settings) -> Path:
    """The lock a running ``musify up`` holds for its whole life (``musify.locks``): one
    per MUSIFY_HOME, and the pid ``musify down`` stops."""
    return settings.run_dir / "up.lock"


@dataclass(frozen=True)
class StartedComponent:
    """A process ``musify up`` started, as ``run/up.json`` names it."""

    pid: int | None
    log: str
    url: str | None = None


@dataclass(frozen=True)
class UpRecord:
    """``run/up.json``: what the running (or last) ``musify up`` started, in start
    order; ``musify down`` and the next ``musify up`` stop what a crashed one left."""

    pid: int
    started_at: str
    components: dict[str, StartedComponent]

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self), option=orjson.OPT_INDENT_2)

    @classmethod
    def from_doc(cls, doc: object) -> UpRecord:
        """Raises ValueError when ``doc`` is not one."""
        if not isinstance(doc, dict) or not isinstance(doc.get("components"), dict):
            raise ValueError("not a musify up record")
        comps = {}
        for name, c in doc["components"].items():
            if not isinstance(c, dict) or not isinstance(c.get("pid"), int | None):
                raise ValueError(f"not a musify up record (component {name})")
            comps[str(name)] = StartedComponent(c.get("pid"), str(c.get("log", "")), c.get("url"))
        return cls(int(doc.get("pid") or 0), str(doc.get("started_at", "")), comps)


def read_up(settings: Settings) -> tuple[UpRecord | None, str | None]:
    """``run/up.json`` (what the running or last ``musify up`` started) and, when it
    exists but cannot be used, why: ``(None, None)`` when there is none."""
    path = up_path(settings)
    try:
        doc = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        return None, None
    except (OSError, orjson.JSONDecodeError) as exc:
        return None, f"{path} is unreadable ({exc})"
    try:
        return UpRecord.from_doc(doc), None
    except (ValueError, TypeError) as exc:
        return None, f"{path} is unreadable ({exc})"


def load_or_create_plan(settings: Settings, opts: UpOptions, now: datetime) -> tuple[Plan, bool]:
    """The stored plan, or a new one from ``opts``; True when it was created now."""
    path = plan_path(settings)
    if path.exists():
        d = orjson.loads(path.read_bytes())
        return (
            Plan(
                datetime.fromisoformat(d["history_start"]),
                datetime.fromisoformat(d["dag_start"]),
                int(d["users"]),
                int(d["seed"]),
                d.get("config"),
                float(d.get("speed", 1.0)),
            ),
            False,
        )
    hour = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    history_start = (now - opts.history).astimezone(UTC).replace(second=0, microsecond=0)
    dag_start = max(hour - timedelta(hours=opts.catchup_hours), history_start)
    if opts.speed > 1:  # a replay: the hourly DAG publishes every hour as it is played
        dag_start = history_start
    dag_start = dag_start.replace(minute=0)
    plan = Plan(
        history_start,
        dag_start,
        opts.users,
        opts.seed,
        str(opts.config.resolve()) if opts.config else None,
        opts.speed,
    )
    settings.ensure_dirs()
    path.write_bytes(orjson.dumps(plan.as_dict(), option=orjson.OPT_INDENT_2))
    return plan, True


@dataclass
class Component:
    name: str
    argv: list[str]
    env: dict[str, str]
    log: Path
    url: str | None = None
    proc: subprocess.Popen[bytes] | None = None
    restarts: list[float] = field(default_factory=list)
    restart_at: float | None = None
    failed: bool = False

    def start(self) -> None:
        self.proc = procs.spawn(self.argv, self.env, self.log)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def _musify(*args: str) -> list[str]:
    return [sys.executable, "-m", "musify", *args]


def _has_dashboard() -> bool:
    return importlib.util.find_spec("musify.dashboard") is not None


class Stack:
    """Starts, watches and stops the components; the Python API behind ``musify up``."""

    def __init__(
        self,
        settings: Settings,
        opts: UpOptions,
        say: Callable[[str], None] = print,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.settings = settings
        self.opts = opts
        self.say = say
        self.now = now
        self.components: list[Component] = []
        self.plan: Plan | None = None
        self._stop = threading.Event()
        self._bootstrap: threading.Thread | None = None
        self._lock: locks.Lock | None = None
        self.peak_rss = 0

    # -- building the components ---------------------------------------------------------

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["MUSIFY_HOME"] = str(self.settings.home.resolve())
        env["MUSIFY_BOOTSTRAP_SERVERS"] = self.settings.bootstrap_servers
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def _components(self, plan: Plan) -> list[Component]:
        s, o, logs = self.settings, self.opts, self.settings.logs_dir
        env = self._env()
        trigger = o.trigger or s.stream_trigger or UP_TRIGGER
        comps = [
            Component(
                "stream",
                _musify("stream", "--trigger", trigger, "--warmup-trigger", UP_WARMUP_TRIGGER),
                env,
                logs / "stream.log",
            ),
        ]
        gen = _musify(
            "generate",
            "--bootstrap-servers",
            s.bootstrap_servers,
            "--continuous",
            "--resume",
            "--start-time",
            plan.history_start.isoformat(),
            "--nusers",
            str(plan.users),
            "--seed",
            str(plan.seed),
            "--speed",
            str(plan.speed),
            *(["--replay"] if plan.speed > 1 else []),
            "--workers",
            str(o.generator_workers),
            "--quiet",
        )
        if plan.config:
            gen += ["--config", plan.config]
        comps.append(Component("generator", gen, env, logs / "generator.log"))
        if o.airflow:
            aenv = airflow_env.airflow_environ(
                s, api_port=s.airflow_port, dag_start=plan.dag_start, base=env
            )
            exe = str(airflow_env.airflow_bin(s))
            url = f"http://{s.bind_host}:{s.airflow_port}"
            comps += [
                Component(
                    "airflow-api",
                    [exe, "api-server", "--host", s.bind_host, "--port", str(s.airflow_port)],
                    aenv,
                    logs / "airflow-api.log",
                    url=url,
                ),
                Component(
                    "airflow-dag-processor",
                    [exe, "dag-processor"],
                    aenv,
                    logs / "airflow-dag-processor.log",
                ),
                Component(
                    "airflow-scheduler",
                    [exe, "scheduler", "--skip-serve-logs"],
                    aenv,
                    logs / "airflow-scheduler.log",
                ),
            ]
        if o.dashboard and _has_dashboard():
            port = getattr(s, "dashboard_port", 8501)
            comps.append(
                Component(
                    "dashboard",
                    _musify("dashboard", "--port", str(port)),
                    env,
                    logs / "dashboard.log",
                    url=f"http://{s.bind_host}:{port}",
                )
            )
        return comps

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        s = self.settings
        warning = s.check_bind_host()
        if warning:
            self.say(warning)
        s.ensure_dirs()
        self._claim()
        self._ensure_broker()
        self.plan, created = load_or_create_plan(s, self.opts, self.now())
        p = self.plan
        self.say(
            f"{'new' if created else 'resuming'} stack in {s.home.resolve()}: "
            f"{p.users:,} users from {p.history_start:%Y-%m-%d %H:%M} UTC, "
            f"hourly DAG from {p.dag_start:%Y-%m-%d %H:00}"
            + (f", history replayed at {p.speed:g}x" if p.speed > 1 else "")
        )
        if self.opts.airflow:
            problem = airflow_db_problem(s)
            if problem:  # refused before anything starts
                raise StackError(problem)
        self.components = self._components(p)
        # Spark's start-up is the longest wait before the live section shows data: the
        # stream (with the generator and the dashboard) starts while Airflow migrates
        # its database, not after.
        later = [c for c in self.components if c.name.startswith("airflow")]
        for c in self.components:
            if not c.name.startswith("airflow"):
                self._start(c)
        self._record()
        if self.opts.airflow:
            self._await_first_batch()
            self._prepare_airflow(p)
        for c in later:
            self._start(c)
        self._record()
        if self.opts.airflow and p.dag_start > p.history_start:
            self._bootstrap = threading.Thread(target=self._trigger_backfill, daemon=True)
            self._bootstrap.start()

    def _await_first_batch(self, timeout: float = FIRST_BATCH_WAIT) -> None:
        """Until the stream commits its first micro-batch (or dies, or ``timeout``):
        on 2 cores Airflow's start-up slows Spark's, and the live section waits for
        Spark while the first hour waits for the stream anyway."""
        from musify.stream import status

        stream = next((c for c in self.components if c.name == "stream"), None)
        started = self.now()
        deadline = time.monotonic() + timeout
        while stream is not None and stream.running() and time.monotonic() < deadline:
            last = status.last_record(self.settings)
            if last is not None and last.at is not None and last.at >= started:
                return
            if self._stop.wait(0.5):
                return

    def _start(self, c: Component) -> None:
        c.start()
        self.say(f"  {c.name:<22} pid {c.pid:<7} log {c.log}" + (f"  {c.url}" if c.url else ""))

    def _claim(self) -> None:
        """One ``musify up`` per MUSIFY_HOME (its lock, held until ``stop``); then stop
        what a crashed one left running."""
        self._lock = locks.acquire(
            up_lock_path(self.settings),
            f"musify up for {self.settings.home}",
            hint="stop it with `musify down`",
        )
        doc, problem = read_up(self.settings)
        if problem:
            self.say(f"  ignoring {problem}: components it lists are not stopped")
        if doc is None:
            return
        for name, c in reversed(list(doc.components.items())):
            cpid = c.pid
            # the pid must still be ours: not reused by an unrelated process
            ours = any(w in procs.cmdline(cpid or 0) for w in ("musify", "airflow"))
            if cpid and procs.alive(cpid) and ours:
                self.say(f"  stopping {name} (pid {cpid}) left by a musify up that did not stop")
                stop_component(name, cpid)

    def _record(self) -> None:
        started = {c.name: StartedComponent(c.pid, str(c.log), c.url) for c in self.components}
        doc = UpRecord(pid=os.getpid(), started_at=self.now().isoformat(), components=started)
        up_path(self.settings).write_bytes(doc.to_json())

    def _ensure_broker(self) -> None:
        from musify.broker.kafka import check_reachable
        from musify.broker.local import start_broker

        s = self.settings
        local = s.bootstrap_servers in {
            f"127.0.0.1:{s.broker_port}",
            f"localhost:{s.broker_port}",
            f"{s.bind_host}:{s.broker_port}",
        }
        try:
            check_reachable(s.bootstrap_servers, timeout=2.0)
            self.say(f"  {'broker':<22} reachable at {s.bootstrap_servers}")
            return
        except MusifyError:
            if not local:
                raise
        info = start_broker(s)
        self.say(
            f"  {'broker':<22} pid {info.pid:<7} log {info.log_path}  {info.bootstrap_servers}"
        )

    def _prepare_airflow(self, plan: Plan) -> None:
        s = self.settings
        problem = airflow_db_problem(s)
        if problem:  # otherwise `airflow db migrate` fails with pages of traceback
            raise StackError(problem)
        env = airflow_env.airflow_environ(s, api_port=s.airflow_port, dag_start=plan.dag_start)
        t0 = time.monotonic()
        password, created = airflow_env.ensure_admin_password(s)
        if created:
            # Shown once, as Airflow's own standalone mode does; the file keeps it.
            self.say(
                f"  Airflow login: {airflow_env.ADMIN_USER} / {password}  (kept in "
                f"{airflow_env.passwords_path(s)}, readable only by you)"
            )
        # Niced: the stream's JVM, started just before, gets the CPU first (on 2 cores the
        # live section's first data came 64 s after `musify up` without, 53 s with).
        ran = airflow_env.prepare_database(s, env, niceness=10)
        how = f"ready in {time.monotonic() - t0:.0f} s" if ran else "ready (migrated before)"
        self.say(f"  {'airflow database':<22} {how}")

    def _trigger_backfill(self) -> None:
        """Publish the history before the DAG's first hour with one backfill run."""
        assert self.plan is not None
        s, p = self.settings, self.plan
        start = p.history_start.replace(minute=0)
        conf = orjson.dumps({"start": start.isoformat(), "end": p.dag_start.isoformat()}).decode()
        env = airflow_env.airflow_environ(s, api_port=s.airflow_port, dag_start=p.dag_start)
        args = ["dags", "trigger", "musify_backfill", "--run-id", "bootstrap", "--conf", conf]
        while not self._stop.wait(10):
            try:
                airflow_env.run_airflow(s, args, env, timeout=120)
            except airflow_env.AirflowError as exc:
                if "already exists" in str(exc):
                    return
                continue  # the DAG is not parsed yet
            except subprocess.TimeoutExpired:
                continue
            self.say(f"history {start:%Y-%m-%d %H:00} → {p.dag_start:%H:00} queued for publication")
            return

    def watch(self, interval: float = 2.0, report_every: float = 60.0) -> None:
        """Restart components that die; print health; return when asked to stop."""
        last_report = time.monotonic()
        while not self._stop.wait(interval):
            for c in self.components:
                if c.failed or c.running():
                    continue
                now = time.monotonic()
                if c.restart_at is None:
                    code = c.proc.returncode if c.proc else None
                    c.restarts = [t for t in c.restarts if now - t < 600] + [now]
                    if len(c.restarts) > MAX_RESTARTS:
                        c.failed = True
                        self.say(f"{c.name} keeps exiting (code {code}); left stopped: see {c.log}")
                        continue
                    # back off: 1, 2, 4, 8, 16 s, so a crash loop does not eat the CPU
                    c.restart_at = now + 2 ** (len(c.restarts) - 1)
                    self.say(f"{c.name} exited with code {code}; restarting (log {c.log})")
                if now >= c.restart_at:
                    c.restart_at = None
                    c.start()
                    self._record()
            rss = sum(procs.tree_rss(c.pid) for c in self.components if c.pid and c.running())
            self.peak_rss = max(self.peak_rss, rss)
            self.rotate_logs()
            if time.monotonic() - last_report >= report_every:
                last_report = time.monotonic()
                self.say(health_line(self.settings, rss))

    def rotate_logs(self) -> None:
        """Keep the logs the stack's processes write bounded (``procs.rotate_log``): the
        components' and the broker's (the stream rotates its per-batch records itself)."""
        # every component's log, and the broker's, is a .log file in logs_dir
        for log in self.settings.logs_dir.glob("*.log"):
            procs.rotate_log(log)

    def request_stop(self) -> None:
        self._stop.set()

    def stop(self) -> None:
        self._stop.set()
        if self._lock is None:
            return  # another musify up holds this MUSIFY_HOME: nothing here is ours
        for c in reversed(self.components):
            if c.proc is None or c.proc.poll() is not None:
                continue
            self.say(f"stopping {c.name} (pid {c.pid})")
            if not stop_component(c.name, c.proc.pid, c.proc):
                timeout = STOP_TIMEOUT.get(c.name, DEFAULT_STOP_TIMEOUT)
                self.say(f"{c.name} did not stop within {timeout:.0f} s: killed")
        with contextlib.suppress(FileNotFoundError):
            up_path(self.settings).unlink()
        self._lock.release()
        self._lock = None
        self.say(
            "stopped. The broker keeps running (its topics live in memory): "
            "`musify broker stop` discards them."
        )


def health_line(settings: Settings, rss: int | None = None) -> str:
    from musify.orchestration.hourly import last_published
    from musify.stream.status import stream_status

    last = stream_status(settings).last
    pub = last_published(settings)
    lag = "?" if last is None or last.lag is None else f"{last.lag:,}"
    fresh = "?" if last is None or last.freshness_s is None else f"{last.freshness_s:g}"
    parts = [
        f"stream lag {lag}, freshness {fresh} s",
        f"last published hour {pub:%Y-%m-%d %H:00}" if pub else "no hour published yet",
    ]
    if rss is not None:
        parts.append(f"memory {rss / 2**20:,.0f} MiB")
    return "health: " + "; ".join(parts)


def up(settings: Settings, opts: UpOptions, say: Callable[[str], None] = print) -> Stack:
    """Run the stack until Ctrl-C, SIGTERM or ``musify down``; returns the stopped stack."""
    if opts.users < 1:
        raise UsageError("--users must be at least 1")
    stack = Stack(settings, opts, say)

    def on_signal(signum: int, _: object) -> None:
        stack.request_stop()

    old = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        stack.start()
        say("up: Ctrl-C or `musify down` stops everything")
        stack.watch()
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
        stack.stop()
    return stack


def down(settings: Settings, timeout: float = 300.0, say: Callable[[str], None] = print) -> bool:
    """Stop a running ``musify up`` (or, if it died, the components it left behind).

    The ``musify up`` to stop is the holder of ``up_lock_path``, whatever ``run/up.json``
    says (it may be missing or damaged); that file only names the components a crashed
    one left behind."""
    path = up_path(settings)
    pid = locks.holder(up_lock_path(settings))
    doc, problem = read_up(settings)
    if pid is None and doc is None:
        if problem:
            raise StackError(
                f"no musify up is running for {settings.home}, and {problem}: the "
                "components a crashed one left cannot be found; delete the file"
            )
        say(f"no musify up is running for {settings.home}")
        return False
    if pid is not None:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while procs.alive(pid) and time.monotonic() < deadline:
            time.sleep(0.5)
        if not procs.alive(pid):
            say(f"musify up (pid {pid}) stopped")
            return True
        if doc is None:
            raise StackError(
                f"musify up (pid {pid}) did not stop in {timeout:.0f} s, and "
                f"{problem or f'{path} is missing'}: stop it with `kill {pid}`"
            )
        say(f"musify up (pid {pid}) did not stop in {timeout:.0f} s; stopping its components")
    assert doc is not None
    for name, c in reversed(list(doc.components.items())):
        cpid = c.pid
        if cpid and procs.alive(cpid):
            say(f"stopping {name} (pid {cpid})")
            stop_component(name, cpid)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    return True


def airflow_db_problem(settings: Settings) -> str | None:
    """Why Airflow's database (SQLite, ``MUSIFY_HOME/airflow/airflow.db``) is broken, as
    one line with what to do; None when it is sound, absent or busy.

    ``PRAGMA quick_check`` on a read-only connection: it changes nothing and reads a
    local stack's few megabytes in milliseconds. A database locked by a writer, or one
    whose journal needs a writer, is not reported: only corruption is."""
    import sqlite3

    path = airflow_env.db_path(settings)
    if not path.is_file():
        return None
    try:
        con = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=1.0)
        try:
            found = [str(r[0]) for r in con.execute("PRAGMA quick_check").fetchall()]
        finally:
            con.close()
    except sqlite3.DatabaseError as exc:
        if getattr(exc, "sqlite_errorname", "") not in ("SQLITE_CORRUPT", "SQLITE_NOTADB"):
            return None
        reason = str(exc)
    else:
        if found == ["ok"]:
            return None
        reason = found[0] if found else "quick_check found damage"
    return (
        f"{path} is corrupt ({reason}): stop the stack, move the file away and `musify "
        "up` creates a new one (Airflow's run history is lost; the lake and the warehouse "
        "are not affected)"
    )


def airflow_health(settings: Settings, timeout: float = 2.0) -> dict[str, str] | None:
    """Airflow's own health report, component → status ("healthy", "unhealthy"), or
    None when its API server does not answer. Components Airflow does not run here
    (the triggerer) report no status and are left out."""
    url = f"http://{settings.bind_host}:{settings.airflow_port}/api/v2/monitor/health"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            body = orjson.loads(r.read())
    except (OSError, ValueError):
        return None
    if not isinstance(body, dict):
        return None
    return {
        str(name): str(part["status"])
        for name, part in body.items()
        if isinstance(part, dict) and part.get("status") is not None
    }
