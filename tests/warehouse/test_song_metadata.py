"""dim_songs with the Million Song metadata (MUSIFY_SONG_METADATA), and without it."""

from __future__ import annotations

from datetime import UTC, timedelta
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pytest

from musify.batch import run_batch
from musify.errors import UsageError
from musify.events import TOPIC_NAMES
from musify.lake import Lake
from musify.lake.writer import write_events
from musify.settings import Settings
from musify.sim import GenerateOptions, MemorySink, plan_run, run
from musify.sim.config import BUILTIN_CONFIG
from musify.warehouse.song_metadata import read_song_metadata
from tests.conftest import shared_file
from tests.warehouse.lake_events import START


def _songs(path: Path) -> list[tuple[Any, ...]]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute(
            "select song_key, title, year, tempo, release from analytics.dim_songs order by 1"
        ).fetchall()
    finally:
        con.close()


def test_a_file_without_the_join_keys_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "songs.csv"
    bad.write_text("artist_name,year\nSomeone,1999\n")
    with pytest.raises(UsageError, match=r"songs\.csv: the header lacks title, duration"):
        read_song_metadata(bad)


@pytest.mark.slow
def test_dim_songs_joins_the_metadata_when_supplied(tmp_path: Path, musify_cache: Path) -> None:
    songs_csv = shared_file("eventsim", "songs.csv")
    catalog = shared_file("eventsim", "listen_counts.txt.gz")  # the same Million Song subset
    plan = plan_run(
        GenerateOptions(
            config=BUILTIN_CONFIG,
            n_users=200,
            start=START,
            days=4 / 24,
            seed=5,
            workers=1,
            catalog=catalog,
            cache_dir=musify_cache,
        )
    )
    sink = MemorySink()
    run(plan, sink)
    evs = {t: [orjson.loads(x) for x in sink.lines[t]] for t in TOPIC_NAMES}
    end = START.astimezone(UTC) + timedelta(hours=4)

    # without metadata: the metadata columns are null
    plain = Settings(home=tmp_path / "plain")
    write_events(Lake(Path(plain.lake_root)), evs, 0)
    run_batch(plain, START, end - timedelta(hours=1), lookback_hours=0)
    without = _songs(plain.warehouse_path)
    assert without and all(r[2] is None and r[3] is None for r in without)

    # supplied later: the next hourly batch rewrites the known songs with it
    later = plain.replace(song_metadata=str(songs_csv))
    run_batch(later, end - timedelta(hours=1), end, lookback_hours=0)
    with_meta = _songs(later.warehouse_path)
    assert len(with_meta) >= len(without)
    matched = [r for r in with_meta if r[3] is not None]
    assert len(matched) == len(with_meta)  # every catalog song is in songs.csv
    assert sum(r[2] is not None for r in with_meta) > len(with_meta) // 2  # year 0 = unknown

    # the same from scratch with the setting: the same table
    fresh = Settings(home=tmp_path / "fresh", lake=plain.lake_root, song_metadata=str(songs_csv))
    run_batch(fresh, START, end, lookback_hours=0)
    assert _songs(fresh.warehouse_path) == with_meta
