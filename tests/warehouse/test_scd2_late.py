"""dim_users under late data: stable keys, and the same periods as a rebuild from scratch.

Two late events arrive after their hours were loaded: an upgrade in the middle of a
user's free period (it splits the period in three), and an event with the other level
one second before a user's first event (it changes the user's first period, which
used to change its user_key). The hourly batch with its look-back picks them up.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest

from musify.batch import run_batch
from musify.lake import Lake
from musify.lake.writer import write_events
from musify.settings import Settings
from tests.warehouse.lake_events import START, events

pytestmark = pytest.mark.slow
HOUR_MS = 3_600_000
START_MS = int(START.timestamp() * 1000)


def _query(path: Path, sql: str) -> list[tuple[Any, ...]]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def _hour(ts: int) -> int:
    return (ts - START_MS) // HOUR_MS


def late_events(evs: dict[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    """An upgrade inside a free period, and an other-level event before a first event."""
    by_user: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for e in evs["page_view_events"]:
        if e.get("userId") is not None:
            by_user[e["userId"]].append(e)
    split_user = next(
        u
        for u, es in sorted(by_user.items())
        if sum(1 for e in es if e["level"] == "free" and _hour(e["ts"]) in (3, 4)) >= 3
        and all(e["level"] == "free" for e in es)
    )
    frees = [e for e in by_user[split_user] if _hour(e["ts"]) in (3, 4)]
    upgrade = dict(
        frees[1],
        ts=frees[1]["ts"] - 1,
        page="Submit Upgrade",
        method="PUT",
        status=307,
        itemInSession=frees[1]["itemInSession"] + 50_000,
    )
    for k in ("artist", "song", "duration"):
        upgrade.pop(k, None)
    first_user = next(
        u
        for u, es in sorted(by_user.items())
        if u != split_user and _hour(es[0]["ts"]) in (3, 4) and es[0]["ts"] % HOUR_MS > 1000
    )
    first = by_user[first_user][0]
    other = "paid" if first["level"] == "free" else "free"
    before = dict(
        first,
        ts=first["ts"] - 1000,
        page="Home",
        method="GET",
        status=200,
        level=other,
        itemInSession=first["itemInSession"] + 50_000,
    )
    for k in ("artist", "song", "duration"):
        before.pop(k, None)
    status = {k: v for k, v in upgrade.items() if k not in ("method", "status")}
    return {"page_view_events": [upgrade, before], "status_change_events": [status]}


PERIODS = (
    "select user_id, level, period_no, valid_from, valid_to, is_current "
    "from analytics.dim_users order by user_id, valid_from"
)


def test_late_events_keep_keys_and_match_a_rebuild(tmp_path: Path, musify_cache: Path) -> None:
    evs = events(musify_cache, users=300, hours=6)
    late = late_events(evs)
    settings = Settings(home=tmp_path / "incremental")
    lake = Lake(Path(settings.lake_root))
    write_events(lake, evs, 0)
    end = START + timedelta(hours=6)
    run_batch(settings, START, end, lookback_hours=0)
    db = settings.warehouse_path
    keys_before = dict(_query(db, "select user_key, user_id from analytics.dim_users"))
    periods_before = _query(db, PERIODS)

    offsets = {t: 10**6 for t in late}
    write_events(lake, late, 1, first_offset=offsets)
    run_batch(settings, START + timedelta(hours=4), START + timedelta(hours=5))  # look-back 2 h

    # every key facts could hold survives; the changed users got new periods
    keys_after = dict(_query(db, "select user_key, user_id from analytics.dim_users"))
    assert keys_before.items() <= keys_after.items()
    assert _query(db, PERIODS) != periods_before
    # every fact row points to the period valid at its time, with the level it observed
    wrong = _query(
        db,
        "select count(*) from analytics.fact_page_views f "
        "left join analytics.dim_users u on u.user_key = f.user_key "
        "where f.user_id is not null and (u.user_key is null or f.ts < u.valid_from "
        "or f.ts >= u.valid_to or (f.page not in ('Submit Upgrade', 'Submit Downgrade') "
        "and f.level <> u.level))",
    )
    assert wrong == [(0,)]

    # the same lake built from scratch in one batch: the same periods
    fresh = Settings(home=tmp_path / "fresh", lake=str(lake.root))
    run_batch(fresh, START, end, lookback_hours=0)
    assert _query(db, PERIODS) == _query(fresh.warehouse_path, PERIODS)
    upgraded = late["status_change_events"][0]["userId"]
    levels = _query(
        db, f"select level from analytics.dim_users where user_id = {upgraded} order by valid_from"
    )
    assert levels == [("free",), ("paid",), ("free",)]
