"""A Spark task's part of a micro-batch: parse a batch of Kafka records and write its
tables' data files (no Spark: the function ``mapInArrow`` runs, called directly)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from musify.events import TOPICS
from musify.lake.schema import QUARANTINE_SCHEMA, lake_schema
from musify.stream import stage
from musify.stream.stage import RESULT_SCHEMA, StagingError, collect_results, stage_partition
from tests.sample_events import DEVICE
from tests.stream.messages import listen

LISTEN = TOPICS["listen_events"]
INGESTED = datetime(2024, 3, 19, 1, 2, 3, tzinfo=UTC)
US = int(INGESTED.timestamp() * 1e6)


def kafka_batch(
    rows: list[tuple[str, int, bytes | None]], partitions: list[int] | None = None
) -> pa.RecordBatch:
    n = len(rows)
    stamp = datetime(2024, 3, 18, 16, tzinfo=UTC)
    return pa.RecordBatch.from_pydict(
        {
            "key": pa.array([b"k"] * n, pa.binary()),
            "value": pa.array([v for _, _, v in rows], pa.binary()),
            "topic": pa.array([t for t, _, _ in rows], pa.string()),
            "partition": pa.array(partitions or [0] * n, pa.int32()),
            "offset": pa.array([o for _, o, _ in rows], pa.int64()),
            "timestamp": pa.array([stamp] * n, pa.timestamp("us", tz="UTC")),
        }
    )


def _run(tmp_path: Path, batches: list[pa.RecordBatch], **kw: Any) -> list[dict[str, Any]]:
    out = list(stage_partition(iter(batches), str(tmp_path), 7, US, **kw))
    assert len(out) == 1 and out[0].schema.equals(RESULT_SCHEMA)
    rows: list[dict[str, Any]] = out[0].to_pylist()
    return rows


def _files(report: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """file rows by (table, the file's folder below the batch's folder)."""
    out = {}
    for r in report:
        if r["kind"] == "file":
            folder = r["path"].split("/data/batch-000000000007/", 1)[1].rsplit("/", 1)[0]
            out[(r["target"], folder)] = r
    return out


def test_a_task_writes_table_and_quarantine_files(tmp_path: Path) -> None:
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
    report = _run(tmp_path, [batch])
    files = _files(report)
    assert next(r["rows"] for r in report if r["kind"] == "input") == 6  # what the task read
    listen_15 = files[("listen_events", "2024-03-18T15")]
    listen_03 = files[("listen_events", "2024-03-18T03")]
    assert (listen_15["rows"], listen_03["rows"]) == (1, 1), "late events: their own hour"
    assert listen_15["newest_ms"] == 1_710_774_000_000
    assert listen_15["path"].startswith(f"{tmp_path}/listen_events/data/batch-000000000007/")
    quarantined = files[("quarantine", "listen_events/2024-03-19")]
    assert quarantined["rows"] == 2 and quarantined["newest_ms"] is None
    assert files[("quarantine", "mystery/2024-03-19")]["rows"] == 1
    assert files[("auth_events", "2024-03-18T15")]["rows"] == 1

    table = pq.read_table(listen_15["path"])
    assert table.schema.remove_metadata().equals(lake_schema(LISTEN))
    row = table.to_pylist()[0]
    assert row["ts"] == datetime(2024, 3, 18, 15, tzinfo=UTC)
    assert row["registration"] == datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)
    assert (row["kafka_offset"], row["ingested_at"]) == (0, INGESTED)
    bad = pq.read_table(quarantined["path"])
    assert bad.schema.remove_metadata().equals(QUARANTINE_SCHEMA)
    rows = sorted(bad.to_pylist(), key=lambda r: r["kafka_offset"])
    assert [(r["topic"], r["kafka_offset"], r["reason"]) for r in rows] == [
        ("listen_events", 2, "not a JSON object"),
        ("listen_events", 3, "not UTF-8"),
    ]
    assert rows[1]["value"] == b'{"ts":\xff\xfe}', "raw bytes are kept"
    mystery = pq.read_table(files[("quarantine", "mystery/2024-03-19")]["path"])
    assert mystery.column("reason").to_pylist() == ["unknown topic"]
    # the offsets each table got, per Kafka partition (the quarantine's per topic)
    staged = collect_results(report)
    assert staged.tables["listen_events"].offsets == {"0": (0, 1)}
    assert staged.tables["quarantine"].offsets == {"listen_events:0": (2, 3), "mystery:0": (0, 0)}
    assert staged.rows == {"listen_events": 2, "quarantine": 3, "auth_events": 1}


def test_tables_that_hold_the_batch_are_counted_not_written(tmp_path: Path) -> None:
    batch = kafka_batch(
        [("listen_events", i, orjson.dumps(listen(itemInSession=i))) for i in range(3)]
        + [("listen_events", 3, b"bad")]
    )
    report = _run(tmp_path, [batch], skip=frozenset({"listen_events"}))
    staged = collect_results(report)
    assert staged.skipped == {"listen_events": 3} and set(staged.tables) == {"quarantine"}
    assert not (tmp_path / "listen_events").exists()
    # files missing from the report (a lost task) fail the batch
    with pytest.raises(StagingError, match="read 4 records"):
        collect_results([r for r in report if r["kind"] != "skipped"])


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
    report = _run(tmp_path, batches)
    files = [r for r in report if r["kind"] == "file"]
    assert len(files) == 3  # 80, 80 and 40 rows: memory stays bounded
    assert sum(r["rows"] for r in files) == 200 == collect_results(report).input_rows
    offsets = [
        o for r in files for o in pq.read_table(r["path"]).column("kafka_offset").to_pylist()
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
    batch = kafka_batch(
        [("listen_events", i, orjson.dumps(e)) for i, e in enumerate(events)], [0, 1, 0, 1]
    )
    staged = collect_results(_run(tmp_path, [batch], not_after_ms=now_ms + 300_000))
    assert staged.rows == {"listen_events": 3, "quarantine": 1}
    ms = lambda m: datetime.fromtimestamp(m / 1000, UTC)  # noqa: E731
    assert staged.marks == {
        ("listen_events", 0): ms(now_ms - 60_000),
        ("listen_events", 1): ms(now_ms + 60_000),
    }
    assert staged.tables["listen_events"].offsets == {"0": (0, 0), "1": (1, 3)}
    assert staged.unknown_fields == {"listen_events.mood": 2, "listen_events.extra": 1}
    kept = pq.read_table(staged.tables["listen_events"].paths[0])
    extras = dict(
        zip(kept.column("itemInSession").to_pylist(), kept.column("extra").to_pylist(), strict=True)
    )
    assert extras == {1: None, 2: '{"mood":"calm"}', 4: '{"mood":"ok","extra":1}'}
    bad = pq.read_table(staged.tables["quarantine"].paths[0])
    assert bad.column("reason").to_pylist()[0].startswith("ts 2100-01-01T00:00:00.000+00:00")
