"""Simulated time: parsing, the daily cycle, weekend and holiday damping.

All simulation times are whole seconds since the Unix epoch, in UTC, as eventsim's are
(its local times are treated as UTC, spec §5.8). Like eventsim there are no per-user
time zones: the daily cycle peaks at 15:00 UTC everywhere.

Fixed against eventsim: the holiday calendar is the full US federal calendar with
observed days (the ``holidays`` package) instead of whatever the JVM locale picked
(spec §9.12), and the weekend ramp is clamped to [0, weekend-damping].
"""

from __future__ import annotations

import math
import re
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache

import numpy as np
import numpy.typing as npt

DAY = 86400
YEAR = 365.25 * DAY
_PHASE = 10800  # the warp is zero at 03:00 and 15:00 UTC

_RELATIVE = re.compile(r"^now(?:\s*([+-])\s*(\d+(?:\.\d+)?)\s*([smhdw]))?$")
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": DAY, "w": 7 * DAY}


def parse_time(text: str, now: datetime | None = None) -> datetime:
    """Parse an ISO date-time (naive = UTC), or ``now``, ``now-2d``, ``now+1h``.

    Returns an aware UTC datetime truncated to whole seconds.
    """
    s = text.strip()
    m = _RELATIVE.match(s.lower())
    if m:
        base = now or datetime.now(UTC)
        if m.group(1):
            delta = timedelta(seconds=float(m.group(2)) * _UNITS[m.group(3)])
            base = base + delta if m.group(1) == "+" else base - delta
        return base.replace(microsecond=0)
    try:
        dt = datetime.fromisoformat(s.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"{text!r} is not an ISO date-time (e.g. 2024-03-18T17:00:00) or now[-N{{s,m,h,d,w}}]"
        ) from None
    dt = dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)
    return dt.replace(microsecond=0)


def parse_duration(text: str) -> timedelta:
    """'2d', '3h', '90m', '1w', '30s' → a timedelta."""
    m = _DURATION.match(text.strip().lower())
    if not m:
        raise ValueError(f"{text!r} is not a duration such as 2d, 3h, 90m or 30s")
    return timedelta(seconds=float(m.group(1)) * _UNITS[m.group(2)])


def to_epoch(dt: datetime) -> int:
    return int(dt.timestamp())


def from_epoch(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


@lru_cache(maxsize=64)
def _holidays_of(year: int) -> frozenset[date]:
    import holidays

    return frozenset(holidays.country_holidays("US", years=year).keys())


@lru_cache(maxsize=65536)
def is_day_off(day_number: int) -> bool:
    """Is this UTC day (days since the epoch) a Saturday, Sunday or US holiday?"""
    d = date(1970, 1, 1) + timedelta(days=day_number)
    return d.weekday() >= 5 or d in _holidays_of(d.year)


class Calendar:
    """The time model of one config: the daily warp and weekend/holiday damping."""

    def __init__(
        self, damping: float, weekend_damping: float, offset_min: float, scale_min: float
    ) -> None:
        self.amplitude = damping * DAY
        self.w = weekend_damping
        self.o = offset_min * 60.0
        self.s = scale_min * 60.0

    # Scalar versions run once per session in the engine's hot loop.
    def warp(self, t: int) -> int:
        """Shift a candidate session start towards 15:00 UTC (spec §5.8 step 2)."""
        s = t % DAY
        return t + int(self.amplitude * math.sin(2.0 * math.pi * (s - _PHASE) / DAY))

    def weekend_damping(self, t: int) -> float:
        """Probability of rejecting a session start at ``t`` (spec §5.8 table)."""
        w = self.w
        if w <= 0.0:
            return 0.0
        day = t // DAY
        y, d, n = is_day_off(day - 1), is_day_off(day), is_day_off(day + 1)
        if not (y or d or n):
            return 0.0
        if y and d and n:
            return w
        m = day * DAY
        m1 = m + DAY
        o, s = self.o, self.s
        v: float
        if d:
            if not y and t < m - o + s:
                v = w * (t - (m - o)) / s
            elif not n and t > m1 + o - s:
                v = w * ((m1 + o) - t) / s
            else:
                v = w
        else:
            v = 0.0
            if y and t < m + o:
                v = w * ((m + o) - t) / s
            if n and t > m1 - o:
                v = max(v, w * (t - (m1 - o)) / s)
        return min(max(v, 0.0), w)

    # Vectorised versions serve the start-up of many users at once.
    def warp_array(self, t: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        s = np.mod(t, DAY)
        shift = np.trunc(self.amplitude * np.sin(2.0 * np.pi * (s - _PHASE) / DAY))
        return t + shift.astype(np.int64)

    def weekend_damping_array(self, t: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
        out = np.zeros(t.shape, dtype=np.float64)
        if self.w <= 0.0 or t.size == 0:
            return out
        days = t // DAY
        lo, hi = int(days.min()) - 1, int(days.max()) + 1
        off = np.array([is_day_off(d) for d in range(lo, hi + 1)], dtype=bool)
        idx = days - lo
        y, d, n = off[idx - 1], off[idx], off[idx + 1]
        touched = np.nonzero(y | d | n)[0]
        for i in touched:  # rare enough (weekends) to do one by one, exactly as the scalar
            out[i] = self.weekend_damping(int(t[i]))
        return out
