"""The lake's Iceberg catalog and tables: opened by configuration, created and evolved
from ``musify.lake.schema``.

The catalog is one setting, ``MUSIFY_ICEBERG_CATALOG``: empty means pyiceberg's SQL
catalog on a SQLite file inside a local lake's folder (``MUSIFY_HOME/lake/catalog.db``
by default, so every home pointing at a lake sees its tables), or at
``MUSIFY_HOME/catalog.db`` for a ``gs://`` lake; a SQLAlchemy URL
(``postgresql+psycopg2://…``) is a SQL catalog on that database, and an ``http(s)://``
URL an Iceberg REST catalog. A REST catalog on ``*.googleapis.com`` is BigLake
metastore's (the cloud deployment's): Google credentials (the machine's service
account), and the lake's bucket as the catalog's warehouse; BigQuery reads its tables
too. Tables live in the namespace ``musify``; their
files under the lake root (``<lake>/<table>/metadata``, ``<lake>/<table>/data``), a folder
or a ``gs://`` prefix.

Table properties Musify relies on (set at creation, and on older tables at open):

- ``commit.retry.num-retries = 0``: pyiceberg would otherwise rebase a failed commit
  onto whatever another writer committed meanwhile, silently (a stale stream would
  duplicate its batch). Musify's committer retries itself, after checking again
  (``musify.lake.commit``).
- ``commit.manifest-merge.enabled``: appends merge small manifests, so planning a scan
  stays cheap however many micro-batches there were.
- ``write.metadata.delete-after-commit.enabled`` with ``previous-versions-max``: old
  metadata files are removed as new ones are written.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from musify.errors import MusifyError, UsageError
from musify.lake.schema import arrow_schema, iceberg_schema, partition_spec, table_names

if TYPE_CHECKING:
    from musify.lake.layout import Lake

NAMESPACE = "musify"
#: Properties every table gets (see the module docstring).
TABLE_PROPERTIES = {
    "format-version": "2",
    "commit.retry.num-retries": "0",
    "commit.manifest-merge.enabled": "true",
    "write.metadata.delete-after-commit.enabled": "true",
    "write.metadata.previous-versions-max": "50",
    "write.parquet.compression-codec": "snappy",
}


def _share_table_metadata() -> None:
    """Let pyiceberg share table metadata instead of deep-copying it.

    pyiceberg 0.12 deep-copies a table's whole metadata each time it applies updates
    (three times per ``add_files`` commit), and the metadata holds every snapshot: a
    micro-batch's commit cost 1.6 ms more per snapshot of the table, a second per table
    after 600 micro-batches. The metadata models are frozen and pyiceberg's updates build
    new containers (copy on write), so a deep copy can be the object itself, as for any
    immutable value.
    """
    from pyiceberg.table.metadata import TableMetadataV1, TableMetadataV2, TableMetadataV3

    def shared(self: Any, memo: dict[int, Any] | None = None) -> Any:
        return self

    for cls in (TableMetadataV1, TableMetadataV2, TableMetadataV3):
        cls.__deepcopy__ = shared  # type: ignore[method-assign]


_share_table_metadata()


class LakeError(MusifyError):
    """The lake's catalog or tables cannot be used as they are; the message says why."""


def sqlite_catalog_uri(path: Path) -> str:
    return f"sqlite:///{path.resolve()}"


def catalog_properties(lake_url: str) -> dict[str, str]:
    """FileIO settings for the lake's storage (gs:// through fsspec/gcsfs, as the rest
    of the lake; the emulator named by STORAGE_EMULATOR_HOST takes no credentials)."""
    props: dict[str, str] = {}
    if lake_url.startswith(("gs://", "gcs://")):
        os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
        props["py-io-impl"] = "pyiceberg.io.fsspec.FsspecFileIO"
        emulator = os.environ.get("STORAGE_EMULATOR_HOST")
        if emulator:
            props["gcs.service.host"] = emulator
            props["gcs.oauth2.token"] = "anon"
    return props


def rest_properties(uri: str, lake_url: str) -> dict[str, Any]:
    """pyiceberg properties of the REST catalog at ``uri`` for a lake at ``lake_url``."""
    props: dict[str, Any] = {"uri": uri, "warehouse": lake_url, **catalog_properties(lake_url)}
    host = urlsplit(uri).hostname or ""
    if host == "googleapis.com" or host.endswith(".googleapis.com"):
        if not lake_url.startswith("gs://"):
            raise UsageError(
                f"the BigLake catalog {uri} (MUSIFY_ICEBERG_CATALOG) keeps tables in a "
                f"gs:// bucket, not in {lake_url} (MUSIFY_LAKE)"
            )
        # A BigLake catalog is named by its bucket; the service account's own storage
        # rights read and write the files (the catalog vends no credentials).
        props["warehouse"] = "gs://" + lake_url.removeprefix("gs://").split("/", 1)[0]
        props["auth"] = {"type": "google"}
        props["header.X-Iceberg-Access-Delegation"] = ""
    return props


