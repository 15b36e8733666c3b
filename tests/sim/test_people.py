from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from musify.sim.people import load_people


def test_people_tables(musify_cache: Path) -> None:
    ppl = load_people(musify_cache)
    assert len(ppl.first_male) > 200 and len(ppl.first_female) > 200
    assert len(ppl.last) >= 1000
    assert len(ppl.user_agents) > 100
    assert len(ppl.locations) > 10_000
    states = {r[2] for r in ppl.locations.rows}
    assert {"CA", "TX", "NY", "FL", "WY"} <= states
    for _city, zipcode, _state, lat, lon in ppl.locations.rows[:500]:  # type: ignore[misc]
        assert isinstance(zipcode, str) and len(zipcode) == 5
        assert 17 < float(lat) < 72 and -180 < float(lon) < -60
    # weighted by population: California gets far more users than Wyoming
    rng = np.random.default_rng(0)
    picks = Counter(ppl.locations.rows[i][2] for i in ppl.locations.pick(rng.random(50_000)))
    assert picks["CA"] > 10 * picks["WY"]
    assert 0.06 < picks["CA"] / 50_000 < 0.2
    # the cache makes the second load cheap and identical
    assert load_people(musify_cache) is ppl


def test_zero_weights_are_never_picked() -> None:
    from musify.sim.people import Table

    t = Table.of([("a",), ("never",), ("b",)], [1.0, 0.0, 1.0])
    idx = t.pick(np.array([0.0, 0.4999, 0.5, 0.5000001, 0.9999]))
    assert 1 not in idx.tolist()
