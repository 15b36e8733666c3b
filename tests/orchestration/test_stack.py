"""The stack's pieces that need no servers: its fixed plan, process groups, down, status."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from musify import procs
from musify.errors import MusifyError
from musify.orchestration import airflow_env
from musify.orchestration.stack import (
    Stack,
    StackError,
    UpOptions,
    down,
    load_or_create_plan,
    up_lock_path,
    up_path,
)
from musify.orchestration.status import collect
from musify.settings import Settings
from musify.sim.clock import parse_duration
from tests.locking import hold_lock

NOW = datetime(2024, 3, 18, 10, 25, 7, tzinfo=UTC)


def test_the_first_up_fixes_the_plan_and_later_ones_reuse_it(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    opts = UpOptions(users=70, history=timedelta(hours=5), catchup_hours=2, seed=9)
    plan, created = load_or_create_plan(settings, opts, NOW)
    assert created
    assert plan.history_start == datetime(2024, 3, 18, 5, 25, tzinfo=UTC)
    assert plan.dag_start == datetime(2024, 3, 18, 8, tzinfo=UTC)
    again, created = load_or_create_plan(settings, UpOptions(users=5), NOW + timedelta(days=1))
    assert not created and again == plan


def test_a_short_history_has_no_backfill_before_the_dag(tmp_path: Path) -> None:
    plan, _ = load_or_create_plan(
        Settings(home=tmp_path), UpOptions(history=timedelta(minutes=30), catchup_hours=3), NOW
    )
    assert plan.dag_start == datetime(2024, 3, 18, 9, tzinfo=UTC) <= plan.history_start


def test_a_replay_publishes_every_hour_by_an_hourly_run_at_its_pace(tmp_path: Path) -> None:
    """`musify up --speed 48`: the generator replays the history at 48x (never past the
    clock) instead of producing it at once, and no backfill publishes it in one go: the
    hourly DAG starts at the history's first hour. The pace is fixed at the first up."""
    settings = Settings(home=tmp_path)
    opts = UpOptions(history=timedelta(days=3), speed=48, airflow=False, dashboard=False)
    plan, _ = load_or_create_plan(settings, opts, NOW)
    assert plan.dag_start == datetime(2024, 3, 15, 10, tzinfo=UTC) <= plan.history_start
    again, _ = load_or_create_plan(settings, UpOptions(), NOW + timedelta(hours=1))
    assert again.speed == 48
    (gen,) = [c for c in Stack(settings, UpOptions())._components(again) if c.name == "generator"]
    assert gen.argv[gen.argv.index("--speed") + 1] == "48.0" and "--replay" in gen.argv
    plain, _ = load_or_create_plan(Settings(home=tmp_path / "plain"), UpOptions(), NOW)
    (gen,) = [c for c in Stack(settings, UpOptions())._components(plain) if c.name == "generator"]
    assert "--replay" not in gen.argv


@pytest.mark.parametrize(
    ("env", "option", "expected"),
    [("", None, "30s"), ("2m", None, "2m"), ("2m", "10s", "10s")],
    ids=["up-default", "environment", "option"],
)
def test_the_stacks_stream_trigger(
    tmp_path: Path, env: str, option: str | None, expected: str
) -> None:
    """`musify up` streams every 30 s unless MUSIFY_STREAM_TRIGGER or --trigger say
    otherwise (``musify stream`` alone keeps 2 minutes), every 5 s while it warms up."""
    settings = Settings(home=tmp_path, stream_trigger=env)
    stack = Stack(settings, UpOptions(trigger=option, airflow=False, dashboard=False))
    plan, _ = load_or_create_plan(settings, stack.opts, NOW)
    (stream,) = [c for c in stack._components(plan) if c.name == "stream"]
    assert stream.argv[-4:] == ["--trigger", expected, "--warmup-trigger", "5s"]


