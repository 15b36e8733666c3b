"""`musify up` end to end: the whole local stack publishes hours that reconcile, and
killing components (then the supervisor itself) loses and duplicates nothing.

Counts are compared three ways: the events in Kafka (what was generated: the resumable
generator must never produce an event twice), the committed lake files, and the facts.
"""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pytest

from musify.broker.local import free_port
from musify.events import TOPIC_NAMES
from musify.lake import Lake
from musify.live import Live
from musify.orchestration import hourly
from musify.orchestration.stack import up_path
from musify.settings import Settings
from musify.stream.status import watermark
from tests.broker.conftest import read_to_end
from tests.lake.conftest import table_rows

pytestmark = [
    pytest.mark.slow,
    pytest.mark.broker,
    pytest.mark.spark,
    pytest.mark.airflow,
    pytest.mark.timeout(1800),
]


def _wait(what: str, check: Callable[[], Any], timeout: float, log: Path) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(3)
    tail = log.read_text(errors="replace")[-4000:] if log.exists() else ""
    raise AssertionError(f"timed out waiting for {what}; musify up said:\n{tail}")


def _published(settings: Settings) -> list[datetime]:
    if not settings.warehouse_path.exists():
        return []
    try:
        con = duckdb.connect(str(settings.warehouse_path), read_only=True)
    except duckdb.Error:  # a writer holds the file: ask again
        return []
    try:
        rows = con.execute("select hour from raw.published_hours order by hour").fetchall()
    except duckdb.Error:
        return []
    finally:
        con.close()
    return [r[0].replace(tzinfo=UTC) for r in rows]


def _kafka_events(bootstrap: str) -> dict[str, list[tuple[int, int, int]]]:
    """Every message of every topic, as (sessionId, itemInSession, ts)."""
    out: dict[str, list[tuple[int, int, int]]] = {}
    for topic in TOPIC_NAMES:
        events = (orjson.loads(r.value) for r in read_to_end(bootstrap, topic))
        out[topic] = [(e["sessionId"], e["itemInSession"], e["ts"]) for e in events]
    return out


def _lake_events(lake: Lake, topic: str) -> list[tuple[int, int, int]]:
    """(sessionId, itemInSession, ts in ms) of every row of the topic's table."""
    rows = table_rows(lake, topic, ("sessionId", "itemInSession", "ts")).to_pylist()
    return [(r["sessionId"], r["itemInSession"], round(r["ts"].timestamp() * 1000)) for r in rows]


@pytest.fixture
def stack_env(tmp_path: Path) -> Iterator[tuple[Settings, dict[str, str], Path]]:
    home = tmp_path / "home"
    port, airflow_port = free_port(), free_port()
    env = {
        **os.environ,
        "MUSIFY_HOME": str(home),
        "MUSIFY_BROKER_PORT": str(port),
        "MUSIFY_BOOTSTRAP_SERVERS": f"127.0.0.1:{port}",
        "MUSIFY_AIRFLOW_PORT": str(airflow_port),
        "MUSIFY_STREAM_TRIGGER": "10s",
    }
    settings = Settings(
        home=home,
        broker_port=port,
        bootstrap_servers=f"127.0.0.1:{port}",
        airflow_port=airflow_port,
    )
    yield settings, env, tmp_path / "up.log"
    subprocess.run([sys.executable, "-m", "musify", "down"], env=env, timeout=400, check=False)
    subprocess.run(
        [sys.executable, "-m", "musify", "broker", "stop"], env=env, timeout=60, check=False
    )


def _start_up(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "musify",
                "up",
                "--users",
                "1500",
                "--history",
                "3h",
                "--catchup-hours",
                "1",
                "--no-dashboard",
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _component_pid(settings: Settings, name: str) -> int:
    doc = orjson.loads(up_path(settings).read_bytes())
    return int(doc["components"][name]["pid"])


def test_up_publishes_reconciled_hours_and_survives_kills(stack_env: Any) -> None:
    settings, env, log = stack_env
    up = _start_up(env, log)
    # the backfill of the older history and the hourly catch-up run both publish
    first = _wait("two published hours", lambda: len(_published(settings)) >= 2, 900, log)
    assert first

    # kill -9 the stream and the generator: the supervisor restarts them
    killed_at = datetime.now(UTC)
    for name in ("stream", "generator"):
        os.killpg(_component_pid(settings, name), signal.SIGKILL)
    # kill -9 the supervisor and the scheduler, then `musify up` again
    os.killpg(_component_pid(settings, "airflow-scheduler"), signal.SIGKILL)
    time.sleep(8)  # long enough for the supervisor to have restarted the stream
    os.kill(up.pid, signal.SIGKILL)
    up.wait(30)
    up = _start_up(env, log)

    def passed(moment: datetime) -> Callable[[], bool]:
        def check() -> bool:
            mark = watermark(settings)
            return mark is not None and mark > moment

        return check

    # a micro-batch planned after the second `musify up` started (8 s after the kills)
    _wait("the restarted stream to commit", passed(killed_at + timedelta(seconds=15)), 600, log)
    # stop the stack (the broker stays up with its topics), then drain Kafka into the lake
    os.kill(up.pid, signal.SIGTERM)
    up.wait(400)
    # the restart found Airflow's database migrated by this Airflow, with its pool
    assert log.read_text().count("ready (migrated before)") == 1
    drain = subprocess.run(
        [sys.executable, "-m", "musify", "stream", "--until-caught-up"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert drain.returncode == 0, drain.stderr[-3000:]

    kafka = _kafka_events(settings.bootstrap_servers)
    lake = Lake(Path(settings.lake_root))
    for topic in TOPIC_NAMES:
        in_kafka = collections.Counter(kafka[topic])
        in_lake = collections.Counter(_lake_events(lake, topic))
        assert max(in_kafka.values(), default=1) == 1, f"{topic}: the generator duplicated"
        assert in_lake == in_kafka, f"{topic}: lake and Kafka differ"

    # every published hour reconciles: Kafka (generated) = lake = facts
    published = _published(settings)
    assert len(published) >= 2
    counts = hourly.reconcile(settings, published[0], published[-1] + timedelta(hours=1)).counts
    for hour, per_topic in counts.items():
        lo, hi = hour.timestamp() * 1000, (hour.timestamp() + 3600) * 1000
        for topic, n in per_topic.items():
            assert n == sum(1 for e in kafka[topic] if lo <= e[2] < hi), (hour, topic)
    assert sum(counts[published[0]].values()) > 0

    # the live layer after the kills: each minute of the published hours is a recount of
    # the listens Kafka holds, each event once
    lo, hi = published[0], published[-1] + timedelta(hours=1)
    minutes = Live(lake).listens_per_minute(lo, hi)
    in_kafka = collections.Counter(
        ts // 60_000
        for _, _, ts in kafka["listen_events"]
        if lo.timestamp() * 1000 <= ts < hi.timestamp() * 1000
    )
    assert {int(m.timestamp()) // 60: n for m, n in minutes.items() if n} == dict(in_kafka)
    assert sum(in_kafka.values()) > 0
