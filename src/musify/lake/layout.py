"""Where things are in the lake (a local folder or a gs:// prefix, the same layout).

```
lake/
  <topic>/metadata/…               Iceberg metadata of the topic's table (musify.<topic>)
  <topic>/data/batch-<id>/<hour>/part-<task>-<n>.parquet    a micro-batch's files
  <topic>/data/compacted/<hour>/part-<uuid>.parquet         an hour after compaction
  quarantine/metadata/…, quarantine/data/…                  the quarantine's table
  _status/stream.json                                        the stream's latest status
  catalog.db                      a local lake's Iceberg catalog (SQLite), by default
```

The truth is the tables' metadata, never a folder listing: readers plan files from a
table snapshot (``musify.lake.read``), a file no snapshot references does not exist for
them, and a referenced file that is missing is an error. The catalog that names each
table's current metadata is ``musify.lake.tables``'.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from musify.errors import UsageError
from musify.lake.schema import QUARANTINE
from musify.lake.storage import Storage, open_storage

if TYPE_CHECKING:
    from musify.lake.tables import Tables
    from musify.settings import Settings

__all__ = ["LEGACY_COMMITS", "QUARANTINE", "STATUS", "Lake", "hour_folder"]

#: The stream's latest status record, for orchestrators that cannot see its machine.
STATUS = "_status"
#: A local lake's SQLite catalog, inside the lake folder (the default catalog).
CATALOG_FILE = "catalog.db"
#: The commit records of the Parquet lake of Musify before Iceberg (``musify lake
#: migrate`` converts such a lake).
LEGACY_COMMITS = "_commits"


def hour_folder(hour: datetime) -> str:
    """The folder of an event hour inside a batch's folder (not a partition: the
    table's metadata holds the partition; this only keeps folders small to browse)."""
    return f"{hour:%Y-%m-%dT%H}"


@dataclass(frozen=True)
class Lake:
    """A lake root (a local folder ``Path`` or an object-store URL ``gs://b/p``) and the
    Iceberg catalog of its tables (``catalog``: a URI, see ``musify.lake.tables``;
    default: SQLite next to the lake folder)."""

    root: Path | str
    catalog: str = ""

    def __post_init__(self) -> None:
        text = str(self.root)
        normal: Path | str = Path(self.root).resolve()
        if "://" in text:
            scheme, rest = text.split("://", 1)
            normal = f"{scheme}://{rest.rstrip('/')}"
        object.__setattr__(self, "root", normal)

    @classmethod
    def from_settings(cls, settings: Settings) -> Lake:
        from musify.lake.tables import sqlite_catalog_uri

        catalog = settings.iceberg_catalog
        if not catalog and "://" in settings.lake_root:
            # SQLite cannot live in a bucket: the catalog stays on this machine
            catalog = sqlite_catalog_uri(settings.home / "catalog.db")
        return cls(settings.lake_root, catalog)

    @cached_property
    def storage(self) -> Storage:
        return open_storage(self.root)

    @cached_property
    def tables(self) -> Tables:
        from musify.lake.tables import Tables, open_catalog, sqlite_catalog_uri

        uri = self.catalog
        if not uri:
            if self.remote:
                raise UsageError(
                    f"lake {self.root}: name its Iceberg catalog (MUSIFY_ICEBERG_CATALOG)"
                )
            # A local lake carries its catalog: every MUSIFY_HOME that points at the
            # folder sees the same tables.
            uri = sqlite_catalog_uri(Path(self.root) / CATALOG_FILE)
        return Tables(open_catalog(uri, self.url), self.url)

    @property
    def remote(self) -> bool:
        return isinstance(self.root, str)

    @property
    def url(self) -> str:
        return str(self.root)

    @property
    def local_root(self) -> Path:
        if isinstance(self.root, str):
            raise UsageError(f"lake {self.root}: this operation needs a local lake folder")
        return self.root

    def has_legacy_layout(self) -> bool:
        """Does the lake hold the Parquet files of a Musify from before Iceberg?"""
        return bool(self.storage.list(LEGACY_COMMITS, ".json"))
