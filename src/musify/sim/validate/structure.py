"""The structural (exact) checks' shared pieces: their names, sorted page views, rows.

``STRUCTURE_CHECKS`` names every structural check (``read`` counts per-line violations
under these names); ``_PV`` holds the page views sorted by session (built by
``checker._Checker._sorted_pv``); ``_example`` and ``_violations`` turn violations into
``report.Row``s. The checks themselves are in ``checker`` (file order, states, items,
time, redirects, song timing), ``topics`` and ``users``; the package docstring lists
every part of ``musify.sim.validate``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from musify.sim.validate.constants import I64, MAX_EXAMPLES, Bool
from musify.sim.validate.read import _Issues
from musify.sim.validate.report import Row

STRUCTURE_CHECKS = (
    "schema: page_view_events",
    "schema: listen_events",
    "schema: auth_events",
    "schema: status_change_events",
    "zip is a string",
    "user details iff shown",
    "auth events have no auth and no page",
    "song fields only on NextSong",
    "page views are config states",
    "steps are config transitions",
    "sessions start in a new-session state",
    "itemInSession unique and contiguous",
    "time order within sessions",
    "ts non-decreasing in each file",
    "ts whole seconds",
    "no event before registration",
    "redirects 1 s after the previous event",
    "NextSong at the end of the previous song",
    "listen_events = NextSong page views",
    "status_change_events = status-change pages",
    "auth_events = page after Login",
    "one user and device per session",
    "one name, registration and device per user",
    "next session starts where the last ended",
    "session gap at least session-gap",
    "nothing after churn",
)


@dataclass
class _PV:
    """Page views sorted by (session, itemInSession), with per-row helpers."""

    ts: I64
    sid: I64
    item: I64
    state: I64
    uid: I64
    person: I64
    dev: I64
    song: I64
    dfloor: I64
    line: I64
    key: I64
    #: row starts a new session
    first: Bool
    #: row directly follows the previous row of its session (item + 1)
    step: Bool
    seg: I64
    first_idx: I64
    last_idx: I64


def _example(pv: _PV, rows: npt.NDArray[Any], what: Callable[[int], str]) -> list[str]:
    out = []
    for j in rows[:MAX_EXAMPLES].tolist():
        out.append(
            f"session {int(pv.sid[j])} item {int(pv.item[j])} "
            f"(page_view_events line {int(pv.line[j])}): {what(j)}"
        )
    return out


def _violations(
    rows: list[Row],
    name: str,
    bad: Bool | npt.NDArray[Any] | int,
    checked: int,
    detail: str = "",
    issues: _Issues | None = None,
) -> None:
    n = int(np.count_nonzero(bad)) if isinstance(bad, np.ndarray) else int(bad)
    if issues is not None:
        n += issues.n
        detail = "; ".join(x for x in (detail, issues.detail) if x)
    rows.append(
        Row(
            name,
            "structure",
            "violations",
            n == 0,
            float(n),
            0.0,
            None,
            checked,
            detail if n else "",
        )
    )
