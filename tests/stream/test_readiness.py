"""Readiness cannot be moved by event timestamps (real broker, real Spark): an event
from the year 2100 is quarantined, an event a few minutes ahead moves one partition's
mark only, so an hour the lake does not hold is never reported ready."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from musify.cli import app
from musify.events import TOPIC_NAMES
from musify.lake import QUARANTINE
from musify.orchestration import hourly
from musify.settings import Settings
from musify.stream import status
from tests.lake.conftest import table_rows
from tests.stream.streaming import START, produce, stream_once

pytestmark = [pytest.mark.spark, pytest.mark.broker, pytest.mark.slow]


def _send(bootstrap: str, topic: str, partition: int, event: dict[str, Any]) -> None:
    from confluent_kafka import Producer

    producer = Producer(
        {"bootstrap.servers": bootstrap, "logger": logging.Logger("musify.tests.readiness")}
    )
    producer.produce(topic, orjson.dumps(event), partition=partition)
    assert producer.flush(30) == 0


def test_a_timestamp_from_the_future_cannot_make_an_hour_ready(
    broker: Any, tmp_path: Path, spark: Any, musify_cache: Path
) -> None:
    bootstrap, _, _ = broker
    home = tmp_path / "home"
    settings = Settings(home=home)
    produce(bootstrap, musify_cache, users=100)  # the day START .. START + 1 day
    now = datetime.now(UTC)
    page_view = {
        "ts": int(datetime(2100, 1, 1, tzinfo=UTC).timestamp() * 1000),
        "sessionId": 9_999_999,
        "page": "Home",
        "auth": "Logged In",
        "method": "GET",
        "status": 200,
        "level": "free",
        "itemInSession": 0,
        "city": "Eugene",
        "zip": "97401",
        "state": "OR",
        "userAgent": "test",
        "lon": -123.1,
        "lat": 44.1,
    }
    _send(bootstrap, "page_view_events", 0, page_view)
    # a few minutes ahead: within the allowed skew, so it is kept (one partition)
    soon = {**page_view, "ts": int((now + timedelta(minutes=4)).timestamp() * 1000)}
    _send(bootstrap, "page_view_events", 0, {**soon, "itemInSession": 1})

    summary = stream_once(home, bootstrap)
    assert summary.quarantined == 1
    reasons = table_rows(home / "lake", QUARANTINE, ("reason",)).column("reason").to_pylist()
    assert len(reasons) == 1 and reasons[0].startswith("ts 2100-01-01"), reasons

    last = status.last_record(settings)
    assert last is not None and last.freshness_s is not None and last.freshness_s >= 0
    history_end = START + timedelta(days=1)
    events_mark = status.event_watermark(settings)
    assert events_mark is not None and events_mark < history_end
    assert status.watermark(settings) is not None and status.watermark(settings) > now
    # the hour after the history is not in the lake: not ready, whatever the timestamps
    after = history_end + timedelta(hours=1)
    assert not hourly.stream_readiness(settings, after, timedelta(minutes=1)).ready
    res = CliRunner().invoke(
        app,
        ["batch", "--steps", "wait", "--end", after.isoformat()],
        env={"MUSIFY_HOME": str(home)},
    )
    assert res.exit_code == 75, res.output
    # an hour the history covers completely is ready
    ready_end = history_end - timedelta(hours=2)
    assert hourly.stream_readiness(settings, ready_end, timedelta(minutes=1)).ready
    assert set(summary.rows) == set(TOPIC_NAMES)
