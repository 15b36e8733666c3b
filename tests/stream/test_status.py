"""The stream's status records and its watermark, without Spark or a broker."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from musify.settings import Settings
from musify.stream import status
from musify.stream.job import _caught_up_at, _lag


def progress(end: dict[str, Any], latest: dict[str, Any] | None, **kw: Any) -> dict[str, Any]:
    source: dict[str, Any] = {"endOffset": json.dumps(end)}
    if latest is not None:
        source["latestOffset"] = json.dumps(latest)
    return {"timestamp": "2024-03-18T10:00:00.000Z", "sources": [source], **kw}


AT = "2024-03-18T10:00:01.250000+00:00"
FETCHED = datetime(2024, 3, 18, 10, 0, 1, 250000, tzinfo=UTC)


def test_caught_up_only_when_the_batch_read_up_to_every_end() -> None:
    ends = {"a": {"0": 5, "1": 7}, "b": {"0": 0}}
    assert _caught_up_at(progress(ends, {**ends, "$fetched_at": AT})) == FETCHED
    short = {"a": {"0": 5, "1": 6}, "b": {"0": 0}}  # maxOffsetsPerTrigger, availableNow
    assert _caught_up_at(progress(short, {**ends, "$fetched_at": AT})) is None
    assert _caught_up_at(progress({"a": {"0": 5}}, {**ends, "$fetched_at": AT})) is None
    # musify_kafka could not confirm an end: no time reported, no watermark
    assert _caught_up_at(progress(ends, {**ends, "$topic_ids": {"a": "x"}})) is None
    # a replayed batch has no latest offsets
    assert _caught_up_at(progress(ends, None)) is None
    # Spark's kafka source reports no fetch time: the trigger's start stands in
    assert _caught_up_at(progress(ends, ends)) == datetime(2024, 3, 18, 10, tzinfo=UTC)
    assert _caught_up_at({"sources": []}) is None
    assert _lag(progress(short, {**ends, "$fetched_at": AT})) == 1


def test_records_and_the_stdlib_watermark_reader(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    assert status.watermark(settings) is None  # no stream status at all
    assert status.stream_status(settings).last is None
    first = status.StatusRecord(batch_id=0, rows={"listen_events": 3}, watermark=FETCHED)
    status.record(settings, first)
    assert status.watermark(settings) == FETCHED
    status.record(settings, status.StatusRecord(batch_id=1, epoch=2.0))
    assert status.watermark(settings) is None  # a restarted job, not caught up yet
    last = status.stream_status(settings).last
    assert last is not None and last.batch_id == 1 and last.watermark is None
    lines = status.log_path(settings).read_bytes().splitlines()
    assert [json.loads(x)["watermark"] for x in lines] == [AT, None]
    assert all(json.loads(x)["version"] == status.STATUS_VERSION for x in lines)
    assert status.parse_watermark("2024-03-18T10:00:00") == datetime(2024, 3, 18, 10, tzinfo=UTC)


def test_the_status_reader_needs_only_the_standard_library(tmp_path: Path) -> None:
    """An orchestrator's own venv (no Spark, no orjson) can read the watermark."""
    code = f"""
import sys
before = set(sys.modules)  # what the interpreter (and site's .pth files) loaded
from pathlib import Path
from musify.settings import Settings
from musify.stream.status import watermark
print(watermark(Settings(home=Path({str(tmp_path)!r}))))
outside = sorted(
    name for name in set(sys.modules) - before
    if name.split(".")[0] not in sys.stdlib_module_names and name.split(".")[0] != "musify"
)
print(outside)
"""
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout
    assert out.splitlines() == ["None", "[]"]


