"""Measurement helpers: run a command, sample the RSS of its process tree, take medians.

The machines are noisy, so every figure is a median over repeats, and where it makes
sense it is reported as a ratio against a baseline measured in the same run.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from musify.procs import tree_rss

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
RESULTS = REPO / "benchmarks" / "results"


@dataclass
class Measured:
    seconds: float
    peak_rss: int
    stdout: str

    def json(self) -> Any:
        return orjson.loads(self.stdout)


#: How often ``measure`` samples memory. One sample of a Spark job's tree (PSS from
#: /proc/*/smaps_rollup) costs about 10 ms of CPU: every 20 ms, the sampler itself took a
#: third of a core from the 2-core machine it measures.
SAMPLE_EVERY_S = 0.2


def measure(cmd: Sequence[str], env: dict[str, str] | None = None) -> Measured:
    """Run cmd to completion, sampling the process tree's memory (PSS) every 200 ms."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, **(env or {})}
    )
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, tree_rss(proc.pid))
            done.wait(SAMPLE_EVERY_S)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    out, err = proc.communicate()
    done.set()
    th.join()
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{err.decode()}")
    return Measured(seconds, peak, out.decode())


def musify_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "musify", *args]


def median(xs: Sequence[float]) -> float:
    return statistics.median(xs)


def save(name: str, result: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    return path


@dataclass(frozen=True)
class UpHome:
    """A fresh MUSIFY_HOME for a benchmark's `musify up`, on free ports."""

    home: Path
    env: dict[str, str]
    dashboard_port: int

    @classmethod
    def fresh(cls, prefix: str, **extra_env: str) -> UpHome:
        import tempfile

        from musify.broker.local import free_port

        home = Path(tempfile.mkdtemp(prefix=prefix)) / "home"
        port, aport, dport = free_port(), free_port(), free_port()
        env = {
            **os.environ,
            "MUSIFY_HOME": str(home),
            "MUSIFY_BROKER_PORT": str(port),
            "MUSIFY_BOOTSTRAP_SERVERS": f"127.0.0.1:{port}",
            "MUSIFY_AIRFLOW_PORT": str(aport),
            "MUSIFY_DASHBOARD_PORT": str(dport),
            **extra_env,
        }
        return cls(home, env, dport)

    def start(
        self, users: int, history: str, *options: str
    ) -> tuple[subprocess.Popen[bytes], Path]:
        """`musify up` (and ``options``) with its output in ``up.log`` beside the home."""
        cmd = [
            *(sys.executable, "-m", "musify", "up", "--users", str(users), "--history", history),
            *options,
        ]
        log = self.home.parent / "up.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(cmd, env=self.env, stdout=out, stderr=subprocess.STDOUT)
        return proc, log

    def components(self) -> dict[str, int]:
        """Pids of the components `musify up` lists (Airflow's have none while it waits)."""
        try:
            doc = orjson.loads((self.home / "run" / "up.json").read_bytes())
        except (FileNotFoundError, orjson.JSONDecodeError):
            return {}
        return {n: int(c["pid"]) for n, c in doc.get("components", {}).items() if c.get("pid")}

    def processes(self) -> dict[str, int]:
        """``components`` and the local broker `musify up` started (and the disk-backed
        broker's object store), by the pids in ``run/``."""
        pids = self.components()
        for name, file in (("broker", "broker.pid"), ("broker store", "broker-store.pid")):
            with contextlib.suppress(OSError, ValueError, IndexError):
                pids[name] = int((self.home / "run" / file).read_text().split()[0])
        return pids

    def stop(self, up: subprocess.Popen[bytes], timeout: float) -> None:
        """Stop `musify up`, then the broker it left running."""
        import signal

        up.send_signal(signal.SIGTERM)
        up.wait(timeout)
        subprocess.run(
            [sys.executable, "-m", "musify", "broker", "stop"],
            env=self.env,
            check=False,
            timeout=60,
        )


def checkout(into: Path) -> Path:
    """A copy of the working tree's tracked files (git ls-files) at ``into``: a benchmark
    that installs or tests works there and leaves the checkout alone."""
    files = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True
    ).stdout.split(b"\0")
    for name in filter(None, files):
        source = REPO / name.decode()
        if source.is_file():
            target = into / name.decode()
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return into


def timed(cmd: list[str], cwd: Path, env: dict[str, str]) -> float:
    """Seconds ``cmd`` took in ``cwd``; its output kept, and shown only when it fails."""
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env={**os.environ, **env}, capture_output=True)
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr).decode(errors="replace")[-3000:]
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{tail}")
    return time.perf_counter() - t0
