"""The page's live section: the stream's newest committed events, every few seconds.

A Streamlit fragment that reruns itself every ``MUSIFY_LIVE_REFRESH_SECONDS`` (5): only
the section is redrawn (the rest of the page, its filters and its scroll position stay),
and its charts keep their keys, so they update in place. The numbers come from
``musify.live`` (queries over the lake's committed rows); the section follows the page's
state filter. The pipeline's lag comes from the stream's status record.
"""

from __future__ import annotations

import html
import time
from pathlib import Path
from typing import Any

import streamlit as st

from musify.dashboard import charts
from musify.lake.layout import CATALOG_FILE, QUARANTINE, Lake
from musify.live.view import Live, LiveView
from musify.settings import Settings
from musify.stream.status import StreamStatus, stream_status

#: Plotly charts the live section draws once the stream has committed listens.
LIVE_CHARTS = 3


@st.cache_resource(show_spinner=False)
def _live(key: str, _lake: Lake, lateness_s: float) -> Live:
    # one per lake and server process: the files it has read are shared by every session
    return Live(_lake, allowed_lateness_s=lateness_s)


def _lake_exists(settings: Settings) -> bool:
    """A local lake exists once the stream made its catalog (the page never creates one)."""
    if "://" in settings.lake_root or settings.iceberg_catalog:
        return True
    return (Path(settings.lake_root) / CATALOG_FILE).exists()


def age_label(seconds: float | None) -> str:
    if seconds is None:
        return "no data yet"
    if seconds < 120:
        return f"data {seconds:.0f} s old"
    if seconds < 7200:
        return f"data {seconds / 60:.0f} min old"
    if seconds < 172800:
        return f"data {seconds / 3600:.1f} h old"
    return f"data {seconds / 86400:.1f} days old"


def read_view(settings: Settings, state: str | None) -> tuple[LiveView | None, StreamStatus]:
    """The live numbers now, or (while the stream works through older history) at the
    newest event the stream has committed; None without a lake."""
    status = stream_status(settings)
    if not _lake_exists(settings):
        return None, status
    lake = Lake.from_settings(settings)
    live = _live(f"{lake.root}|{lake.catalog}", lake, settings.live_allowed_lateness_seconds)
    last = status.last
    view = live.view(state=state, floor=None if last is None else last.watermark)
    if view.clock is None and last is not None and last.newest_committed is not None:
        view = live.view(state=state, at=last.newest_committed)
    return view, status


def _age(col: Any, seconds: float | None) -> None:
    col.markdown(
        f'<div class="musify-age">{html.escape(age_label(seconds))}</div>',
        unsafe_allow_html=True,
    )


def _lag_text(view: LiveView, status: StreamStatus) -> tuple[str, str]:
    """The pipeline's lag: newest committed event to now, and the stream's own figures."""
    bits = ["stream running" if status.running else "stream not running"]
    if status.last is not None and status.last.lag is not None:
        bits.append(f"{status.last.lag:,} messages behind")
    if status.age_s is not None:
        bits.append(f"last micro-batch {status.age_s:.0f} s ago")
    age = view.age_s("listen_events")
    value = "—" if age is None else age_label(age).removeprefix("data ").removesuffix(" old")
    return value, " · ".join(bits)


