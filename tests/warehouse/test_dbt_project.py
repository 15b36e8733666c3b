"""The dbt project (dbt/) built on DuckDB over raw tables filled from the generator.

The raw tables are created here as the loader's contract describes them (the event
fields of src/musify/events.py under their JSON names, ts/registration as timestamps,
Kafka coordinates, event_hour, loaded_at), with a few duplicate deliveries, then
`dbt build` runs in-process.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from musify.events import TOPICS, FieldType
from musify.warehouse.raw import song_metadata_columns

duckdb = pytest.importorskip("duckdb")
dbt_main = pytest.importorskip("dbt.cli.main")

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
PROJECT = REPO / "src" / "musify" / "dbt"
START = datetime(2024, 3, 18, tzinfo=UTC)  # a Monday
DUPLICATE_EVERY = 53  # every 53rd event is delivered twice
# Every 41st event is produced again after a broker reset: another partition, and offsets
# from 0 again, which other events of the run hold too. Counted once all the same.
REPRODUCED_EVERY = 41

_SQL = {
    FieldType.STRING: "VARCHAR",
    FieldType.INT: "INTEGER",
    FieldType.LONG: "BIGINT",
    FieldType.DOUBLE: "DOUBLE",
    FieldType.BOOLEAN: "BOOLEAN",
    FieldType.TIMESTAMP_MS: "TIMESTAMP",
}
_JSON = {**_SQL, FieldType.TIMESTAMP_MS: "BIGINT"}


def _q(name: str) -> str:
    return f'"{name}"'


def create_raw_tables(con: Any) -> None:
    con.execute("create schema if not exists raw")
    for topic in TOPICS.values():
        cols = [f"{_q(f.name)} {_SQL[f.type]}" for f in topic.fields]
        cols += [
            "kafka_partition INTEGER",
            "kafka_offset BIGINT",
            "kafka_timestamp TIMESTAMP",
            "ingested_at TIMESTAMP",
            "event_hour TIMESTAMP",
            "loaded_at TIMESTAMP",
        ]
        con.execute(f"create or replace table raw.{topic.name} ({', '.join(cols)})")
    # the Million Song metadata table the loader always creates (empty: none supplied)
    neutral = {"string": "VARCHAR", "double": "DOUBLE", "long": "BIGINT", "timestamp": "TIMESTAMP"}
    meta = ", ".join(f"{_q(n)} {neutral[t]}" for n, t in song_metadata_columns())
    con.execute(f"create or replace table raw.song_metadata ({meta})")


def load_raw(con: Any, jsonl_dir: Path) -> dict[str, int]:
    """Insert each topic's JSON lines, plus duplicates; return distinct events per topic."""
    distinct = {}
    for topic in TOPICS.values():
        path = jsonl_dir / f"{topic.name}.jsonl"
        spec = ", ".join(f"'{f.name}': '{_JSON[f.type]}'" for f in topic.fields)
        select = []
        for f in topic.fields:
            if f.type is FieldType.TIMESTAMP_MS:
                select.append(f"make_timestamp({_q(f.name)} * 1000) as {_q(f.name)}")
            else:
                select.append(_q(f.name))
        con.execute(
            f"""
            create or replace temp table events as
            select {", ".join(select)}, row_number() over () as n
            from read_json('{path}', format = 'newline_delimited', columns = {{{spec}}})
            """
        )
        names = ", ".join(_q(f.name) for f in topic.fields)
        insert = f"""
            insert into raw.{topic.name}
            select {names},
                cast((n + {{shift}}) % 5 as integer) as kafka_partition,
                {{offset}} as kafka_offset,
                ts + interval 1 second as kafka_timestamp,
                ts + interval 2 second as ingested_at,
                date_trunc('hour', ts) as event_hour,
                timestamp '2024-03-21 00:00:00' as loaded_at
            from events
        """
        con.execute(insert.format(shift=0, offset="n"))
        con.execute(
            insert.format(shift=0, offset="n + 10000000") + f" where n % {DUPLICATE_EVERY} = 0"
        )
        con.execute(
            insert.format(shift=2, offset=f"n // {REPRODUCED_EVERY}")
            + f" where n % {REPRODUCED_EVERY} = 0"
        )
        distinct[topic.name] = con.execute("select count(*) from events").fetchone()[0]
    return distinct


