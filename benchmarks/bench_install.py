"""Install benchmark (issue: reproducible, verifiable, fast installs).

`make install` in a copy of the working tree (its tracked files), so nothing here is
touched: every environment from its hashed lock by uv.

- *cold*: an empty uv cache and no pip cache: everything downloaded (target <= 90 s);
- *warm*: the venvs removed, the cache kept, as after `make clean` (target <= 20 s);
- *identical*: every install (cold, then each warm one) leaves the same bytes in every
  venv (each file's sha256, bytecode caches aside);
- *baseline*, measured in the same run: pip installing the same locks with
  `--require-hashes` into the same four venvs, with an empty pip cache (what `make
  install` did before uv, minus the open ranges).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import checkout, median, save, timed

VENVS = (".venv", ".venv-tools", ".venv-airflow", ".venv-bqemu", ".venv-uv")
PIP_LOCKS = {
    ".venv": "dev.txt",
    ".venv-tools": "tools.txt",
    ".venv-airflow": "airflow.txt",
    ".venv-bqemu": "bqemulator.txt",
}


def _signature(tree: Path) -> str:
    """One sha256 over the path and content of every file of every venv. Bytecode caches
    are left out: Python writes them when a package is first imported, not the install.
    The same tree path every time, so launchers' shebangs and direct_url.json compare."""
    digest = hashlib.sha256()
    for venv in VENVS:
        for path in sorted((tree / venv).rglob("*")):
            if "__pycache__" in path.parts or path.is_dir() or path.name == ".installed":
                continue
            digest.update(str(path.relative_to(tree)).encode() + b"\0")
            if path.is_symlink():
                digest.update(b"-> " + os.readlink(path).encode())
            else:
                with path.open("rb") as f:
                    digest.update(hashlib.file_digest(f, "sha256").digest())
    return digest.hexdigest()


def _clean(tree: Path) -> None:
    for venv in VENVS:
        shutil.rmtree(tree / venv, ignore_errors=True)


def _pip_baseline(tree: Path, cache: Path) -> float:
    # PyPI only, as uv is told; --no-deps: the lock is complete (and pip's hash mode
    # rejects an extra named by a dependency, e.g. mashumaro[msgpack], as "not pinned")
    env = {
        "PIP_CACHE_DIR": str(cache),
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "PIP_CONFIG_FILE": os.devnull,
        "PIP_INDEX_URL": "https://pypi.org/simple",
    }
    t0 = time.perf_counter()
    for venv, lock in PIP_LOCKS.items():
        timed([sys.executable, "-m", "venv", venv], tree, env)
        pip = [f"{venv}/bin/python", "-m", "pip", "install", "--quiet"]
        timed([*pip, "--no-deps", "--require-hashes", "-r", f"requirements/{lock}"], tree, env)
    timed(
        [".venv/bin/python", "-m", "pip", "install", "--quiet", "--no-deps", "-e", "."], tree, env
    )
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--warm-repeats", type=int, default=3)
    ap.add_argument("--no-baseline", action="store_true", help="skip pip (minutes)")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="musify-install-") as tmp:
        tree = checkout(Path(tmp) / "musify")
        uv_cache = Path(tmp) / "uv-cache"
        env = {"UV_CACHE_DIR": str(uv_cache), "PIP_NO_CACHE_DIR": "1"}
        make = ["make", "install"]
        cold = timed(make, tree, env)
        print(f"install cold (empty cache): {cold:.1f} s", flush=True)
        signatures = [_signature(tree)]
        warm = []
        for _ in range(args.warm_repeats):
            _clean(tree)
            warm.append(timed(make, tree, env))
            signatures.append(_signature(tree))
        print(f"install warm (median of {len(warm)}): {median(warm):.1f} s", flush=True)
        identical = len(set(signatures)) == 1
        print(f"every install byte-identical: {identical} ({signatures[0][:16]})", flush=True)
        result: dict[str, Any] = {
            "cold_s": cold,
            "warm_s": warm,
            "warm_median_s": median(warm),
            "identical": identical,
            "signatures": signatures,
        }
        cache_bytes = sum(f.stat().st_size for f in uv_cache.rglob("*") if f.is_file())
        result["uv_cache_gb"] = cache_bytes / 1e9
        if not args.no_baseline:
            _clean(tree)
            baseline = _pip_baseline(tree, Path(tmp) / "pip-cache")
            result["pip_cold_s"] = baseline
            result["speedup_cold"] = baseline / cold
            print(
                f"baseline, pip on the same locks (empty cache): {baseline:.1f} s "
                f"(uv x{baseline / cold:.1f} faster)",
                flush=True,
            )
    print(f"saved {save('install', result)}")
    return result


if __name__ == "__main__":
    main()
