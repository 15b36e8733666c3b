"""The Million Song metadata file (``songs.csv``) as one Arrow table, for any engine.

Read here once, with the columns and types of ``raw.song_metadata`` (``raw.py``), so the
engines only have to write a typed table: DuckDB inserts it, BigQuery loads it as
Parquet (a CSV load job would map columns by position, and a user's file may order or
omit them differently). Columns the file lacks are null; the join keys must be there.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from musify.errors import UsageError
from musify.warehouse.raw import SONG_METADATA_COLUMNS, SONG_METADATA_KEYS, song_metadata_columns


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def arrow_schema() -> Any:
    import pyarrow as pa

    types = {
        "string": pa.string(),
        "double": pa.float64(),
        "long": pa.int64(),
        "timestamp": pa.timestamp("us", "UTC"),
    }
    return pa.schema([pa.field(n, types[t]) for n, t in song_metadata_columns()])


def read_song_metadata(path: Path, sha256: str | None = None) -> Any:
    """``songs.csv`` as an Arrow table with the columns of ``raw.song_metadata``.

    Fails with a message naming the file when it is missing, lacks a join key column
    or holds a value of the wrong type.
    """
    import pyarrow as pa
    import pyarrow.csv as pacsv

    if not path.is_file():
        raise UsageError(f"song metadata file {path} does not exist (MUSIFY_SONG_METADATA)")
    with path.open("rb") as f:
        header = f.readline().decode("utf-8", "replace").strip().lstrip("\ufeff")
    present = {c.strip().strip('"') for c in header.split(",")}
    missing = [k for k in SONG_METADATA_KEYS if k not in present]
    if missing:
        raise UsageError(
            f"song metadata file {path}: the header lacks {', '.join(missing)} "
            f"(a Million Song songs.csv has {', '.join(n for n, _ in SONG_METADATA_COLUMNS)})"
        )
    schema = arrow_schema()
    wanted = [n for n, _ in SONG_METADATA_COLUMNS if n in present]
    try:
        table = pacsv.read_csv(
            path,
            convert_options=pacsv.ConvertOptions(
                include_columns=wanted,
                column_types={n: schema.field(n).type for n in wanted},
                strings_can_be_null=True,
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise UsageError(f"song metadata file {path}: {exc}") from None
    n = table.num_rows
    digest = sha256 or file_sha256(path)
    loaded_at = datetime.now(UTC)
    columns = []
    for field in schema:
        if field.name in table.column_names:
            columns.append(table[field.name])
        elif field.name == "source_sha256":
            columns.append(pa.array([digest] * n, field.type))
        elif field.name == "loaded_at":
            columns.append(pa.array([loaded_at] * n, field.type))
        else:
            columns.append(pa.nulls(n, field.type))
    return pa.table(columns, schema=schema)
