"""Committed rows of the newest hours, read as the tables' metadata says.

The live layer reads what the stream has committed: ``CommittedRows.read`` plans a
table's data files for a time range at its current snapshot (``ManifestCache`` of
``musify.lake.read``: a file no snapshot names is never read, a missing committed one
fails), then reads only the files it has not read before. Committed files are
immutable, so each is read once and kept (least recently used first out, up to
``max_bytes``); a refresh costs the planning and the files the stream committed since
the last one, whatever the history. A table's metadata is re-read only when a commit
changed it, each manifest is read once, and a plan is kept per (snapshot, time range):
between two micro-batches a refresh plans nothing, and after one it reads the
manifests that commit wrote.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from musify.lake import read as lake_read
from musify.lake.layout import Lake
from musify.lake.read import TimeRange

#: Arrow bytes kept across refreshes (the files of a few hours of every live table).
DEFAULT_MAX_BYTES = 512 * 1024 * 1024
#: Scan plans kept (table, snapshot, filter): a refresh makes five.
PLANS_KEPT = 64


@dataclass(frozen=True)
class Rows:
    """The rows of one table matching a filter, at one snapshot."""

    table: str
    snapshot_id: int | None
    data: Any  # pyarrow.Table
    #: The committed files read (whole partitions): with the snapshot, what ``data`` is.
    paths: tuple[str, ...]

    @property
    def files(self) -> int:
        return len(self.paths)


class CommittedRows:
    """Reads committed rows of a lake's tables, keeping each file it read."""

    def __init__(self, lake: Lake, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.lake = lake
        self.max_bytes = max_bytes
        self._files: OrderedDict[tuple[str, tuple[str, ...]], Any] = OrderedDict()
        self._bytes = 0
        self._plans: OrderedDict[tuple[str, int | None, TimeRange], list[str]] = OrderedDict()
        self.manifests = lake_read.ManifestCache()
        self._lock = threading.Lock()
        #: Files read from storage (not from the cache) since this reader was made.
        self.files_read = 0

    def read(self, table: str, window: TimeRange, columns: Sequence[str]) -> Rows:
        """The rows of the files that may hold rows of ``window`` (whole partitions: the
        caller filters rows by time)."""
        import pyarrow as pa

        t = self.lake.tables.table(table, refresh=True)
        current = t.current_snapshot()
        snapshot_id = None if current is None else int(current.snapshot_id)
        # Between two commits a refresh asks the same questions of the same snapshot
        # (the windows end at the newest committed event): plans are kept per snapshot.
        key = (table, snapshot_id, window)
        with self._lock:
            paths = self._plans.get(key)
        if paths is None:
            # Presence is checked by reading: a committed file that is gone fails the read.
            paths = [] if snapshot_id is None else self.manifests.files(t, snapshot_id, window)
            with self._lock:
                self._plans[key] = paths
                while len(self._plans) > PLANS_KEPT:
                    self._plans.popitem(last=False)
        cols = tuple(columns)
        parts = [self._file(table, snapshot_id, path, cols) for path in paths]
        if parts:
            data = pa.concat_tables(parts, promote_options="default")
        else:
            schema = self.lake.tables.table(table).schema().as_arrow()
            data = schema.empty_table().select(list(cols))
        return Rows(table, snapshot_id, data, tuple(paths))

    def _file(
        self, table: str, snapshot_id: int | None, path: str, columns: tuple[str, ...]
    ) -> Any:
        key = (path, columns)
        with self._lock:
            if key in self._files:
                self._files.move_to_end(key)
                return self._files[key]
        try:
            data = self.lake.storage.read_parquet_uris([path], list(columns))
        except FileNotFoundError:
            lake_read.check_present(self.lake, [path], table, snapshot_id)
            raise
        with self._lock:
            self.files_read += 1
            self._files[key] = data
            self._bytes += data.nbytes
            while self._bytes > self.max_bytes and len(self._files) > 1:
                _, old = self._files.popitem(last=False)
                self._bytes -= old.nbytes
        return data