def render(view: LiveView | None, status: StreamStatus, refresh_s: float, read_ms: int = 0) -> None:
    st.subheader("Live")
    if view is None or view.clock is None:
        # Not an st.info: an alert box means "the page has settled" to the browser helpers.
        st.markdown(
            '<div class="musify-live-empty"><b>Nothing streamed yet.</b> The live section '
            "shows the stream's newest committed events as soon as <code>musify stream</code> "
            "(or <code>musify up</code>) commits its first micro-batch; it looks again every "
            f"{refresh_s:g} s.</div>",
            unsafe_allow_html=True,
        )
        _marker(view, read_ms)
        return
    lag_value, lag_help = _lag_text(view, status)
    rate = view.auth_failure_rate
    quarantined = sum(n for _, n in view.quarantined_per_minute)
    listen_age = view.age_s("listen_events")
    m1, m2, m3, m4 = st.columns(4)
    m1.metric(
        "Listeners now",
        f"{view.active_listeners:,}",
        help="Distinct users who played a song in the 5 minutes up to the newest event",
    )
    _age(m1, listen_age)
    m2.metric(
        "Auth failure rate",
        "—" if rate is None else f"{rate:.1%}",
        help=f"Failed logins of {view.auth_attempts:,} attempts in the last 15 minutes",
    )
    _age(m2, view.age_s("auth_events"))
    m3.metric("Pipeline lag", lag_value, help="Now minus the newest committed event. " + lag_help)
    m3.markdown(f'<div class="musify-age">{html.escape(lag_help)}</div>', unsafe_allow_html=True)
    m4.metric(
        "Quarantined, last hour",
        f"{quarantined:,}",
        help="Malformed messages the stream set aside (by time of ingestion)",
    )
    _age(m4, view.age_s(QUARANTINE))

    left, right = st.columns([1.6, 1])
    left.markdown("**Listens per minute**, last 60 minutes against a day earlier")
    charts_ = {"displayModeBar": False}
    left.plotly_chart(
        charts.live_minutes_chart(view.listens_per_minute),
        theme=None,
        key="live-minutes",
        config=charts_,
    )
    _age(left, listen_age)
    right.markdown("**Listens per state**, last 15 minutes")
    right.plotly_chart(
        charts.state_map(
            charts.live_state_frame(view.listens_by_state), view.state, unit="listens", height=260
        ),
        theme=None,
        key="live-map",
        config=charts_,
    )
    _age(right, listen_age)

    a, b, c = st.columns([1, 1, 1.1])
    a.markdown("**Trending songs**, last 15 minutes")
    a.markdown(charts.trend_html(view.trending_songs, "song"), unsafe_allow_html=True)
    _age(a, listen_age)
    b.markdown("**Trending artists**, last 15 minutes")
    b.markdown(charts.trend_html(view.trending_artists, "artist"), unsafe_allow_html=True)
    _age(b, listen_age)
    c.markdown("**Latest upgrades, downgrades, cancellations**")
    c.markdown(charts.status_changes_html(view.status_changes), unsafe_allow_html=True)
    _age(c, view.age_s("status_change_events"))
    c.markdown("**Quarantined messages per minute**")
    c.plotly_chart(
        charts.quarantine_bars(view.quarantined_per_minute, view.read_at),
        theme=None,
        key="live-quarantine",
        config=charts_,
    )
    _marker(view, read_ms)


def _marker(view: LiveView | None, read_ms: int) -> None:
    # Browser tests and the benchmark read the section's clock, totals and the listen
    # table's snapshot it was drawn from here, and how long reading the lake took.
    clock = "" if view is None or view.clock is None else view.clock.isoformat()
    listens = 0 if view is None else sum(m.listens for m in view.listens_per_minute)
    snapshot = None if view is None else view.snapshots.get("listen_events")
    st.markdown(
        f'<span id="musify-live" data-clock="{html.escape(clock)}"'
        f' data-listens="{listens}" data-snapshot="{snapshot or ""}"'
        f' data-read-ms="{read_ms}"></span>',
        unsafe_allow_html=True,
    )


def section(settings: Settings) -> None:
    """The live section, redrawn every ``settings.live_refresh_seconds``."""
    every = settings.live_refresh_seconds

    @st.fragment(run_every=every)
    def live() -> None:
        state = st.session_state.get("state") or None
        t0 = time.perf_counter()
        try:
            view, status = read_view(settings, state)
        except Exception as exc:  # the page stays up and says what failed
            st.subheader("Live")
            st.warning(f"The live section cannot read the lake: {exc}")
            return
        render(view, status, every, round((time.perf_counter() - t0) * 1000))

    live()
