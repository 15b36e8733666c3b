"""The BigQuery warehouse: raw tables in a dataset, filled by load jobs of lake files.

A load of some hours runs in two phases:

1. **Stage** (nothing visible changes): per topic, a private staging table receives the
   hours' committed lake files through BigQuery load jobs: one job over all the files'
   ``gs://`` URIs when the lake is on GCS, one upload job per file for a local lake.
   A file BigQuery cannot read fails its job, and the batch, here: the message names
   the files, the raw tables are untouched.
2. **Swap**: one multi-statement transaction deletes the hours' rows from every raw
   table and inserts the staged rows. BigQuery commits it all or nothing across the
   four tables, and a concurrent load of the same tables aborts instead of
   interleaving; readers see the old hours or the new ones.

Staging tables are dropped at the end, and expire after a day if a crash prevented it.
``event_hour`` is the hour of ``ts``: the lake's ``hour=`` folders are by definition the
hour of the events' ``ts``, and a file that breaks that rule fails the load.

Credentials are the ones the dbt profile uses: ``BIGQUERY_TOKEN`` (with optional
``BIGQUERY_REFRESH_TOKEN``, ``_CLIENT_ID``, ``_CLIENT_SECRET``, ``_TOKEN_URI``) when set,
otherwise Google's application default credentials. They are secrets, so they stay
outside ``Settings``.
"""

from __future__ import annotations

import os
import re
import threading
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from musify.errors import MusifyError, UsageError
from musify.events import TOPIC_NAMES
from musify.lake import Lake
from musify.settings import Settings
from musify.warehouse.base import (
    MODELS_SCHEMA,
    PUBLISHED_HOURS,
    RAW_SCHEMA,
    LoadResult,
    Session,
    Warehouse,
    WarehouseUnavailable,
    hour_label,
    plan_load,
)
from musify.warehouse.models import MARTS
from musify.warehouse.raw import SONG_METADATA, lake_columns, raw_columns, song_metadata_columns

if TYPE_CHECKING:
    import pandas as pd

#: Engine-neutral raw column types (``raw.py``) as BigQuery types.
BQ_TYPES = {
    "string": "STRING",
    "int": "INT64",
    "long": "INT64",
    "double": "FLOAT64",
    "boolean": "BOOL",
    "timestamp": "TIMESTAMP",
}
DEFAULT_ENDPOINT = "https://bigquery.googleapis.com"
#: Source URIs per load job (BigQuery accepts up to 10,000).
_URIS_PER_JOB = 10_000


#: The publication records' columns (name, type, mode). Terraform creates the same table
#: (deploy/terraform/gcp/files/published_hours.schema.json, checked against this) so the
#: dashboard can be granted that table alone.
PUBLISHED_HOURS_SCHEMA: tuple[tuple[str, str, str], ...] = (
    ("hour", "TIMESTAMP", "REQUIRED"),
    ("published_at", "TIMESTAMP", "NULLABLE"),
    ("events", "STRING", "NULLABLE"),  # JSON text, as on every engine
    ("lake_snapshots", "STRING", "NULLABLE"),  # the lake snapshots each topic was counted at
)


class BigQueryLoadError(MusifyError):
    """A load job failed; the message names the files and BigQuery's reason."""


def bigquery_schema(columns: list[tuple[str, str]]) -> list[Any]:
    """BigQuery schema fields for (name, engine-neutral type) columns."""
    from google.cloud import bigquery

    return [bigquery.SchemaField(n, BQ_TYPES[t], mode="NULLABLE") for n, t in columns]


def credentials_from_env(environ: Mapping[str, str] | None = None) -> Any:
    """OAuth credentials from BIGQUERY_* (as the dbt profile), else None (= ADC)."""
    env = os.environ if environ is None else environ
    token = env.get("BIGQUERY_TOKEN")
    if not token:
        return None
    from google.oauth2.credentials import Credentials

    return Credentials(  # type: ignore[no-untyped-call]
        token=token,
        refresh_token=env.get("BIGQUERY_REFRESH_TOKEN") or None,
        client_id=env.get("BIGQUERY_CLIENT_ID") or None,
        client_secret=env.get("BIGQUERY_CLIENT_SECRET") or None,
        token_uri=env.get("BIGQUERY_TOKEN_URI") or "https://oauth2.googleapis.com/token",
    )


def _ts(dt: datetime) -> str:
    """A TIMESTAMP literal (scripts cannot take query parameters on every engine)."""
    return f"TIMESTAMP '{dt.astimezone(UTC):%Y-%m-%d %H:%M:%S.%f}+00'"