def open_catalog(uri: str, lake_url: str) -> Any:
    """The catalog at ``uri`` (see the module docstring) for a lake at ``lake_url``."""
    props = {"warehouse": lake_url, **catalog_properties(lake_url)}
    try:
        if uri.startswith(("http://", "https://")):
            from pyiceberg.catalog.rest import RestCatalog

            return RestCatalog("musify", **rest_properties(uri, lake_url))
        from pyiceberg.catalog.sql import SqlCatalog

        if uri.startswith("sqlite:///"):
            Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        return SqlCatalog("musify", uri=uri, **props)
    except MusifyError:
        raise
    except ImportError as exc:
        raise UsageError(f"the Iceberg catalog {uri} needs a package: {exc}") from None
    except Exception as exc:  # drivers raise their own types
        raise LakeError(
            f"cannot open the Iceberg catalog {uri} (MUSIFY_ICEBERG_CATALOG): "
            f"{exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        ) from None


@dataclass
class Tables:
    """The lake's tables in one catalog; each loaded once, refreshed on demand."""

    catalog: Any
    lake_url: str
    _loaded: dict[str, Any] = field(default_factory=dict)

    def identifier(self, name: str) -> str:
        return f"{NAMESPACE}.{name}"

    def location(self, name: str) -> str:
        return f"{self.lake_url.rstrip('/')}/{name}"

    def exists(self, name: str) -> bool:
        return bool(self.catalog.table_exists(self.identifier(name)))

    def table(self, name: str, *, refresh: bool = False) -> Any:
        """The table, created on first use (the schema and partitioning of
        ``musify.lake.schema``) and given any column the schema gained since."""
        t = self._loaded.get(name)
        if t is None:
            t = self._open(name)
            self._loaded[name] = t
        elif refresh and self._metadata_location(name) != t.metadata_location:
            t.refresh()
        return t

    def _metadata_location(self, name: str) -> str | None:
        """The table's current metadata file as the catalog names it, without reading the
        file (a SQL catalog: one indexed query); None when unknown. Parsing a table's
        metadata costs about 35 us per retained snapshot (Musify's default retention at a
        2-minute trigger: about 50 ms), so a reader that refreshes often (the live
        section, every few seconds) refreshes only when a commit changed the table."""
        try:
            from pyiceberg.catalog.sql import IcebergTables, SqlCatalog
            from sqlalchemy import select
            from sqlalchemy.orm import Session
        except ImportError:
            return None
        if not isinstance(self.catalog, SqlCatalog):
            return None
        query = select(IcebergTables.metadata_location).where(
            IcebergTables.catalog_name == self.catalog.name,
            IcebergTables.table_namespace == NAMESPACE,
            IcebergTables.table_name == name,
        )
        try:
            with Session(self.catalog.engine) as session:
                location = session.execute(query).scalar_one_or_none()
        except Exception:  # the catalog's own load_table will say what is wrong
            return None
        return None if location is None else str(location)

    def __iter__(self) -> Iterator[str]:
        return iter(table_names())

    def _ensure_namespace(self) -> None:
        try:
            self.catalog.create_namespace_if_not_exists(NAMESPACE)
        except Exception:
            # Another process created it between the check and the insert (the SQL
            # catalog's unique key says so, not NamespaceAlreadyExistsError): a reader
            # opening a table while the stream creates the lake.
            if not self.catalog.namespace_exists(NAMESPACE):
                raise

    def _open(self, name: str) -> Any:
        from pyiceberg.exceptions import NoSuchTableError

        ident = self.identifier(name)
        try:
            self._ensure_namespace()
            try:
                table = self.catalog.load_table(ident)
            except NoSuchTableError:
                schema = iceberg_schema(name)
                try:
                    table = self.catalog.create_table_if_not_exists(
                        ident,
                        schema=schema,
                        partition_spec=partition_spec(name, schema),
                        location=self.location(name),
                        properties=TABLE_PROPERTIES,
                    )
                except Exception:
                    # created by another process at the same moment, as the namespace
                    if not self.catalog.table_exists(ident):
                        raise
                    table = self.catalog.load_table(ident)
        except FileNotFoundError as exc:
            raise LakeError(
                f"the catalog names table {ident}, but its metadata is gone "
                f"({exc.filename or exc}); was the lake folder deleted? Delete the catalog "
                "file too to start afresh"
            ) from None
        return self._evolve(table, name)

    def _evolve(self, table: Any, name: str) -> Any:
        """Append the columns the schema gained (optional: older files read them as
        null) and set missing properties."""
        have = set(table.schema().column_names)
        wanted = iceberg_schema(name)
        if any(f.name not in have for f in wanted.fields):
            # pyiceberg extends the table's name mapping too: data files carry no column
            # ids, they are read by name
            with table.update_schema() as update:
                update.union_by_name(wanted)
        missing = {k: v for k, v in TABLE_PROPERTIES.items() if k != "format-version"}
        missing = {k: v for k, v in missing.items() if table.properties.get(k) != v}
        if missing:
            with table.transaction() as tx:
                tx.set_properties(missing)
        return table


def check_arrow_matches(name: str, table: Any) -> None:
    """Fail when a table lacks a column the code writes (an evolution went wrong)."""
    have = set(table.schema().column_names)
    lost = [n for n in arrow_schema(name).names if n not in have]
    if lost:
        raise LakeError(f"table {NAMESPACE}.{name} lacks columns {', '.join(lost)}")


@dataclass(frozen=True)
class TableInfo:
    """One lake table as ``musify lake tables`` shows it."""

    table: str  # namespace.name
    location: str
    snapshot: int | None  # the current snapshot's id (None: never committed)
    rows: int
    data_files: int
    snapshots: int
    last_batch: int  # the stream's newest micro-batch in it (-1: none)


def describe_tables(lake: Lake) -> list[TableInfo]:
    """One row per table: location, current snapshot, rows, data files, last batch."""
    out = []
    for name in lake.tables:
        table = lake.tables.table(name, refresh=True)
        snap = table.current_snapshot()
        summary = snap.summary if snap is not None else None
        out.append(
            TableInfo(
                table=f"{NAMESPACE}.{name}",
                location=table.location(),
                snapshot=None if snap is None else snap.snapshot_id,
                rows=int(summary.get("total-records", 0)) if summary else 0,
                data_files=int(summary.get("total-data-files", 0)) if summary else 0,
                snapshots=len(table.snapshots()),
                last_batch=int(table.properties.get("musify.last-batch", -1)),
            )
        )
    return out
