"""Committing a micro-batch's files into the lake, exactly once.

Spark's streaming engine re-runs a micro-batch with the same id and the same offsets
after a crash (its offset log is written before the batch runs), but its file sink
only protects Spark readers: a crash leaves partial or uncommitted files that plain
globbing readers would read (platform notes). So writers stage each batch's files
under ``_staging/`` and commit them here:

1. If ``_commits/<batch>.json`` exists, the batch is already in the lake: return (a
   replay after a crash between our commit and Spark's). The caller drops its staging.
2. If ``_commits/<batch>.pending.json`` exists, an earlier attempt crashed while moving
   files: remove the final files it lists.
3. Write the pending record naming every final file of this attempt, then move each
   staged file to its partition folder under a name derived from the batch
   (``part-b<batch>-<n>.parquet``). Locally a rename is atomic; on an object store the
   copy appears whole. Either way a reader never sees a partial file.
4. Write the commit record (atomically), then drop the pending record.

A reader can see a batch half-moved for a moment (some partitions before others), but
never a partial file and never a row twice; after a crash, the replay completes the
batch. The pending record keeps the clean-up proportional to the batch, not to the
lake's history (no listing of the lake per batch).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from musify.lake.layout import COMMITS, QUARANTINE, Lake, part_name


@dataclass(frozen=True)
class StagedFile:
    """One file a writer staged: where it is, and where it belongs."""

    target: str  # a topic name or ``_quarantine``
    folder: str  # the Hive-style partition folder inside the target, e.g. date=…/hour=…
    key: str  # the staged file's key in the lake's storage


@dataclass(frozen=True)
class BatchCommit:
    batch_id: int
    files: tuple[str, ...]  # relative to the lake root
    rows: dict[str, int] = field(default_factory=dict)  # per topic, and "_quarantine"
    already_committed: bool = False


def _commit_key(batch_id: int) -> str:
    return f"{COMMITS}/{batch_id:012d}.json"


def _pending_key(batch_id: int) -> str:
    return f"{COMMITS}/{batch_id:012d}.pending.json"


def committed_batches(lake: Lake) -> set[int]:
    """Every committed batch id (lists the commit records: for tools, not per batch)."""
    out = set()
    for key in lake.storage.list(COMMITS, ".json"):
        stem = key.rsplit("/", 1)[-1].removesuffix(".json")
        if stem.isdigit():
            out.add(int(stem))
    return out


def read_commit(lake: Lake, batch_id: int) -> dict[str, Any] | None:
    data = lake.storage.read(_commit_key(batch_id))
    if data is None:
        return None
    record: dict[str, Any] = orjson.loads(data)
    return record


def commit_batch(
    lake: Lake,
    batch_id: int,
    staged: list[StagedFile],
    rows: dict[str, int] | None = None,
    meta: dict[str, Any] | None = None,
) -> BatchCommit:
    """Move one batch's staged files into the lake (see the module docstring)."""
    storage = lake.storage
    record = read_commit(lake, batch_id)
    if record is not None:
        return BatchCommit(
            batch_id, tuple(record.get("files", ())), record.get("rows", {}), already_committed=True
        )
    pending = storage.read(_pending_key(batch_id))
    if pending is not None:
        storage.remove(orjson.loads(pending).get("files", ()))
    moves: list[tuple[str, str]] = []
    for n, f in enumerate(sorted(staged, key=lambda s: (s.target, s.folder, s.key))):
        root = QUARANTINE if f.target == QUARANTINE else lake.topic_key(f.target)
        moves.append((f.key, f"{root}/{f.folder}/{part_name(batch_id, n)}"))
    finals = [dst for _, dst in moves]
    storage.write_atomic(
        _pending_key(batch_id), orjson.dumps({"batch_id": batch_id, "files": finals})
    )
    storage.move(moves)
    storage.sync(finals)
    body = {"batch_id": batch_id, "files": finals, "rows": rows or {}, **(meta or {})}
    storage.write_atomic(_commit_key(batch_id), orjson.dumps(body))
    storage.remove([_pending_key(batch_id)])
    return BatchCommit(batch_id, tuple(finals), rows or {})
