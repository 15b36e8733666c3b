"""The disk-backed broker's object store lists from an index of its own writes: the same
pages as localbucket's own listing, without reading the disk again."""

from __future__ import annotations

import hashlib
import os
import random
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import pytest

from musify.broker.store import KeyIndex, Retention, page, serve

localbucket = pytest.importorskip("localbucket")

NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"


def _tree(root: Path, rng: random.Random) -> None:
    """Tansu's layout (offset-named batches per partition), other keys and a temp file."""
    for topic in ("listen_events", "auth_events"):
        for p in range(3):
            folder = root / "clusters/c/topics" / topic / f"partitions/{p:010d}"
            (folder / "records").mkdir(parents=True)
            (folder / "watermark.json").write_text("{}")
            offset = 0
            for _ in range(rng.randint(0, 40)):
                (folder / "records" / f"{offset:020d}.batch").write_bytes(b"x" * rng.randint(1, 9))
                offset += rng.randint(1, 500)
    (root / "groups").mkdir()
    (root / "groups" / "musify-stream.json").write_text("{}")
    (root / "clusters/c/meta.json").write_text("{}")
    (root / "clusters/c/topics/listen_events" / (localbucket.TEMP_PREFIX + "half")).write_text("")


def _original(bucket: Path, *args: Any) -> tuple[list[str], list[str], bool, str]:
    contents, common, truncated, last = localbucket.S3Handler._list_entries(None, bucket, *args)
    return [k for k, _ in contents], common, truncated, last


def test_pages_are_localbuckets_own_for_every_prefix_delimiter_marker_and_size(
    tmp_path: Path,
) -> None:
    rng = random.Random(17)
    bucket = tmp_path / "musify"
    _tree(bucket, rng)
    index = KeyIndex(localbucket.TEMP_PREFIX)
    every = index.keys(bucket, "")
    assert localbucket.TEMP_PREFIX + "half" not in "".join(every)
    topic = "clusters/c/topics/listen_events/"
    prefixes = ["", "clusters/", topic + "partitions/0000000001/records/", topic,
                "clusters/c/topics/auth_", "groups/", "nothing/"]  # fmt: skip
    checked = 0
    for prefix in prefixes:
        keys = index.keys(bucket, prefix[: prefix.rfind("/") + 1])
        markers = ["", *rng.sample(every, 5), "clusters/c/topics/"]
        for delimiter in ("", "/"):
            for marker in markers:
                for marker_is_prefix in (False, True) if marker.endswith("/") else (False,):
                    for max_keys in (0, 1, 7, 1000):
                        args = (prefix, delimiter, marker, marker_is_prefix, max_keys)
                        assert page(keys, *args) == _original(bucket, *args), args
                        checked += 1
    assert checked > 200


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, KeyIndex, Path]]:
    data = tmp_path / "data"
    data.mkdir()
    with serve(data, indexed=True) as (base, index):
        assert index is not None
        yield base, index, data


