"""The dashboard as a person sees it: a real server, Debian's Chromium, Playwright.

``musify dashboard`` serves the warehouse the pipeline built; the numbers on the page
must equal SQL over the facts, before and after choosing a state. A screenshot is kept
as a test artifact (test-artifacts/dashboard/, and the test's tmp folder).

The live section is watched while events stream in: the generator's events are
committed to the lake as the wall clock reaches them, a micro-batch every 2 s, as the
stream job would, and the page must show them without being reloaded.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from musify.broker.local import free_port
from musify.dashboard.app import ready_key
from musify.dashboard.queries import Filters
from musify.dashboard.server import settings_env, url, wait_ready
from musify.events import TOPIC_NAMES
from musify.lake import Lake
from musify.lake.writer import write_events
from musify.settings import Settings
from musify.sim import GenerateOptions, MemorySink, plan_run, run
from musify.sim.config import BUILTIN_CONFIG
from tests.conftest import REPO
from tests.dashboard.conftest import LAST_DAY, Facts, midnight

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ARTIFACTS = REPO / "test-artifacts" / "dashboard"


@pytest.fixture(scope="module")
def playwright_ready() -> None:
    pytest.importorskip("playwright.sync_api")
    if not (shutil.which("chromium") or Path("/usr/bin/chromium").exists()):
        pytest.skip("Chromium is not installed (apt-get install chromium)")


@contextmanager
def dashboard(settings: Settings) -> Iterator[str]:
    """``musify dashboard --port P`` over ``settings``, as a user would start it."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MUSIFY_")}
    env.update(settings_env(settings))
    settings.home.mkdir(parents=True, exist_ok=True)
    log = (settings.home / "dashboard-test.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "musify", "dashboard", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_ready("127.0.0.1", port, proc, timeout_s=120)
        yield url("127.0.0.1", port)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C, as a user stops it
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        log.close()


@pytest.fixture(scope="module")
def served(warehouse: Settings, playwright_ready: None) -> Iterator[str]:
    """The dashboard over the test warehouse."""
    with dashboard(warehouse) as address:
        yield address


def expected(facts: Facts, state: str | None) -> dict[str, str]:
    day, nxt = midnight(LAST_DAY), midnight(LAST_DAY + timedelta(days=1))
    base = " join analytics.dim_location l using (location_key) where f.event_hour < ?"
    in_state = " and (cast(? as varchar) is null or l.state_code = ?)"
    streams = facts.one(
        "select count(*) from analytics.fact_streams f"
        + base
        + " and f.event_hour >= ?"
        + in_state,
        [nxt, day, state, state],
    )
    users = "select count(distinct f.user_id) from analytics.fact_page_views f" + base
    total = facts.one(users + in_state, [nxt, state, state])
    active = facts.one(users + " and f.event_hour >= ?" + in_state, [nxt, day, state, state])
    return {
        "Streams today": f"{streams:,}",
        "Total users": f"{total:,}",
        "Active users": f"{active:,}",
    }


def top_song(facts: Facts, state: str | None) -> tuple[str, str, int]:
    row = facts.rows(
        "select s.title, s.artist, count(*) from analytics.fact_streams f"
        " join analytics.dim_songs s using (song_key)"
        " join analytics.dim_location l using (location_key)"
        " where f.event_hour >= ? and (cast(? as varchar) is null or l.state_code = ?)"
        " group by s.song_key, s.title, s.artist"
        " order by count(*) desc, s.title, s.artist, s.song_key limit 1",
        [midnight(LAST_DAY), state, state],
    )[0]
    return str(row[0]), str(row[1]), int(row[2])


def test_page_shows_the_warehouse_and_follows_the_state_filter(
    served: str, facts: Facts, tmp_path: Path
) -> None:
    from musify.dashboard import browser

    state = facts.busiest_state()
    state_name = facts.one(
        "select max(state_name) from analytics.dim_location where state_code = ?", [state]
    )
    with browser.chromium() as chromium:
        page = chromium.new_page(viewport=browser.VIEWPORT)
        browser.load(page, served)
        assert page.locator('[data-testid="stException"]').count() == 0
        assert browser.metrics(page) == expected(facts, None)
        # the script's time on the server, which the benchmarks split a load with
        spent = browser.server_ms(page)
        assert 0 < spent["page"] < 120_000 and 0 <= spent["live_read"] <= spent["page"]
        title, artist, n = top_song(facts, None)
        first = browser.ranking(page, "song")[0]
        assert first == ["1.", f"{title} {artist}", f"{n:,}"]
        assert len(browser.ranking(page, "artist")) == 10
        assert page.locator('[data-testid="stPlotlyChart"] .main-svg').count() >= 8
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(tmp_path / "dashboard.png"))
        shutil.copy(tmp_path / "dashboard.png", ARTIFACTS / "dashboard-all-states.png")

        browser.choose_state(page, f"{state} · {state_name}")
        browser.wait_settled(page, ready_key(Filters(LAST_DAY, LAST_DAY, state)))
        shown = browser.metrics(page)
        assert shown == expected(facts, state)
        assert shown["Active users"] != expected(facts, None)["Active users"]
        title, artist, n = top_song(facts, state)
        assert browser.ranking(page, "song")[0][2] == f"{n:,}"
        assert page.locator('[data-testid="stException"]').count() == 0
        page.screenshot(path=str(tmp_path / "dashboard-state.png"))
        shutil.copy(tmp_path / "dashboard-state.png", ARTIFACTS / "dashboard-one-state.png")
    assert (ARTIFACTS / "dashboard-all-states.png").stat().st_size > 10_000


