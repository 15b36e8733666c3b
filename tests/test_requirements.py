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

from tests.conftest import REPO, lock_tool, requirements_script


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


# -- settle.py: the files several distributions ship --------------------------------------


@pytest.fixture(scope="module")
def settle() -> ModuleType:
    return requirements_script("settle")


def _dist(site: Path, name: str, files: dict[str, bytes], settle: ModuleType) -> None:
    info = site / f"{name}-1.0.dist-info"
    info.mkdir(parents=True)
    rows = []
    for path, content in files.items():
        (site / path).parent.mkdir(parents=True, exist_ok=True)
        (site / path).write_bytes(content)
        rows.append(f"{path},{settle.record_hash(site / path)},{len(content)}")
    (info / "RECORD").write_text("\n".join([*rows, f"{info.name}/RECORD,,"]) + "\n")


def test_a_file_two_distributions_ship_differently_is_contested(
    settle: ModuleType, tmp_path: Path
) -> None:
    site = tmp_path / "site-packages"
    shim = {"ns/__init__.py": b"# the same in both\n"}
    _dist(site, "ns_core", {**shim, "ns/shared.py": b"core's\n", "ns/core.py": b""}, settle)
    _dist(site, "ns_plugin", {**shim, "ns/shared.py": b"plugin's\n"}, settle)
    conflicts = settle.contested(site)
    assert list(conflicts) == ["ns/shared.py"]
    assert settle.winners(conflicts) == ["ns-plugin"]
    # the plugin was written last: settled; core's copy left behind: not
    assert settle.unsettled(site) == []
    (site / "ns/shared.py").write_bytes(b"core's\n")
    assert settle.unsettled(site) == ["ns/shared.py: not ns-plugin's copy"]


@pytest.mark.parametrize("venv", [".venv", ".venv-airflow", ".venv-bqemu", ".venv-tools"])
def test_make_install_leaves_every_contested_file_settled(settle: ModuleType, venv: str) -> None:
    """uv writes a contested file's copies in download order; make install settles them
    (.venv: dbt-core, dbt-adapters, dbt-bigquery and dbt-duckdb all ship dbt/__init__.py)."""
    if not (REPO / venv).exists():
        pytest.fail(f"{REPO / venv} is missing: run make install")
    site = settle.site_packages(REPO / venv)
    if venv == ".venv":  # the case that needs settling: not a vacuous pass
        assert "dbt/__init__.py" in settle.contested(site)
    assert settle.unsettled(site) == []