def _string(text: str) -> str:
    """A STRING literal: backslashes and quotes escaped."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _q(name: str) -> str:
    return f"`{name}`"


#: BigQuery's numeric result types (legacy and standard names) as pandas dtypes.
_BQ_NUMBERS = {"INTEGER": "int64", "INT64": "int64", "FLOAT": "float64", "FLOAT64": "float64"}


def bq_parameter(name: str, value: Any) -> Any:
    """A typed BigQuery query parameter. Naive datetimes are UTC wall-clock times, as the
    dashboard's queries pass them, and the marts' hours are TIMESTAMPs; a null is a
    STRING (the only nullable parameter is the state filter)."""
    from google.cloud import bigquery

    if value is None or isinstance(value, str):
        kind = "STRING"
    elif isinstance(value, bool):
        kind = "BOOL"
    elif isinstance(value, int):
        kind = "INT64"
    elif isinstance(value, float):
        kind = "FLOAT64"
    elif isinstance(value, datetime):
        kind = "TIMESTAMP"
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
    elif isinstance(value, date):
        kind = "DATE"
    else:
        raise TypeError(f"no BigQuery type for query parameter {name}={value!r}")
    return bigquery.ScalarQueryParameter(name, kind, value)


class BigQuerySession(Session):
    """Qualifies table names with the project and datasets, and turns ``$name`` into a
    typed ``@name`` query parameter."""

    def __init__(self, client: Any, project: str, datasets: Mapping[str, str], location: str):
        self._client = client
        self._project = project
        self._datasets = datasets
        self._location = location

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> pd.DataFrame:
        import pandas as pd
        from google.cloud import bigquery

        values = dict(params or {})
        config = bigquery.QueryJobConfig(
            query_parameters=[bq_parameter(n, v) for n, v in values.items()]
        )
        text = re.sub(r"\$(\w+)", r"@\1", self.render(sql))
        result = self._client.query(text, job_config=config, location=self._location).result()
        # Rows to a frame directly: the marts' results are small, and this needs no
        # db-dtypes; timestamps come back timezone-aware (UTC), dates as dates. Numbers
        # get numeric columns (NaN for null) as DuckDB gives, also when there are no rows.
        df = pd.DataFrame(
            [list(row.values()) for row in result], columns=[f.name for f in result.schema]
        )
        for f in result.schema:
            if f.field_type in _BQ_NUMBERS:
                df[f.name] = (
                    pd.to_numeric(df[f.name])
                    if len(df)
                    else df[f.name].astype(_BQ_NUMBERS[f.field_type])
                )
        return df

    def tables(self, schema: str) -> set[str]:
        from google.api_core.exceptions import NotFound

        try:
            return {t.table_id for t in self._client.list_tables(self._dataset_id(schema))}
        except NotFound:
            return set()

    def qualify(self, schema: str, table: str) -> str:
        return f"`{self._dataset_id(schema)}.{table}`"

    def _dataset_id(self, schema: str) -> str:
        if schema not in self._datasets:
            raise ValueError(f"no BigQuery dataset for schema {schema!r}")
        return f"{self._project}.{self._datasets[schema]}"


class BigQueryWarehouse(Warehouse):
    """Raw tables in ``raw_dataset``, models in ``models_dataset``, through one client
    (made on first use: the same credentials, location and API endpoint for the loads
    and the dashboard's reads; BigQuery has no locks to respect)."""

    dbt_target: ClassVar[str] = "bigquery"

    def __init__(
        self,
        project: str,
        raw_dataset: str = "raw",
        *,
        models_dataset: str = "analytics",
        location: str = "US",
        api_endpoint: str = DEFAULT_ENDPOINT,
        credentials: Any = None,
        client: Any = None,
    ) -> None:
        if not project:
            raise UsageError("the BigQuery warehouse needs a project: set MUSIFY_BQ_PROJECT")
        self.project = project
        self.dataset = raw_dataset
        self.models_dataset = models_dataset
        self.location = location
        self.api_endpoint = api_endpoint
        self.credentials = credentials
        self.datasets = {MODELS_SCHEMA: models_dataset, RAW_SCHEMA: raw_dataset}
        self.description = f"BigQuery {project}.{models_dataset}"
        self._client: Any = client
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> BigQueryWarehouse:
        return cls(
            settings.bq_project,
            settings.bq_raw_dataset,
            models_dataset=settings.bq_dataset,
            location=settings.bq_location,
            api_endpoint=settings.bq_api_endpoint,
        )

    @property
    def client(self) -> Any:
        """The client (made on first use); WarehouseUnavailable when it cannot be made
        (e.g. no credentials: google.auth's errors)."""
        with self._lock:
            if self._client is None:
                from google.cloud import bigquery

                options = {"api_endpoint": self.api_endpoint} if self.api_endpoint else None
                try:
                    self._client = bigquery.Client(
                        project=self.project,
                        credentials=self.credentials
                        if self.credentials is not None
                        else credentials_from_env(),
                        location=self.location,
                        client_options=options,
                    )
                except MusifyError:
                    raise
                except Exception as exc:
                    raise WarehouseUnavailable(
                        f"cannot connect to {self.description}: {exc}"
                    ) from None
            return self._client

    def data_version(self) -> object:
        # When the marts or the publish records last changed: one metadata call per
        # table, no query job. Any failure means unknown (so nothing is cached).
        from google.api_core.exceptions import NotFound

        tables = [(MODELS_SCHEMA, m) for m in MARTS] + [(RAW_SCHEMA, PUBLISHED_HOURS)]
        stamps: list[object] = []
        try:
            client = self.client
            for schema, table in tables:
                try:
                    got = client.get_table(f"{self.project}.{self.datasets[schema]}.{table}")
                except NotFound:
                    stamps.append(None)
                else:
                    stamps.append((got.modified, got.num_rows))
        except Exception:
            return None
        return tuple(stamps)

    @contextmanager
    def session(self) -> Iterator[Session]:
        from google.api_core.exceptions import GoogleAPIError
        from google.auth.exceptions import GoogleAuthError
        from requests.exceptions import ConnectionError, Timeout

        client = self.client
        try:
            yield BigQuerySession(client, self.project, self.datasets, self.location)
        except (GoogleAPIError, GoogleAuthError, ConnectionError, Timeout) as exc:
            # Shown on the page instead of a stack trace; the message says what failed.
            raise WarehouseUnavailable(f"{self.description}: {exc}") from None

    def table_id(self, table: str) -> str:
        return f"{self.project}.{self.dataset}.{table}"

    def sql_table(self, table: str) -> str:
        return f"`{self.project}.{self.dataset}.{table}`"

    def query(self, sql: str) -> list[Any]:
        return list(self.client.query(sql, location=self.location).result())

    # ------------------------------------------------------------------ tables
    def ensure_raw_tables(self) -> None:
        from google.cloud import bigquery

        ds = bigquery.Dataset(f"{self.project}.{self.dataset}")
        ds.location = self.location
        self.client.create_dataset(ds, exists_ok=True)
        for topic in TOPIC_NAMES:
            table = bigquery.Table(self.table_id(topic), schema=bigquery_schema(raw_columns(topic)))
            # Daily partitions on the unit of loading: a reload deletes and scans only
            # the partitions of its hours, whatever the age of the warehouse.
            table.time_partitioning = bigquery.TimePartitioning(
                type_=bigquery.TimePartitioningType.DAY, field="event_hour"
            )
            existing = self.client.create_table(table, exists_ok=True)
            self._add_missing_columns(existing, table.schema)
        meta = bigquery.Table(
            self.table_id(SONG_METADATA), schema=bigquery_schema(song_metadata_columns())
        )
        self.client.create_table(meta, exists_ok=True)

    def _add_missing_columns(self, table: Any, wanted: list[Any]) -> None:
        """Append (nullable) the columns a table made by an earlier version lacks."""
        have = {f.name for f in table.schema}
        missing = [f for f in wanted if f.name not in have]
        if missing:
            table.schema = [*table.schema, *missing]
            self.client.update_table(table, ["schema"])

    def _staging_table(self, name: str, columns: list[tuple[str, str]]) -> str:
        from google.cloud import bigquery

        table = bigquery.Table(self.table_id(name), schema=bigquery_schema(columns))
        table.expires = datetime.now(UTC) + timedelta(days=1)
        self.client.create_table(table)
        return str(table.table_id)

    def _drop(self, name: str) -> None:
        self.client.delete_table(self.table_id(name), not_found_ok=True)

    # ------------------------------------------------------------------ loading
    def _load_files(self, files: list[str], table: str, columns: list[tuple[str, str]]) -> None:
        """Append Parquet files to ``table`` with load jobs; fail naming the files."""
        from google.cloud import bigquery

        config = bigquery.LoadJobConfig(
            source_format=bigquery.SourceFormat.PARQUET,
            write_disposition=bigquery.WriteDisposition.WRITE_APPEND,
            schema=bigquery_schema(columns),
        )
        jobs: list[tuple[list[str], Any]] = []
        remote = [f for f in files if "://" in f]
        for i in range(0, len(remote), _URIS_PER_JOB):
            chunk = remote[i : i + _URIS_PER_JOB]
            job = self.client.load_table_from_uri(
                chunk, self.table_id(table), job_config=config, location=self.location
            )
            jobs.append((chunk, job))
        for f in files:
            if "://" in f:
                continue
            with open(f, "rb") as fh:
                job = self.client.load_table_from_file(
                    fh, self.table_id(table), job_config=config, location=self.location
                )
            jobs.append(([f], job))
        for sources, job in jobs:
            try:
                job.result()
            except Exception as exc:
                where = ", ".join(sources[:3]) + (", …" if len(sources) > 3 else "")
                raise BigQueryLoadError(
                    f"BigQuery could not load lake file {where}: {exc}; the warehouse was "
                    "left unchanged (repair or remove the file, then run the batch again)"
                ) from None

    def load_hours(self, lake: Lake, hours: list[datetime]) -> LoadResult:
        self.ensure_raw_tables()
        plan = plan_load(lake, hours)
        wanted = {hour_label(h) for h in hours}
        rows: dict[str, dict[str, int]] = {t: dict.fromkeys(sorted(wanted), 0) for t in TOPIC_NAMES}
        token = uuid.uuid4().hex[:12]
        staged: dict[str, str] = {}
        try:
            for topic in TOPIC_NAMES:
                files = plan.topic_files(topic)
                if not files:
                    continue
                name = self._staging_table(f"_load_{topic}_{token}", lake_columns(topic))
                staged[topic] = name
                self._load_files(files, name, lake_columns(topic))
                counts = self.query(
                    f"SELECT FORMAT_TIMESTAMP('%Y-%m-%dT%H', TIMESTAMP_TRUNC(ts, HOUR)) AS h, "
                    f"COUNT(*) AS n FROM {self.sql_table(name)} GROUP BY h"
                )
                for r in counts:
                    if r["h"] not in wanted:
                        raise BigQueryLoadError(
                            f"lake files of {topic} for {', '.join(sorted(wanted))} hold "
                            f"{r['n']} events of hour {r['h']}; a table's planned files "
                            "must hold the events of their hour (the warehouse was left "
                            "unchanged)"
                        )
                    rows[topic][r["h"]] = int(r["n"])
            self._swap(hours, staged, plan.snapshots)
        finally:
            for name in staged.values():
                self._drop(name)
        return LoadResult(rows, plan.missing_hours)

    def _swap(
        self,
        hours: list[datetime],
        staged: Mapping[str, str],
        snapshots: Mapping[str, int | None],
    ) -> None:
        """Replace the hours' rows of every raw table in one transaction."""
        if not hours:
            return
        in_hours = ", ".join(_ts(h) for h in hours)
        now = _ts(datetime.now(UTC))
        statements = ["BEGIN TRANSACTION;"]
        for topic in TOPIC_NAMES:
            table = self.sql_table(topic)
            statements.append(f"DELETE FROM {table} WHERE event_hour IN ({in_hours});")
            if topic in staged:
                cols = ", ".join(_q(n) for n, _ in lake_columns(topic))
                snapshot = snapshots.get(topic)
                snap = "NULL" if snapshot is None else str(int(snapshot))
                statements.append(
                    f"INSERT INTO {self.sql_table(topic)} "
                    f"({cols}, event_hour, loaded_at, lake_snapshot) "
                    f"SELECT {cols}, TIMESTAMP_TRUNC(ts, HOUR), {now}, {snap} "
                    f"FROM {self.sql_table(staged[topic])};"
                )
        statements.append("COMMIT TRANSACTION;")
        self.client.query("\n".join(statements), location=self.location).result()

    def load_song_metadata(self, path: Path) -> bool:
        import tempfile

        import pyarrow.parquet as pq

        from musify.warehouse.song_metadata import file_sha256, read_song_metadata

        self.ensure_raw_tables()
        digest = file_sha256(path)
        loaded = self.query(
            f"SELECT ANY_VALUE(source_sha256) AS sha FROM {self.sql_table(SONG_METADATA)}"
        )
        if loaded and loaded[0]["sha"] == digest:
            return False
        table = read_song_metadata(path, digest)
        from google.cloud import bigquery

        config = bigquery.LoadJobConfig(
            source_format=bigquery.SourceFormat.PARQUET,
            # WRITE_TRUNCATE replaces the table's rows atomically when the job succeeds.
            write_disposition=bigquery.WriteDisposition.WRITE_TRUNCATE,
            schema=bigquery_schema(song_metadata_columns()),
        )
        with tempfile.NamedTemporaryFile(suffix=".parquet") as tmp:
            pq.write_table(table, tmp.name)
            with open(tmp.name, "rb") as fh:
                job = self.client.load_table_from_file(
                    fh, self.table_id(SONG_METADATA), job_config=config, location=self.location
                )
            try:
                job.result()
            except Exception as exc:
                raise BigQueryLoadError(
                    f"BigQuery could not load song metadata {path}: {exc}"
                ) from None
        return True

    def raw_count(self, topic: str, start: datetime, end: datetime) -> int:
        rows = self.query(
            f"SELECT COUNT(*) AS n FROM {self.sql_table(topic)} "
            f"WHERE ts >= {_ts(start)} AND ts < {_ts(end)}"
        )
        return int(rows[0]["n"])

    def fact_counts(
        self, facts: Mapping[str, str], start: datetime, end: datetime
    ) -> dict[str, int]:
        parts = [
            f"SELECT '{topic}' AS topic, COUNT(*) AS n "
            f"FROM `{self.project}.{self.models_dataset}.{fact}` "
            f"WHERE event_hour >= {_ts(start)} AND event_hour < {_ts(end)}"
            for topic, fact in facts.items()
        ]
        rows = self.query(" UNION ALL ".join(parts))  # one query job, not one per fact
        found = {r["topic"]: int(r["n"]) for r in rows}
        return {topic: found.get(topic, 0) for topic in facts}

    def loaded_snapshots(self, start: datetime, end: datetime) -> dict[datetime, dict[str, int]]:
        self.ensure_raw_tables()
        out: dict[datetime, dict[str, int]] = {}
        for topic in TOPIC_NAMES:
            rows = self.query(
                f"SELECT event_hour AS h, MAX(lake_snapshot) AS s FROM {self.sql_table(topic)} "
                f"WHERE event_hour >= {_ts(start)} AND event_hour < {_ts(end)} "
                "AND lake_snapshot IS NOT NULL GROUP BY event_hour"
            )
            for r in rows:
                h = r["h"] if r["h"].tzinfo else r["h"].replace(tzinfo=UTC)
                out.setdefault(h.astimezone(UTC), {})[topic] = int(r["s"])
        return out

    def published_snapshots(
        self, start: datetime, end: datetime
    ) -> dict[datetime, dict[str, int | None]]:
        import orjson
        from google.api_core.exceptions import NotFound

        # Read only: the table appears with the first publication.
        try:
            table = self.client.get_table(self.table_id(PUBLISHED_HOURS))
        except NotFound:
            return {}
        names = {f.name for f in table.schema}
        snapshots = "lake_snapshots" if "lake_snapshots" in names else "CAST(NULL AS STRING)"
        rows = self.query(
            f"SELECT hour, {snapshots} AS lake_snapshots FROM {self.sql_table(PUBLISHED_HOURS)} "
            f"WHERE hour >= {_ts(start)} AND hour < {_ts(end)}"
        )
        out: dict[datetime, dict[str, int | None]] = {}
        for r in rows:
            h = r["hour"] if r["hour"].tzinfo else r["hour"].replace(tzinfo=UTC)
            out[h.astimezone(UTC)] = dict(orjson.loads(r["lake_snapshots"] or "{}"))
        return out

    def record_published(
        self,
        counts: Mapping[datetime, Mapping[str, int]],
        snapshots: Mapping[datetime, Mapping[str, int | None]] | None = None,
    ) -> None:
        if not counts:
            return
        import orjson
        from google.cloud import bigquery

        self.ensure_raw_tables()
        schema = [bigquery.SchemaField(n, t, mode=m) for n, t, m in PUBLISHED_HOURS_SCHEMA]
        existing = self.client.create_table(
            bigquery.Table(self.table_id(PUBLISHED_HOURS), schema=schema), exists_ok=True
        )
        self._add_missing_columns(existing, schema)
        table = self.sql_table(PUBLISHED_HOURS)
        hours = ", ".join(_ts(h) for h in counts)
        now = _ts(datetime.now(UTC))
        values = ", ".join(
            f"({_ts(h)}, {now}, {_string(orjson.dumps(dict(c)).decode())}, "
            f"{_string(orjson.dumps(dict((snapshots or {}).get(h, {}))).decode())})"
            for h, c in sorted(counts.items())
        )
        script = (
            f"BEGIN TRANSACTION;\nDELETE FROM {table} WHERE hour IN ({hours});\n"
            f"INSERT INTO {table} (hour, published_at, events, lake_snapshots) VALUES {values};\n"
            "COMMIT TRANSACTION;"
        )
        self.client.query(script, location=self.location).result()

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
