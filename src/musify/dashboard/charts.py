"""Plotly figures and HTML tables of the tiles: pure functions from query results.

Colours follow the original Streamify report: teal shades on a dark page.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

import pandas as pd
import plotly.graph_objects as go
from plotly.colors import sample_colorscale

from musify.dashboard.usmap import us_states
from musify.live.view import MinuteListens, StatusChange, Trend

TEAL = "#00838F"
LIGHT = "#80CBC4"
PALE = "#B2DFDB"
GREY = "#3A3F44"
MAP_SCALE = [[0.0, "#D7EFEF"], [1.0, "#00707A"]]
FONT = "#E6E6E6"


#: No Plotly template: the default ones are copied into every figure and sent to the
#: browser (6 KB and ~10 ms of Python each); the few settings needed are set below.
_BLANK = go.layout.Template()
_AXIS = {"gridcolor": "#444", "linecolor": "#555", "zerolinecolor": "#555", "automargin": True}


def _new(*traces: Any) -> go.Figure:
    return go.Figure(data=list(traces), layout={"template": _BLANK})


def _style(fig: go.Figure, height: int, *, legend: bool = True) -> go.Figure:
    fig.update_layout(
        height=height,
        margin={"l": 8, "r": 8, "t": 28, "b": 8},
        paper_bgcolor="rgba(0,0,0,0)",
        plot_bgcolor="rgba(0,0,0,0)",
        font={"color": FONT},
        hoverlabel={"bgcolor": "#263238", "font": {"color": FONT}},
        showlegend=legend,
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0},
        xaxis=_AXIS,
        yaxis=_AXIS,
    )
    return fig


def state_map(
    by_state: pd.DataFrame, selected: str | None = None, *, unit: str = "streams", height: int = 360
) -> go.Figure:
    """User activity per state: states filled by ``streams`` (named ``unit``), hover with
    active users where the frame has them."""
    values = dict(zip(by_state["state_code"], by_state["streams"], strict=True))
    users = (
        dict(zip(by_state["state_code"], by_state["active_users"], strict=True))
        if "active_users" in by_state
        else None
    )
    hi = max(values.values(), default=0)
    lo = min(values.values(), default=0)
    fig = _new()
    for st in us_states():
        xs, ys = st.xy()
        n = values.get(st.code)
        if n is None:
            fill = GREY
            text = f"<b>{html.escape(st.name)}</b><br>no {unit}"
        else:
            pos = 0.0 if hi == lo else (n - lo) / (hi - lo)
            fill = sample_colorscale(MAP_SCALE, [pos])[0]
            text = f"<b>{html.escape(st.name)}</b><br>{n:,} {unit}"
            if users is not None:
                text += f"<br>{users.get(st.code, 0):,} active users"
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=ys,
                mode="lines",
                fill="toself",
                fillcolor=fill,
                line={"color": "#FFFFFF" if st.code == selected else "#1E1E1E", "width": 0.6},
                hoveron="fills",
                hoverinfo="text",
                text=text,
                name=st.code,
                showlegend=False,
            )
        )
    if values:
        # an invisible point carries the colour bar
        fig.add_trace(
            go.Scatter(
                x=[None],
                y=[None],
                mode="markers",
                showlegend=False,
                hoverinfo="skip",
                marker={
                    "colorscale": MAP_SCALE,
                    "cmin": lo,
                    "cmax": hi if hi > lo else lo + 1,
                    "color": [lo],
                    "showscale": True,
                    "colorbar": {
                        "orientation": "h",
                        "thickness": 10,
                        "len": 0.45,
                        "x": 0.0,
                        "xanchor": "left",
                        "y": -0.02,
                        "title": {"text": unit, "side": "right"},
                    },
                },
            )
        )
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False, scaleanchor="x", scaleratio=1)
    return _style(fig, height, legend=False)


def gender_donut(gender: pd.DataFrame) -> go.Figure:
    labels = [g if isinstance(g, str) else "unknown" for g in gender["gender"]]
    colours = {"M": TEAL, "F": LIGHT}
    fig = _new(
        go.Pie(
            labels=labels,
            values=gender["users"],
            hole=0.45,
            sort=False,
            marker={"colors": [colours.get(lbl, GREY) for lbl in labels]},
            textinfo="percent",
            hovertemplate="%{label}: %{value:,} users<extra></extra>",
        )
    )
    return _style(fig, 300)


def level_by_gender_bars(levels: pd.DataFrame) -> go.Figure:
    fig = _new()
    frame = levels.assign(gender=levels["gender"].fillna("unknown"))
    for level, colour in (("free", TEAL), ("paid", LIGHT)):
        part = frame[frame["level"] == level]
        fig.add_trace(
            go.Bar(
                x=part["gender"],
                y=part["users"],
                name=level,
                marker_color=colour,
                hovertemplate="%{x} " + level + ": %{y:,} users<extra></extra>",
            )
        )
    fig.update_layout(barmode="stack")
    return _style(fig, 300)


def streams_by_hour_lines(by_hour: pd.DataFrame, day: date) -> go.Figure:
    hours = [f"{h % 12 or 12} {'AM' if h < 12 else 'PM'}" for h in by_hour["hour_of_day"]]
    fig = _new()
    fig.add_trace(
        go.Scatter(
            x=hours,
            y=by_hour["today"],
            name=f"streams {day:%b %d}",
            line={"color": TEAL, "width": 3, "shape": "spline"},
            hovertemplate="%{x}: %{y:,}<extra></extra>",
        )
    )
    fig.add_trace(
        go.Scatter(
            x=hours,
            y=by_hour["previous"],
            name="previous day",
            line={"color": LIGHT, "width": 2, "shape": "spline"},
            hovertemplate="%{x}: %{y:,}<extra></extra>",
        )
    )
    fig.update_xaxes(tickmode="array", tickvals=hours[::2], tickangle=0)
    fig.update_yaxes(rangemode="tozero", tickformat=",d")
    return _style(fig, 300)


def _count_axis(fig: go.Figure, top: float) -> None:
    """The (left) y axis in whole numbers (no 0.2 users), starting at zero."""
    axis: dict[str, Any] = {"rangemode": "tozero", "tickformat": ",d"}
    if top < 5:
        axis.update(dtick=1, range=[0, max(top, 1) * 1.1])
    fig.update_layout(yaxis=axis)


def status_changes_chart(changes: pd.DataFrame) -> go.Figure:
    fig = _new()
    cols = ("upgrades", "downgrades", "cancellations")
    for col, colour, label in zip(
        cols, (TEAL, PALE, "#E57373"), ("free → paid", "paid → free", "cancellations"), strict=True
    ):
        fig.add_trace(
            go.Bar(
                x=changes["period"],
                y=changes[col],
                name=label,
                marker_color=colour,
                hovertemplate="%{x}: %{y:,}<extra>" + label + "</extra>",
            )
        )
    fig.update_layout(barmode="group")
    top = float(changes[list(cols)].to_numpy().max()) if len(changes) else 0.0
    _count_axis(fig, top)
    if top == 0:
        fig.add_annotation(
            text="no upgrades, downgrades or cancellations in this range",
            showarrow=False,
            xref="paper",
            yref="paper",
            x=0.5,
            y=0.5,
            font={"color": FONT},
        )
    return _style(fig, 280)


def histogram_bars(hist: pd.DataFrame, column: str, label: str, cap: int) -> go.Figure:
    """Bars of sessions per bucket on a numeric axis; buckets >= cap are merged into one
    drawn at ``cap`` and labelled 'cap+'."""
    clipped = hist.assign(**{column: hist[column].clip(upper=cap)})
    merged = clipped.groupby(column)["sessions"].sum().reset_index()
    names = [f"{v}+" if v >= cap else str(v) for v in merged[column]]
    fig = _new(
        go.Bar(
            x=merged[column],
            y=merged["sessions"],
            customdata=names,
            marker_color=TEAL,
            hovertemplate=label + " %{customdata}: %{y:,} sessions<extra></extra>",
        )
    )
    step = max(1, cap // 6)
    ticks = list(range(0, cap, step))
    fig.update_xaxes(
        title_text=label,
        tickvals=[*ticks, cap],
        ticktext=[*map(str, ticks), f"{cap}+"],
        range=[-1, cap + 1],
    )
    _count_axis(fig, float(merged["sessions"].max()) if len(merged) else 0.0)
    fig.update_yaxes(title_text="sessions")
    return _style(fig, 260, legend=False)


def active_users_chart(hourly: pd.DataFrame, daily: pd.DataFrame) -> go.Figure:
    """Hourly active users (line, left axis) over daily active users (bars, right axis:
    a day counts far more distinct users than any of its hours). Hours not published
    yet (NaN) are shaded and labelled pending, not drawn as zero."""
    day_ms = 86_400_000
    fig = _new(
        go.Bar(
            x=daily["date"] + pd.Timedelta(hours=12),
            y=daily["active_users"],
            width=[0.92 * day_ms] * len(daily),
            name="daily active users",
            marker_color="rgba(128,203,196,0.30)",
            yaxis="y2",
            hovertemplate="%{x|%b %d}: %{y:,}<extra>daily</extra>",
        ),
        go.Scatter(
            x=hourly["hour"],
            y=hourly["active_users"],
            name="hourly active users",
            line={"color": TEAL, "width": 2},
            hovertemplate="%{x|%b %d %H:00}: %{y:,}<extra>hourly</extra>",
        ),
    )
    fig.update_layout(
        yaxis2={
            **_AXIS,
            "overlaying": "y",
            "side": "right",
            "showgrid": False,
            "rangemode": "tozero",
            "tickformat": ",d",
            "nticks": 5,
            "title": {"text": "per day"},
        }
    )
    top = hourly["active_users"].max() if len(hourly) else 0.0
    _count_axis(fig, 0.0 if pd.isna(top) else float(top))
    fig.update_layout(yaxis_title_text="per hour")
    pending = hourly.loc[hourly["active_users"].isna(), "hour"]
    if len(pending):
        _pending(fig, pending.min(), pending.max() + pd.Timedelta(hours=1))
    return _style(fig, 280)


def _pending(fig: go.Figure, start: Any, end: Any) -> None:
    """Shade [start, end) as not published yet."""
    fig.add_vrect(x0=start, x1=end, fillcolor="#9E9E9E", opacity=0.15, line_width=0)
    fig.add_annotation(
        x=start,
        xanchor="left",
        y=1,
        yref="paper",
        yanchor="top",
        text="pending",
        showarrow=False,
        font={"color": FONT, "size": 11},
    )


def ranking_html(
    df: pd.DataFrame, label: str, value: str = "streams", detail: str | None = None
) -> str:
    """A ranked table with a bar behind each count, like the original's chart tables."""
    top = max(int(df[value].max()), 1) if len(df) else 1
    rows = []
    for i, row in enumerate(df.itertuples(index=False), start=1):
        name = html.escape(str(getattr(row, label)))
        if detail is not None:
            name += f' <span class="musify-detail">{html.escape(str(getattr(row, detail)))}</span>'
        n = int(getattr(row, value))
        rows.append(
            f'<tr><td class="musify-rank">{i}.</td><td>{name}</td>'
            f'<td class="musify-count" style="background: linear-gradient(to left, '
            f'{TEAL} {100 * n / top:.0f}%, transparent {100 * n / top:.0f}%)">{n:,}</td></tr>'
        )
    if not rows:
        rows.append('<tr><td colspan="3">no streams in this range</td></tr>')
    return (
        f'<table class="musify-ranking" data-ranking="{html.escape(label)}">'
        f"<thead><tr><th></th><th>{html.escape(label.title())}</th>"
        f"<th>{html.escape(value.title())}</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


# --- the live section -----------------------------------------------------------------

RED = "#E57373"


def live_minutes_chart(minutes: Sequence[MinuteListens]) -> go.Figure:
    """Listens per minute (bars; provisional minutes lighter) against the same minutes a
    day earlier (line)."""
    x = [m.minute.replace(tzinfo=None) for m in minutes]
    fig = _new(
        go.Bar(
            x=x,
            y=[m.listens for m in minutes],
            name="listens per minute",
            marker_color=[TEAL if m.final else LIGHT for m in minutes],
            customdata=["" if m.final else " (still open)" for m in minutes],
            hovertemplate="%{x|%H:%M}: %{y:,}%{customdata}<extra></extra>",
        ),
        go.Scatter(
            x=x,
            y=[m.day_before for m in minutes],
            name="a day earlier",
            mode="lines",
            line={"color": PALE, "width": 2, "dash": "dot"},
            hovertemplate="%{x|%H:%M} a day earlier: %{y:,}<extra></extra>",
        ),
    )
    fig.update_xaxes(tickformat="%H:%M")
    top = max((max(m.listens, m.day_before) for m in minutes), default=0)
    _count_axis(fig, float(top))
    return _style(fig, 260)


def live_state_frame(by_state: dict[str, int]) -> pd.DataFrame:
    return pd.DataFrame(
        {"state_code": list(by_state), "streams": list(by_state.values())},
        columns=["state_code", "streams"],
    )


def quarantine_bars(per_minute: Sequence[tuple[datetime, int]], end: datetime) -> go.Figure:
    """Quarantined messages per minute of ingestion over the hour up to ``end``."""
    start = end.replace(second=0, microsecond=0) - pd.Timedelta(minutes=59)
    fig = _new(
        go.Bar(
            x=[m.replace(tzinfo=None) for m, _ in per_minute],
            y=[n for _, n in per_minute],
            marker_color=RED,
            hovertemplate="%{x|%H:%M}: %{y:,} quarantined<extra></extra>",
        )
    )
    fig.update_xaxes(
        tickformat="%H:%M",
        range=[start.replace(tzinfo=None), end.replace(tzinfo=None)],
    )
    _count_axis(fig, float(max((n for _, n in per_minute), default=0)))
    return _style(fig, 160, legend=False)


def _change_cell(trend: Trend) -> str:
    change = trend.change
    if change is None:
        return '<span class="musify-new">new</span>'
    if change == 0:
        return '<span class="musify-same">=</span>'
    arrow, css = ("▲", "musify-up") if change > 0 else ("▼", "musify-down")
    return f'<span class="{css}">{arrow}{abs(change)}</span>'


def trend_html(trends: Sequence[Trend], label: str) -> str:
    """Trending songs or artists: rank, name, listens and the change of rank against the
    previous hour (new: not ranked then)."""
    top = max((t.listens for t in trends), default=1)
    rows = []
    for t in trends:
        name = html.escape(t.name)
        if t.artist is not None:
            name += f' <span class="musify-detail">{html.escape(t.artist)}</span>'
        rows.append(
            f'<tr><td class="musify-rank">{t.rank}.</td><td>{name}</td>'
            f'<td class="musify-change">{_change_cell(t)}</td>'
            f'<td class="musify-count" style="background: linear-gradient(to left, '
            f'{TEAL} {100 * t.listens / top:.0f}%, transparent {100 * t.listens / top:.0f}%)">'
            f"{t.listens:,}</td></tr>"
        )
    if not rows:
        rows.append('<tr><td colspan="4">no listens in the last 15 minutes</td></tr>')
    return (
        f'<table class="musify-ranking" data-ranking="live-{html.escape(label)}">'
        f"<thead><tr><th></th><th>{html.escape(label.title())}</th><th>vs hour</th>"
        f"<th>Listens</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


CHANGE_LABEL = {"upgrade": "free → paid", "downgrade": "paid → free", "cancel": "cancelled"}


def status_changes_html(changes: Sequence[StatusChange]) -> str:
    """The latest upgrades, downgrades and cancellations, newest first."""
    rows = [
        f"<tr><td>{c.ts:%H:%M:%S}</td><td>{html.escape(CHANGE_LABEL.get(c.kind, c.kind))}</td>"
        f"<td>{html.escape(c.name or '')}"
        f' <span class="musify-detail">{html.escape(c.state or "")}</span></td></tr>'
        for c in changes
    ]
    if not rows:
        rows.append('<tr><td colspan="3">none in the last hour</td></tr>')
    return (
        '<table class="musify-ranking" data-ranking="live-status-changes">'
        "<thead><tr><th>UTC</th><th>Change</th><th>User</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )
