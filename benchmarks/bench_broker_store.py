"""The disk-backed broker's object store (issue 17): listing a partition's records.

Tansu lists a partition's whole ``records/`` prefix (1,000 keys a page) on every fetch,
so the cost of that listing bounds how fast a consumer reads from the disk broker. A
bucket in Tansu's layout: one partition holding ``--partition-objects`` record batches,
others holding ``--elsewhere`` more. Both servers run in this process on the same
files: localbucket alone (the baseline) and ``musify.broker.store`` (its index); each
lists the partition's prefix to the end, page after page, alternately; medians of
``--repeats``, ratio baseline / store. The index is built by the store's first listing
of the folder: that one is reported apart (``first_ms``).
"""

from __future__ import annotations

import argparse
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

from benchmarks.common import median, save
from musify.broker.store import serve

NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"
BUCKET = "musify"
TOPICS = "clusters/musify/topics"


def _partition(root: Path, topic: str, partition: int, batches: int) -> str:
    """``batches`` record batches (offset-named, as Tansu writes them); their prefix."""
    folder = f"{TOPICS}/{topic}/partitions/{partition:010d}/records"
    path = root / BUCKET / folder
    path.mkdir(parents=True)
    for i in range(batches):
        (path / f"{i * 100:020d}.batch").write_bytes(b"x" * 512)
    return folder + "/"


def _fill(root: Path, partition_objects: int, elsewhere: int) -> str:
    per = 1_000
    for n in range(elsewhere // per):
        _partition(root, "page_view_events", n, per)
    return _partition(root, "listen_events", 0, partition_objects)


def _list(base: str, prefix: str) -> int:
    """Every key under ``prefix``, as Tansu asks (ListObjectsV2, 1,000 a page)."""
    keys, token = 0, ""
    while True:
        query = {"list-type": "2", "prefix": prefix, "max-keys": "1000"}
        if token:
            query["continuation-token"] = token
        url = f"{base}/{BUCKET}?{urllib.parse.urlencode(query)}"
        with urllib.request.urlopen(url, timeout=120) as response:
            doc = ET.fromstring(response.read())
        keys += len(doc.findall(f"{NS}Contents"))
        token = doc.findtext(f"{NS}NextContinuationToken") or ""
        if doc.findtext(f"{NS}IsTruncated") != "true":
            return keys


def _timed(base: str, prefix: str, expected: int) -> float:
    t0 = time.perf_counter()
    keys = _list(base, prefix)
    took = (time.perf_counter() - t0) * 1000
    assert keys == expected, (keys, expected)
    return took


def listing(partition_objects: int, elsewhere: int, repeats: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="musify-bench-store-") as tmp:
        root = Path(tmp)
        prefix = _fill(root, partition_objects, elsewhere)
        with serve(root, indexed=False) as (plain, _), serve(root, indexed=True) as (ours, _):
            first = _timed(ours, prefix, partition_objects)
            base: list[float] = []
            store: list[float] = []
            for _ in range(repeats):
                base.append(_timed(plain, prefix, partition_objects))
                store.append(_timed(ours, prefix, partition_objects))
    b, s = median(base), median(store)
    return {
        "partition_objects": partition_objects,
        "elsewhere": elsewhere,
        "localbucket_ms": round(b, 1),
        "store_ms": round(s, 1),
        "first_ms": round(first, 1),
        "ratio": round(b / s, 1),
        "repeats": repeats,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(prog="python -m benchmarks broker_store")
    ap.add_argument("--elsewhere", type=int, default=30_000, help="objects in other partitions")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)
    print(f"broker store: listing one partition, {args.elsewhere:,} objects elsewhere")
    runs = []
    for objects in (2_000, 12_000):
        r = listing(objects, args.elsewhere, args.repeats)
        runs.append(r)
        print(
            f"  {objects:,} objects in the partition: localbucket {r['localbucket_ms']:,} ms, "
            f"store {r['store_ms']:,} ms (x{r['ratio']}); the store's first listing "
            f"{r['first_ms']:,} ms (builds the index)"
        )
    result = {"listings": runs}
    print(f"  saved {save('broker_store', result)}")
    return result