def test_a_remote_lakes_status_copy_is_what_other_machines_read(tmp_path: Path) -> None:
    """With a gs:// lake the job runs elsewhere (a cluster): readers on this machine
    (the DAG's wait, `musify status`) read the copy the job keeps in the lake."""
    import uuid

    from musify.lake.storage import open_storage

    lake = f"memory://musify-status-{uuid.uuid4().hex[:8]}/lake"
    here = Settings(home=tmp_path / "airflow-vm", lake=lake)
    assert status.watermark(here) is None
    record = {"batch_id": 4, "watermark": AT, "epoch": 1.0}
    open_storage(lake).write_atomic(status.LAKE_STATUS_KEY, json.dumps(record).encode())
    assert status.watermark(here) == FETCHED
    last = status.stream_status(here).last
    assert last is not None and last.batch_id == 4


def test_the_event_time_watermark_is_the_slowest_active_partition() -> None:
    from datetime import timedelta

    now = datetime(2024, 3, 18, 12, tzinfo=UTC)
    hour = timedelta(hours=1)
    marks = {0: (now - 3 * hour, now), 1: (now - 2 * hour, now), 2: (now - 4 * hour, now)}
    assert status.event_watermark_of(marks, now) == now - 4 * hour
    # one event far in the future moves its own partition's mark, never the minimum
    future = {**marks, 1: (datetime(2100, 1, 1, tzinfo=UTC), now)}
    assert status.event_watermark_of(future, now) == now - 4 * hour
    # a partition that committed nothing for a while (its users left) stops holding it back
    idle = {**marks, 2: (now - 9 * hour, now - timedelta(seconds=status.IDLE_AFTER_S + 1))}
    assert status.event_watermark_of(idle, now) == now - 3 * hour
    stale = {p: (ev, now - 2 * hour) for p, (ev, _) in marks.items()}
    assert status.event_watermark_of(stale, now) == now - 4 * hour  # none active: all count
    assert status.event_watermark_of({}, now) is None


def test_event_marks_survive_a_restart_through_the_status_record(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    assert status.last_record(settings) is None
    marks = {"0": ["2024-03-18T10:00:00+00:00", AT], "1": ["garbage", AT]}
    doc = {"batch_id": 4, "event_marks": marks, "event_watermark": AT, "epoch": 1.0}
    status.status_path(settings).parent.mkdir(parents=True)
    status.status_path(settings).write_text(json.dumps(doc))
    last = status.last_record(settings)
    assert last is not None  # an unversioned record of an earlier job reads too
    assert last.event_marks == {0: (datetime(2024, 3, 18, 10, tzinfo=UTC), FETCHED)}
    assert status.event_watermark(settings) == FETCHED
    status.record(settings, last)  # and writes back the same
    assert status.last_record(settings) == last


def test_a_record_round_trips_and_a_foreign_or_newer_one_reads_as_none(tmp_path: Path) -> None:
    at = datetime(2024, 3, 18, 10, 0, 5, tzinfo=UTC)
    rec = status.StatusRecord(
        batch_id=7,
        at=at,
        epoch=at.timestamp(),
        rows={"listen_events": 5, "auth_events": 1},
        quarantined=2,
        lag=0,
        newest_event=FETCHED,
        freshness_s=3.75,
        watermark=FETCHED,
        event_marks={2: (FETCHED, at)},
        unknown_fields={"listen_events.mood": 1},
    )
    assert status.StatusRecord.from_json(rec.to_json()) == rec
    assert rec.total_rows == 6 and rec.newest_committed == FETCHED
    # a batch without events: its time minus the freshness it reports
    empty = status.StatusRecord(batch_id=8, at=at, freshness_s=3.75)
    assert empty.newest_committed == FETCHED
    assert status.StatusRecord(batch_id=9).newest_committed is None
    newer = json.dumps({**rec.to_json_dict(), "version": status.STATUS_VERSION + 1})
    odd = (b'{"batch_id": 1, "at": "noon"}', b'{"batch_id": 1, "version": "x"}')
    for bad in (b"{", b"[]", b'{"rows": {}}', *odd, newer):
        assert status.StatusRecord.from_json(bad) is None, bad