#: Working tables that hold one run's delta by design (not part of the model's state).
RUN_DELTAS = {"int_dim_users_changes"}


def snapshot(con: Any) -> dict[str, list[tuple[Any, ...]]]:
    tables = con.execute(
        "select table_name from information_schema.tables "
        "where table_schema = 'analytics' and table_type = 'BASE TABLE' order by 1"
    ).fetchall()
    return {
        name: con.execute(f"select * from analytics.{name} order by all").fetchall()
        for (name,) in tables
        if name not in RUN_DELTAS
    }


def dbt_invoke(tmp: Path, command: str, *extra: str) -> Any:
    return dbt_main.dbtRunner().invoke(
        [
            command,
            "--project-dir", str(PROJECT),
            "--profiles-dir", str(PROJECT),
            "--target", "duckdb",
            "--target-path", str(tmp / "target"),
            "--log-path", str(tmp / "logs"),
            "--quiet",
            *extra,
        ]
    )  # fmt: skip


def dbt_build(tmp: Path, *extra: str) -> float:
    t0 = time.monotonic()
    result = dbt_invoke(tmp, "build", *extra)
    assert result.exception is None, result.exception
    failures = [
        f"{r.node.unique_id}: {r.status} {r.message}"
        for r in (result.result or [])
        if str(r.status) not in ("success", "pass", "no-op")  # no-op: the exposures
    ]
    assert result.success and not failures, failures
    return time.monotonic() - t0


@pytest.fixture(scope="module")
def warehouse(
    tmp_path_factory: pytest.TempPathFactory, musify_cache: Path
) -> Iterator[tuple[Path, Path, dict[str, int]]]:
    from musify.sim import FileSink, GenerateOptions, plan_run, run

    tmp = tmp_path_factory.mktemp("dbt")
    plan = plan_run(
        GenerateOptions(n_users=300, start=START, days=2, seed=7, workers=1, cache_dir=musify_cache)
    )
    out = tmp / "events"
    out.mkdir()
    run(plan, FileSink(out))
    db = tmp / "warehouse.duckdb"
    con = duckdb.connect(str(db))
    try:
        create_raw_tables(con)
        distinct = load_raw(con, out)
    finally:
        con.close()
    mp = pytest.MonkeyPatch()
    mp.setenv("MUSIFY_WAREHOUSE", str(db))
    try:
        yield tmp, db, distinct
    finally:
        mp.undo()


