from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from musify.errors import UsageError
from musify.sim.catalog import DEFAULT_DURATION, load_catalog, synthetic_catalog
from tests.conftest import shared_file


def test_synthetic_catalog_is_believable_and_deterministic() -> None:
    a, b = synthetic_catalog(), synthetic_catalog()
    assert a.track_ids == b.track_ids and a.titles == b.titles
    assert np.array_equal(a.counts, b.counts)
    assert len(a) == 10_000
    assert 2_500 <= len(set(a.artists)) <= 3_000
    assert len(set(a.track_ids)) == len(a)
    assert 180 < float(np.median(a.durations)) < 280
    assert a.durations.min() >= 45 and a.durations.max() <= 1200
    # long tail: the top 1 % of songs take a large share, the bottom half a small one
    share = np.sort(a.counts)[::-1] / a.counts.sum()
    assert share[:100].sum() > 0.15
    assert share[5000:].sum() < 0.25
    assert all(t.strip() and ar.strip() for t, ar in zip(a.titles, a.artists, strict=True))


def test_million_song_subset_loads_clean() -> None:
    cat = load_catalog(shared_file("eventsim", "listen_counts.txt.gz"))
    assert len(cat) == 10_000
    assert cat.counts.sum() == 5_001_159
    text = "\n".join(cat.titles + cat.artists)
    assert "Ã" not in text, "no mojibake"
    assert '\\"' not in text and "\\" not in text, "no stray backslashes"
    assert not any(t.startswith('"') and t.endswith('"') and len(t) > 1 for t in cat.titles)
    assert "Céline Dion" in cat.artists
    assert any('Theme From "Come September"' in t for t in cat.titles)
    assert any("Coro del Teatro alla Scala, Milano" in a for a in cat.artists)


def test_catalog_format_details(tmp_path: Path) -> None:
    p = tmp_path / "songs.txt"
    p.write_bytes(
        b"TR1\tA\tOne\t200.5\t3\r\n"
        b'TR2\t"The \\"Q\\""\tTwo\t\t0\r\n'
        b"TR3\tCaf\xe9\tThree\t100\t1\n"  # latin-1, not UTF-8
    )
    cat = load_catalog(p)
    assert cat.artists == ("A", 'The "Q"', "Café")
    assert cat.durations[1] == DEFAULT_DURATION
    gz = tmp_path / "songs.txt.gz"
    gz.write_bytes(gzip.compress(p.read_bytes()))
    assert load_catalog(gz).track_ids == cat.track_ids


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"TR1\tA\tOne\t200\t1\nTR2\tB\n", r"line 2: expected 5 tab-separated fields"),
        (b"TR1\tA\tOne\tlong\t3\n", r"line 1: duration 'long' and count '3' must be numbers"),
        (b"TR1\tA\tOne\t-5\t3\n", r"line 1: duration must be > 0"),
        (b"TR1\tA\tOne\t100\t0\n", r"every listen count is 0"),
        (b"", r"no songs"),
    ],
)
def test_bad_catalogs_name_the_line(tmp_path: Path, content: bytes, message: str) -> None:
    p = tmp_path / "bad.txt"
    p.write_bytes(content)
    with pytest.raises(UsageError, match=message):
        load_catalog(p)
