"""Shared fixtures: paths to ../shared (skipped cleanly when absent) and small runs."""

from __future__ import annotations

import functools
import importlib.util
import os
import platform
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import orjson
import pytest

from musify.settings import Settings
from musify.sim import GenerateSummary

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"

# A test's Spark driver lives seconds, not hours: with C1 alone and the serial collector
# the stream tests ran in x0.81 of the time on 2 cores (C2's compiler threads and G1's
# workers compete with the test for the cores; benchmarks/README.md). Set for the whole
# session so the drivers of subprocesses (musify stream, musify up) get it too; a
# SPARK_SUBMIT_OPTS of the developer's wins.
os.environ.setdefault("SPARK_SUBMIT_OPTS", "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC")


def shared_file(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is not available (../shared is absent)")
    return path


#: What a test needs that costs seconds: a broker, a JVM, an emulator, a browser, Airflow.
#: A test using one of these fixtures (directly or through another fixture), or marked
#: with one of these markers, is ``medium`` unless marked ``slow``.
MEDIUM_FIXTURES = frozenset(
    {"spark", "broker", "bq_emulator", "bq_settings", "gcs_emulator", "gcs_bucket"}
)
MEDIUM_MARKERS = frozenset({"broker", "spark", "airflow", "browser"})
#: The cost markers (SQLMesh's style): every test gets exactly one. ``make test-quick``
#: runs the ``fast`` ones.
COSTS = ("fast", "medium", "slow")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Give every test without a cost marker its cost: ``medium`` when it needs what
    costs seconds (above), else ``fast``."""
    for item in items:
        marks = {m.name for m in item.iter_markers()}
        given = marks & set(COSTS)
        if len(given) > 1:
            raise pytest.UsageError(f"{item.nodeid}: one cost marker, not {sorted(given)}")
        if given:
            continue
        needs = set(getattr(item, "fixturenames", ()))
        if marks & MEDIUM_MARKERS or needs & MEDIUM_FIXTURES:
            item.add_marker(pytest.mark.medium)
        else:
            item.add_marker(pytest.mark.fast)
    if os.environ.get("PYTEST_XDIST_WORKER"):
        _heaviest_files_first(items)


#: The test files that take longest, longest first (seconds per file, setup included, in
#: the serial suite of 2026-12-05 on 2 cores: 140, 122, 79, 54, 42, 39, 34, 31, 30).
LONGEST_FILES = (
    "tests/stream/test_job.py",
    "tests/orchestration/test_up.py",
    "tests/stream/test_lake_tables.py",
    "tests/broker/test_generator_resume.py",
    "tests/orchestration/test_airflow_security.py",
    "tests/test_cloud_profile.py",
    "tests/orchestration/test_dag.py",
    "tests/stream/test_cluster.py",
    "tests/dashboard/test_app.py",
)
#: A rough weight of a test in seconds by its cost marker, to order the other files.
COST_SECONDS = {"fast": 0.2, "medium": 3.0, "slow": 30.0}


def _heaviest_files_first(items: list[pytest.Item]) -> None:
    """Under pytest-xdist (``make test``: ``--dist loadfile --no-loadscope-reorder``) the
    workers take the test files in this order: the longest first, so that the files
    taken last are short and neither worker runs a long one alone at the end (longest
    processing time first). Each file's tests keep their order."""

    def file(item: pytest.Item) -> str:
        return item.nodeid.split("::", 1)[0]  # relative to the rootdir, the repository

    weight: dict[str, float] = {}
    for item in items:
        cost = next(m.name for m in item.iter_markers() if m.name in COST_SECONDS)
        weight[file(item)] = weight.get(file(item), 0.0) + COST_SECONDS[cost]

    def rank(item: pytest.Item) -> tuple[int, float]:
        known = (
            LONGEST_FILES.index(file(item)) if file(item) in LONGEST_FILES else len(LONGEST_FILES)
        )
        return known, -weight[file(item)]

    items.sort(key=rank)


@functools.cache
def requirements_script(name: str) -> ModuleType:
    """requirements/<name>.py: a script, not a package (it runs before any venv exists)."""
    spec = importlib.util.spec_from_file_location(
        f"musify_{name}", REPO / "requirements" / f"{name}.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def lock_tool() -> ModuleType:
    return requirements_script("lock")


@pytest.fixture(scope="session", autouse=True)
def _no_broker_left_behind() -> Iterator[None]:
    """Whatever a failing test leaves running is stopped at the end of the session."""
    yield
    from musify.broker import local

    leftovers = [pid for pid, proc in list(local._children.items()) if proc.poll() is None]
    for pid in leftovers:
        local._terminate(pid, timeout=2.0)
    assert not leftovers, f"tests left brokers running: {leftovers}"


@pytest.fixture(scope="session")
def example_config() -> Path:
    """eventsim's example config, as the original Streamify pipeline used it."""
    return shared_file("eventsim", "example-config.json")


@pytest.fixture(scope="session")
def musify_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One people-table cache for the whole session (building it takes seconds)."""
    return tmp_path_factory.mktemp("cache")


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line]


@pytest.fixture(scope="session")
def run_generator(musify_cache: Path) -> Callable[..., tuple[Path, GenerateSummary]]:
    """Run the generator into a fresh folder: run_generator(out_dir, **options)."""
    from musify.sim import GenerateOptions, generate_events
    from musify.sim.clock import parse_time

    def _run(out: Path, **kw: Any) -> tuple[Path, GenerateSummary]:
        for key in ("start", "end"):
            if isinstance(kw.get(key), str):
                kw[key] = parse_time(kw[key])
        kw.setdefault("workers", 1)
        kw.setdefault("cache_dir", musify_cache)
        summary = generate_events(GenerateOptions(**kw), output_dir=out)
        return out, summary

    return _run


@pytest.fixture(scope="session")
def spark() -> Iterator[Any]:
    """One local Spark session for all tests that need one (the JVM takes seconds)."""
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ["PYSPARK_PYTHON"] = sys.executable  # workers need musify importable
    from pyspark.sql import SparkSession

    session = (
        SparkSession.builder.master("local[2]")
        .appName("musify-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.driver.host", "127.0.0.1")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


# --- the BigQuery emulator, shared by the warehouse and dashboard tests ---------------
# bqemulator (in its own venv from `make install`): one per test session, in memory, on
# free 127.0.0.1 ports, with a private HOME holding DuckDB's spatial extension (copied
# from the venv's duckdb-extension-spatial package: DuckDB cannot download it offline).
# Each test gets its own datasets.

BQEMU_VENV = REPO / ".venv-bqemu"
BQEMU_PROJECT = "musify-test"
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
def gcs_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The GCS emulator's disk: bqemulator resolves gs:// load-job URIs under it."""
    return tmp_path_factory.mktemp("gcs")


@contextmanager
def _server(
    what: str, cmd: list[str], env: dict[str, str], cwd: Path, log: Path, ready: str
) -> Iterator[None]:
    """Run an emulator until the block ends; ready when ``ready`` answers over HTTP."""
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd)
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                tail = log.read_text()[-3000:]
                raise RuntimeError(f"{what} exited ({proc.returncode}):\n{tail}")
            try:
                with urllib.request.urlopen(ready, timeout=2):
                    break
            except (urllib.error.URLError, OSError):
                if time.monotonic() > deadline:
                    tail = log.read_text()[-3000:]
                    raise RuntimeError(f"{what} not ready in 90 s:\n{tail}") from None
                time.sleep(0.3)
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session")
def gcs_emulator(gcs_root: Path) -> Iterator[str]:
    """gcp-storage-emulator on a free 127.0.0.1 port, storing objects under ``gcs_root``
    (``.cloudstorage/<bucket>/<object>``). Yields its URL for STORAGE_EMULATOR_HOST."""
    exe = Path(sys.executable).parent / "gcp-storage-emulator"
    if not exe.exists():
        pytest.fail(f"{exe} is missing: the dev extra installs gcp-storage-emulator")
    port = _free_port()
    log = gcs_root / "emulator.log"
    env = {**os.environ, "STORAGE_BASE": str(gcs_root)}
    cmd = [str(exe), "start", "--host", "127.0.0.1", "--port", str(port), "--quiet"]
    url = f"http://127.0.0.1:{port}"
    with _server(
        "gcp-storage-emulator",
        cmd,
        env,
        gcs_root,
        log,
        f"{url}/storage/v1/b?project={BQEMU_PROJECT}",
    ):
        yield url


@pytest.fixture
def gcs_bucket(gcs_emulator: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh bucket on the emulator, created with the official client; the test's
    environment points Google's clients (and gcsfs) at the emulator."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_emulator)
    name = f"musify-{uuid.uuid4().hex[:10]}"
    client = storage.Client(
        project=BQEMU_PROJECT,
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options={"api_endpoint": gcs_emulator},
    )
    client.create_bucket(name)
    return name


@pytest.fixture(scope="session")
def bq_emulator(tmp_path_factory: pytest.TempPathFactory, gcs_root: Path) -> Iterator[Emulator]:
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
    # gs:// URIs of load jobs are files under the GCS emulator's disk.
    env = {**os.environ, "HOME": str(home), "BQEMU_GCS_LOCAL_ROOT": str(gcs_root / ".cloudstorage")}
    cmd = [
        str(BQEMU_VENV / "bin" / "python"), str(REPO / "tests" / "bqemulator_main.py"), "start",
        "--rest-host", "127.0.0.1", "--rest-port", str(rest),
        "--grpc-host", "127.0.0.1", "--grpc-port", str(grpc),
        "--project", BQEMU_PROJECT, "--log-level", "warning",
    ]  # fmt: skip
    endpoint = f"http://127.0.0.1:{rest}"
    with _server(
        "bqemulator",
        cmd,
        env,
        tmp,
        log,
        f"{endpoint}/bigquery/v2/projects/{BQEMU_PROJECT}/datasets",
    ):
        yield Emulator(endpoint, BQEMU_PROJECT, log)


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


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[tuple[str, Path, int]]:
    """A fresh local broker: (bootstrap servers, its home, its port)."""
    from musify.broker.local import free_port, running_broker

    port = free_port()
    home = tmp_path / "broker-home"
    with running_broker(port, home) as bootstrap:
        yield bootstrap, home, port
