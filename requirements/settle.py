"""Make a synced environment the same bytes every time: settle the files that more than
one distribution ships.

Some distributions write the same path with different content (dbt-core, dbt-adapters,
dbt-bigquery and dbt-duckdb each ship their own `dbt/__init__.py`, a namespace shim).
uv installs wheels in the order they come out of the download and the cache, so which
copy is left varies from one install to the next. After `uv pip sync`, this reinstalls,
in name order, the distribution whose name sorts last among each such path's owners:
every contested path then holds that owner's copy, on every machine.

    python requirements/settle.py VENV -- INSTALL-COMMAND...

The install command (uv pip install from the environment's lock, hashes required) gets
`--reinstall-package NAME` for each reinstall. Standard library only: it runs before the
environment has anything.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import subprocess
import sys
from collections import defaultdict
from pathlib import Path


def _name(dist_info: Path) -> str:
    """The distribution's name, normalized, from ``name-version.dist-info``."""
    return dist_info.name.removesuffix(".dist-info").rsplit("-", 1)[0].replace("_", "-").lower()


def site_packages(venv: Path) -> Path:
    found = sorted(venv.glob("lib/python*/site-packages"))
    if len(found) != 1:
        raise SystemExit(f"settle: no single site-packages under {venv} ({len(found)} found)")
    return found[0]


def contested(site: Path) -> dict[str, dict[str, str]]:
    """Paths (relative to site-packages) that distributions ship with different content:
    path -> {distribution: its RECORD hash}."""
    owners: dict[str, dict[str, str]] = defaultdict(dict)
    for record in sorted(site.glob("*.dist-info/RECORD")):
        with record.open(newline="") as f:
            for row in csv.reader(f):
                if len(row) >= 2 and row[1]:
                    owners[row[0]][_name(record.parent)] = row[1]
    return {path: by_dist for path, by_dist in owners.items() if len(set(by_dist.values())) > 1}


def winners(conflicts: dict[str, dict[str, str]]) -> list[str]:
    """The distributions to reinstall, in this order: the last-sorting owner of each
    contested path. Reinstalling them in name order leaves each path with its own
    last-sorting owner's copy (no later reinstall owns that path)."""
    return sorted({max(by_dist) for by_dist in conflicts.values()})


def record_hash(path: Path) -> str:
    """A file's hash as RECORD writes it."""
    digest = hashlib.sha256(path.read_bytes()).digest()
    return "sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def unsettled(site: Path) -> list[str]:
    """Contested paths that do not hold their last-sorting owner's copy."""
    return [
        f"{path}: not {max(by_dist)}'s copy"
        for path, by_dist in sorted(contested(site).items())
        if record_hash(site / path) != by_dist[max(by_dist)]
    ]


def main(argv: list[str]) -> int:
    if "--" not in argv or argv.index("--") != 1:
        print("usage: settle.py VENV -- INSTALL-COMMAND...", file=sys.stderr)
        return 2
    venv, install = Path(argv[0]), argv[2:]
    for name in winners(contested(site_packages(venv))):
        subprocess.run([*install, "--reinstall-package", name], check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
