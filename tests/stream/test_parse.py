"""Parsing and quarantine rules on a static batch with the Kafka format's columns."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from musify.events import TOPICS
from tests.test_events import DEVICE

pytestmark = [pytest.mark.spark]

USER = {
    "userId": 7,
    "lastName": "Doe",
    "firstName": "Jo",
    "gender": "F",
    "registration": 1_700_000_000_000,
}


def listen(**kw: Any) -> dict[str, Any]:
    return {
        "artist": "A",
        "song": "S",
        "duration": 201.5,
        "ts": 1_710_774_000_000,
        "sessionId": 3,
        "auth": "Logged In",
        "level": "paid",
        "itemInSession": 4,
        **DEVICE,
        **USER,
        **kw,
    }


def test_split_batch(spark: Any) -> None:
    from musify.stream.parse import lake_schema, parse_batch, split_batch

    late = listen(ts=1_710_730_800_000, itemInSession=5)  # 03:00 the same day
    no_ts = listen()
    del no_ts["ts"]
    rows = [
        ("listen_events", 0, orjson.dumps(listen())),
        ("listen_events", 1, orjson.dumps(late)),
        ("listen_events", 2, b"not json at all"),
        ("listen_events", 3, b'{"ts":\xff\xfe}'),
        ("listen_events", 4, orjson.dumps(listen(ts="yesterday"))),
        ("listen_events", 5, orjson.dumps(no_ts)),
        ("listen_events", 6, orjson.dumps(listen(userId="seven"))),
        ("listen_events", 7, b"[1, 2]"),
        (
            "auth_events",
            0,
            orjson.dumps(
                {
                    "ts": 1_710_774_000_000,
                    "sessionId": 1,
                    "level": "free",
                    "itemInSession": 1,
                    **DEVICE,
                    "success": False,
                }
            ),
        ),
    ]
    ts = datetime(2024, 3, 18, 16, tzinfo=UTC)
    df = spark.createDataFrame(
        [(b"k", v, t, 0, off, ts, 0) for t, off, v in rows],
        "key binary, value binary, topic string, partition int, offset long, "
        "timestamp timestamp, timestampType int",
    )
    goods, bad = split_batch(parse_batch(df).cache())
    got = goods["listen_events"].orderBy("kafka_offset").collect()
    assert [r.kafka_offset for r in got] == [0, 1]
    assert got[0].ts == datetime(2024, 3, 18, 15, 0)  # session time zone is UTC
    assert (got[0].date, got[0].hour) == ("2024-03-18", "15")
    assert (got[1].date, got[1].hour) == ("2024-03-18", "03"), "late events: own hour"
    assert got[0].registration == datetime(2023, 11, 14, 22, 13, 20)
    assert goods["auth_events"].count() == 1
    assert goods["page_view_events"].count() == 0
    reasons = {r.kafka_offset: r.reason for r in bad.collect()}
    assert reasons == {
        2: "not a JSON object",
        3: "not UTF-8",
        4: "wrong type for field ts (timestamp_ms)",
        5: "missing required field ts",
        6: "wrong type for field userId (long)",
        7: "not a JSON object",
    }
    raw = {r.kafka_offset: r.value for r in bad.collect()}
    assert raw[3] == b'{"ts":\xff\xfe}', "raw bytes are kept"
    names = [f.name for f in lake_schema(TOPICS["listen_events"]).fields]
    assert goods["listen_events"].columns == [*names, "date", "hour"]
