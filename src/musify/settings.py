"""Typed, frozen settings with one environment layer.

Precedence, highest first: explicit arguments (the CLI passes its options here), then
``MUSIFY_*`` environment variables, then the defaults below. Nothing else reads the
environment: every component gets a ``Settings`` object.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from musify.errors import UsageError
from musify.logs import FORMATS, LEVELS

ENV_PREFIX = "MUSIFY_"


@dataclass(frozen=True)
class Settings:
    """Everything configurable about a Musify installation.

    Each field ``name`` is set from the environment variable ``MUSIFY_NAME``.
    """

    #: The one folder holding all local state: lake, checkpoints, warehouse, logs, pids.
    home: Path = Path(".musify")
    #: Kafka bootstrap servers used when a command is not given ``--bootstrap-servers``.
    bootstrap_servers: str = "127.0.0.1:9092"
    #: Port of the local development broker (``musify broker start``).
    broker_port: int = 9092
    #: Where the local broker keeps messages: memory (every message in memory, no
    #: retention, lost on stop) or disk (files under MUSIFY_HOME/broker through a local
    #: object store: flat memory for long runs, topics kept across restarts).
    broker_storage: str = "memory"
    #: The disk-backed broker deletes record batches written longer ago than this
    #: (Kafka's log.retention.hours: 168), keeping each partition's newest; a consumer
    #: further behind finds them gone (the stream's loss check says so). 0 keeps all.
    broker_retention_hours: float = 168.0
    #: Interface servers bind to; loopback unless deliberately opened.
    bind_host: str = "127.0.0.1"
    #: Allow ``bind_host`` to be an interface other than loopback. Off by default: the
    #: dashboard has no login and Airflow's UI can start work (docs/security.md).
    allow_remote_bind: bool = False
    #: Partitions for topics Musify creates.
    topic_partitions: int = 3
    #: Replication factor for topics Musify creates (3 on a real cluster).
    topic_replication: int = 1
    #: Worker processes for the generator; 0 = one per CPU core.
    workers: int = 0
    #: The lake: a folder, or a gs:// URL; empty means MUSIFY_HOME/lake.
    lake: str = ""
    #: The lake's Iceberg catalog: empty means SQLite in a local lake's folder
    #: (lake/catalog.db), or at MUSIFY_HOME/catalog.db for a gs:// lake; else a
    #: SQLAlchemy URL (postgresql+psycopg2://...) or an Iceberg REST catalog's http(s) URL.
    iceberg_catalog: str = ""
    #: Lake snapshots older than this are expired (by the stream hourly, and the daily
    #: maintenance): time travel, and reproducing a published hour, reach back this far.
    #: Every commit rewrites a table's metadata with all its snapshots, so it costs more
    #: the more snapshots a table keeps (benchmarks/README.md).
    lake_snapshot_retention_hours: float = 24.0
    #: The stream's Spark checkpoint; empty means MUSIFY_HOME/checkpoints/stream. On a
    #: cluster, a location every Spark node and restart sees (gs:// with Spark's GCS
    #: connector, or HDFS).
    checkpoint: str = ""
    #: Spark master for the stream job: local[*] or a cluster URL.
    spark_master: str = "local[*]"
    #: Spark source of the stream: musify_kafka (Python, built in) or kafka (the native
    #: connector, where its jar is installed).
    kafka_source: str = "musify_kafka"
    #: Micro-batch period of the stream, e.g. 2m, 30s. Empty: 2m for ``musify stream``
    #: (Streamify's period), 30s for the stream ``musify up`` runs (a local stack whose
    #: live section moves at least twice a minute).
    stream_trigger: str = ""
    #: How far past the stream's clock an event time may be (clock skew between hosts);
    #: later events are quarantined, so one bad timestamp cannot move readiness.
    max_event_future_seconds: float = 300.0
    #: The DuckDB warehouse file; empty means MUSIFY_HOME/warehouse.duckdb.
    warehouse: str = ""
    #: Where ``musify batch`` loads and dbt builds: duckdb (local) or bigquery (bq_*).
    warehouse_engine: str = "duckdb"
    #: A Million Song ``songs.csv`` whose metadata (year, tempo, ...) dim_songs joins;
    #: empty: none.
    song_metadata: str = ""
    #: Hours before the requested ones that each batch loads again, for late events.
    batch_lookback_hours: int = 2
    #: Airflow's virtual environment for the local stack; empty means the repo's
    #: .venv-airflow (created by ``make install``).
    airflow_venv: str = ""
    #: Port of the local Airflow API server and UI (``musify up``), on ``bind_host``.
    airflow_port: int = 8080
    #: Port of the dashboard (``musify dashboard``), on ``bind_host``.
    dashboard_port: int = 8501
    #: How often an open dashboard page checks the warehouse for new hours, in seconds.
    dashboard_refresh_seconds: float = 30.0
    #: How often the dashboard's live section reads the lake's newest committed events.
    live_refresh_seconds: float = 5.0
    #: How long after a minute ends (by the newest committed event) the live section
    #: still expects late events in it: until then the minute is drawn as provisional.
    live_allowed_lateness_seconds: float = 60.0
    #: BigQuery target of the dbt project (the profile reads these as MUSIFY_BQ_*;
    #: credentials come from the standard Google/BIGQUERY_* variables, never from here).
    bq_project: str = ""
    bq_dataset: str = "analytics"
    bq_location: str = "US"
    bq_api_endpoint: str = "https://bigquery.googleapis.com"
    #: The dataset of the raw tables the batch loads (dbt's var raw_schema).
    bq_raw_dataset: str = "raw"
    #: The lowest level of Musify's log records shown on stderr: debug, info, warning
    #: or error (``musify --log-level``).
    log_level: str = "info"
    #: How log records are written: text (human lines) or json (one object per line).
    log_format: str = "text"

    # Derived locations. They are properties, not fields, so they always follow ``home``.
    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"

    @property
    def run_dir(self) -> Path:
        """Pid files and other facts about running processes."""
        return self.home / "run"

    @property
    def cache_dir(self) -> Path:
        """Tables derived from installed packages, rebuilt when those packages change."""
        return self.home / "cache"

    @property
    def generator_dir(self) -> Path:
        return self.home / "generator"

    @property
    def lake_root(self) -> str:
        return self.lake or str(self.home / "lake")

    @property
    def warehouse_path(self) -> Path:
        return Path(self.warehouse) if self.warehouse else self.home / "warehouse.duckdb"

    @property
    def checkpoints_dir(self) -> Path:
        return self.home / "checkpoints"

    @property
    def checkpoint_location(self) -> str:
        return self.checkpoint or str(self.checkpoints_dir / "stream")

    def ensure_dirs(self) -> None:
        """Create the state folders; a new ``home`` is readable by its owner only (it
        holds Airflow's admin password, logs and the data)."""
        if not self.home.exists():
            self.home.parent.mkdir(parents=True, exist_ok=True)
            try:
                self.home.mkdir(mode=0o700)
            except FileExistsError:  # created meanwhile by another process
                pass
            else:
                self.home.chmod(0o700)  # mkdir's mode is filtered by the umask
        for d in (self.logs_dir, self.run_dir, self.cache_dir):
            d.mkdir(parents=True, exist_ok=True)

    def check_bind_host(self, host: str | None = None) -> str | None:
        """Refuse a non-loopback interface (``host``, default ``bind_host``) unless
        ``allow_remote_bind`` is set; then return the warning to show (None on
        loopback)."""
        host = self.bind_host if host is None else host
        if is_loopback(host):
            return None
        if not self.allow_remote_bind:
            raise UsageError(
                f"binding {host} (MUSIFY_BIND_HOST or --host) would expose Musify's servers beyond "
                "this machine; set MUSIFY_ALLOW_REMOTE_BIND=true to allow it (see "
                "docs/security.md)"
            )
        return (
            f"warning: servers listen on {host}, reachable from other machines; "
            "the dashboard has no login (docs/security.md)"
        )

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})


