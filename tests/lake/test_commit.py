"""The committer: each micro-batch once per table, a crash between two tables' commits,
one writer (fencing), and checkpoints that cannot be the lake's refused."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from musify.lake import Lake, LakeError
from musify.lake.commit import Committer, Fenced, TableBatch, data_prefix
from musify.lake.schema import arrow_schema, table_names
from tests.lake.conftest import T0, listen, rows

CKPT = "/ckpt/stream"


def files(lake: Lake, table: str, batch: int, n: int, first: int = 0) -> TableBatch:
    """One data file of ``n`` listen events in the batch's folder of ``table``."""
    schema = arrow_schema(table)
    events = [listen(i, T0 + i) for i in range(first, first + n)]
    cols: dict[str, list[Any]] = {name: [] for name in schema.names}
    for e in events:
        for name in schema.names:
            v = e.get(name)
            if name in ("ts", "registration"):
                v = datetime.fromtimestamp(v / 1000, UTC)
            cols[name].append(v)
    cols["kafka_partition"] = [0] * n
    cols["kafka_offset"] = list(range(first, first + n))
    cols["kafka_timestamp"] = cols["ts"]
    cols["ingested_at"] = [datetime.now(UTC)] * n
    key = f"{data_prefix(table, batch)}/h/part-{uuid.uuid4().hex}.parquet"
    with lake.storage.open_write(key) as f:
        pq.write_table(pa.table(cols, schema=schema), f)
    return TableBatch((lake.storage.uri(key),), n, {"0": (first, first + n - 1)})


def test_claim_creates_every_table_and_records_the_writer(lake: Lake) -> None:
    c = Committer(lake.tables, CKPT)
    c.claim(-1)
    for name in table_names():
        t = lake.tables.table(name, refresh=True)
        assert t.properties["musify.checkpoint"] == CKPT
        assert t.properties["musify.writer"].startswith(c.writer_id)
        assert t.properties["commit.retry.num-retries"] == "0"
        assert t.metadata.format_version == 2
    spec = lake.tables.table("listen_events").spec()
    assert [(f.name, str(f.transform)) for f in spec.fields] == [("ts_hour", "hour")]


def test_a_batch_lands_once_per_table_even_after_a_crash_between_tables(lake: Lake) -> None:
    c = Committer(lake.tables, CKPT)
    c.claim(-1)
    first = {"listen_events": files(lake, "listen_events", 0, 3)}
    assert c.commit(0, first) == {"listen_events": True}
    # the job died after listen_events' commit, before page_view_events': the replay
    # (a new process: a fresh look at the tables) commits only what is missing
    c = Committer(Lake(lake.root).tables, CKPT, c.writer_id)
    assert c.pending(0) == [t for t in table_names() if t != "listen_events"]
    replay = {
        "listen_events": files(lake, "listen_events", 0, 3),
        "page_view_events": files(lake, "page_view_events", 0, 3),
    }
    assert c.commit(0, replay) == {"listen_events": False, "page_view_events": True}
    assert rows(lake, "listen_events").num_rows == 3
    assert rows(lake, "page_view_events").num_rows == 3
    snapshot = lake.tables.table("listen_events").current_snapshot()
    assert snapshot.summary["musify.offsets"] == '{"0":[0,2]}'


def test_a_fenced_writer_lands_nothing(lake: Lake, monkeypatch: pytest.MonkeyPatch) -> None:
    a = Committer(lake.tables, CKPT)
    a.claim(-1)
    a.commit(0, {"listen_events": files(lake, "listen_events", 0, 2)})
    b = Committer(Lake(lake.root).tables, CKPT)  # another process: its own catalog handle
    b.claim(0)
    with pytest.raises(Fenced, match="another stream claimed the lake"):
        a.pending(1, refresh=True)
    # without a fresh look, the commit itself finds out (its requirement fails)
    with pytest.raises(Fenced):
        a.commit(1, {"listen_events": files(lake, "listen_events", 1, 2, first=2)})
    assert rows(lake, "listen_events").num_rows == 2


