"""The lake's commit protocol, without Spark: staged files in, exactly once."""

from __future__ import annotations

import uuid
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from musify.lake import Lake, commit_batch, committed_batches
from musify.lake.commit import StagedFile
from musify.lake.layout import batch_of, part_name


def stage(lake: Lake, name: str, topic: str, hours: dict[str, list[int]]) -> list[StagedFile]:
    """Stage one file per hour under the lake's ``_staging/``, as writers do."""
    files = []
    for hour, values in hours.items():
        date, hh = hour.split("T")
        folder = f"date={date}/hour={hh}"
        key = f"_staging/{name}/{topic}/{folder}/part-00000-abc.parquet"
        with lake.storage.open_write(key) as f:
            pq.write_table(pa.table({"v": values}), f)
        files.append(StagedFile(topic, folder, key))
    return files


def read_all(lake: Lake, topic: str) -> list[int]:
    files = lake.storage.list(topic)
    if not files:
        return []
    return sorted(lake.storage.read_parquet(files)["v"].to_pylist())


@pytest.fixture(params=["local", "object store"])
def lake(request: pytest.FixtureRequest, tmp_path: Path) -> Lake:
    """A local lake, and one on fsspec's in-memory object store (the gs:// code path)."""
    if request.param == "local":
        return Lake(tmp_path / "lake")
    return Lake(f"memory://musify-test-{uuid.uuid4().hex[:8]}/lake")


def test_names() -> None:
    assert part_name(7, 3) == "part-b000000000007-00003.parquet"
    assert batch_of(part_name(7, 3)) == 7
    assert batch_of("part-00000-abc.c000.snappy.parquet") is None


def test_commit_moves_files_and_records(lake: Lake) -> None:
    staged = stage(lake, "s0", "listen_events", {"2024-03-18T15": [1, 2], "2024-03-18T16": [3]})
    c = commit_batch(lake, 0, staged, {"listen_events": 3})
    assert len(c.files) == 2 and not c.already_committed
    assert read_all(lake, "listen_events") == [1, 2, 3]
    assert lake.storage.list("listen_events/date=2024-03-18/hour=16") == [
        f"listen_events/date=2024-03-18/hour=16/{part_name(0, 1)}"
    ]
    assert committed_batches(lake) == {0}
    assert lake.storage.list("_staging") == []  # moved, not copied
    assert lake.storage.list("_commits", ".json") == ["_commits/000000000000.json"]


def test_replay_of_a_committed_batch_changes_nothing(lake: Lake) -> None:
    commit_batch(lake, 5, stage(lake, "a", "listen_events", {"2024-03-18T15": [1, 2]}))
    again = commit_batch(lake, 5, stage(lake, "b", "listen_events", {"2024-03-18T15": [1, 2]}))
    assert again.already_committed
    assert read_all(lake, "listen_events") == [1, 2]


def test_interrupted_attempt_is_cleaned_up(lake: Lake) -> None:
    # An earlier batch, committed, stays.
    commit_batch(lake, 8, stage(lake, "a", "listen_events", {"2024-03-18T15": [100]}))
    # An attempt of batch 9 that recorded its intent, moved one file and died.
    leftover = f"listen_events/date=2024-03-18/hour=15/{part_name(9, 0)}"
    with lake.storage.open_write(leftover) as f:
        pq.write_table(pa.table({"v": [1]}), f)
    lake.storage.write_atomic(
        "_commits/000000000009.pending.json", orjson.dumps({"batch_id": 9, "files": [leftover]})
    )
    assert read_all(lake, "listen_events") == [1, 100]  # what a reader sees meanwhile
    commit_batch(lake, 9, stage(lake, "s", "listen_events", {"2024-03-18T15": [1, 2]}))
    assert read_all(lake, "listen_events") == [1, 2, 100]
    assert committed_batches(lake) == {8, 9}
    assert lake.storage.read("_commits/000000000009.pending.json") is None


def test_hour_files_and_glob(lake: Lake) -> None:
    from datetime import UTC, datetime

    commit_batch(lake, 1, stage(lake, "a", "auth_events", {"2024-03-18T15": [1]}))
    files = lake.hour_files("auth_events", datetime(2024, 3, 18, 15, tzinfo=UTC))
    assert files == [lake.storage.uri(f"auth_events/date=2024-03-18/hour=15/{part_name(1, 0)}")]
    assert lake.hour_files("auth_events", datetime(2024, 3, 18, 16, tzinfo=UTC)) == []
    assert lake.glob("auth_events").endswith("auth_events/**/*.parquet")


def test_unknown_scheme_is_a_clear_error() -> None:
    from musify.errors import UsageError

    with pytest.raises(UsageError, match="s3://"):
        _ = Lake("s3://bucket/lake").storage
    with pytest.raises(UsageError, match="name a bucket"):
        _ = Lake("gs://").storage