#: A busy simulated evening (US afternoon), replayed as if it were happening now.
LIVE_BASE = datetime(2024, 3, 19, 20, 0, tzinfo=UTC)
LIVE_USERS = 5000


class LiveFeed:
    """The generator's events committed to the lake as the wall clock reaches them.

    Events of a simulated day up to ``LIVE_BASE`` + 5 min are shifted so that
    ``LIVE_BASE`` is the minute the feed starts; what is due is committed at once, the
    rest as a micro-batch every ``every_s`` (one lake batch id each, offsets running on).
    """

    def __init__(self, lake: Lake, cache: Path, every_s: float = 2.0) -> None:
        self.lake = lake
        self.every_s = every_s
        plan = plan_run(
            GenerateOptions(
                config=BUILTIN_CONFIG,
                n_users=LIVE_USERS,
                start=LIVE_BASE - timedelta(days=1),
                end=LIVE_BASE + timedelta(minutes=5),
                seed=5,
                workers=1,
                cache_dir=cache,
            )
        )
        sink = MemorySink()
        run(plan, sink)
        shift = datetime.now(UTC).replace(second=0, microsecond=0) - LIVE_BASE
        shift_ms = int(shift.total_seconds() * 1000)
        self.events: list[tuple[int, str, dict[str, Any]]] = []
        for topic in TOPIC_NAMES:
            for line in sink.lines[topic]:
                e = orjson.loads(line)
                e["ts"] += shift_ms
                self.events.append((e["ts"], topic, e))
        self.events.sort(key=lambda x: x[0])
        self.next = 0
        self.batch_id = 0
        self.offsets = dict.fromkeys(TOPIC_NAMES, 0)
        self.commits: list[tuple[float, int]] = []  # (wall time, listens committed)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.error: BaseException | None = None

    def commit_due(self) -> int:
        now_ms = int(time.time() * 1000)
        due: dict[str, list[dict[str, Any]]] = {}
        while self.next < len(self.events) and self.events[self.next][0] <= now_ms:
            _, topic, e = self.events[self.next]
            due.setdefault(topic, []).append(e)
            self.next += 1
        if not due:
            return 0
        write_events(self.lake, due, self.batch_id, first_offset=dict(self.offsets))
        self.batch_id += 1
        for topic, evs in due.items():
            self.offsets[topic] += len(evs)
        listens = len(due.get("listen_events", []))
        self.commits.append((time.time(), listens))
        return listens

    def _run(self) -> None:
        try:
            while not self._stop.wait(self.every_s):
                self.commit_due()
        except BaseException as exc:  # surfaced by the test
            self.error = exc

    def __enter__(self) -> LiveFeed:
        self.commit_due()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)


def test_the_live_section_moves_while_events_stream_in(
    playwright_ready: None, musify_cache: Path, tmp_path: Path
) -> None:
    from musify.dashboard import browser

    settings = Settings(home=tmp_path / "home", live_refresh_seconds=2.0)
    lake = Lake(Path(settings.lake_root))
    feed = LiveFeed(lake, musify_cache)
    with feed, dashboard(settings) as address, browser.chromium() as chromium:
        page = chromium.new_page(viewport=browser.VIEWPORT)
        browser.load(page, address)
        page.wait_for_function(
            "() => { const m = document.querySelector('#musify-live');"
            " return m && m.dataset.clock; }",
            timeout=60_000,
        )
        first = browser.live_marker(page)
        assert int(first["listens"]) > 0
        ages = browser.age_labels(page)
        # every tile fed by listens (listeners, minutes, map, songs, artists) says how
        # old its data is, in seconds: the feed commits every 2 s
        fresh = [int(m[1]) for a in ages if (m := re.fullmatch(r"data (\d+) s old", a))]
        assert len(fresh) >= 5 and max(fresh) < 60, ages

        # Nothing is reloaded: the section redraws itself as the feed commits.
        seen = [first]
        deadline = time.monotonic() + 90
        while len(seen) < 3 and time.monotonic() < deadline:
            page.wait_for_timeout(500)
            now = browser.live_marker(page)
            if now and now["snapshot"] != seen[-1]["snapshot"]:
                seen.append(now)
        assert feed.error is None, feed.error
        assert len(seen) == 3, f"the live section did not move: {seen}"
        clocks = [datetime.fromisoformat(m["clock"]) for m in seen]
        assert clocks == sorted(clocks) and clocks[-1] > clocks[0]
        # the page's own clock is the newest listen the lake holds at that snapshot
        assert abs((clocks[-1] - datetime.now(UTC)).total_seconds()) < 120
        assert page.locator('[data-testid="stException"]').count() == 0
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(tmp_path / "live.png"))
        shutil.copy(tmp_path / "live.png", ARTIFACTS / "dashboard-live.png")
