"""The dashboard as a person sees it: a real server, Debian's Chromium, Playwright.

``musify dashboard`` serves the warehouse the pipeline built; the numbers on the page
must equal SQL over the facts, before and after choosing a state. A screenshot is kept
as a test artifact (test-artifacts/dashboard/, and the test's tmp folder).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from musify.broker.local import free_port
from musify.dashboard.app import ready_key
from musify.dashboard.queries import Filters
from musify.dashboard.server import settings_env, url, wait_ready
from musify.settings import Settings
from tests.conftest import REPO
from tests.dashboard.conftest import LAST_DAY, Facts, midnight

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ARTIFACTS = REPO / "test-artifacts" / "dashboard"


@pytest.fixture(scope="module")
def playwright_ready() -> None:
    pytest.importorskip("playwright.sync_api")
    if not (shutil.which("chromium") or Path("/usr/bin/chromium").exists()):
        pytest.skip("Chromium is not installed (apt-get install chromium)")


@pytest.fixture(scope="module")
def served(warehouse: Settings, playwright_ready: None) -> Iterator[str]:
    """``musify dashboard --port P`` over the test warehouse, as a user would start it."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MUSIFY_")}
    env.update(settings_env(warehouse))
    log = (warehouse.home / "dashboard-test.log").open("wb")
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
