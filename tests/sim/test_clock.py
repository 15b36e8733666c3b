from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from musify.sim.clock import DAY, Calendar, is_day_off, parse_time, to_epoch


def test_parse_time() -> None:
    assert parse_time("2024-03-18T17:00:00") == datetime(2024, 3, 18, 17, tzinfo=UTC)
    assert parse_time("2024-03-18T19:00:00+02:00") == datetime(2024, 3, 18, 17, tzinfo=UTC)
    now = datetime(2024, 1, 10, 12, 0, 0, 500, tzinfo=UTC)
    assert parse_time("now", now) == now.replace(microsecond=0)
    assert parse_time("now-2d", now) == datetime(2024, 1, 8, 12, tzinfo=UTC)
    assert parse_time("now+90m", now) == datetime(2024, 1, 10, 13, 30, tzinfo=UTC)
    with pytest.raises(ValueError, match="not an ISO date-time"):
        parse_time("yesterday")


def test_days_off_include_weekends_and_holidays() -> None:
    day = lambda *ymd: to_epoch(datetime(*ymd, tzinfo=UTC)) // DAY  # noqa: E731
    assert is_day_off(day(2024, 3, 16)) and is_day_off(day(2024, 3, 17))  # Sat, Sun
    assert not is_day_off(day(2024, 3, 18))
    assert is_day_off(day(2024, 7, 4)) and is_day_off(day(2024, 11, 28))  # Thanksgiving
    assert is_day_off(day(2024, 1, 15))  # MLK day: missing from eventsim's calendar (§5.8)


def test_warp_pulls_starts_towards_15_utc() -> None:
    cal = Calendar(0.09375, 0.5, 180, 360)
    base = to_epoch(datetime(2024, 3, 19, tzinfo=UTC))
    assert cal.warp(base + 3 * 3600) == base + 3 * 3600  # fixed points 03:00 and 15:00
    assert cal.warp(base + 15 * 3600) == base + 15 * 3600
    assert cal.warp(base + 9 * 3600) > base + 9 * 3600  # morning pushed later
    assert cal.warp(base + 21 * 3600) < base + 21 * 3600  # evening pulled earlier
    ts = base + np.arange(0, DAY, 997, dtype=np.int64)
    assert cal.warp_array(ts).tolist() == [cal.warp(int(t)) for t in ts]


def test_weekend_damping_ramps() -> None:
    cal = Calendar(0.0, 0.5, 180, 360)
    fri = to_epoch(datetime(2024, 3, 15, tzinfo=UTC))  # a Friday
    h = 3600
    assert cal.weekend_damping(fri + 12 * h) == 0.0
    assert cal.weekend_damping(fri + 21 * h) == 0.0  # the ramp starts Fri 21:00
    assert cal.weekend_damping(fri + 24 * h) == pytest.approx(0.25)  # Sat 00:00: halfway
    assert cal.weekend_damping(fri + 27 * h) == pytest.approx(0.5)  # Sat 03:00: full
    assert cal.weekend_damping(fri + 36 * h) == pytest.approx(0.5)
    assert cal.weekend_damping(fri + (48 + 21) * h) == pytest.approx(0.5)  # Sun 21:00
    assert cal.weekend_damping(fri + 72 * h) == pytest.approx(0.25)  # Mon 00:00
    assert cal.weekend_damping(fri + 75 * h) == 0.0  # Mon 03:00
    ts = fri + np.arange(0, 4 * DAY, 1234, dtype=np.int64)
    assert cal.weekend_damping_array(ts).tolist() == [cal.weekend_damping(int(t)) for t in ts]
