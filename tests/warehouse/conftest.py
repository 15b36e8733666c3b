"""The BigQuery emulator (bqemulator, in its own venv from `make install`) for the tests.

One emulator per test session, in memory, on free 127.0.0.1 ports, with a private HOME
holding DuckDB's spatial extension (copied from the venv's duckdb-extension-spatial
package: DuckDB cannot download it offline). Each test gets its own datasets.
"""

from __future__ import annotations

import os
import platform
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from musify.settings import Settings

REPO = Path(__file__).resolve().parents[2]
BQEMU_VENV = REPO / ".venv-bqemu"
PROJECT = "musify-test"
DUCKDB_VERSION = "v1.5.5"


@dataclass(frozen=True)
class Emulator:
    endpoint: str
    project: str
    log: Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _private_home(root: Path) -> Path:
    found = sorted(
        BQEMU_VENV.glob(
            f"lib/python*/site-packages/duckdb_extension_spatial/extensions/{DUCKDB_VERSION}/spatial.duckdb_extension"
        )
    )
    if not found:
        raise RuntimeError(f"duckdb-extension-spatial is missing from {BQEMU_VENV}")
    arch = "linux_arm64" if platform.machine() in ("aarch64", "arm64") else "linux_amd64"
    dest = root / ".duckdb" / "extensions" / DUCKDB_VERSION / arch
    dest.mkdir(parents=True)
    shutil.copy2(found[0], dest)
    return root


@pytest.fixture(scope="session")
def bq_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    exe = BQEMU_VENV / "bin" / "bqemulator"
    if not exe.exists():
        message = f"{exe} is missing: run `make install` (it creates the emulator's venv)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    tmp = tmp_path_factory.mktemp("bqemu")
    home = _private_home(tmp / "home")
    log = tmp / "bqemulator.log"
    rest, grpc = _free_port(), _free_port()
    env = {**os.environ, "HOME": str(home)}
    cmd = [
        str(exe), "start",
        "--rest-host", "127.0.0.1", "--rest-port", str(rest),
        "--grpc-host", "127.0.0.1", "--grpc-port", str(grpc),
        "--project", PROJECT, "--log-level", "warning",
    ]  # fmt: skip
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=tmp)
    endpoint = f"http://127.0.0.1:{rest}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"bqemulator exited ({proc.returncode}):\n{log.read_text()[-3000:]}"
                )
            try:
                with urllib.request.urlopen(
                    f"{endpoint}/bigquery/v2/projects/{PROJECT}/datasets", timeout=2
                ):
                    break
            except (urllib.error.URLError, OSError):
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"bqemulator not ready in 90 s:\n{log.read_text()[-3000:]}"
                    ) from None
                time.sleep(0.3)
        yield Emulator(endpoint, PROJECT, log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def bq_settings(bq_emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings for the BigQuery engine on the emulator, with this test's own datasets."""
    monkeypatch.setenv("BIGQUERY_TOKEN", "emulator-accepts-any-token")
    tag = uuid.uuid4().hex[:8]
    return Settings(
        home=tmp_path / "home",
        warehouse_engine="bigquery",
        bq_project=bq_emulator.project,
        bq_dataset=f"analytics_{tag}",
        bq_raw_dataset=f"raw_{tag}",
        bq_api_endpoint=bq_emulator.endpoint,
    )
