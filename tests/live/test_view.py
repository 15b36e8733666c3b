"""The live layer: every number a recount of the committed events, each counted once."""

from __future__ import annotations

import itertools
import shutil
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from musify.events import TOPIC_NAMES
from musify.lake import Lake
from musify.lake.writer import write_events
from musify.live.view import (
    ACTIVE_WINDOW,
    AHEAD,
    CHANGE_KIND,
    LATEST_CHANGES,
    PREVIOUS_WINDOW,
    RECENT_WINDOW,
    STATUS_CHANGES_WINDOW,
    Live,
    LiveView,
)
from musify.sim import GenerateOptions, MemorySink, plan_run, run
from musify.sim.config import BUILTIN_CONFIG

START = datetime(2024, 3, 18, tzinfo=UTC)
HOURS = 44
#: Where the tests start looking: 400 users make few logins and status changes, so the
#: `at` fixture moves on to the first minute whose windows hold both.
AT = START + timedelta(hours=39, minutes=50)

Events = dict[str, list[dict[str, Any]]]


@pytest.fixture(scope="module")
def events(musify_cache: Path) -> Events:
    plan = plan_run(
        GenerateOptions(
            config=BUILTIN_CONFIG,
            n_users=400,
            start=START,
            days=HOURS / 24,
            seed=21,
            workers=1,
            cache_dir=musify_cache,
        )
    )
    sink = MemorySink()
    run(plan, sink)
    return {t: [orjson.loads(x) for x in sink.lines[t]] for t in TOPIC_NAMES}


def ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


@pytest.fixture(scope="module")
def at(events: Events) -> datetime:
    """A page opened at this instant sees logins and a status change in its windows."""
    listen_ts = sorted(e["ts"] for e in events["listen_events"])

    def within(topic: str, end: int, length: timedelta) -> int:
        lo = end - length.total_seconds() * 1000
        return sum(1 for e in events[topic] if lo < e["ts"] <= end)

    moment = AT
    while moment < START + timedelta(hours=HOURS - 2):
        limit = ms(moment + AHEAD)
        clock = max(t for t in listen_ts if t < limit)
        if within("auth_events", clock, RECENT_WINDOW) and within(
            "status_change_events", clock, STATUS_CHANGES_WINDOW
        ):
            return moment
        moment += timedelta(minutes=1)
    raise AssertionError("no minute of the generated events has logins and status changes")