def test_listing_responses_are_localbuckets_own(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _tree(data / "musify", random.Random(3))
    (data / "musify/groups/a&b <c> d.json").write_text("{}")  # escaped in the XML
    first = "clusters/c/topics/listen_events/partitions/0000000000/records/"
    queries = ["list-type=2", "list-type=2&max-keys=2", "list-type=2&delimiter=/",
               f"list-type=2&prefix={first}&max-keys=5", "list-type=2&prefix=groups/",
               "list-type=2&prefix=clusters/&delimiter=/&encoding-type=url",
               f"list-type=2&start-after={first}00000000000000000000.batch&max-keys=3",
               "prefix=clusters/c/&delimiter=/", "prefix=groups/&max-keys=1"]  # fmt: skip
    with serve(data, indexed=False) as (plain, _), serve(data, indexed=True) as (ours, _):
        for query in queries:
            want = _call("GET", f"{plain}/musify?{query}")
            got = _call("GET", f"{ours}/musify?{query}")
            assert ET.canonicalize(got) == ET.canonicalize(want), query
            token = ET.fromstring(want).findtext(f"{NS}NextContinuationToken")
            if token:  # and the next page, from the continuation token
                query += f"&continuation-token={token}"
                want = _call("GET", f"{plain}/musify?{query}")
                got = _call("GET", f"{ours}/musify?{query}")
                assert ET.canonicalize(got) == ET.canonicalize(want), query


def _call(method: str, url: str, body: bytes | None = None) -> bytes:
    with urllib.request.urlopen(urllib.request.Request(url, data=body, method=method)) as r:
        data: bytes = r.read()
        return data


def _list(base: str, prefix: str) -> list[str]:
    """Every key under ``prefix``, page by page (3 keys a page)."""
    keys: list[str] = []
    token = ""
    while True:
        query = f"list-type=2&prefix={prefix}&max-keys=3" + (
            f"&continuation-token={token}" if token else ""
        )
        root = ET.fromstring(_call("GET", f"{base}/musify?{query}"))
        keys += [e.text or "" for e in root.iter(f"{NS}Key")]
        token = root.findtext(f"{NS}NextContinuationToken") or ""
        if not token:
            return keys


def test_listings_follow_the_servers_writes_and_deletes_without_reading_the_disk_again(
    served: tuple[str, KeyIndex, Path],
) -> None:
    base, index, data = served
    _call("PUT", f"{base}/musify")
    records = "topics/t/partitions/0/records/"
    written = []
    for offset in (0, 54, 209, 1000, 7, 99999):
        key = f"{records}{offset:020d}.batch"
        _call("PUT", f"{base}/musify/{key}", b"batch")
        written.append(key)
        if len(written) == 2:
            assert _list(base, records) == sorted(written)  # the index is made here
    _call("PUT", f"{base}/musify/topics/t/partitions/0/watermark.json", b"{}")
    assert _list(base, records) == sorted(written)
    _call("DELETE", f"{base}/musify/{written[1]}")
    left = sorted(written[:1] + written[2:])
    assert _list(base, records) == left
    assert _list(base, "topics/t/partitions/0/w") == ["topics/t/partitions/0/watermark.json"]
    scans = index.scans
    again = f"{records}{123456:020d}.batch"
    for body in (b"1", b"22", b"333"):
        _call("PUT", f"{base}/musify/{again}", body)  # written, then overwritten
        assert _list(base, records) == sorted([*left, again])
        listed = ET.fromstring(_call("GET", f"{base}/musify?list-type=2&prefix={again}"))
        assert listed.findtext(f"{NS}Contents/{NS}Size") == str(len(body))
        assert listed.findtext(f"{NS}Contents/{NS}ETag") == f'"{hashlib.md5(body).hexdigest()}"'
    assert index.scans == scans  # answered from the index, kept current by the writes
    # and what the index says is what the disk holds
    assert _list(base, records) == _original(data / "musify", records, "", "", False, 1000)[0]


def test_retention_deletes_old_batches_oldest_first_and_keeps_each_partitions_newest(
    tmp_path: Path,
) -> None:
    bucket = tmp_path / "data" / "musify"
    now = 1_000_000.0
    ages = {0: [900, 800, 700, 100, 50], 1: [900, 850], 2: [10]}  # seconds, oldest first
    for p, partition_ages in ages.items():
        records = bucket / f"clusters/c/topics/t/partitions/{p:010d}/records"
        records.mkdir(parents=True)
        (records.parent / "watermark.json").write_text("{}")
        os.utime(records.parent / "watermark.json", (now - 10_000, now - 10_000))
        for offset, age in enumerate(partition_ages):
            batch = records / f"{offset * 100:020d}.batch"
            batch.write_bytes(b"x")
            os.utime(batch, (now - age, now - age))
    index = KeyIndex(localbucket.TEMP_PREFIX)
    folder = "clusters/c/topics/t/partitions/0000000000/records/"
    assert len(index.keys(bucket, folder)) == 5  # a listing made before the sweep
    forgotten: list[Path] = []
    retention = Retention(tmp_path / "data", index, 600.0, forgotten.append)
    assert retention.sweep(now) == 4  # partition 0: three of five; 1: one of two; 2: none
    left = sorted(p.relative_to(bucket).as_posix() for p in bucket.rglob("*.batch"))
    assert left == [
        f"{folder}00000000000000000300.batch",
        f"{folder}00000000000000000400.batch",
        "clusters/c/topics/t/partitions/0000000001/records/00000000000000000100.batch",
        "clusters/c/topics/t/partitions/0000000002/records/00000000000000000000.batch",
    ]
    assert index.keys(bucket, folder) == left[:2]  # the listing follows
    assert len(forgotten) == 4
    assert (bucket / folder).parent.joinpath("watermark.json").exists()  # only batches go
    assert retention.sweep(now) == 0 and retention.deleted == 4