def test_airflow_waits_for_the_streams_first_batch_but_not_forever(tmp_path: Path) -> None:
    """Airflow starts once the stream has recorded a batch of this run (an older
    record does not count), or once the stream is gone, or at the timeout."""
    import threading

    from musify.orchestration.stack import Component
    from musify.stream import status

    settings = Settings(home=tmp_path)
    status.record(settings, status.StatusRecord(batch_id=0, at=NOW - timedelta(days=1)))
    clock = [NOW]
    stack = Stack(settings, UpOptions(), say=lambda _: None, now=lambda: clock[0])
    stream = Component("stream", ["sleep", "60"], {}, tmp_path / "stream.log")
    stream.start()
    assert stream.proc is not None
    stack.components = [stream]
    try:
        new = status.StatusRecord(batch_id=1, at=NOW + timedelta(seconds=1))
        timer = threading.Timer(1.0, status.record, (settings, new))
        timer.start()
        t0 = time.monotonic()
        stack._await_first_batch(timeout=30)
        waited = time.monotonic() - t0
        assert 0.9 <= waited < 25, waited  # the new record ended it, not the old one
        clock[0] = NOW + timedelta(hours=1)  # a later start: that record is old now
        t0 = time.monotonic()
        stack._await_first_batch(timeout=1.5)
        assert time.monotonic() - t0 >= 1.4  # the timeout ended it
    finally:
        procs.stop_group(stream.proc.pid, 5, stream.proc)
    t0 = time.monotonic()
    stack._await_first_batch(timeout=30)  # the stream is gone: no wait
    assert time.monotonic() - t0 < 5


def test_durations() -> None:
    assert parse_duration("2d") == timedelta(days=2)
    assert parse_duration("90m") == timedelta(minutes=90)
    with pytest.raises(ValueError, match="duration"):
        parse_duration("soon")