@pytest.fixture(scope="module")
def built(events: Events, at: datetime, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A lake holding the events in three micro-batches, plus a fourth that delivers a
    sample of the listens again at other offsets (a producer's retry): duplicates, in
    the last hour and a day before it."""
    lake = Lake(tmp_path_factory.mktemp("live") / "lake")
    cuts = [ms(START + timedelta(hours=h)) for h in (0, 36, 42)] + [2**62]
    for batch, (lo, hi) in enumerate(itertools.pairwise(cuts)):
        part = {t: [e for e in evs if lo <= e["ts"] < hi] for t, evs in events.items()}
        write_events(lake, part, batch, first_offset={t: lo // 1000 for t in TOPIC_NAMES})
    again = [e for e in events["listen_events"] if e["ts"] < ms(at)][-300::3]
    # and some of the same minutes a day earlier (the listens per minute tile's comparison)
    a_day_before = ms(at - timedelta(days=1))
    again += [e for e in events["listen_events"] if e["ts"] < a_day_before][-300::3]
    write_events(lake, {"listen_events": again}, 3, partition=1)
    return lake.root if isinstance(lake.root, Path) else Path(lake.root)


@pytest.fixture
def lake(built: Path, tmp_path: Path) -> Iterator[Lake]:
    """A copy of the built lake a test may write to (the catalog names absolute paths,
    so the copy keeps the path: a test restores it afterwards)."""
    backup = tmp_path / "backup"
    shutil.copytree(built, backup)
    yield Lake(built)
    shutil.rmtree(built)
    shutil.copytree(backup, built)


def once(evs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: dict[tuple[int, int], dict[str, Any]] = {}
    for e in evs:
        seen.setdefault((e["sessionId"], e["itemInSession"]), e)
    return list(seen.values())


def recount(events: Events, view: LiveView, state: str | None = None) -> dict[str, Any]:
    """What every tile must show, counted in Python from the generator's own events."""
    assert view.clock is not None
    clock = ms(view.clock)

    def keep(e: dict[str, Any]) -> bool:
        return state is None or (e.get("state") or "").strip().upper() == state

    listens = [e for e in once(events["listen_events"]) if keep(e)]
    per_minute = Counter(e["ts"] // 60_000 for e in listens)
    minutes = [
        (
            m.minute,
            per_minute[ms(m.minute) // 60_000],
            per_minute[ms(m.minute - timedelta(days=1)) // 60_000],
        )
        for m in view.listens_per_minute
    ]

    def window(evs: list[dict[str, Any]], length: timedelta, end: int = clock) -> list[Any]:
        return [e for e in evs if end - length.total_seconds() * 1000 < e["ts"] <= end]

    def ranking(evs: list[dict[str, Any]], key: Any) -> list[tuple[Any, int]]:
        counts = Counter(key(e) for e in evs)
        return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))

    recent = window(listens, RECENT_WINDOW)
    previous = window(listens, PREVIOUS_WINDOW, clock - int(RECENT_WINDOW.total_seconds() * 1000))
    songs = ranking(recent, lambda e: (e["song"], e["artist"]))[:10]
    prev_songs = {
        k: r for r, (k, _) in enumerate(ranking(previous, lambda e: (e["song"], e["artist"])), 1)
    }
    artists = ranking(recent, lambda e: e["artist"])[:10]
    prev_artists = {k: r for r, (k, _) in enumerate(ranking(previous, lambda e: e["artist"]), 1)}
    by_state = Counter(
        e["state"].strip().upper()
        for e in window(once(events["listen_events"]), RECENT_WINDOW)
        if (e.get("state") or "").strip()
    )
    auth = window([e for e in once(events["auth_events"]) if keep(e)], RECENT_WINDOW)
    changes = window(
        [e for e in once(events["status_change_events"]) if keep(e)], STATUS_CHANGES_WINDOW
    )
    changes.sort(key=lambda e: (-e["ts"], e["sessionId"], e["itemInSession"]))
    return {
        "minutes": minutes,
        "active": len({e["userId"] for e in window(listens, ACTIVE_WINDOW)}),
        "songs": [(s, a, n, prev_songs.get((s, a))) for (s, a), n in songs],
        "artists": [(a, n, prev_artists.get(a)) for a, n in artists],
        "by_state": dict(by_state),
        "auth": (len(auth), sum(1 for e in auth if not e["success"])),
        "changes": [
            (e["ts"], CHANGE_KIND[e["page"]], e["userId"]) for e in changes[:LATEST_CHANGES]
        ],
    }


def shown(view: LiveView) -> dict[str, Any]:
    return {
        "minutes": [(m.minute, m.listens, m.day_before) for m in view.listens_per_minute],
        "active": view.active_listeners,
        "songs": [(t.name, t.artist, t.listens, t.previous_rank) for t in view.trending_songs],
        "artists": [(t.name, t.listens, t.previous_rank) for t in view.trending_artists],
        "by_state": view.listens_by_state,
        "auth": (view.auth_attempts, view.auth_failures),
        "changes": [(ms(c.ts), c.kind, c.user_id) for c in view.status_changes],
    }


def test_every_live_number_is_a_recount_of_the_committed_events(
    at: datetime, built: Path, events: Events
) -> None:
    view = Live(Lake(built)).view(at=at)
    assert view.clock is not None and at - timedelta(minutes=5) < view.clock <= at + timedelta(
        minutes=5
    )
    want, got = recount(events, view), shown(view)
    assert got == want
    # the tiles are not trivially empty: a day earlier, trends, auth, status changes
    assert sum(m.listens for m in view.listens_per_minute) > 50
    assert sum(m.day_before for m in view.listens_per_minute) > 50
    assert view.active_listeners > 5 and len(view.trending_songs) == 10
    assert any(t.previous_rank is not None for t in view.trending_artists)
    assert view.auth_attempts > 0 and view.status_changes


def test_the_streams_watermark_moves_the_clock_through_quiet_minutes(
    built: Path, events: Events
) -> None:
    """With no listen after T (the end of the lake's events) but the stream's
    watermark at T + 3 min (it committed everything acknowledged before then), the
    windows end at the watermark: the quiet minutes count zero, and every number is
    still a recount at that clock."""
    live = Live(Lake(built))
    at = START + timedelta(hours=HOURS, minutes=1)
    plain = live.view(at=at)
    assert plain.clock is not None
    later = plain.clock + timedelta(minutes=3)
    view = live.view(at=at, floor=later)
    assert view.clock == later
    assert shown(view) == recount(events, view)
    assert view.listens_per_minute[-1].minute > plain.listens_per_minute[-1].minute
    assert view.listens_per_minute[-1].listens == 0
    assert view.active_listeners <= plain.active_listeners
    # an older watermark, or one in another part of the stream's time, changes nothing
    for floor in (plain.clock - timedelta(minutes=1), at + timedelta(hours=3)):
        assert live.view(at=at, floor=floor).clock == plain.clock
    # nor does it make a clock where no listen is near (the stream replays old history:
    # the dashboard then looks at the newest event instead)
    later = at + timedelta(days=30)
    assert live.view(at=later, floor=later).clock is None


def test_a_state_filter_narrows_every_tile(at: datetime, built: Path, events: Events) -> None:
    live = Live(Lake(built))
    busiest = max(live.view(at=at).listens_by_state.items(), key=lambda kv: kv[1])[0]
    view = live.view(at=at, state=busiest)
    assert shown(view) == recount(events, view, state=busiest)
    assert view.active_listeners < live.view(at=at).active_listeners


def test_minutes_are_final_once_the_clock_is_the_allowed_lateness_past_them(
    at: datetime, built: Path
) -> None:
    for lateness in (0.0, 90.0):
        view = Live(Lake(built), allowed_lateness_s=lateness).view(at=at)
        assert view.clock is not None
        for m in view.listens_per_minute:
            end = m.minute + timedelta(minutes=1) + timedelta(seconds=lateness)
            assert m.final == (end <= view.clock), (lateness, m)
        assert not view.listens_per_minute[-1].final
        assert view.listens_per_minute[0].final


def test_a_late_event_lands_in_its_open_minute_and_only_new_files_are_read(
    at: datetime, lake: Lake, events: Events
) -> None:
    live = Live(lake, allowed_lateness_s=300.0)
    before = live.view(at=at)
    read = live.rows.files_read
    again = live.view(at=at)
    assert shown(again) == shown(before) and live.rows.files_read == read  # all cached
    # the deduplicated listens too, also for another state (filtered in the queries)
    state = next(iter(before.listens_by_state))
    assert shown(live.view(at=at, state=state)) == shown(Live(lake).view(at=at, state=state))
    assert live.listens_built == 1
    open_minute = next(m for m in before.listens_per_minute if not m.final)
    late = dict(events["listen_events"][0], sessionId=2**50, itemInSession=1)
    late["ts"] = ms(open_minute.minute) + 1_000
    write_events(lake, {"listen_events": [late]}, 4, partition=2)
    after = live.view(at=at)
    assert live.rows.files_read == read + 1  # the late event's file, nothing else
    assert live.listens_built == 2  # a new file: built again
    counts = {m.minute: m.listens for m in after.listens_per_minute}
    assert counts[open_minute.minute] == open_minute.listens + 1


def test_a_replayed_batch_and_a_stray_file_change_nothing(
    at: datetime, lake: Lake, events: Events
) -> None:
    view = Live(lake).view(at=at)
    # the stream re-running batch 2 after a crash: the committer makes it a no-op
    part = [e for e in events["listen_events"] if e["ts"] >= ms(START + timedelta(hours=42))]
    assert write_events(lake, {"listen_events": part}, 2).already_committed
    # a file of an attempt that never committed sits in the table's data folder
    data = Path(lake.root) / "listen_events" / "data"
    committed = next(data.rglob("*.parquet"))
    stray = data / "batch-99" / committed.parent.name / "part-stray.parquet"
    stray.parent.mkdir(parents=True)
    shutil.copy(committed, stray)
    assert shown(Live(lake).view(at=at)) == shown(view)


def test_the_minutes_of_a_closed_hour_count_each_listen_once(
    at: datetime, built: Path, events: Events
) -> None:
    """Duplicated deliveries in the lake, counted once (tests/dashboard/test_live.py
    compares the same sums with the published marts)."""
    live = Live(Lake(built))
    hour = START + timedelta(hours=41)
    listens = once(events["listen_events"])
    in_hour = [e for e in listens if ms(hour) <= e["ts"] < ms(hour + timedelta(hours=1))]
    assert sum(live.listens_per_minute(hour, hour + timedelta(hours=1)).values()) == len(in_hour)


def test_no_listens_yet_gives_an_empty_view(tmp_path: Path) -> None:
    view = Live(Lake(tmp_path / "lake")).view(at=AT)
    assert view.clock is None and view.listens_per_minute == ()
    assert view.age_s("listen_events") is None
