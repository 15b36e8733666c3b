"""Musify installed as a wheel, outside the checkout, runs ``musify batch``: the dbt
project is package data, found with importlib.resources, and dbt writes nothing into
the installed package."""

from __future__ import annotations

import shutil
import stat
import subprocess
import sys
import sysconfig
from datetime import timedelta
from pathlib import Path

import duckdb
import orjson
import pytest

from musify.events import TOPIC_NAMES
from musify.lake import Lake
from musify.lake.writer import write_events
from tests.warehouse.lake_events import START, events

pytestmark = [pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
UV = REPO / ".venv-uv" / "bin" / "uv"


def build_wheel(out: Path) -> Path:
    """The wheel of a copy of the checkout (setuptools' PEP 517 hook, in this venv: the
    build writes build/ and *.egg-info beside the sources, so not into the checkout)."""
    src = out / "src-copy"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    shutil.copytree(
        REPO / "src", src / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
    )
    code = "import sys, setuptools.build_meta as b; print(b.build_wheel(sys.argv[1]))"
    built = subprocess.run(
        [sys.executable, "-c", code, str(out)], cwd=src, capture_output=True, text=True
    )
    assert built.returncode == 0, built.stderr[-3000:]
    return out / built.stdout.strip().splitlines()[-1]


def _read_only(root: Path) -> None:
    for path in [root, *root.rglob("*")]:
        path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def _writable(root: Path) -> None:
    for path in [root, *root.rglob("*")]:
        path.chmod(path.stat().st_mode | stat.S_IWUSR)


def test_an_installed_wheel_runs_musify_batch_outside_the_checkout(
    tmp_path: Path, musify_cache: Path
) -> None:
    assert UV.exists(), f"{UV} is missing: `make install` creates it"
    wheel = build_wheel(tmp_path)
    venv = tmp_path / "venv"
    subprocess.run([str(UV), "venv", "--quiet", "--python", sys.executable, str(venv)], check=True)
    subprocess.run(
        [
            str(UV),
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--python",
            str(venv / "bin/python"),
            str(wheel),
        ],
        check=True,
    )
    # Dependencies from this environment's site-packages: a PYTHONPATH entry's .pth
    # files are not read, so the checkout's editable install of musify is not seen.
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": sysconfig.get_paths()["purelib"],
        "MUSIFY_HOME": str(tmp_path / "home"),
        "HOME": str(tmp_path),
    }
    where = subprocess.run(
        [
            str(venv / "bin/python"),
            "-c",
            "import musify.batch as b; print(b.__file__); print(b.DBT_PROJECT)",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    site = Path(sysconfig.get_paths(vars={"base": str(venv), "platbase": str(venv)})["purelib"])
    assert [Path(p).is_relative_to(site) for p in where] == [True, True], where
    project = Path(where[1])
    assert (project / "dbt_project.yml").is_file()
    assert (project / "models" / "marts").is_dir()

    evs = events(musify_cache, users=120, hours=2)
    write_events(Lake(tmp_path / "home" / "lake"), evs, 0)
    _read_only(project)  # dbt must write its target and logs under MUSIFY_HOME
    try:
        res = subprocess.run(
            [
                str(venv / "bin/musify"),
                "batch",
                "--start",
                START.isoformat(),
                "--end",
                (START + timedelta(hours=2)).isoformat(),
                "--lookback",
                "0",
                "--json",
            ],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
    finally:
        _writable(project)
    assert res.returncode == 0, res.stderr[-3000:]
    doc = orjson.loads(res.stdout)
    assert doc["rows"] == {t: len(evs[t]) for t in TOPIC_NAMES}
    assert len(doc["published"]) == 2
    con = duckdb.connect(str(tmp_path / "home" / "warehouse.duckdb"), read_only=True)
    try:
        facts = con.execute("select count(*) from analytics.fact_streams").fetchone()
    finally:
        con.close()
    assert facts == (len(evs["listen_events"]),)
