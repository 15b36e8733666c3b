"""Exact expectations of a config's absorbing Markov chain (musify.sim.markov)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from musify.errors import ConfigError
from musify.sim.config import load_config, parse_config
from musify.sim.markov import CHURNED, analyse, initial_weights

SHARED_EVENTSIM = Path(__file__).resolve().parents[2].parent / "shared" / "eventsim"

LI, LO = "Logged In", "Logged Out"


def example_config_path() -> Path:
    path = SHARED_EVENTSIM / "example-config.json"
    if not path.exists():
        pytest.skip(f"{path} is not available (../shared is absent)")
    return path


def _state(page: str, auth: str, status: int = 200, method: str = "GET") -> dict[str, Any]:
    return {"page": page, "auth": auth, "status": status, "method": method, "level": "free"}


HOME_LI = _state("Home", LI)
SONG = _state("NextSong", LI, 200, "PUT")
LOGOUT = _state("Logout", LI, 307, "PUT")
HOME_LO = _state("Home", LO)
LOGIN = _state("Login", LO, 307, "PUT")


def tiny_config() -> dict[str, Any]:
    """Five states whose expectations are worked out by hand in the tests below.

    Home(LI) -> NextSong 0.5 (else the session ends); NextSong -> NextSong 0.5,
    -> Logout 0.5; Logout -> Home(LO) 1; Home(LO) -> Login 0.5 (else end);
    Login -> Home(LI) 0.75, -> Home(LO) 0.25. Logged In sessions start at Home 3 : 1
    NextSong, Logged Out ones at Home(LO).
    """

    def t(src: dict[str, Any], dst: dict[str, Any], p: float) -> dict[str, Any]:
        return {"source": src, "dest": dst, "p": p}

    return {
        "alpha": 60.0,
        "show-user-details": [{"auth": LI, "show": True}, {"auth": LO, "show": False}],
        "levels": [{"level": "free", "weight": 1}],
        "auths": [{"auth": LI, "weight": 1}, {"auth": LO, "weight": 1}],
        "new-user-auth": LI,
        "new-session": [
            {**HOME_LI, "weight": 3},
            {**SONG, "weight": 1},
            {**HOME_LO, "weight": 1},
        ],
        "transitions": [
            t(HOME_LI, SONG, 0.5),
            t(SONG, SONG, 0.5),
            t(SONG, LOGOUT, 0.5),
            t(LOGOUT, HOME_LO, 1.0),
            t(HOME_LO, LOGIN, 0.5),
            t(LOGIN, HOME_LI, 0.75),
            t(LOGIN, HOME_LO, 0.25),
        ],
    }


def _visits_by_page_auth(chain: Any, visits: np.ndarray) -> dict[tuple[str, str], float]:
    return {(s.page, s.auth): float(v) for s, v in zip(chain.states, visits, strict=True)}


# --------------------------------------------------------------------- hand-made
def test_tiny_config_by_hand() -> None:
    chain = analyse(parse_config(tiny_config(), "tiny"))
    # Starting logged out at Home(LO): v_L = 1 + v_O + v_G/4, v_G = v_L/2, v_H = 3 v_G/4,
    # v_S = v_H, v_O = v_S/2  =>  v_L = 16/11, v_G = 8/11, v_H = v_S = 6/11, v_O = 3/11.
    lo = chain.session((LO, "free"))
    v = _visits_by_page_auth(chain, lo.visits)
    assert v[("Home", LO)] == pytest.approx(16 / 11)
    assert v[("Login", LO)] == pytest.approx(8 / 11)
    assert v[("Home", LI)] == pytest.approx(6 / 11)
    assert v[("NextSong", LI)] == pytest.approx(6 / 11)
    assert v[("Logout", LI)] == pytest.approx(3 / 11)
    assert lo.events == pytest.approx(39 / 11)
    assert lo.p_single == pytest.approx(0.5)
    # It ends at Home(LI) (stop 1/2) or Home(LO) (stop 1/2).
    assert lo.next_group == pytest.approx({(LI, "free"): 3 / 11, (LO, "free"): 8 / 11})

    # Starting logged in, Home : NextSong = 3 : 1.
    li = chain.session((LI, "free"))
    assert li.start.sum() == pytest.approx(1.0)
    v = _visits_by_page_auth(chain, li.visits)
    assert v[("Home", LI)] == pytest.approx(12 / 11)
    assert v[("NextSong", LI)] == pytest.approx(35 / 22)
    assert v[("Logout", LI)] == pytest.approx(35 / 44)
    assert v[("Home", LO)] == pytest.approx(10 / 11)
    assert v[("Login", LO)] == pytest.approx(5 / 11)
    assert li.events == pytest.approx(213 / 44)
    assert li.p_single == pytest.approx(0.75 * 0.5)
    assert li.next_group == pytest.approx({(LI, "free"): 6 / 11, (LO, "free"): 5 / 11})
    assert li.ends_in.sum() == pytest.approx(1.0)


def test_tiny_config_mix_by_hand() -> None:
    cfg = parse_config(tiny_config(), "tiny")
    chain = analyse(cfg)
    assert initial_weights(cfg) == {(LI, "free"): 1.0, (LO, "free"): 1.0}
    mix = chain.mix({(LI, "free"): 5, (LO, "free"): 5})  # counts are fine
    # In 44ths of a session: LI start 213 events, LO start 156.
    total = 213 + 156
    assert mix.events_per_session == pytest.approx(total / 88)
    assert mix.page_share["NextSong"] == pytest.approx((70 + 24) / total)
    assert mix.listen_share == pytest.approx((70 + 24) / total)
    assert mix.status_share[307] == pytest.approx((35 + 20 + 12 + 32) / total)
    assert mix.status_share[200] == pytest.approx(1 - (35 + 20 + 12 + 32) / total)
    assert mix.identified_share == pytest.approx((48 + 70 + 35 + 24 + 24 + 12) / total)
    assert mix.level_share == pytest.approx({"free": 1.0})
    assert mix.auth_share[LO] == pytest.approx(1 - mix.identified_share)
    # Every Login is followed by an event: auth events = Login pages; 3/4 succeed.
    assert mix.login_share == pytest.approx((20 + 32) / total)
    assert mix.auth_per_page_view == pytest.approx((20 + 32) / total)
    assert mix.auth_success == pytest.approx(0.75)
    assert mix.status_change_share == 0.0
    assert mix.p_single == pytest.approx((0.375 + 0.5) / 2)
    assert sum(mix.page_share.values()) == pytest.approx(1.0)
    assert mix.next_group == pytest.approx(
        {(LI, "free"): (6 / 11 + 3 / 11) / 2, (LO, "free"): (5 / 11 + 8 / 11) / 2}
    )


def test_group_matrix_is_stochastic() -> None:
    chain = analyse(parse_config(tiny_config(), "tiny"))
    rows, cols, m = chain.group_matrix()
    assert rows == ((LI, "free"), (LO, "free"))
    assert cols[-1] == CHURNED
    np.testing.assert_allclose(m.sum(axis=1), 1.0)
    np.testing.assert_allclose(m[1, :2], [3 / 11, 8 / 11])


def test_mix_rejects_bad_weights() -> None:
    chain = analyse(parse_config(tiny_config(), "tiny"))
    with pytest.raises(ValueError):
        chain.mix({})
    with pytest.raises(KeyError):
        chain.mix({("Guest", "free"): 1})


def test_a_session_that_cannot_end_is_a_config_error() -> None:
    raw = tiny_config()
    trap = _state("Help", LI)
    raw["transitions"].append({"source": HOME_LI, "dest": trap, "p": 0.25})
    raw["transitions"].append({"source": trap, "dest": trap, "p": 1.0})
    with pytest.raises(ConfigError, match="can never end"):
        analyse(parse_config(raw, "trap"))


# --------------------------------------------------------------------- the spec's table
# docs/eventsim-spec.md §4: (E[events], E[NextSong], P(1-event session)) per start group.
SPEC_TABLE = {
    ("Guest", "free"): (3.06, 0.53, 0.41),
    (LI, "free"): (2.72, 2.00, 0.40),
    (LO, "free"): (4.03, 1.16, 0.17),
    (LI, "paid"): (29.6, 27.0, 0.05),
    (LO, "paid"): (16.7, 13.4, 0.30),
}


@pytest.mark.parametrize("group", list(SPEC_TABLE))
def test_example_config_matches_spec_table(group: tuple[str, str]) -> None:
    chain = analyse(load_config(example_config_path()))
    s = chain.session(group)
    events, songs, single = SPEC_TABLE[group]
    assert s.events == pytest.approx(events, abs=0.006 * max(1.0, events))
    assert float(s.visits[chain.is_song].sum()) == pytest.approx(songs, abs=0.006 * max(1, songs))
    assert s.p_single == pytest.approx(single, abs=0.006)
    assert sum(s.next_group.values()) == pytest.approx(1.0)


def test_example_config_session_outcomes() -> None:
    chain = analyse(load_config(example_config_path()))
    g = chain.session(("Guest", "free")).next_group
    assert g[("Guest", "free")] == pytest.approx(0.66, abs=0.005)
    assert g[(LI, "free")] == pytest.approx(0.33, abs=0.005)
    g = chain.session((LI, "free")).next_group
    assert g[(LI, "free")] == pytest.approx(0.978, abs=0.0005)
    assert g[(LO, "free")] == pytest.approx(0.015, abs=0.0005)
    assert g[(LI, "paid")] == pytest.approx(0.006, abs=0.0005)
    assert g[CHURNED] == pytest.approx(0.0001, abs=0.00005)
    g = chain.session((LI, "paid")).next_group
    assert g[(LI, "paid")] == pytest.approx(0.81, abs=0.005)
    assert g[(LO, "paid")] == pytest.approx(0.19, abs=0.005)
    assert g[(LI, "free")] == pytest.approx(0.003, abs=0.0005)
    assert g[CHURNED] == pytest.approx(0.0009, abs=0.00005)
    g = chain.session((LO, "paid")).next_group
    assert g[(LI, "paid")] == pytest.approx(0.44, abs=0.005)
    assert g[(LO, "paid")] == pytest.approx(0.56, abs=0.005)


def test_example_config_initial_mix() -> None:
    cfg = load_config(example_config_path())
    chain = analyse(cfg)
    weights = initial_weights(cfg)
    # Guest has auth weight 0: initial users are Logged In / Logged Out x free / paid.
    assert weights == {(LI, "free"): 100, (LI, "paid"): 20, (LO, "free"): 10, (LO, "paid"): 2}
    mix = chain.mix(weights)
    assert mix.page_share["NextSong"] == pytest.approx(0.828, abs=0.001)
    assert mix.listen_share == mix.page_share["NextSong"]
    # Paid sessions are ~10x longer, so paid users dominate events (spec §4).
    assert mix.level_share["paid"] == pytest.approx(0.69, abs=0.01)
    # The example's Login goes to Home/Logged In with p 0.9, Logged Out 0.099, Error 0.001.
    assert mix.auth_success == pytest.approx(0.9)
    assert mix.auth_per_page_view == pytest.approx(mix.login_share)
    assert set(mix.status_share) == {200, 307, 404}
    assert sum(mix.status_share.values()) == pytest.approx(1.0)
    assert 0 < mix.status_change_share < 0.002
    assert mix.identified_share == pytest.approx(mix.auth_share[LI] + mix.auth_share["Cancelled"])


# --------------------------------------------------------------------- second moments
def test_variance_of_a_geometric_session() -> None:
    """One state that repeats with p: the session length is geometric."""
    p = 0.8
    raw = tiny_config()
    raw["new-session"] = [{**SONG, "weight": 1}]
    raw["auths"] = [{"auth": LI, "weight": 1}]
    raw["transitions"] = [{"source": SONG, "dest": SONG, "p": p}]
    chain = analyse(parse_config(raw, "geometric"))
    g = (LI, "free")
    ones = np.ones(chain.n)
    assert chain.session(g).events == pytest.approx(1 / (1 - p))
    assert chain.variance(g, ones) == pytest.approx(p / (1 - p) ** 2)
    assert chain.moment2(g, ones, ones) == pytest.approx(p / (1 - p) ** 2 + 1 / (1 - p) ** 2)


def _simulate(chain: Any, group: tuple[str, str], n: int, seed: int) -> np.ndarray:
    """Visit counts of n simulated sessions (rows) per state (columns)."""
    rng = np.random.default_rng(seed)
    start = chain.start(group)
    out = np.zeros((n, chain.n))
    cum = np.cumsum(chain.P, axis=1)
    for r in range(n):
        s = int(rng.choice(chain.n, p=start))
        while True:
            out[r, s] += 1
            k = int(np.searchsorted(cum[s], rng.random(), side="right"))
            if k >= chain.n:
                break
            s = k
    return out


def test_second_moments_match_simulation() -> None:
    chain = analyse(parse_config(tiny_config(), "tiny"))
    g = (LI, "free")
    visits = _simulate(chain, g, 20_000, seed=1)
    ones = np.ones(chain.n)
    song = chain.is_song.astype(np.float64)
    np.testing.assert_allclose(visits.mean(axis=0), chain.session(g).visits, rtol=0.05)
    assert visits.sum(axis=1).var() == pytest.approx(chain.variance(g, ones), rel=0.06)
    assert (visits @ song).var() == pytest.approx(chain.variance(g, song), rel=0.06)
    # The numerator of a share's ratio estimator: NextSong - share * events.
    share = chain.mix({g: 1}).listen_share
    w = song - share * ones
    assert (visits @ w).var() == pytest.approx(chain.variance(g, w), rel=0.06)
    assert chain.ratio_variance({g: 10}, song, ones, share) == pytest.approx(
        10 * chain.variance(g, w)
    )
