"""The hourly steps: wait for the stream, reconcile facts with the lake, publish."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pytest
from typer.testing import CliRunner

from musify.cli import app
from musify.errors import UsageError
from musify.lake import Lake
from musify.lake.writer import write_events
from musify.orchestration import hourly
from tests.orchestration.conftest import HOURS, set_watermark
from tests.warehouse.lake_events import START, late_listen

END = START + timedelta(hours=HOURS)


@pytest.mark.slow
def test_wait_is_ready_only_past_the_hour_and_grace(lake_home: Any) -> None:
    settings, _ = lake_home
    grace = timedelta(minutes=1)
    assert hourly.stream_readiness(settings, END, grace).ready
    set_watermark(settings, END)
    r = hourly.stream_readiness(settings, END, grace)
    assert not r.ready and "has not passed" in r.describe()
    with pytest.raises(hourly.NotReady) as exc:
        hourly.wait_for_stream(settings, END, grace, timeout=0.3, poll=0.1)
    assert exc.value.exit_code == 75
    # a replayed history: the watermark is now, but the lake's events are still old
    set_watermark(settings, END + timedelta(days=1), newest=END - timedelta(minutes=10))
    r = hourly.stream_readiness(settings, END, grace)
    assert not r.ready and "has not passed" in r.describe()
    set_watermark(settings, None)
    assert "no watermark" in hourly.stream_readiness(settings, END, grace).describe()


@pytest.mark.slow
def test_cli_wait_exits_75_until_the_stream_passed(lake_home: Any, monkeypatch: Any) -> None:
    settings, _ = lake_home
    monkeypatch.setenv("MUSIFY_HOME", str(settings.home))
    window = ["--start", START.isoformat(), "--end", END.isoformat()]
    ok = CliRunner().invoke(app, ["batch", "--steps", "wait", *window])
    assert ok.exit_code == 0, ok.output
    set_watermark(settings, END)
    late = CliRunner().invoke(app, ["batch", "--steps", "wait", *window])
    assert late.exit_code == 75 and "has not passed" in late.output


@pytest.mark.slow
def test_reconcile_publish_and_a_mismatch_is_refused(lake_home: Any) -> None:
    settings, evs = lake_home
    run = hourly.run_steps(settings, START, END, hourly.STEPS[1:], lookback_hours=0)
    assert run.wait is None and run.batch is not None and run.published
    checked = run.reconciled
    assert checked is not None and len(checked.counts) == HOURS
    assert sum(c["listen_events"] for c in checked.counts.values()) == len(evs["listen_events"])
    doc = run.as_dict()
    assert doc["rows"] == run.batch.as_dict()["rows"] and len(doc["published"]) == HOURS
    assert "published" in run.describe() and f"{HOURS} hour(s) reconcile" in run.describe()
    hourly.publish(settings, checked)  # idempotent
    assert hourly.last_published(settings) == END - timedelta(hours=1)
    con = duckdb.connect(str(settings.warehouse_path))
    assert con.execute("select count(*) from raw.published_hours").fetchone() == (HOURS,)
    # each published hour names the lake snapshots it was counted at (time travel)
    lake = Lake(Path(settings.lake_root))
    snap = lake.tables.table("listen_events").current_snapshot().snapshot_id
    recorded = con.execute("select lake_snapshots from raw.published_hours").fetchall()
    assert all(orjson.loads(r[0])["listen_events"] == snap for r in recorded)
    # a fact that lost rows must not be published
    con.execute(
        "delete from analytics.fact_streams where event_hour = ?",
        [START.replace(tzinfo=None)],
    )
    con.close()
    with pytest.raises(hourly.ReconcileError, match="fact_streams"):
        hourly.reconcile(settings, START, END)


@pytest.mark.slow
def test_the_lookback_reloads_and_republishes_only_the_hours_that_changed(
    lake_home: Any,
) -> None:
    settings, evs = lake_home
    lake = Lake(Path(settings.lake_root))
    hour = [START + timedelta(hours=i) for i in range(HOURS + 1)]
    earlier = hourly.run_steps(settings, hour[0], hour[2], hourly.STEPS[1:], lookback_hours=0)
    assert earlier.reconciled is not None
    listens_1 = earlier.reconciled.counts[hour[1]]["listen_events"]
    # the next hourly run, look-back 2 h over published hours the lake has not changed:
    # only its own hour is loaded, built, reconciled and published
    run = hourly.run_steps(settings, hour[2], hour[3], hourly.STEPS[1:], lookback_hours=2)
    assert run.batch is not None and run.reconciled is not None
    assert run.batch.loaded_from == hour[2]
    assert set(run.batch.rows["listen_events"]) == {f"{hour[2]:%Y-%m-%dT%H}"}
    assert set(run.reconciled.counts) == {hour[2]}
    published = run.reconciled.counts

    # a listen of hour 1 arrives late: the next run reloads hour 1 (not hour 2), rebuilds
    # from it and publishes it again with the late event counted
    write_events(
        lake,
        {"listen_events": [late_listen(evs, hour[1])]},
        1,
        first_offset={"listen_events": 10**6},
    )
    run = hourly.run_steps(settings, hour[3], hour[3] + timedelta(hours=1), hourly.STEPS[1:])
    assert run.batch is not None and run.reconciled is not None
    assert run.batch.loaded_from == hour[1]
    assert set(run.batch.rows["listen_events"]) == {f"{h:%Y-%m-%dT%H}" for h in (hour[1], hour[3])}
    assert set(run.reconciled.counts) == {hour[1], hour[2], hour[3]}
    con = duckdb.connect(str(settings.warehouse_path), read_only=True)
    in_facts = con.execute(
        "select count(*) from analytics.fact_streams where event_hour = ?",
        [hour[1].replace(tzinfo=None)],
    ).fetchone()
    recorded = con.execute(
        "select events from raw.published_hours where hour = ?", [hour[1].replace(tzinfo=None)]
    ).fetchone()
    con.close()
    assert in_facts is not None and recorded is not None
    assert in_facts[0] == orjson.loads(recorded[0])["listen_events"] == listens_1 + 1
    assert run.reconciled.counts[hour[1]]["listen_events"] == listens_1 + 1
    assert run.reconciled.counts[hour[2]] == published[hour[2]]

    # nothing changed since: the look-back is left alone; --reload-lookback forces it
    again = hourly.run_steps(settings, hour[3], hour[3] + timedelta(hours=1), hourly.STEPS[1:])
    assert again.batch is not None and again.batch.loaded_from == hour[3]
    forced = hourly.run_steps(
        settings, hour[3], hour[3] + timedelta(hours=1), hourly.STEPS[1:], reload_lookback=True
    )
    assert forced.batch is not None and forced.batch.loaded_from == hour[1]
    assert len(forced.batch.rows["listen_events"]) == 3


def test_steps_are_parsed_in_publication_order_and_a_typo_names_the_option() -> None:
    assert hourly.parse_steps("publish, load,load") == ("load", "publish")
    assert hourly.parse_steps("") == ()
    with pytest.raises(UsageError, match=r"^--steps: unknown step.*loda"):
        hourly.parse_steps("wait,loda")
    res = CliRunner().invoke(app, ["batch", "--steps", "reconcil"])
    assert res.exit_code == 2 and "--steps: unknown step(s) reconcil" in res.output


@pytest.mark.parametrize(
    "copy", [b"{not json", b'{"x": 1}', b'{"hour": 5}', b'{"hour": "x"}', b"[]"]
)
def test_a_broken_publication_copy_counts_as_absent(tmp_path: Path, copy: bytes) -> None:
    from musify.settings import load_settings

    settings = load_settings({}, home=tmp_path / "home")
    settings.ensure_dirs()
    (settings.run_dir / "published.json").write_bytes(copy)
    assert hourly.last_published(settings) is None
