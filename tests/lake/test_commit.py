"""The lake's commit protocol, without Spark: staged files in, exactly once."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from musify.lake import Lake, commit_batch, committed_batches
from musify.lake.layout import batch_of, part_name


def stage(root: Path, topic: str, hours: dict[str, list[int]]) -> Path:
    """Write a staged folder like Spark's partitionBy output."""
    d = root / topic
    for hour, values in hours.items():
        date, hh = hour.split("T")
        target = d / f"date={date}" / f"hour={hh}"
        target.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table({"v": values}), target / "part-00000-abc.c000.snappy.parquet")
    (d / "_SUCCESS").touch()
    return d


def read_all(lake: Lake, topic: str) -> list[int]:
    import duckdb

    con = duckdb.connect()
    return sorted(
        r[0]
        for r in con.execute(
            f"select v from read_parquet('{lake.glob(topic)}', hive_partitioning=true)"
        ).fetchall()
    )


def test_names() -> None:
    assert part_name(7, 3) == "part-b000000000007-00003.parquet"
    assert batch_of(part_name(7, 3)) == 7
    assert batch_of("part-00000-abc.c000.snappy.parquet") is None


def test_commit_moves_files_and_records(tmp_path: Path) -> None:
    lake = Lake(tmp_path / "lake")
    staged = {
        "listen_events": stage(
            tmp_path / "s0", "listen_events", {"2024-03-18T15": [1, 2], "2024-03-18T16": [3]}
        )
    }
    c = commit_batch(lake, 0, staged, {"listen_events": 3})
    assert len(c.files) == 2 and not c.already_committed
    assert read_all(lake, "listen_events") == [1, 2, 3]
    assert (lake.root / "listen_events/date=2024-03-18/hour=16").is_dir()
    assert committed_batches(lake) == {0}
    assert not staged["listen_events"].exists()


def test_replay_of_a_committed_batch_changes_nothing(tmp_path: Path) -> None:
    lake = Lake(tmp_path / "lake")
    commit_batch(
        lake,
        5,
        {"listen_events": stage(tmp_path / "a", "listen_events", {"2024-03-18T15": [1, 2]})},
    )
    again = commit_batch(
        lake,
        5,
        {"listen_events": stage(tmp_path / "b", "listen_events", {"2024-03-18T15": [1, 2]})},
    )
    assert again.already_committed
    assert read_all(lake, "listen_events") == [1, 2]


def test_interrupted_attempt_is_cleaned_up(tmp_path: Path) -> None:
    lake = Lake(tmp_path / "lake")
    # an attempt that moved one file and died before its commit record
    leftover = lake.root / "listen_events/date=2024-03-18/hour=15" / part_name(9, 0)
    leftover.parent.mkdir(parents=True)
    pq.write_table(pa.table({"v": [1]}), leftover)
    other = lake.root / "listen_events/date=2024-03-18/hour=15" / part_name(8, 0)
    pq.write_table(pa.table({"v": [100]}), other)  # a committed earlier batch stays
    commit_batch(
        lake,
        9,
        {"listen_events": stage(tmp_path / "s", "listen_events", {"2024-03-18T15": [1, 2]})},
    )
    assert read_all(lake, "listen_events") == [1, 2, 100]
