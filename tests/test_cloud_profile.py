"""The cloud profile, by configuration only, on emulators: generate -> Kafka -> the
stream into a ``gs://`` lake -> the hourly batch into BigQuery (load jobs of the
committed files, dbt-bigquery) -> reconcile and publish -> a dashboard query.

GCS is gcp-storage-emulator and BigQuery is bqemulator (the official Google clients talk
to both); the broker and Spark are real. Every count must match: produced = lake =
raw tables = facts, and the dashboard reads the streams the lake holds, in its marts
and in its live section.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from musify.batch import unpublished_changes
from musify.broker.local import free_port, running_broker
from musify.broker.produce import produce_events
from musify.dashboard import queries as q
from musify.dashboard.live import read_view
from musify.events import TOPIC_NAMES
from musify.lake import Lake
from musify.live.view import Live
from musify.orchestration import hourly
from musify.settings import Settings
from musify.sim import GenerateOptions
from musify.sim.config import BUILTIN_CONFIG
from musify.warehouse.bigquery_engine import BigQueryWarehouse
from musify.warehouse.duckdb_engine import DuckDBWarehouse
from musify.warehouse.models import FACTS

pytestmark = [pytest.mark.spark, pytest.mark.broker, pytest.mark.slow]

START = datetime(2024, 3, 18, 16, tzinfo=UTC)
HOURS = 4


def musify(env: dict[str, str], *args: str, timeout: float = 600) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "musify", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, f"musify {' '.join(args)}:\n{done.stdout}\n{done.stderr[-4000:]}"
    return done.stdout


def cloud_env(settings: Settings) -> dict[str, str]:
    """The environment a user sets for the cloud profile (plus the emulators' hosts,
    which the test's environment already has)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MUSIFY_")}
    env.update(
        MUSIFY_HOME=str(settings.home),
        MUSIFY_LAKE=settings.lake,
        MUSIFY_WAREHOUSE_ENGINE="bigquery",
        MUSIFY_BQ_PROJECT=settings.bq_project,
        MUSIFY_BQ_DATASET=settings.bq_dataset,
        MUSIFY_BQ_RAW_DATASET=settings.bq_raw_dataset,
        MUSIFY_BQ_API_ENDPOINT=settings.bq_api_endpoint,
        SPARK_LOCAL_IP="127.0.0.1",
    )
    return env


def test_generate_stream_to_gcs_batch_into_bigquery_and_a_dashboard_query(
    bq_settings: Settings, gcs_bucket: str, musify_cache: Path, tmp_path: Path
) -> None:
    settings = bq_settings.replace(lake=f"gs://{gcs_bucket}/lake")
    env = cloud_env(settings)
    end = START + timedelta(hours=HOURS)
    with running_broker(free_port(), tmp_path / "broker") as bootstrap:
        opts = GenerateOptions(
            config=BUILTIN_CONFIG,
            n_users=200,
            start=START,
            end=end,
            seed=7,
            workers=1,
            cache_dir=musify_cache,
        )
        produced: dict[str, int] = produce_events(opts, bootstrap).events
        assert produced["listen_events"] > 100
        musify(
            env,
            "stream",
            "--until-caught-up",
            "--bootstrap-servers",
            bootstrap,
            "--master",
            "local[2]",
        )

    # The lake's tables are in the bucket (their catalog under MUSIFY_HOME), and only there.
    lake = Lake.from_settings(settings)
    assert lake.remote and not (settings.home / "lake").exists()
    hours = [START + timedelta(hours=i) for i in range(HOURS)]
    found = hourly.lake_counts(lake, hours).counts
    assert {t: sum(found[h][t] for h in hours) for t in TOPIC_NAMES} == produced
    assert lake.tables.table("listen_events").location().startswith(f"gs://{gcs_bucket}/lake/")
    assert lake.storage.list("listen_events/metadata", ".json")
    assert lake.storage.read("_status/stream.json") is not None  # for remote orchestrators

    # The hourly batch: load jobs of the committed gs:// files, dbt-bigquery, reconcile
    # (facts = distinct lake events per hour and topic), publish.
    musify(
        env,
        "batch",
        "--start",
        START.isoformat(),
        "--end",
        end.isoformat(),
        "--steps",
        "load,transform,reconcile,publish",
    )
    wh = BigQueryWarehouse.from_settings(settings)
    try:
        for topic in TOPIC_NAMES:
            assert wh.raw_count(topic, START, end) == produced[topic], topic
        assert wh.fact_counts(FACTS, START, end) == produced
        published = wh.query(f"SELECT hour FROM {wh.sql_table('published_hours')} ORDER BY hour")
        assert [r["hour"] for r in published] == hours
        # each hour was published at the snapshots its rows were loaded from: the next
        # hourly run leaves it alone (musify.batch.unpublished_changes)
        loaded, at = wh.loaded_snapshots(START, end), wh.published_snapshots(START, end)
        assert set(at) == set(hours) and loaded
        assert all(at[h][t] == snap for h in loaded for t, snap in loaded[h].items())
        assert unpublished_changes(wh, hours) == []
    finally:
        wh.close()

    # A dashboard query on the marts: the streams of the day are the lake's listens.
    with BigQueryWarehouse.from_settings(settings).session() as s:
        day = START.date()
        total = q.streams_today(s, q.Filters(day, day))
        assert total.streams == produced["listen_events"]
        assert q.last_published(s).hour == (end - timedelta(hours=1)).replace(tzinfo=None)

    # The dashboard's live section over the gs:// lake: its minutes of the published
    # hours are the marts' streams, and its windows end at the newest committed listen.
    live = Live(lake)
    minutes = live.listens_per_minute(START, end)
    assert sum(minutes.values()) == total.streams
    view, _ = read_view(settings, None)
    assert view is not None and view.clock is not None
    assert max(minutes) <= view.clock < max(minutes) + timedelta(minutes=1)
    shown = {m.minute: m.listens for m in view.listens_per_minute}
    assert shown == {m: minutes.get(m, 0) for m in shown}
    assert view.active_listeners > 0 and view.trending_songs


def test_a_duckdb_warehouse_loads_a_gcs_lake(
    gcs_bucket: str, tmp_path: Path, musify_cache: Path
) -> None:
    """The embedded warehouse over a bucket: DuckDB reads gs:// through gcsfs."""
    from musify.lake.writer import write_events
    from tests.warehouse.lake_events import START as FIRST
    from tests.warehouse.lake_events import events

    evs = events(musify_cache, users=60, hours=2)
    lake = Lake(f"gs://{gcs_bucket}/lake", f"sqlite:///{tmp_path / 'catalog.db'}")
    write_events(lake, evs, 0)
    wh = DuckDBWarehouse(tmp_path / "warehouse.duckdb")
    try:
        loaded = wh.load_hours(lake, [FIRST, FIRST + timedelta(hours=1)])
    finally:
        wh.close()
    assert {t: loaded.total(t) for t in TOPIC_NAMES} == {t: len(evs[t]) for t in TOPIC_NAMES}
    assert loaded.total("listen_events") > 0
