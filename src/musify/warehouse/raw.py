"""The raw tables: one per topic, the lake's columns plus the load bookkeeping.

Derived from ``musify.events`` (the one schema): the event's own fields keep their JSON
names, ``ts`` and ``registration`` become timestamps, then the Kafka coordinates and
ingestion time the stream added, ``event_hour`` (the unit of loading), ``loaded_at`` and
``lake_snapshot`` (the lake table snapshot the rows came from).
"""

from __future__ import annotations

from musify.events import TOPICS, FieldType

#: Engine-neutral column types; each adapter maps them to its own SQL types.
_TYPES: dict[FieldType, str] = {
    FieldType.STRING: "string",
    FieldType.INT: "int",
    FieldType.LONG: "long",
    FieldType.DOUBLE: "double",
    FieldType.BOOLEAN: "boolean",
    FieldType.TIMESTAMP_MS: "timestamp",
}
LAKE_EXTRA = (
    ("kafka_partition", "int"),
    ("kafka_offset", "long"),
    ("kafka_timestamp", "timestamp"),
    ("ingested_at", "timestamp"),
    # the fields an event carried that its schema does not know (a JSON object)
    ("extra", "string"),
)
LOAD_EXTRA = (
    ("event_hour", "timestamp"),
    ("loaded_at", "timestamp"),
    # the snapshot of the topic's lake table the rows were loaded from (time travel)
    ("lake_snapshot", "long"),
)

#: ``raw.song_metadata``: the Million Song Dataset's ``songs.csv`` columns (the subset
#: eventsim ships), loaded when the user supplies the file (MUSIFY_SONG_METADATA), then
#: the fingerprint of the loaded file and the load time. Columns a file lacks are null,
#: except the join keys (SONG_METADATA_KEYS), which must be present.
SONG_METADATA = "song_metadata"
SONG_METADATA_COLUMNS: tuple[tuple[str, str], ...] = (
    ("artist_id", "string"),
    ("artist_latitude", "double"),
    ("artist_location", "string"),
    ("artist_longitude", "double"),
    ("artist_name", "string"),
    ("danceability", "double"),
    ("duration", "double"),
    ("energy", "double"),
    ("key", "long"),
    ("key_confidence", "double"),
    ("loudness", "double"),
    ("mode", "long"),
    ("mode_confidence", "double"),
    ("release", "string"),
    ("song_hotttnesss", "double"),
    ("song_id", "string"),
    ("tempo", "double"),
    ("title", "string"),
    ("track_id", "string"),
    ("year", "long"),
)
SONG_METADATA_KEYS = ("artist_name", "title", "duration")
SONG_METADATA_EXTRA = (("source_sha256", "string"), ("loaded_at", "timestamp"))


def song_metadata_columns() -> list[tuple[str, str]]:
    """(name, type) of ``raw.song_metadata``."""
    return [*SONG_METADATA_COLUMNS, *SONG_METADATA_EXTRA]


def lake_columns(topic: str) -> list[tuple[str, str]]:
    """(name, type) of the columns in a topic's lake files."""
    fields = [(f.name, _TYPES[f.type]) for f in TOPICS[topic].fields]
    return [*fields, *LAKE_EXTRA]


def raw_columns(topic: str) -> list[tuple[str, str]]:
    """(name, type) of a topic's raw table: the lake's columns, then load bookkeeping."""
    return [*lake_columns(topic), *LOAD_EXTRA]


_SOURCE_HEADER = """\
# Generated from src/musify/events.py by `make dbt-sources`; do not edit.
# tests/warehouse/test_raw.py fails when this file and the schema disagree.
version: 2

sources:
  - name: raw
    description: >
      One table per Kafka topic, loaded hour by hour from the Parquet lake by
      `musify batch`: the event's fields under their JSON names, ts and registration
      as UTC timestamps, the Kafka coordinates, ingested_at, event_hour (the unit of
      loading) and loaded_at. A re-load of an hour replaces that hour's rows. Duplicate
      deliveries of an event (same sessionId, itemInSession) may be present; staging
      removes them.
    schema: "{{ var('raw_schema', 'raw') }}"
    config:
      # `dbt source freshness`: the hourly batch loads every hour, so raw rows loaded
      # more than 2 (6) hours ago mean the batch has stopped.
      loaded_at_field: loaded_at
      freshness:
        warn_after: {count: 2, period: hour}
        error_after: {count: 6, period: hour}
    tables:
"""
_EXTRA_DOCS = {
    "kafka_partition": "Kafka partition the event was read from",
    "kafka_offset": "Kafka offset of the event",
    "kafka_timestamp": "when the event was produced to Kafka",
    "ingested_at": "when the stream's micro-batch read it",
    "extra": "the fields the event carried that the schema does not know (JSON), or null",
    "event_hour": "the hour of ts, the unit of loading",
    "loaded_at": "when musify batch loaded it",
    "lake_snapshot": "the snapshot of the lake's Iceberg table the row was loaded from",
    "source_sha256": "SHA-256 of the songs.csv the rows came from",
}
_SONG_METADATA_DOC = (
    "The Million Song Dataset's songs.csv when the user supplies it "
    "(MUSIFY_SONG_METADATA); empty otherwise. Replaced whole when the file changes."
)


def dbt_sources_yaml() -> str:
    """The dbt sources file for the raw tables, derived from the event schema."""
    from musify.events import TOPICS

    out = [_SOURCE_HEADER]
    for name, topic in TOPICS.items():
        docs = {f.name: f.doc for f in topic.fields}
        out.append(f'      - name: {name}\n        description: "{topic.doc}"\n        columns:\n')
        for col, typ in raw_columns(name):
            doc = docs.get(col) or _EXTRA_DOCS.get(col, "")
            out.append(f"          - name: {col}\n            data_type: {typ}\n")
            if doc:
                out.append(f'            description: "{doc}"\n')
    out.append(
        f"      - name: {SONG_METADATA}\n"
        f'        description: "{_SONG_METADATA_DOC}"\n'
        "        config:\n          freshness: null  # replaced only when the file changes\n"
        "        columns:\n"
    )
    for col, typ in song_metadata_columns():
        out.append(f"          - name: {col}\n            data_type: {typ}\n")
        if col in _EXTRA_DOCS:
            out.append(f'            description: "{_EXTRA_DOCS[col]}"\n')
    return "".join(out)
