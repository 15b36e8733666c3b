"""The lock files: which environment installs what, how `make lock` writes each lock, and
the check that a lock still matches what it was compiled from.

Every environment Musify creates installs from one lock in this folder, with a sha256 for
every distribution of every pinned version (so one lock serves Linux x86-64 and arm64 and
macOS alike: uv's universal resolution writes platform markers where versions differ).
The declared requirements stay where people read them: pyproject.toml for Musify's own
extras, the `*.in` files here for the side environments.

    python requirements/lock.py            # compile the locks that are stale (make lock)
    python requirements/lock.py --upgrade  # re-resolve everything to the newest allowed
    python requirements/lock.py --check    # exit 1 naming each stale lock

Each lock's first line records a digest of its inputs (the declared requirements and the
compile options). `--check` needs no network: it recomputes the digest, and it checks that
every declared requirement is satisfied by a pinned version and that every pin has hashes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PYTHON_VERSION = "3.11"
INDEX_URL = "https://pypi.org/simple"
DIGEST_PREFIX = "# inputs-sha256: "
# Airflow publishes a constraints file per release and Python version on GitHub only (not
# reachable from every build machine): `make lock AIRFLOW_CONSTRAINTS=path` honours one.
AIRFLOW_CONSTRAINTS_ENV = "AIRFLOW_CONSTRAINTS"


@dataclass(frozen=True)
class Environment:
    """One installed environment and the lock it installs from."""

    lock: str
    used_by: str
    extras: tuple[str, ...] = ()
    source: str | None = None

    @property
    def path(self) -> Path:
        return HERE / f"{self.lock}.txt"

    @property
    def inputs(self) -> list[str]:
        return [str(HERE / self.source)] if self.source else [str(REPO / "pyproject.toml")]


ENVIRONMENTS = (
    Environment("uv", ".venv-uv (the installer, put there by pip)", source="uv.in"),
    Environment("build", "build dependencies of every source build", source="build.in"),
    Environment(
        "dev",
        ".venv (make install)",
        extras=("broker", "stream", "java", "warehouse", "gcp", "dev", "deploy", "dashboard"),
    ),
    Environment("airflow", ".venv-airflow", source="airflow.in"),
    Environment("bqemulator", ".venv-bqemu", source="bqemulator.in"),
    Environment("tools", ".venv-tools", source="tools.in"),
    Environment(
        "image",
        "deploy/Dockerfile, stage musify",
        extras=("broker", "stream", "warehouse", "gcp", "dashboard"),
    ),
    Environment("image-airflow", "deploy/Dockerfile, stage airflow", extras=("warehouse",)),
)


def declared(env: Environment, repo: Path = REPO) -> list[str]:
    """The requirement strings `env` is compiled from, in a stable order."""
    if env.source:
        text = (repo / "requirements" / env.source).read_text()
        lines = (line.split("#", 1)[0].strip() for line in text.splitlines())
        return [line for line in lines if line]
    project = tomllib.loads((repo / "pyproject.toml").read_text())["project"]
    optional: dict[str, list[str]] = project.get("optional-dependencies", {})
    found: list[str] = list(project.get("dependencies", []))
    pending, seen = list(env.extras), set()
    while pending:
        extra = pending.pop(0)
        if extra in seen:
            continue
        seen.add(extra)
        for line in optional[extra]:
            req = Requirement(line)
            if canonicalize_name(req.name) == "musify":
                pending.extend(sorted(req.extras))
            else:
                found.append(line)
    return sorted(set(found))


def compile_args(env: Environment) -> list[str]:
    args = [
        "--universal",
        f"--python-version={PYTHON_VERSION}",
        "--generate-hashes",
        f"--index-url={INDEX_URL}",
        "--custom-compile-command=make lock",
    ]
    args += [f"--extra={extra}" for extra in env.extras]
    return args


def digest(env: Environment, repo: Path = REPO) -> str:
    payload = {"declared": declared(env, repo), "args": compile_args(env)}
    if env.lock == "dev" or not env.source:
        project = tomllib.loads((repo / "pyproject.toml").read_text())["project"]
        payload["requires-python"] = project.get("requires-python", "")
    blob = json.dumps(payload, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()


@dataclass(frozen=True)
class Pin:
    name: str
    version: Version
    hashes: int


_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")


def pins(text: str) -> Iterator[Pin]:
    """The pinned packages of a lock, with the number of hashes each one carries."""
    name: str | None = None
    version = Version("0")
    hashes = 0
    for line in text.splitlines():
        match = _PIN.match(line)
        if match:
            if name:
                yield Pin(name, version, hashes)
            name, version, hashes = canonicalize_name(match[1]), Version(match[2]), 0
        hashes += line.count("--hash=sha256:")
    if name:
        yield Pin(name, version, hashes)


def problems(env: Environment, repo: Path = REPO) -> list[str]:
    """Why `env`'s lock cannot be installed as it is ([] when it is current)."""
    path = repo / "requirements" / f"{env.lock}.txt"
    rel = path.relative_to(repo)
    if not path.exists():
        return [f"{rel} is missing: run make lock"]
    text = path.read_text()
    found: list[str] = []
    first = text.split("\n", 1)[0]
    if first != DIGEST_PREFIX + digest(env, repo):
        found.append(f"{rel} is stale: its declared requirements changed; run make lock")
    locked: dict[str, list[Pin]] = {}
    for pin in pins(text):
        locked.setdefault(pin.name, []).append(pin)
        if pin.hashes == 0:
            found.append(f"{rel}: {pin.name}=={pin.version} has no hash")
    for line in declared(env, repo):
        req = Requirement(line)
        candidates = locked.get(canonicalize_name(req.name), [])
        if not any(req.specifier.contains(pin.version, prereleases=True) for pin in candidates):
            have = ", ".join(str(pin.version) for pin in candidates) or "nothing"
            found.append(f"{rel}: {line} is declared, the lock has {have}; run make lock")
    return found


def compile_lock(env: Environment, uv: str, upgrade: bool) -> None:
    command = [uv, "pip", "compile", "--quiet", *env.inputs, *compile_args(env)]
    if env.lock == "airflow" and os.environ.get(AIRFLOW_CONSTRAINTS_ENV):
        command.append(f"--constraint={os.environ[AIRFLOW_CONSTRAINTS_ENV]}")
    if upgrade:
        command.append("--upgrade")
    out = env.path.with_suffix(".tmp")
    # An existing lock seeds the resolution (uv keeps its pins where they still fit).
    if env.path.exists():
        out.write_text(env.path.read_text().split("\n", 1)[1])
    command.append(f"--output-file={out}")
    subprocess.run(command, check=True, cwd=REPO)
    out.write_text(DIGEST_PREFIX + digest(env) + "\n" + out.read_text())
    out.replace(env.path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="report stale locks, write none")
    parser.add_argument("--upgrade", action="store_true", help="re-resolve to the newest")
    parser.add_argument("--uv", default="uv", help="the uv executable")
    args = parser.parse_args(argv)
    if args.check:
        found = [problem for env in ENVIRONMENTS for problem in problems(env)]
        for problem in found:
            print(problem, file=sys.stderr)
        return 1 if found else 0
    for env in ENVIRONMENTS:
        if args.upgrade or problems(env):
            print(f"locking {env.path.relative_to(REPO)} ({env.used_by})", flush=True)
            compile_lock(env, args.uv, args.upgrade)
    return 0


if __name__ == "__main__":
    sys.exit(main())
