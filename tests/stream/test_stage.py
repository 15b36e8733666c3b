"""A Spark task's staging: parse a batch of Kafka records and write its Parquet files
(no Spark: the function ``mapInArrow`` runs, called directly)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from musify.events import TOPICS
from musify.stream import parse, stage
from musify.stream.parse import lake_schema
from musify.stream.stage import RESULT_SCHEMA, stage_partition
from tests.stream.test_parse import listen
from tests.test_events import DEVICE

LISTEN = TOPICS["listen_events"]
INGESTED = datetime(2024, 3, 19, 1, 2, 3, tzinfo=UTC)


def kafka_batch(rows: list[tuple[str, int, bytes | None]]) -> pa.RecordBatch:
    n = len(rows)
    stamp = datetime(2024, 3, 18, 16, tzinfo=UTC)
    return pa.RecordBatch.from_pydict(
        {
            "key": pa.array([b"k"] * n, pa.binary()),
            "value": pa.array([v for _, _, v in rows], pa.binary()),
            "topic": pa.array([t for t, _, _ in rows], pa.string()),
            "partition": pa.array([0] * n, pa.int32()),
            "offset": pa.array([o for _, o, _ in rows], pa.int64()),
            "timestamp": pa.array([stamp] * n, pa.timestamp("us", tz="UTC")),
        }
    )


def test_a_task_stages_lake_and_quarantine_files(tmp_path: Path) -> None:
    late = listen(ts=1_710_730_800_000, itemInSession=5)  # 03:00 the same day
    auth = {
        "ts": 1_710_774_000_000,
        "sessionId": 1,
        "level": "free",
        "itemInSession": 1,
        **DEVICE,
        "success": False,
    }
    batch = kafka_batch(
        [
            ("listen_events", 0, orjson.dumps(listen())),
            ("listen_events", 1, orjson.dumps(late)),
            ("listen_events", 2, b"not json at all"),
            ("listen_events", 3, b'{"ts":\xff\xfe}'),
            ("auth_events", 0, orjson.dumps(auth)),
            ("mystery", 0, b"{}"),
        ]
    )
    ingested = INGESTED
    out = list(stage_partition(iter([batch]), str(tmp_path), "t", int(ingested.timestamp() * 1e6)))
    assert len(out) == 1 and out[0].schema.equals(RESULT_SCHEMA)
    files = {(r["target"], r["path"].rsplit("/", 1)[0]): r for r in out[0].to_pylist()}
    assert files[("", "")]["rows"] == 6  # what the task read
    listen_15 = files[("listen_events", "listen_events/date=2024-03-18/hour=15")]
    listen_03 = files[("listen_events", "listen_events/date=2024-03-18/hour=03")]
    assert (listen_15["rows"], listen_03["rows"]) == (1, 1), "late events: their own hour"
    assert listen_15["newest_ms"] == 1_710_774_000_000
    quarantined = files[("_quarantine", "_quarantine/topic=listen_events/date=2024-03-19")]
    assert quarantined["rows"] == 2 and quarantined["newest_ms"] is None
    assert files[("_quarantine", "_quarantine/topic=mystery/date=2024-03-19")]["rows"] == 1
    assert files[("auth_events", "auth_events/date=2024-03-18/hour=15")]["rows"] == 1

    table = pq.read_table(tmp_path / "t" / listen_15["path"])
    assert table.schema.remove_metadata().equals(lake_schema(LISTEN))
    row = table.to_pylist()[0]
    assert row["ts"] == datetime(2024, 3, 18, 15, tzinfo=UTC)
    assert row["registration"] == datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)
    assert (row["kafka_offset"], row["ingested_at"]) == (0, ingested)
    bad = pq.read_table(tmp_path / "t" / quarantined["path"])
    assert bad.schema.remove_metadata().equals(parse.QUARANTINE_SCHEMA)
    rows = sorted(bad.to_pylist(), key=lambda r: r["kafka_offset"])
    assert [(r["kafka_offset"], r["reason"]) for r in rows] == [
        (2, "not a JSON object"),
        (3, "not UTF-8"),
    ]
    assert rows[1]["value"] == b'{"ts":\xff\xfe}', "raw bytes are kept"
    mystery = pq.read_table(
        tmp_path / "t" / files[("_quarantine", "_quarantine/topic=mystery/date=2024-03-19")]["path"]
    )
    assert mystery.column("reason").to_pylist() == ["unknown topic"]


def test_a_task_holding_many_rows_writes_as_it_goes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stage, "FLUSH_ROWS", 50)
    batches = [
        kafka_batch(
            [
                ("listen_events", b * 40 + i, orjson.dumps(listen(itemInSession=b * 40 + i)))
                for i in range(40)
            ]
        )
        for b in range(5)
    ]
    out = next(stage_partition(iter(batches), str(tmp_path), "t", int(INGESTED.timestamp() * 1e6)))
    files = [r for r in out.to_pylist() if r["path"]]
    assert len(files) == 3  # 80, 80 and 40 rows: memory stays bounded
    assert (
        sum(r["rows"] for r in files)
        == 200
        == next(r["rows"] for r in out.to_pylist() if not r["path"])
    )
    offsets = [
        o
        for r in files
        for o in pq.read_table(tmp_path / "t" / r["path"]).column("kafka_offset").to_pylist()
    ]
    assert sorted(offsets) == list(range(200))


def test_a_task_reports_partition_marks_unknown_fields_and_refuses_the_future(
    tmp_path: Path,
) -> None:
    now_ms = int(INGESTED.timestamp() * 1000)
    events = [
        listen(ts=now_ms - 60_000, itemInSession=1),
        listen(ts=now_ms - 30_000, itemInSession=2, mood="calm"),
        listen(ts=4_102_444_800_000, itemInSession=3),  # the year 2100
        listen(ts=now_ms + 60_000, itemInSession=4, mood="ok", extra=1),  # skew: allowed
    ]
    batch = kafka_batch([("listen_events", i, orjson.dumps(e)) for i, e in enumerate(events)])
    parts = pa.array([0, 1, 0, 1], pa.int32())
    batch = batch.set_column(batch.schema.get_field_index("partition"), "partition", parts)
    out = next(
        stage_partition(
            iter([batch]),
            str(tmp_path),
            "t",
            int(INGESTED.timestamp() * 1e6),
            not_after_ms=now_ms + 300_000,
        )
    )
    staged = stage.collect_results(out.to_pylist(), "t")
    assert staged.rows == {"listen_events": 3, "_quarantine": 1}
    ms = lambda m: datetime.fromtimestamp(m / 1000, UTC)  # noqa: E731
    assert staged.marks == {
        ("listen_events", 0): ms(now_ms - 60_000),
        ("listen_events", 1): ms(now_ms + 60_000),
    }
    assert staged.unknown_fields == {"listen_events.mood": 2, "listen_events.extra": 1}
    kept = pq.read_table(
        tmp_path
        / "t"
        / next(f.key.split("/", 1)[1] for f in staged.files if f.target != "_quarantine")
    )
    extras = dict(
        zip(kept.column("itemInSession").to_pylist(), kept.column("extra").to_pylist(), strict=True)
    )
    assert extras == {1: None, 2: '{"mood":"calm"}', 4: '{"mood":"ok","extra":1}'}
    bad = pq.read_table(
        tmp_path
        / "t"
        / next(f.key.split("/", 1)[1] for f in staged.files if f.target == "_quarantine")
    )
    assert bad.column("reason").to_pylist()[0].startswith("ts 2100-01-01T00:00:00.000+00:00")
