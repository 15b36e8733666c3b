"""The offline US map: every state, simplified, insets below the mainland."""

from __future__ import annotations

import numpy as np
import pandas as pd

from musify.dashboard import charts
from musify.dashboard.usmap import simplify, state_names, us_states


def test_every_state_once_with_closed_rings() -> None:
    states = us_states()
    codes = [s.code for s in states]
    assert codes == sorted(codes) and len(set(codes)) == len(codes) == 51
    assert {"AK", "HI", "DC", "CA", "WY"} <= set(codes)
    assert state_names()["CA"] == "California" and state_names()["DC"] == "District of Columbia"
    points = sum(len(r) for s in states for r in s.rings)
    assert 800 < points < 4000  # light enough to draw at once, detailed enough to read
    for s in states:
        assert s.rings, s.code
        for ring in s.rings:
            assert np.allclose(ring[0], ring[-1]), s.code


def test_insets_sit_below_the_mainland() -> None:
    by = {s.code: np.concatenate(s.rings) for s in us_states()}
    mainland = np.concatenate([v for k, v in by.items() if k not in ("AK", "HI")])
    top_of = {k: v[:, 1].max() for k, v in by.items()}
    assert top_of["AK"] < np.median(mainland[:, 1])
    assert top_of["HI"] < np.median(mainland[:, 1])
    # west is left, north is up
    assert by["CA"][:, 0].mean() < by["NY"][:, 0].mean()
    assert by["MN"][:, 1].mean() > by["TX"][:, 1].mean()
    # no state overlaps another's centre (insets do not cover California or Texas)
    ak_lo, ak_hi = by["AK"].min(axis=0), by["AK"].max(axis=0)
    for code in ("CA", "TX", "AZ"):
        cx, cy = next(s for s in us_states() if s.code == code).centre()
        assert not (ak_lo[0] <= cx <= ak_hi[0] and ak_lo[1] <= cy <= ak_hi[1]), code


def test_simplify_keeps_ends_and_drops_collinear_points() -> None:
    line = np.array([[0.0, 0.0], [1.0, 0.001], [2.0, 0.0], [3.0, 5.0], [4.0, 0.0]])
    out = simplify(line, 0.01)
    assert out.tolist() == [[0.0, 0.0], [2.0, 0.0], [3.0, 5.0], [4.0, 0.0]]


def test_map_colours_states_with_streams_and_greys_the_rest() -> None:
    by_state = pd.DataFrame(
        {"state_code": ["CA", "TX"], "streams": [100, 10], "active_users": [5, 1]}
    )
    fig = charts.state_map(by_state, selected="CA")
    traces = {t.name: t for t in fig.data if t.name}
    assert len(traces) == 51
    assert traces["CA"].fillcolor != traces["TX"].fillcolor
    assert traces["NY"].fillcolor == charts.GREY
    assert "100 streams" in traces["CA"].text and "5 active users" in traces["CA"].text
    assert traces["CA"].line.color == "#FFFFFF"  # the selected state is outlined