def test_a_claim_between_the_check_and_the_commit_still_fences(lake: Lake) -> None:
    """The stale writer checked the fence, then the other claimed: Iceberg's ref
    requirement fails its commit (no silent retry), and the re-check stops it."""
    a = Committer(lake.tables, CKPT)
    a.claim(-1)
    b = Committer(Lake(lake.root).tables, CKPT)
    real = a.tables.table
    calls = {"n": 0}

    def table_then_claim(name: str, *, refresh: bool = False) -> Any:
        t = real(name, refresh=refresh)
        calls["n"] += 1
        if calls["n"] == 1:
            b.claim(-1)  # after a's check of the fence and batch id, before its commit
        return t

    a.tables.table = table_then_claim  # type: ignore[method-assign]
    with pytest.raises(Fenced):
        a.commit(0, {"listen_events": files(lake, "listen_events", 0, 2)})
    assert rows(lake, "listen_events").num_rows == 0


def test_a_concurrent_commit_is_retried_not_lost(lake: Lake) -> None:
    """Maintenance committing meanwhile makes the stream's commit fail; it checks again
    and commits (its batch lands once)."""
    a = Committer(lake.tables, CKPT)
    a.claim(-1)
    other = Lake(lake.root).tables
    real = a.tables.table
    calls = {"n": 0}

    def table_then_commit(name: str, *, refresh: bool = False) -> Any:
        t = real(name, refresh=refresh)
        calls["n"] += 1
        if calls["n"] == 1:
            with other.table(name, refresh=True).transaction() as tx:
                tx.set_properties({"musify.maintained": "yes"})
                with tx.update_snapshot().fast_append():
                    pass
        return t

    a.tables.table = table_then_commit  # type: ignore[method-assign]
    assert a.commit(0, {"listen_events": files(lake, "listen_events", 0, 4)}) == {
        "listen_events": True
    }
    assert rows(lake, "listen_events").num_rows == 4


def test_a_checkpoint_that_is_not_the_lakes_is_refused(lake: Lake) -> None:
    c = Committer(lake.tables, CKPT)
    c.claim(-1)
    c.commit(0, {"listen_events": files(lake, "listen_events", 0, 2)})
    c.commit(1, {"listen_events": files(lake, "listen_events", 1, 2, first=2)})
    with pytest.raises(LakeError, match="MUSIFY_CHECKPOINT=/ckpt/stream"):
        Committer(lake.tables, "/elsewhere").claim(-1)
    with pytest.raises(LakeError, match="is new but the lake's table listen_events holds batch 1"):
        Committer(lake.tables, CKPT).claim(-1)
    Committer(lake.tables, CKPT).claim(0)  # the job died between our commit and Spark's


def test_lake_tables_names_each_tables_rows_files_and_last_batch(
    lake: Lake, tmp_path: Path
) -> None:
    import orjson
    from typer.testing import CliRunner

    from musify.cli import app
    from musify.lake.tables import describe_tables

    c = Committer(lake.tables, CKPT)
    c.claim(-1)
    c.commit(0, {"listen_events": files(lake, "listen_events", 0, 3)})
    c.commit(1, {"listen_events": files(lake, "listen_events", 1, 2, first=3)})
    info = {t.table: t for t in describe_tables(lake)}
    assert set(info) == {f"musify.{n}" for n in table_names()}
    listens = info["musify.listen_events"]
    assert (listens.rows, listens.data_files, listens.last_batch) == (5, 2, 1)
    assert listens.snapshot is not None and listens.location.endswith("listen_events")
    env = {"MUSIFY_LAKE": lake.url, "MUSIFY_HOME": str(tmp_path / "home")}
    res = CliRunner().invoke(app, ["lake", "tables", "--json"], env=env)
    assert res.exit_code == 0, res.output
    assert {d["table"]: d["rows"] for d in orjson.loads(res.stdout)}["musify.listen_events"] == 5