def query(db: Path, sql: str) -> list[tuple[Any, ...]]:
    con = duckdb.connect(str(db))
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def test_build_then_numbers_then_idempotent(warehouse: tuple[Path, Path, dict[str, int]]) -> None:
    tmp, db, distinct = warehouse
    first = dbt_build(tmp)

    def one(sql: str) -> Any:
        return query(db, sql)[0][0]

    streams = one("select count(*) from analytics.fact_streams")
    assert streams == distinct["listen_events"] > 1000
    assert one("select count(*) from analytics.fact_page_views") == distinct["page_view_events"]
    assert one("select count(*) from analytics.fact_auth") == distinct["auth_events"]
    assert (
        one("select count(*) from analytics.fact_status_changes")
        == distinct["status_change_events"]
    )
    # dim_users: one current row per identified user, every listen finds its period
    identified = one(
        "select count(distinct userId) from raw.page_view_events where userId is not null"
    )
    assert one("select count(*) from analytics.dim_users where is_current") == identified
    assert one("select count(distinct user_id) from analytics.dim_users") == identified
    assert one("select max(period_no) from analytics.dim_users") >= 2  # some level changed
    assert (
        one(
            "select count(*) from analytics.fact_streams "
            "where user_id is not null and user_key is null"
        )
        == 0
    )
    # every level in a fact row agrees with the SCD2 row it points to (except at the
    # instant of a change, which belongs to the new period)
    assert (
        one(
            "select count(*) from analytics.fact_streams f "
            "join analytics.dim_users u using (user_key) where f.level <> u.level"
        )
        == 0
    )
    # marts: non-empty and consistent with the facts
    assert one("select sum(streams) from analytics.mart_hourly_activity") == streams
    assert one("select count(*) from analytics.mart_top_songs_daily") > 0
    assert one("select count(*) from analytics.mart_top_artists_daily") > 0
    assert one("select min(rank) from analytics.mart_top_songs_daily") == 1
    assert one("select sum(users) from analytics.mart_users_by_gender_level") == identified
    assert one("select count(*) from analytics.mart_conversions_daily") >= 2
    changes = (
        "select sum(upgrades + downgrades + cancellations) from analytics.mart_conversions_daily"
    )
    assert one(changes) == distinct["status_change_events"]
    sessions = one("select count(distinct sessionId) from raw.page_view_events")
    assert one("select count(*) from analytics.fact_sessions") == sessions
    assert one("select sum(pages) from analytics.fact_sessions") == distinct["page_view_events"]
    hours = one("select count(*) from analytics.dim_datetime")
    assert 48 <= hours <= 50

    con = duckdb.connect(str(db))
    try:
        before = snapshot(con)
    finally:
        con.close()
    assert {"fact_streams", "dim_users", "mart_hourly_activity"} <= before.keys()

    # The same build again (incremental models take the all-time default window).
    second = dbt_build(tmp)
    con = duckdb.connect(str(db))
    try:
        assert snapshot(con) == before
    finally:
        con.close()

    # An hourly batch: reload two hours of raw (delete+insert, new loaded_at), then build
    # with the window vars: the warehouse ends up exactly as before.
    con = duckdb.connect(str(db))
    try:
        for topic in TOPICS:
            con.execute(
                f"create temp table reload as select * from raw.{topic} "
                "where event_hour >= timestamp '2024-03-19 10:00:00' "
                "and event_hour < timestamp '2024-03-19 12:00:00'"
            )
            con.execute(
                f"delete from raw.{topic} where event_hour >= timestamp '2024-03-19 10:00:00' "
                "and event_hour < timestamp '2024-03-19 12:00:00'"
            )
            con.execute(
                f"insert into raw.{topic} select * replace "
                "(timestamp '2024-03-22 00:00:00' as loaded_at) from reload"
            )
            con.execute("drop table reload")
    finally:
        con.close()
    third = dbt_build(
        tmp, "--vars", '{"start": "2024-03-19T10:00:00", "end": "2024-03-19T12:00:00"}'
    )
    con = duckdb.connect(str(db))
    try:
        assert snapshot(con) == before
    finally:
        con.close()
    # The reconciliation test notices raw events the facts do not have.
    con = duckdb.connect(str(db))
    try:
        con.execute(
            "insert into raw.listen_events select * replace "
            "(sessionId + 1000000 as sessionId) from raw.listen_events limit 1"
        )
    finally:
        con.close()
    result = dbt_invoke(tmp, "test", "--select", "assert_facts_reconcile_with_raw")
    assert not result.success
    print(f"dbt build: {first:.1f}s, again {second:.1f}s, hourly {third:.1f}s")


def test_the_read_models_document_every_column_they_have_and_freshness_runs(
    warehouse: tuple[Path, Path, dict[str, int]],
) -> None:
    """The documentation of the models Python reads (musify.warehouse.models) names
    every column the built tables have; `dbt source freshness` checks the raw tables
    by their loaded_at (here days old: an error for each event table)."""
    import orjson

    from musify.warehouse.models import READ_MODELS

    tmp, db, _ = warehouse
    if not query(
        db, "select count(*) from information_schema.tables where table_name = 'fact_streams'"
    )[0][0]:
        dbt_build(tmp)
    manifest = orjson.loads((tmp / "target" / "manifest.json").read_bytes())
    declared = {
        n["name"]: set(n["columns"])
        for n in manifest["nodes"].values()
        if n["resource_type"] == "model" and n["name"] in READ_MODELS
    }
    for name in sorted(READ_MODELS):
        built = {
            r[0]
            for r in query(
                db,
                "select column_name from information_schema.columns "
                f"where table_schema = 'analytics' and table_name = '{name}'",
            )
        }
        assert built and built == declared[name], (name, built ^ declared[name])

    res = dbt_main.dbtRunner().invoke(
        [
            "source", "freshness",
            "--project-dir", str(PROJECT),
            "--profiles-dir", str(PROJECT),
            "--target", "duckdb",
            "--target-path", str(tmp / "target"),
            "--log-path", str(tmp / "logs"),
            "--output", str(tmp / "target" / "sources.json"),
            "--quiet",
        ]
    )  # fmt: skip
    assert res.exception is None, res.exception
    checked = {r.node.name: str(r.status) for r in res.result}
    assert checked == dict.fromkeys(TOPICS, "error"), checked
