"""The cluster path: ``musify stream`` against a Spark standalone master with two
workers (from pyspark's own distribution, bound to 127.0.0.1), one worker killed
mid-stream, and the lake still holds exactly the produced events. The cloud profile runs
the stream on a cluster (Dataproc, YARN); this is the same code path with executors in
other JVMs writing the lake."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from musify.broker.local import free_port
from musify.lake import Lake
from tests.stream.streaming import lake_counts, produce

pytestmark = [pytest.mark.spark, pytest.mark.broker, pytest.mark.slow]


def _spark_env(tmp: Path) -> dict[str, str]:
    import pyspark

    env = {k: v for k, v in os.environ.items() if not k.startswith(("MUSIFY_", "SPARK_"))}
    env.update(
        SPARK_HOME=str(Path(pyspark.__file__).parent),
        SPARK_LOCAL_IP="127.0.0.1",
        SPARK_LOG_DIR=str(tmp / "logs"),
        SPARK_WORKER_DIR=str(tmp / "work"),
        PYSPARK_PYTHON=sys.executable,
    )
    return env


def _spark_class(env: dict[str, str], *args: str, log: Path) -> subprocess.Popen[bytes]:
    spark_class = Path(env["SPARK_HOME"]) / "bin" / "spark-class"
    return subprocess.Popen(
        [str(spark_class), *args],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _wait_for_line(log: Path, text: str, proc: subprocess.Popen[bytes], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while text not in log.read_text(errors="replace"):
        assert proc.poll() is None, log.read_text(errors="replace")[-3000:]
        assert time.monotonic() < deadline, f"{text!r} never appeared in {log}"
        time.sleep(0.2)


def _kill(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[str, list[subprocess.Popen[bytes]], Path]]:
    """A standalone master and two one-core workers; yields the master URL."""
    env = _spark_env(tmp_path)
    port = free_port()
    master_log = tmp_path / "master.log"
    procs = [
        _spark_class(
            env,
            "org.apache.spark.deploy.master.Master",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--webui-port",
            str(free_port()),
            log=master_log,
        )
    ]
    try:
        _wait_for_line(master_log, "I have been elected leader", procs[0], 120)
        url = f"spark://127.0.0.1:{port}"
        workers = []
        for i in range(2):
            log = tmp_path / f"worker-{i}.log"
            w = _spark_class(
                env,
                "org.apache.spark.deploy.worker.Worker",
                "--host",
                "127.0.0.1",
                "--cores",
                "1",
                "--memory",
                "1g",
                "--webui-port",
                str(free_port()),
                "--work-dir",
                str(tmp_path / f"work-{i}"),
                url,
                log=log,
            )
            procs.append(w)
            workers.append(w)
            _wait_for_line(log, "Successfully registered with master", w, 120)
        yield url, workers, tmp_path
    finally:
        for p in reversed(procs):
            _kill(p)


def test_a_stream_on_a_standalone_cluster_survives_a_lost_worker(
    broker: Any, cluster: tuple[str, list[subprocess.Popen[bytes]], Path], musify_cache: Path
) -> None:
    bootstrap, _, _ = broker
    url, workers, tmp = cluster
    produced = produce(bootstrap, musify_cache, users=200)
    home = tmp / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MUSIFY_")}
    env.update(MUSIFY_HOME=str(home), PYSPARK_PYTHON=sys.executable)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "musify",
            "stream",
            "--bootstrap-servers",
            bootstrap,
            "--master",
            url,
            "--until-caught-up",
            "--max-offsets-per-trigger",
            "600",
            "--json",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        lake = Lake(home / "lake")
        deadline = time.monotonic() + 300
        at_kill = -1
        # a micro-batch committed on the cluster, then a worker dies mid-stream
        while at_kill < 0:
            assert proc.poll() is None, proc.communicate()[1].decode()[-3000:]
            assert time.monotonic() < deadline, "no micro-batch committed on the cluster"
            if (home / "lake" / "catalog.db").exists() and lake.tables.exists("page_view_events"):
                table = lake.tables.table("page_view_events", refresh=True)
                at_kill = int(table.metadata.properties.get("musify.last-batch", -1))
            time.sleep(0.5)
        _kill(workers[0])
        out, err = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, err.decode()[-3000:]
    assert lake_counts(home / "lake") == produced
    summary = json.loads(out)
    assert summary["batches"] > at_kill + 2, "the stream must go on after the worker died"
    # both workers ran executors: the job was on the cluster, and the kill hit one in use
    for i in range(2):
        assert any((tmp / f"work-{i}").rglob("stderr")), f"worker {i} ran no executor"