def test_stop_group_stops_the_children_too(tmp_path: Path) -> None:
    code = "import subprocess, time; subprocess.Popen(['sleep', '300']); time.sleep(300)"
    p = procs.spawn([sys.executable, "-c", code], {}, tmp_path / "x.log")
    deadline = time.monotonic() + 10
    while len(procs.descendants(p.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    family = procs.descendants(p.pid)
    assert len(family) == 2 and procs.tree_rss(p.pid) > 0
    assert procs.stop_group(p.pid, timeout=5, proc=p)
    time.sleep(0.2)
    assert not any(procs.alive(pid) for pid in family)


@pytest.mark.parametrize("leader_first", [True, False])
def test_stop_group_leader_first_lets_the_leader_stop_its_children(
    tmp_path: Path, leader_first: bool
) -> None:
    """As the stream must stop its query before its JVM goes: with ``leader_first`` the
    leader's SIGTERM handler still finds its child running (and stops it itself)."""
    code = (
        "import signal, subprocess, sys, time\n"
        "child = subprocess.Popen(['sleep', '300'])\n"
        "def term(*_):\n"
        "    time.sleep(0.5)  # time for a SIGTERM to the group to have ended the child\n"
        "    print('child running' if child.poll() is None else 'child gone', flush=True)\n"
        "    child.terminate(); child.wait(); sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, term)\n"
        "print('ready', flush=True); time.sleep(300)"
    )
    log = tmp_path / "x.log"
    p = procs.spawn([sys.executable, "-c", code], {}, log)
    deadline = time.monotonic() + 10
    while "ready" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    family = procs.descendants(p.pid)
    assert procs.stop_group(p.pid, timeout=10, proc=p, leader_first=leader_first)
    said = log.read_text().split()
    assert ("running" in said) == leader_first, said
    time.sleep(0.2)
    assert not any(procs.alive(pid) for pid in family)


def test_a_childs_log_is_rotated_in_place_and_the_child_keeps_writing_to_it(
    tmp_path: Path,
) -> None:
    """copytruncate: the child holds the log open, so the file is copied and emptied,
    and the child's next lines start the emptied file; generations are bounded."""
    log = tmp_path / "child.log"
    # one numbered 100-byte line every millisecond, until killed
    code = (
        "import itertools, sys, time\n"
        "for i in itertools.count():\n"
        "    print(f'{i:>99}', flush=True); time.sleep(0.001)"
    )
    p = procs.spawn([sys.executable, "-c", code], {}, log)
    try:
        rotations = 0
        deadline = time.monotonic() + 60
        while rotations < 4 and time.monotonic() < deadline:
            rotations += procs.rotate_log(log, max_bytes=20_000, keep=2)
            time.sleep(0.05)
        assert rotations == 4
        time.sleep(0.3)
    finally:
        procs.stop_group(p.pid, timeout=5, proc=p)
    assert sorted(f.name for f in tmp_path.iterdir()) == ["child.log", "child.log.1", "child.log.2"]
    # the emptied file was written again from its start by the same child (no hole of
    # NUL bytes where the old end was), and its numbers go on after the generation before
    current = log.read_bytes()
    assert current and b"\0" not in current
    first_now = int(current.splitlines()[0])
    last_before = int((tmp_path / "child.log.1").read_bytes().splitlines()[-1])
    assert first_now > last_before


def test_stop_group_kills_what_ignores_sigterm(tmp_path: Path) -> None:
    code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(300)"
    p = procs.spawn([sys.executable, "-c", code], {}, tmp_path / "x.log")
    time.sleep(0.5)
    assert not procs.stop_group(p.pid, timeout=1, proc=p)
    assert p.poll() is not None


def test_down_and_status_without_a_stack(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    said: list[str] = []
    assert not down(settings, say=said.append)
    assert "no musify up" in said[0]
    doc = collect(settings)
    names = [r.name for r in doc.components]
    assert names[:3] == ["broker", "generator", "stream"]
    assert doc.last_published_hour is None


def test_status_cli_json_carries_the_streams_latest_record(tmp_path: Path) -> None:
    from musify.stream import status

    def status_json() -> dict[str, Any]:
        res = subprocess.run(
            [sys.executable, "-m", "musify", "status", "--json"],
            env={"MUSIFY_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            check=True,
        )
        doc: dict[str, Any] = orjson.loads(res.stdout)
        return doc

    assert status_json()["stream"]["last_batch"] is None
    rec = status.StatusRecord(
        batch_id=5, at=NOW, epoch=NOW.timestamp(), lag=3, watermark=NOW, event_marks={0: (NOW, NOW)}
    )
    status.record(Settings(home=tmp_path), rec)
    doc = status_json()
    assert doc["stream"]["last_batch"] == orjson.loads(rec.to_json())
    stream = next(c for c in doc["components"] if c["name"] == "stream")
    assert "batch 5" in stream["details"] and "lag 3" in stream["details"]


# -- one musify up per MUSIFY_HOME; down and status on damaged files ----------------------


def test_a_second_up_is_refused_naming_the_first_ones_pid(tmp_path: Path) -> None:
    """The lock decides, not run/up.json (which a racing first up has not written yet)."""
    settings = Settings(home=tmp_path)
    settings.ensure_dirs()
    said: list[str] = []
    with hold_lock(up_lock_path(settings)) as first:
        stack = Stack(settings, UpOptions(airflow=False, dashboard=False), said.append)
        with pytest.raises(MusifyError, match=rf"already running \(pid {first.pid}\)") as exc:
            stack.start()
        assert exc.value.exit_code == 1
        up_path(settings).write_bytes(b'{"pid": 1, "components": {}}')  # the first one's
        stack.stop()  # as up() does on the way out: nothing here is the refused one's
        assert up_path(settings).exists()
        assert said == []


def test_down_stops_the_lock_holder_even_when_the_run_file_is_corrupt(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    settings.ensure_dirs()
    said: list[str] = []
    with hold_lock(up_lock_path(settings)) as up:
        up_path(settings).write_bytes(b'{"pid": 12, "compo')
        assert down(settings, timeout=10, say=said.append)
        assert up.wait(5) == -signal.SIGTERM
    assert said == [f"musify up (pid {up.pid}) stopped"]


def test_down_without_an_up_and_with_a_corrupt_run_file_says_so(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    settings.ensure_dirs()
    up_path(settings).write_bytes(b"\x00\x00")
    with pytest.raises(StackError, match=rf"{up_path(settings)} is unreadable"):
        down(settings)


def test_status_shows_a_broken_warehouse_and_airflow_database(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    settings.ensure_dirs()
    settings.warehouse_path.write_bytes(b"not a database" * 500)
    (settings.run_dir / "published.json").write_bytes(b'{"hour": "2024-03-18T09:00:00+00:00"}')
    db = airflow_env.db_path(settings)
    db.parent.mkdir(parents=True)
    db.write_bytes(b"SQLite format 3\x00" + b"\xff" * 5000)
    rows = {r.name: r for r in collect(settings).components}
    assert rows["warehouse"].state == "broken"
    assert str(settings.warehouse_path) in rows["warehouse"].details
    assert "--full-refresh" in rows["warehouse"].details
    assert rows["airflow"].state == "broken"
    assert str(db) in rows["airflow"].details


def test_status_does_not_call_a_locked_warehouse_broken(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    settings.ensure_dirs()
    import duckdb

    duckdb.connect(str(settings.warehouse_path)).close()
    holder = (
        "import duckdb, sys, time; con = duckdb.connect(sys.argv[1]); "
        "print('held', flush=True); time.sleep(60)"
    )
    with subprocess.Popen(
        [sys.executable, "-c", holder, str(settings.warehouse_path)],
        stdout=subprocess.PIPE,
        text=True,
    ) as proc:
        try:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
            t0 = time.monotonic()
            rows = {r.name: r for r in collect(settings).components}
            assert time.monotonic() - t0 < 10
        finally:
            proc.kill()
    assert rows["warehouse"].state != "broken"


def test_up_refuses_a_corrupt_airflow_database_before_migrating_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(home=tmp_path)
    db = airflow_env.db_path(settings)
    db.parent.mkdir(parents=True)
    db.write_bytes(b"this is not SQLite at all" * 100)
    migrated: list[object] = []
    monkeypatch.setattr(airflow_env, "migrate", lambda *a, **k: migrated.append(a))
    monkeypatch.setattr(airflow_env, "run_airflow", lambda *a, **k: None)
    plan, _ = load_or_create_plan(settings, UpOptions(), NOW)
    with pytest.raises(StackError, match=rf"{db} is corrupt") as exc:
        Stack(settings, UpOptions(), say=lambda m: None)._prepare_airflow(plan)
    assert "\n" not in str(exc.value) and not migrated


def test_airflow_is_migrated_again_only_when_its_release_or_pool_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A restart skips `airflow db migrate` and `pools set` (seconds each) when this
    Airflow already prepared the database; the real commands run in test_up."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "airflow").touch()
    site = venv / "lib" / "python3.11" / "site-packages"
    (site / "apache_airflow-3.1.0.dist-info").mkdir(parents=True)
    settings = Settings(home=tmp_path / "home", airflow_venv=str(venv))
    ran: list[str] = []

    def run_airflow(s: Settings, args: list[str], env: dict[str, str], **kw: Any) -> None:
        ran.append(args[0])
        con = sqlite3.connect(airflow_env.db_path(s))
        with con:
            con.execute("create table if not exists slot_pool (pool text unique, slots int)")
            if args[:2] == ["pools", "set"]:
                con.execute("insert or replace into slot_pool values (?, ?)", args[2:4])
        con.close()

    monkeypatch.setattr(airflow_env, "run_airflow", run_airflow)
    airflow_env.airflow_home(settings).mkdir(parents=True)
    prepare = airflow_env.prepare_database
    assert prepare(settings, {}) and ran == ["db", "pools"]
    assert not prepare(settings, {}) and len(ran) == 2  # a restart
    (site / "apache_airflow-3.1.0.dist-info").rename(site / "apache_airflow-3.1.1.dist-info")
    assert prepare(settings, {}) and len(ran) == 4  # Airflow upgraded: migrate again
    con = sqlite3.connect(airflow_env.db_path(settings))
    with con:
        con.execute("delete from slot_pool")
    con.close()
    assert prepare(settings, {}) and len(ran) == 6  # the pool deleted: set again
    airflow_env.db_path(settings).unlink()
    assert prepare(settings, {}) and len(ran) == 8  # the database deleted
    assert not prepare(settings, {}) and len(ran) == 8


def test_airflow_health_is_each_components_status_or_none(tmp_path: Path) -> None:
    import http.server
    import threading

    from musify.orchestration.stack import airflow_health

    body = {
        "metadatabase": {"status": "healthy"},
        "scheduler": {"status": "unhealthy", "latest_scheduler_heartbeat": None},
        "triggerer": {"status": None},  # not run by musify up
    }

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            ok = self.path == "/api/v2/monitor/health"
            self.send_response(200 if ok else 404)
            self.end_headers()
            self.wfile.write(orjson.dumps(body) if ok else b"")

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        settings = Settings(home=tmp_path, airflow_port=server.server_address[1])
        assert airflow_health(settings) == {"metadatabase": "healthy", "scheduler": "unhealthy"}
    finally:
        server.shutdown()
        server.server_close()
    assert airflow_health(settings, timeout=0.5) is None  # nothing answers


def test_status_calls_airflow_degraded_when_a_component_is_unhealthy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from musify.orchestration import status
    from musify.orchestration.stack import StartedComponent, UpRecord

    url = "http://127.0.0.1:8080"
    up = UpRecord(1, "", {"airflow-api": StartedComponent(None, "api.log", url)})
    monkeypatch.setattr(status, "_running_up", lambda settings: up)
    health = {"metadatabase": "healthy", "scheduler": "unhealthy"}
    monkeypatch.setattr(status, "airflow_health", lambda settings: health)
    settings = Settings(home=tmp_path)
    rows = {r.name: r for r in collect(settings).components}
    assert rows["airflow"].state == "degraded"
    assert rows["airflow"].details == f"{url} metadatabase healthy, scheduler unhealthy"
    health["scheduler"] = "healthy"
    assert {r.name: r for r in collect(settings).components}["airflow"].state == "healthy"
