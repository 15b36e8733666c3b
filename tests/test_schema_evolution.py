"""A field added to an event type (src/musify/events.py) evolves the pipeline in place:
the lake's table gains the column (older files read it as null), the raw tables and the
dbt staging follow, and every hour still reconciles (real broker, Spark, dbt)."""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from musify.batch import run_batch
from musify.events import TOPICS, Field, FieldType, Topic
from musify.lake import Lake
from musify.orchestration import hourly
from musify.settings import Settings
from tests.lake.conftest import table_rows
from tests.stream.streaming import START, produce, stream_once
from tests.warehouse.lake_events import events

pytestmark = [pytest.mark.slow, pytest.mark.spark, pytest.mark.broker]


def _send(bootstrap: str, topic: str, values: list[bytes]) -> None:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "logger": logging.Logger("evolution")})
    for v in values:
        producer.produce(topic, v)
    assert producer.flush(30) == 0


def test_a_new_optional_field_reaches_lake_raw_and_staging(
    broker: Any, tmp_path: Path, spark: Any, musify_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bootstrap, _, _ = broker
    home = tmp_path / "home"
    settings = Settings(home=home)
    produce(bootstrap, musify_cache, users=100)
    stream_once(home, bootstrap)
    run_batch(settings, START, START + timedelta(hours=6), lookback_hours=0)
    hourly.reconcile(settings, START, START + timedelta(hours=6))

    # the change: listen events gain an optional `country`
    old = TOPICS["listen_events"]
    new = Topic(old.name, (*old.fields, Field("country", FieldType.STRING, False)), old.doc)
    monkeypatch.setitem(TOPICS, "listen_events", new)
    later = events(musify_cache, users=150, hours=8)
    six = (START + timedelta(hours=6)).timestamp() * 1000
    hour6 = [e for e in later["listen_events"] if e["ts"] >= six][:5]
    assert len(hour6) == 5
    # every event is a page view too (the contract dim_location and dim_users rely on)
    keys = {(e["sessionId"], e["itemInSession"]) for e in hour6}
    views = [e for e in later["page_view_events"] if (e["sessionId"], e["itemInSession"]) in keys]
    moved = 10**12  # session ids no earlier event of the lake has
    _send(
        bootstrap,
        "listen_events",
        [orjson.dumps({**e, "sessionId": e["sessionId"] + moved, "country": "US"}) for e in hour6],
    )
    _send(
        bootstrap,
        "page_view_events",
        [orjson.dumps({**e, "sessionId": e["sessionId"] + moved}) for e in views],
    )
    summary = stream_once(home, bootstrap)
    assert summary.rows["listen_events"] == 5 and summary.unknown_fields == {}

    # the lake's table evolved in place: older rows read the new column as null
    lake = Lake(home / "lake")
    assert "country" in lake.tables.table("listen_events", refresh=True).schema().column_names
    got = table_rows(lake, "listen_events", ("country",)).column("country").to_pylist()
    assert got.count("US") == 5 and got.count(None) == len(got) - 5

    # the raw table and the staging model follow; every hour reconciles
    end = START + timedelta(hours=8)
    run_batch(settings, START, end, lookback_hours=0)
    checked = hourly.reconcile(settings, START, end)
    ts = table_rows(lake, "listen_events", ("ts",)).column("ts")
    in_window = int(pc.sum(pc.less(ts, pa.scalar(end, pa.timestamp("us", tz="UTC")))).as_py())
    assert sum(c["listen_events"] for c in checked.counts.values()) == in_window
    con = duckdb.connect(str(settings.warehouse_path), read_only=True)
    raw = con.execute("select count(country) from raw.listen_events").fetchall()
    staged = con.execute(
        "select country, count(*) from analytics.stg_listen_events group by 1 order by 1"
    ).fetchall()
    assert raw == [(5,)]
    assert ("US", 5) in staged and staged[-1][0] is None
