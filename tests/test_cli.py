"""The command line: thin, with one-line errors and exit code 2 for bad input."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from musify.sim.config import BUILTIN_CONFIG


def musify(*args: str, home: Path, check: bool = False) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MUSIFY_")}
    env["MUSIFY_HOME"] = str(home)
    return subprocess.run(
        [sys.executable, "-m", "musify", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=check,
    )


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
