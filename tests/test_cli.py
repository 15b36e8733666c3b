"""The command line: thin, with one-line errors and exit code 2 for bad input."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from musify.settings import Settings
from musify.sim.config import BUILTIN_CONFIG
from tests.locking import hold_lock


def musify(
    *args: str, home: Path, check: bool = False, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MUSIFY_")}
    environ["MUSIFY_HOME"] = str(home)
    environ.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "musify", *args],
        capture_output=True,
        text=True,
        env=environ,
        timeout=300,
        check=check,
    )


@pytest.mark.medium  # musify generate in a subprocess: seconds
def test_generate_to_files_with_json_summary(tmp_path: Path) -> None:
    r = musify(
        "generate",
        "--nusers",
        "50",
        "--start-time",
        "2024-03-18T00:00:00",
        "--days",
        "1",
        "--seed",
        "1",
        "--output-dir",
        str(tmp_path / "ev"),
        "--json",
        home=tmp_path / "home",
        check=True,
    )
    summary = orjson.loads(r.stdout)
    assert summary["events"]["page_view_events"] > 0
    lines = (tmp_path / "ev" / "page_view_events.jsonl").read_bytes().count(b"\n")
    assert lines == summary["events"]["page_view_events"]
    assert (tmp_path / "home" / "cache").is_dir(), "local state lives under MUSIFY_HOME"


@pytest.mark.medium  # musify generate in a subprocess: seconds
def test_generate_to_stdout(tmp_path: Path) -> None:
    r = musify(
        "generate",
        "--nusers",
        "20",
        "--start-time",
        "2024-03-18T00:00:00",
        "--days",
        "1",
        "--stdout",
        "--stdout-topic",
        "listen_events",
        "-q",
        home=tmp_path,
        check=True,
    )
    events = [orjson.loads(x) for x in r.stdout.splitlines()]
    assert events and all("song" in e for e in events)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["generate", "--nusers", "5", "--days", "1"], "choose exactly one of"),
        (["generate", "--config", "/nonexistent.json", "--stdout"], "cannot read"),
        (["generate", "--stdout", "--start-time", "tuesday"], "--start-time"),
        (["generate", "--stdout", "--faults", "gremlins=1"], "--faults"),
        (["generate", "--stdout", "--catalog", "/nonexistent.gz"], "catalog"),
        (
            ["generate", "--stdout", "--start-time", "2024-01-02", "--end-time", "2024-01-01"],
            "is not after",
        ),
        (["validate", "/nonexistent-dir"], "nonexistent-dir"),
    ],
)
def test_bad_input_is_one_line_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    r = musify(*args, home=tmp_path)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    assert message in r.stderr
    assert r.stderr.strip().startswith("error:")


def test_invalid_config_names_the_key(tmp_path: Path) -> None:
    raw = orjson.loads(BUILTIN_CONFIG.read_bytes())
    raw["levels"][0]["weight"] = -3
    cfg = tmp_path / "bad.json"
    cfg.write_bytes(orjson.dumps(raw))
    r = musify("generate", "--config", str(cfg), "--stdout", home=tmp_path)
    assert r.returncode == 2
    assert "levels[0].weight: must be >= 0" in r.stderr
    assert "Traceback" not in r.stderr


def test_unknown_environment_variable(tmp_path: Path) -> None:
    env = dict(os.environ, MUSIFY_HOMEDIR="/tmp")
    r = subprocess.run(
        [sys.executable, "-m", "musify", "broker", "status"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert r.returncode == 2
    assert "MUSIFY_HOMEDIR" in r.stderr


# -- every failure is one line: the cases ------------------------------------------


def one_line_error(r: subprocess.CompletedProcess[str], code: int) -> str:
    """The whole stderr is one ``error:`` line, and the exit code is ``code``."""
    assert r.returncode == code, r.stderr[-3000:]
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr[-3000:]
    assert lines[0].startswith("error: ")
    return lines[0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["generate", "--stdout", "--days", "1e12"], "--days"),
        (["generate", "--stdout", "--days", "0"], "--days"),
        (["generate", "--stdout", "--days", "nan"], "--days"),
        (["generate", "--stdout", "--days", "400000", "--start-time", "9000-01-01"], "9999"),
        (["generate", "--stdout", "--workers", "-3"], "--workers"),
        (["generate", "--stdout", "--nusers", "0"], "--nusers"),
        (["generate", "--stdout", "--speed", "0"], "--speed"),
        (["generate", "--stdout", "--partitions", "0"], "--partitions"),
        (["generate", "--stdout", "--growth-rate", "-1"], "--growth-rate"),
        (["broker", "start", "--port", "99999"], "--port"),
        (["broker", "start", "--port", "-1"], "--port"),
        (["batch", "--lookback", "-5"], "--lookback"),
        (["batch", "--grace", "-1"], "--grace"),
        (["batch", "--wait-timeout", "-1"], "--wait-timeout"),
        (["stream", "--max-offsets-per-trigger", "0"], "--max-offsets-per-trigger"),
        (["dashboard", "--port", "70000"], "--port"),
        (["up", "--users", "0"], "--users"),
        (["up", "--catchup-hours", "-1"], "--catchup-hours"),
        (["generate", "--stdout", "--days", "many"], "--days"),
        (["generate", "--no-such-option"], "--no-such-option"),
        (["no-such-command"], "no-such-command"),
    ],
)
def test_invalid_numbers_and_options_are_rejected_in_one_line(
    tmp_path: Path, args: list[str], message: str
) -> None:
    line = one_line_error(musify(*args, home=tmp_path), 2)
    assert message in line


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("MUSIFY_BROKER_PORT", "99999"),
        ("MUSIFY_WORKERS", "-3"),
        ("MUSIFY_BATCH_LOOKBACK_HOURS", "-5"),
    ],
)
def test_settings_out_of_range_are_one_line_naming_the_variable(
    tmp_path: Path, variable: str, value: str
) -> None:
    r = musify("broker", "status", home=tmp_path, env={variable: value})
    assert variable in one_line_error(r, 2)


def test_help_still_works(tmp_path: Path) -> None:
    r = musify("--help", home=tmp_path, check=True)
    assert "Usage" in r.stdout and "--debug" in r.stdout
    assert "Usage" in musify("generate", "--help", home=tmp_path, check=True).stdout
    bare = musify(home=tmp_path)
    assert bare.returncode == 2 and "Usage" in bare.stdout + bare.stderr


@pytest.mark.medium  # musify generate in a subprocess: seconds
def test_a_full_disk_is_one_line_naming_the_file(tmp_path: Path) -> None:
    full = Path("/dev/full")  # every write fails with ENOSPC
    if not full.exists():
        pytest.skip("no /dev/full on this system")
    out = tmp_path / "out"
    out.mkdir()
    for topic in ("page_view_events", "listen_events", "auth_events", "status_change_events"):
        (out / f"{topic}.jsonl").symlink_to(full)
    r = musify(
        "generate", "--nusers", "200", "--days", "2", "--start-time", "2024-03-01",
        "--workers", "1", "-q", "--output-dir", str(out), home=tmp_path / "home",
    )  # fmt: skip
    line = one_line_error(r, 1)
    assert "no space left on device" in line and f"{out}/" in line


def _run_in_process(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[str]]:
    from musify.cli import run

    code = run(list(args))
    return code, capsys.readouterr().err.strip().splitlines()


def test_enospc_in_any_write_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import errno

    from musify.orchestration import status

    def full(settings: object) -> None:
        with (tmp_path / "state.json").open("wb") as f:
            f.write(b"x")
            raise OSError(errno.ENOSPC, "No space left on device")  # as a flush would

    monkeypatch.setenv("MUSIFY_HOME", str(tmp_path))
    monkeypatch.setattr(status, "collect", full)
    code, lines = _run_in_process(capsys, "status")
    assert code == 1 and len(lines) == 1, lines
    assert "no space left on device" in lines[0] and str(tmp_path / "state.json") in lines[0]


def test_an_unexpected_error_is_one_line_unless_debug(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from musify.orchestration import status

    def bug(settings: object) -> None:
        raise KeyError("hour")

    monkeypatch.setenv("MUSIFY_HOME", str(tmp_path))
    monkeypatch.setattr(status, "collect", bug)
    code, lines = _run_in_process(capsys, "status")
    assert code == 1 and len(lines) == 1, lines
    assert lines[0].startswith("error: KeyError: 'hour'") and "--debug" in lines[0]
    with pytest.raises(KeyError):
        _run_in_process(capsys, "--debug", "status")


def test_debug_shows_the_traceback_of_a_musify_error(tmp_path: Path) -> None:
    r = musify("--debug", "validate", "/nonexistent-dir", home=tmp_path)
    assert r.returncode == 2
    assert "Traceback" in r.stderr and r.stderr.strip().splitlines()[-1].startswith("error:")


def test_a_stream_against_an_unreachable_broker_is_one_line_in_seconds(tmp_path: Path) -> None:
    from musify.broker.local import free_port

    bootstrap = f"127.0.0.1:{free_port()}"
    t0 = time.monotonic()
    r = musify("stream", "--bootstrap-servers", bootstrap, "--until-caught-up", home=tmp_path)
    assert time.monotonic() - t0 < 30
    assert bootstrap in one_line_error(r, 1)


def test_a_second_stream_on_the_checkpoint_names_the_first(tmp_path: Path) -> None:
    from musify.stream.guard import lock_path

    settings = Settings(home=tmp_path)
    settings.ensure_dirs()
    with hold_lock(lock_path(settings)) as first:
        r = musify("stream", "--bootstrap-servers", "127.0.0.1:1", home=tmp_path)
    assert f"already running (pid {first.pid})" in one_line_error(r, 1)


def test_a_second_up_exits_at_once_naming_the_first(tmp_path: Path) -> None:
    from musify.broker.local import free_port
    from musify.orchestration.stack import up_lock_path

    settings = Settings(home=tmp_path)
    settings.ensure_dirs()
    # a broker that is not this machine's local one: nothing is started if the lock
    # were ignored, the run would fail on it instead
    env = {"MUSIFY_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}"}
    with hold_lock(up_lock_path(settings)) as first:
        r = musify("up", "--no-airflow", "--no-dashboard", home=tmp_path, env=env)
        assert first.poll() is None
    line = one_line_error(r, 1)
    assert f"musify up for {tmp_path} is already running (pid {first.pid})" in line


def test_down_with_a_corrupt_run_file(tmp_path: Path) -> None:
    from musify.orchestration.stack import up_lock_path, up_path

    settings = Settings(home=tmp_path)
    settings.ensure_dirs()
    up_path(settings).write_bytes(b'{"pid": 4')
    assert str(up_path(settings)) in one_line_error(musify("down", home=tmp_path), 1)
    with hold_lock(up_lock_path(settings)) as up:  # a running up: down stops it all the same
        r = musify("down", home=tmp_path)
        assert up.wait(10) is not None
    assert r.returncode == 0, r.stderr
    assert r.stderr.strip() == f"musify up (pid {up.pid}) stopped"


def test_a_corrupt_warehouse_and_airflow_database(tmp_path: Path) -> None:
    from musify.orchestration.airflow_env import db_path

    settings = Settings(home=tmp_path)
    settings.ensure_dirs()
    settings.warehouse_path.write_bytes(b"garbage" * 1000)
    db = db_path(settings)
    db.parent.mkdir(parents=True)
    db.write_bytes(b"garbage" * 1000)
    r = musify("batch", "--start", "2024-03-04T00:00", "--end", "2024-03-04T01:00", home=tmp_path)
    line = one_line_error(r, 1)
    assert str(settings.warehouse_path) in line and "--full-refresh" in line
    r = musify("status", "--json", home=tmp_path, check=True)
    rows = {row["name"]: row for row in orjson.loads(r.stdout)["components"]}
    assert rows["warehouse"]["state"] == rows["airflow"]["state"] == "broken"
    assert str(db) in rows["airflow"]["details"]
