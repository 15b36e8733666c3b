"""Committing a micro-batch into the lake's tables: exactly once per table, for any
reader, with one committer.

Spark's streaming engine re-runs a micro-batch with the same id and the same offsets
after a crash (its offset log is written before the batch runs). Its tasks write the
batch's Parquet files under ``<table>/data/batch-<id>/``; the driver then commits them
here, one Iceberg commit per table that registers exactly those files and records the
batch: its id, row count and Kafka offset ranges in the snapshot summary
(``musify.batch-id``, ``musify.rows``, ``musify.offsets``) and the id as the table
property ``musify.last-batch``, in the same atomic commit. A replayed batch commits only
to the tables whose last batch is older, so a crash between two tables' commits leaves
nothing twice and nothing missing. A reader sees a table's batch entirely or not at all.

One committer: a stream claims the lake when it starts (``Committer.claim``), by setting
``musify.writer`` and committing an empty "fence" snapshot on every table. Every data
commit is conditional on the snapshot the committer checked the fence and the batch id
against (Iceberg's ref requirement; pyiceberg's own silent retry is disabled, see
``musify.lake.tables``), so a stream that was fenced off fails its next commit instead
of landing anything. A stream whose checkpoint cannot be the lake's (another folder, or
one that has not reached the batches the lake holds) is refused before it reads a
message: it would write every event again.

Files an interrupted attempt wrote are never registered: a replay removes the batch's
folder of every table it still has to commit before writing again, and the lake's
maintenance removes any other file no snapshot references.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from musify.lake.tables import LakeError, Tables

LAST_BATCH = "musify.last-batch"
WRITER = "musify.writer"
CHECKPOINT = "musify.checkpoint"
BATCH_ID = "musify.batch-id"
ROWS = "musify.rows"
OFFSETS = "musify.offsets"
#: How often a commit that lost a race (maintenance committed meanwhile) is tried again.
ATTEMPTS = 20
#: Iceberg's table property naming how data files' columns map to fields (by name).
DEFAULT_NAME_MAPPING = "schema.name-mapping.default"


class Fenced(LakeError):
    """Another stream claimed the lake: this one must stop."""


def data_prefix(table: str, batch_id: int) -> str:
    """The folder (a key in the lake's storage) of one batch's files of one table."""
    return f"{table}/data/batch-{batch_id:012d}"


@dataclass(frozen=True)
class TableBatch:
    """What one micro-batch adds to one table."""

    paths: tuple[str, ...]  # the files' URIs, as the lake's storage names them
    rows: int
    #: Kafka partition (or ``topic:partition`` for the quarantine) → [first, last] offset.
    offsets: Mapping[str, tuple[int, int]] = field(default_factory=dict)


def last_batch(table: Any) -> int:
    return int(table.properties.get(LAST_BATCH, -1))


@dataclass
class Committer:
    """The lake's one writer: claims it, then commits micro-batches table by table."""

    tables: Tables
    checkpoint: str
    writer_id: str = field(default_factory=lambda: uuid.uuid4().hex)

    @property
    def writer(self) -> str:
        return f"{self.writer_id} (pid {os.getpid()} on {socket.gethostname()})"

    def claim(self, checkpoint_last: int) -> None:
        """Fence every table for this writer. ``checkpoint_last`` is the newest batch
        Spark's checkpoint has committed (-1 for a new checkpoint): a lake that holds
        later batches, or was written through another checkpoint, is refused."""
        for name in self.tables:
            for attempt in range(ATTEMPTS):
                table = self.tables.table(name, refresh=True)
                self._check_checkpoint(name, table, checkpoint_last)
                try:
                    with table.transaction() as tx:
                        tx.set_properties({WRITER: self.writer, CHECKPOINT: self.checkpoint})
                        with tx.update_snapshot(
                            snapshot_properties={"musify.fence": self.writer_id}
                        ).fast_append():
                            pass  # an empty snapshot: commits built on older ones now fail
                    break
                except _commit_failed():
                    _backoff(attempt)
            else:
                raise LakeError(f"could not claim table {name}: too many concurrent commits")

    def _check_checkpoint(self, name: str, table: Any, checkpoint_last: int) -> None:
        last = last_batch(table)
        if last < 0:
            return
        recorded = table.properties.get(CHECKPOINT)
        if recorded and recorded != self.checkpoint:
            raise LakeError(
                f"the lake's table {name} is written by the stream whose checkpoint is "
                f"{recorded} (last batch {last}); this stream's checkpoint {self.checkpoint} "
                f"would write every event again: set MUSIFY_CHECKPOINT={recorded}, or use "
                "another lake (MUSIFY_LAKE)"
            )
        if last > checkpoint_last + 1:
            state = "is new" if checkpoint_last < 0 else f"ends at batch {checkpoint_last}"
            raise LakeError(
                f"the checkpoint {self.checkpoint} {state} but the lake's table {name} holds "
                f"batch {last}: restarting would read the topics again and duplicate them; "
                "restore the checkpoint, or use another lake (MUSIFY_LAKE)"
            )

    def pending(self, batch_id: int, *, refresh: bool = False) -> list[str]:
        """The tables that do not hold ``batch_id`` yet (all of them, normally).

        Without ``refresh`` it trusts what this committer last saw: after ``claim`` it is
        the only one that moves ``musify.last-batch``, and a fence it has not seen yet
        fails its next commit anyway (a catalog round trip and a metadata read saved per
        table and micro-batch).
        """
        out = []
        for name in self.tables:
            table = self.tables.table(name, refresh=refresh)
            self._check_fence(name, table)
            if last_batch(table) < batch_id:
                out.append(name)
        return out

    def _check_fence(self, name: str, table: Any) -> None:
        holder = table.properties.get(WRITER)
        if holder and not holder.startswith(self.writer_id):
            raise Fenced(
                f"another stream claimed the lake (table {name} is now written by {holder}); "
                "this one stops without committing"
            )

    def commit(self, batch_id: int, batch: Mapping[str, TableBatch]) -> dict[str, bool]:
        """Commit the batch's files into each table that does not hold it yet; returns,
        per table, whether this call committed it (False: it already held the batch)."""
        return {name: self._commit_table(name, batch_id, tb) for name, tb in batch.items()}

    def _commit_table(self, name: str, batch_id: int, tb: TableBatch) -> bool:
        summary = {
            BATCH_ID: str(batch_id),
            ROWS: str(tb.rows),
            OFFSETS: orjson.dumps({k: list(v) for k, v in sorted(tb.offsets.items())}).decode(),
        }
        for attempt in range(ATTEMPTS):
            # The first try builds on what this committer last saw (it is the lake's only
            # writer); if anything moved the table since, the commit's requirement fails
            # and the next try reads the table again, fence and batch id included.
            table = self.tables.table(name, refresh=attempt > 0)
            self._check_fence(name, table)
            if last_batch(table) >= batch_id:
                return False  # a replay: this table got the batch before the crash
            try:
                files = data_files(table, tb.paths)
                with table.transaction() as tx:
                    if tx.table_metadata.name_mapping() is None:
                        # data files carry no field ids: readers map their columns by name
                        mapping = tx.table_metadata.schema().name_mapping.model_dump_json()
                        tx.set_properties({DEFAULT_NAME_MAPPING: mapping})
                    with tx.update_snapshot(snapshot_properties=summary).merge_append() as add:
                        for f in files:
                            add.append_data_file(f)
                    tx.set_properties({LAST_BATCH: str(batch_id)})
                return True
            except _commit_failed():
                _backoff(attempt)  # e.g. compaction committed meanwhile: check again
        raise LakeError(f"could not commit batch {batch_id} to table {name}: too many conflicts")


def data_files(table: Any, paths: Sequence[str]) -> list[Any]:
    """The Iceberg data-file entries of Parquet files Musify wrote for ``table``.

    What pyiceberg's ``add_files`` does, without its per-file cost: it derives the
    table's statistics plan, column mapping and a schema comparison again for every file
    (13 ms a file here, 2.5 s for the 192 files of a backlog's micro-batch); they depend
    on the table only, so they are derived once. The footers and sizes are read in
    pyiceberg's thread pool (on GCS each is a round trip).
    """
    from pyiceberg.io.pyarrow import (
        _check_pyarrow_schema_compatible,
        compute_statistics_plan,
        data_file_statistics_from_parquet_metadata,
        parquet_path_to_id_mapping,
    )
    from pyiceberg.manifest import DataFile, DataFileContent, FileFormat
    from pyiceberg.utils.concurrent import ExecutorFactory

    meta = table.metadata
    schema, spec = meta.schema(), meta.spec()
    plan = compute_statistics_plan(schema, meta.properties)
    mapping = parquet_path_to_id_mapping(schema)

    def footer(path: str) -> tuple[Any, int]:
        import pyarrow.parquet as pq

        source = table.io.new_input(path)
        with source.open() as stream:
            return pq.read_metadata(stream), len(source)

    checked: list[Any] = []  # the Parquet schemas found compatible
    out = []
    for path, (parquet, size) in zip(
        paths, ExecutorFactory.get_or_create().map(footer, paths), strict=True
    ):
        if not any(parquet.schema.equals(c) for c in checked):
            _check_pyarrow_schema_compatible(
                schema, parquet.schema.to_arrow_schema(), format_version=meta.format_version
            )
            checked.append(parquet.schema)
        stats = data_file_statistics_from_parquet_metadata(
            parquet_metadata=parquet, stats_columns=plan, parquet_column_mapping=mapping
        )
        out.append(
            DataFile.from_args(
                content=DataFileContent.DATA,
                file_path=path,
                file_format=FileFormat.PARQUET,
                partition=stats.partition(spec, schema),
                file_size_in_bytes=size,
                sort_order_id=None,
                spec_id=meta.default_spec_id,
                equality_ids=None,
                key_metadata=None,
                **stats.to_serialized_dict(),
            )
        )
    return out


def _commit_failed() -> type[Exception]:
    from pyiceberg.exceptions import CommitFailedException

    return CommitFailedException


def _backoff(attempt: int) -> None:
    time.sleep(min(2.0, 0.05 * 2**attempt))
