"""A Parquet lake of Musify before Iceberg: refused by the stream, converted once by
`musify lake migrate` (committed files registered in place, nothing else)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from musify.cli import app
from musify.lake import Lake, LakeError
from musify.lake.migrate import migrate
from musify.lake.schema import arrow_schema
from musify.settings import Settings
from tests.lake.conftest import T0, listen, table_rows


def _legacy_file(root: Path, key: str, events: list[dict[str, Any]], first: int) -> str:
    schema = arrow_schema("listen_events").remove(
        arrow_schema("listen_events").get_field_index("extra")
    )
    cols: dict[str, list[Any]] = {n: [] for n in schema.names}
    for i, e in enumerate(events):
        for n in schema.names:
            v = e.get(n)
            if n in ("ts", "registration"):
                v = datetime.fromtimestamp(v / 1000, UTC)
            cols[n].append(v)
        cols["kafka_partition"][-1] = 0
        cols["kafka_offset"][-1] = first + i
        cols["kafka_timestamp"][-1] = cols["ts"][-1]
        cols["ingested_at"][-1] = datetime.now(UTC)
    (root / key).parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(cols, schema=schema), root / key)
    return key


def legacy_lake(root: Path) -> None:
    """Two committed batches, an interrupted third, a stray file and a quarantined message."""
    h0 = "listen_events/date=2024-03-18/hour=00"
    h1 = "listen_events/date=2024-03-18/hour=01"
    b0 = [
        _legacy_file(
            root, f"{h0}/part-b000000000000-00000.parquet", [listen(i, T0 + i) for i in range(3)], 0
        ),
        _legacy_file(
            root, f"{h1}/part-b000000000000-00001.parquet", [listen(3, T0 + 3_600_000)], 3
        ),
    ]
    b1 = [
        _legacy_file(root, f"{h1}/part-b000000000001-00000.parquet", [listen(4, T0 + 3_700_000)], 4)
    ]
    pending = _legacy_file(
        root, f"{h1}/part-b000000000002-00000.parquet", [listen(5, T0 + 3_800_000)], 5
    )
    _legacy_file(root, f"{h0}/part-stray.parquet", [listen(9, T0 + 9)], 9)
    q = "_quarantine/topic=listen_events/date=2024-03-18/part-b000000000001-00001.parquet"
    bad = pa.table(
        {
            "kafka_partition": pa.array([0], pa.int32()),
            "kafka_offset": pa.array([7], pa.int64()),
            "kafka_timestamp": pa.array([datetime.now(UTC)], pa.timestamp("us", tz="UTC")),
            "key": pa.array([b"k"]),
            "value": pa.array([b"not json"]),
            "reason": pa.array(["not a JSON object"]),
            "ingested_at": pa.array([datetime.now(UTC)], pa.timestamp("us", tz="UTC")),
        }
    )
    (root / q).parent.mkdir(parents=True)
    pq.write_table(bad, root / q)
    commits = root / "_commits"
    commits.mkdir()
    (commits / "000000000000.json").write_bytes(orjson.dumps({"batch_id": 0, "files": b0}))
    (commits / "000000000001.json").write_bytes(orjson.dumps({"batch_id": 1, "files": [*b1, q]}))
    (commits / "000000000002.pending.json").write_bytes(
        orjson.dumps({"batch_id": 2, "files": [pending]})
    )


def test_the_stream_refuses_an_old_lake_and_migrate_converts_it(tmp_path: Path) -> None:
    from musify.stream import StreamOptions, run_stream

    settings = Settings(home=tmp_path / "home")
    root = Path(settings.lake_root)
    legacy_lake(root)
    with pytest.raises(LakeError, match="musify lake migrate"):
        run_stream(settings, StreamOptions(bootstrap_servers="127.0.0.1:1"))

    lake = Lake(root)
    report = migrate(lake, settings.checkpoint_location)
    assert report.batches == 2 and report.removed == 1
    got = table_rows(lake, "listen_events", ("kafka_offset", "extra")).to_pylist()
    assert sorted(r["kafka_offset"] for r in got) == [0, 1, 2, 3, 4]  # no stray, no pending
    assert {r["extra"] for r in got} == {None}
    bad = table_rows(lake, "quarantine").to_pylist()
    assert [(r["topic"], r["kafka_offset"]) for r in bad] == [("listen_events", 7)]
    table = lake.tables.table("listen_events", refresh=True)
    assert table.properties["musify.last-batch"] == "1"
    assert table.properties["musify.checkpoint"] == settings.checkpoint_location
    assert not lake.has_legacy_layout()
    assert not (
        root / "listen_events/date=2024-03-18/hour=01/part-b000000000002-00000.parquet"
    ).exists()
    with pytest.raises(LakeError, match="nothing to migrate"):
        migrate(lake, settings.checkpoint_location)


def test_the_cli_migrates_and_says_what_it_did(tmp_path: Path) -> None:
    home = tmp_path / "home"
    legacy_lake(home / "lake")
    res = CliRunner().invoke(app, ["lake", "migrate"], env={"MUSIFY_HOME": str(home)})
    assert res.exit_code == 0, res.output
    assert "2 batches" in res.output
    again = CliRunner().invoke(app, ["lake", "migrate"], env={"MUSIFY_HOME": str(home)})
    assert again.exit_code == 1 and "nothing to migrate" in again.output
