"""The live section against the published marts, and on the page (headless).

Where a live number and a published one cover the same closed interval they agree
exactly: the live layer's listens per minute, summed over each published hour, are the
mart's streams of that hour, for every hour and for a state.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

from musify.lake import Lake
from musify.live.view import Live
from musify.settings import Settings
from musify.stream.status import status_path
from tests.dashboard.conftest import APP, START, Facts, metrics, text

pytestmark = [pytest.mark.slow]

HOURLY = (
    "select hour, sum(streams) from analytics.mart_hourly_activity"
    " where cast(? as varchar) is null or state_code = ? group by hour order by hour"
)


@pytest.mark.parametrize("state", [None, "busiest"])
def test_live_minutes_of_every_published_hour_equal_the_mart(
    warehouse: Settings, facts: Facts, state: str | None
) -> None:
    code = facts.busiest_state() if state else None
    published = {h.replace(tzinfo=UTC): int(n) for h, n in facts.rows(HOURLY, [code, code]) if n}
    assert len(published) >= 30
    live = Live(Lake.from_settings(warehouse))
    lo, hi = min(published), max(published) + timedelta(hours=1)
    per_minute = live.listens_per_minute(lo, hi, code)
    per_hour: dict[datetime, int] = {}
    for minute, n in per_minute.items():
        hour = minute.replace(minute=0)
        per_hour[hour] = per_hour.get(hour, 0) + n
    assert {h: n for h, n in per_hour.items() if n} == published


@pytest.fixture
def streamed(warehouse: Settings) -> Iterator[datetime]:
    """A stream status record naming the newest committed event (what `musify stream`
    writes): the page's live section finds the lake's clock through it, as it does
    while the stream works through history older than the live window."""
    newest = START + timedelta(days=2) - timedelta(minutes=3)
    path = status_path(warehouse)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"batch_id": 7, "newest_event": newest.isoformat(), "lag": 0}))
    yield newest
    path.unlink()


def live_marker(at: AppTest) -> dict[str, str]:
    marker = next(m.value for m in at.markdown if 'id="musify-live"' in m.value)
    return dict(
        (part.split("=")[0], part.split("=")[1].strip('"'))
        for part in marker.removesuffix("></span>").split()[2:]
    )


def test_the_live_section_shows_the_lake_and_follows_the_state_filter(
    warehouse: Settings, facts: Facts, streamed: datetime, musify_env: Any
) -> None:
    musify_env(warehouse)
    at = AppTest.from_file(str(APP), default_timeout=120)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    view = Live(Lake.from_settings(warehouse)).view(at=streamed)
    assert view.clock is not None
    shown = metrics(at)
    assert shown["Listeners now"] == f"{view.active_listeners:,}"
    assert shown["Quarantined, last hour"] == "0"
    marker = live_marker(at)
    assert marker["data-clock"] == view.clock.isoformat()
    assert int(marker["data-listens"]) == sum(m.listens for m in view.listens_per_minute) > 0
    assert int(marker["data-read-ms"]) > 0  # how long the lake's read took
    body = text(at)
    assert "Trending songs" in body and view.trending_songs[0].name in body
    assert "data " in body and " old" in body  # every tile says how old its data is
    assert "Streams today" in shown  # the published part of the page is still there

    state = facts.busiest_state()
    at.selectbox(key="state").select(state).run()
    assert not at.exception
    narrowed = Live(Lake.from_settings(warehouse)).view(at=streamed, state=state)
    assert metrics(at)["Listeners now"] == f"{narrowed.active_listeners:,}"
    assert narrowed.active_listeners < view.active_listeners


def test_without_a_lake_the_live_section_says_nothing_streamed_yet(
    tmp_path: Any, musify_env: Any
) -> None:
    settings = Settings(home=tmp_path / "home")
    musify_env(settings)
    at = AppTest.from_file(str(APP), default_timeout=120)
    at.run()
    assert not at.exception
    assert "Nothing streamed yet" in text(at)
    assert live_marker(at)["data-clock"] == ""
    assert not (tmp_path / "home" / "lake").exists()  # the page created nothing