def is_loopback(host: str) -> bool:
    """Is ``host`` a loopback interface (127.0.0.0/8, ::1, localhost)?"""
    import ipaddress

    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _parse(name: str, raw: str, annotation: Any) -> Any:
    target = annotation
    if isinstance(target, types.UnionType) or typing.get_origin(target) is typing.Union:
        target = next(a for a in typing.get_args(target) if a is not type(None))
    try:
        if target is Path:
            return Path(raw).expanduser()
        if target is bool:
            low = raw.strip().lower()
            if low in {"1", "true", "yes", "on"}:
                return True
            if low in {"0", "false", "no", "off"}:
                return False
            raise ValueError(raw)
        if target in (int, float, str):
            return target(raw)
    except ValueError:
        pass
    else:
        raise TypeError(f"unsupported settings type {annotation!r} for {name}")
    raise UsageError(f"environment variable {name}={raw!r} is not a valid {target.__name__}")


def load_settings(environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Build settings from defaults, the ``MUSIFY_*`` environment, then ``overrides``.

    Unknown ``MUSIFY_*`` variables are rejected so a typo cannot be silently ignored.
    """
    env = os.environ if environ is None else environ
    hints = typing.get_type_hints(Settings)
    fields = {f.name for f in dataclasses.fields(Settings)}
    values: dict[str, Any] = {}
    for key, raw in env.items():
        if not key.startswith(ENV_PREFIX):
            continue
        name = key[len(ENV_PREFIX) :].lower()
        if name not in fields:
            known = ", ".join(ENV_PREFIX + f.upper() for f in sorted(fields))
            raise UsageError(f"unknown environment variable {key} (known: {known})")
        values[name] = _parse(key, raw, hints[name])
        _check_range(name, values[name], f"environment variable {key}={raw!r}")
        _check_choice(name, values[name], f"environment variable {key}={raw!r}")
    values.update({k: v for k, v in overrides.items() if v is not None})
    return Settings(**values)


#: Settings that take one of a few words.
_CHOICES: dict[str, tuple[str, ...]] = {
    "log_level": LEVELS,
    "log_format": FORMATS,
    "broker_storage": ("memory", "disk"),
}


def _check_choice(name: str, value: Any, where: str) -> None:
    if name in _CHOICES and value not in _CHOICES[name]:
        raise UsageError(f"{where}: expected one of {', '.join(_CHOICES[name])}")


#: Allowed ranges of numeric settings: (lowest, highest, lowest excluded).
_RANGES: dict[str, tuple[float, float, bool]] = {
    "broker_port": (1, 65535, False),
    "airflow_port": (1, 65535, False),
    "dashboard_port": (1, 65535, False),
    "topic_partitions": (1, 1_000_000, False),
    "topic_replication": (1, 1000, False),
    "workers": (0, 4096, False),
    "batch_lookback_hours": (0, 24 * 366, False),
    "lake_snapshot_retention_hours": (0, float("inf"), False),
    "broker_retention_hours": (0, float("inf"), False),
    "max_event_future_seconds": (0, float("inf"), False),
    "dashboard_refresh_seconds": (0, 86400, True),
    "live_refresh_seconds": (0, 3600, True),
    "live_allowed_lateness_seconds": (0, 86400, False),
}


def _check_range(name: str, value: Any, where: str) -> None:
    """A ``UsageError`` naming ``where`` (the variable) when ``value`` is out of range."""
    if name not in _RANGES or not isinstance(value, int | float):
        return
    low, high, open_low = _RANGES[name]
    if value != value or value < low or (open_low and value == low) or value > high:  # NaN too
        bound = f"> {low:g}" if open_low else f">= {low:g}"
        if high != float("inf"):
            bound += f" and <= {high:g}"
        raise UsageError(f"{where}: must be {bound}")


__all__ = ["ENV_PREFIX", "Settings", "is_loopback", "load_settings"]
