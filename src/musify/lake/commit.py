"""Committing a micro-batch's files into the lake, exactly once.

Spark's streaming engine re-runs a micro-batch with the same id and the same offsets
after a crash (its offset log is written before the batch runs), but its file sink
only protects Spark readers: a crash leaves partial or uncommitted files that plain
globbing readers would read (platform notes). So the stream writes each batch to a
private staging folder and commits it here:

1. If ``_commits/<batch>.json`` exists, the batch is already in the lake: drop the
   staging folder and return (a replay after a crash between our commit and Spark's).
2. Remove any final file of this batch: leftovers of an attempt that crashed while
   moving files.
3. Move each staged Parquet file to its final partition folder under a name derived
   from the batch (``part-b<batch>-<n>.parquet``). A rename within one filesystem is
   atomic, so readers see whole files or nothing.
4. Write the commit record (atomically: a temporary file, fsync, rename), then drop
   the staging folder.

A reader can see a batch half-moved for a moment (some partitions before others), but
never a partial file and never a row twice; after a crash, the replay completes the
batch.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from musify.lake.layout import Lake, batch_of, part_name


@dataclass(frozen=True)
class BatchCommit:
    batch_id: int
    files: tuple[str, ...]  # relative to the lake root
    rows: dict[str, int] = field(default_factory=dict)  # per topic, and "_quarantine"
    already_committed: bool = False


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)
    _fsync_dir(path.parent)


def committed_batches(lake: Lake) -> set[int]:
    if not lake.commits_dir.is_dir():
        return set()
    return {int(p.stem) for p in lake.commits_dir.glob("*.json") if p.stem.isdigit()}


def read_commit(lake: Lake, batch_id: int) -> dict[str, Any] | None:
    path = lake.commits_dir / f"{batch_id:012d}.json"
    try:
        data: dict[str, Any] = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    return data


def _remove_batch_files(lake: Lake, batch_id: int) -> int:
    removed = 0
    for d in lake.data_dirs():
        if not d.is_dir():
            continue
        for p in d.rglob("part-b*.parquet"):
            if batch_of(p.name) == batch_id:
                p.unlink()
                removed += 1
    return removed


def commit_batch(
    lake: Lake,
    batch_id: int,
    staged: dict[str, Path],
    rows: dict[str, int] | None = None,
    meta: dict[str, Any] | None = None,
) -> BatchCommit:
    """Move the staged Parquet files of one batch into the lake.

    ``staged`` maps each target (a topic name or ``_quarantine``) to the folder Spark
    wrote it to, with Hive-style partition subfolders (``date=…/hour=…``).
    """
    record = read_commit(lake, batch_id)
    if record is not None:
        for d in staged.values():
            shutil.rmtree(d, ignore_errors=True)
        return BatchCommit(
            batch_id, tuple(record.get("files", ())), record.get("rows", {}), already_committed=True
        )
    _remove_batch_files(lake, batch_id)
    moved: list[str] = []
    n = 0
    for target in sorted(staged):
        src_root = staged[target]
        dest_root = lake.quarantine_dir if target == "_quarantine" else lake.topic_dir(target)
        if not src_root.is_dir():
            continue
        for src in sorted(src_root.rglob("*.parquet")):
            rel = src.parent.relative_to(src_root)
            dest_dir = dest_root / rel
            dest_dir.mkdir(parents=True, exist_ok=True)
            dest = dest_dir / part_name(batch_id, n)
            n += 1
            os.replace(src, dest)
            moved.append(str(dest.relative_to(lake.root)))
    for d in {Path(lake.root / f).parent for f in moved}:
        _fsync_dir(d)
    body = {"batch_id": batch_id, "files": moved, "rows": rows or {}, **(meta or {})}
    _atomic_write(lake.commits_dir / f"{batch_id:012d}.json", orjson.dumps(body))
    for d in staged.values():
        shutil.rmtree(d, ignore_errors=True)
    return BatchCommit(batch_id, tuple(moved), rows or {})
