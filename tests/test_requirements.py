"""The locks in requirements/: current against what is declared, hashed, and installed
from by every environment (requirements/lock.py does the checking; this proves it can
fail)."""

from __future__ import annotations

import re
import shutil
import tomllib
from pathlib import Path
from types import ModuleType

import pytest

from tests.conftest import REPO, lock_tool


@pytest.fixture(scope="module")
def lock() -> ModuleType:
    return lock_tool()


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    """The declared requirements and the locks, where a test may change them."""
    shutil.copy(REPO / "pyproject.toml", tmp_path)
    shutil.copytree(REPO / "requirements", tmp_path / "requirements")
    return tmp_path


def test_every_lock_is_current_and_hashed(lock: ModuleType) -> None:
    found = [problem for env in lock.ENVIRONMENTS for problem in lock.problems(env)]
    assert found == [], "\n".join(found)


def test_a_changed_range_makes_the_lock_stale(lock: ModuleType, copy: Path) -> None:
    (dev,) = [env for env in lock.ENVIRONMENTS if env.lock == "dev"]
    pyproject = copy / "pyproject.toml"
    text = pyproject.read_text()
    assert text.count('"duckdb>=1.1,<3"') >= 1
    pyproject.write_text(text.replace('"duckdb>=1.1,<3"', '"duckdb>=3"'))
    found = lock.problems(dev, copy)
    assert any("dev.txt is stale" in problem for problem in found), found
    assert any(re.search(r"duckdb>=3 is declared, the lock has 2\.", p) for p in found), found


def test_a_new_requirement_makes_the_lock_stale(lock: ModuleType, copy: Path) -> None:
    (tools,) = [env for env in lock.ENVIRONMENTS if env.lock == "tools"]
    source = copy / "requirements" / "tools.in"
    source.write_text(source.read_text() + "# a comment changes nothing\n")
    assert lock.problems(tools, copy) == []
    source.write_text(source.read_text() + "left-pad==1.0\n")
    found = lock.problems(tools, copy)
    assert any("tools.txt is stale" in problem for problem in found), found
    assert any("left-pad==1.0 is declared, the lock has nothing" in p for p in found), found


def test_a_pin_without_a_hash_is_refused(lock: ModuleType, copy: Path) -> None:
    (uv,) = [env for env in lock.ENVIRONMENTS if env.lock == "uv"]
    path = copy / "requirements" / "uv.txt"
    kept = [line for line in path.read_text().splitlines() if "--hash" not in line]
    path.write_text("\n".join(line.rstrip(" \\") for line in kept) + "\n")
    found = lock.problems(uv, copy)
    assert any(re.search(r"uv==[\d.]+ has no hash", problem) for problem in found), found


def test_every_lock_is_installed_from(lock: ModuleType) -> None:
    """make install and the Dockerfile sync exactly the locks, with hashes required."""
    makefile = (REPO / "Makefile").read_text()
    dockerfile = (REPO / "deploy" / "Dockerfile").read_text()
    assert "--require-hashes" in makefile and "--require-hashes" in dockerfile
    for env in lock.ENVIRONMENTS:
        name = f"{env.lock}.txt"
        assert f"$(LOCKS)/{name}" in makefile or f"requirements/{name}" in dockerfile, name
    # nothing is installed from declared ranges: no `pip install -e .[extras]`, no `-r *.in`
    for text in (makefile, dockerfile):
        assert not re.search(r"pip install[^\n]*-e [\"']?\S*\.\[", text)
        assert not re.search(r"-r\s+\S+\.in\b", text)


def test_test_tools_are_not_runtime_dependencies() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    tools = {"pytest", "pytest-timeout", "pytest-xdist", "ruff", "mypy", "playwright", "uv"}
    tools.add("pandas-stubs")
    for extra, lines in project["optional-dependencies"].items():
        if extra == "dev":
            continue
        names = {re.split(r"[<>=~!\[ ;]", line, maxsplit=1)[0] for line in lines}
        assert not names & tools, f"extra {extra!r} installs test tools {names & tools}"
    runtime = {re.split(r"[<>=~!\[ ;]", line, maxsplit=1)[0] for line in project["dependencies"]}
    assert not runtime & tools
