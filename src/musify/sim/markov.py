"""Exact expectations of a config's state machine: an absorbing Markov chain.

Within a session, eventsim walks the config's states: from state i it moves to state j
with probability P[i, j] and ends the session with the leftover probability
``stop[i] = 1 - sum_j P[i, j]`` (spec §4). The first state is drawn from the
``new-session`` weights of the user's (auth, level) group. That is an absorbing Markov
chain, so everything about one session follows from the fundamental matrix
``N = (I - P)^-1``:

- ``start @ N`` is the expected number of visits to each state per session, and its
  sum the expected number of events;
- ``(start @ N) * stop`` is the probability that the session ends in each state. The
  ended state's (auth, level) is the group the user's next session starts in, which
  gives the session-level group -> group transition matrix (or churn).

Everything that the simulator writes per event is a function of the state (page,
auth, level, status, whether user details are shown) or of the previous state (auth
events follow a Login page), so the expected event mix of many sessions is the ratio
of weighted sums of these per-session expectations. The weights are the numbers of
sessions that start in each group: the initial users' ``auths`` x ``levels`` mix
(``initial_weights``) or, to validate a run, the session starts counted in its output.

This module only computes; ``musify.sim.validate`` compares.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import numpy.typing as npt

from musify.errors import ConfigError
from musify.events import LISTEN_PAGE, LOGIN_PAGE, STATUS_CHANGE_PAGES
from musify.sim.config import SimConfig, State

Group = tuple[str, str]
FloatArray = npt.NDArray[np.float64]

#: The auth value that makes an auth event a success (hard-coded in eventsim).
LOGGED_IN = "Logged In"
#: Target of the session-level group matrix for sessions that end in the churned state.
CHURNED: Group = ("<churned>", "")


@dataclass(frozen=True)
class SessionStats:
    """Expectations for one session that starts in ``group``."""

    group: Group
    #: probability of each state being the first one
    start: FloatArray
    #: expected visits to each state
    visits: FloatArray
    #: probability that the session ends in each state
    ends_in: FloatArray
    #: expected number of events
    events: float
    #: probability that the session has exactly one event
    p_single: float
    #: probability that the next session starts in each group (``CHURNED``: never)
    next_group: Mapping[Group, float]


@dataclass(frozen=True)
class EventMix:
    """The expected make-up of the events of many sessions.

    Shares are fractions of page views (all events), except ``auth_success`` (a
    fraction of auth events) and ``session_starts`` / ``next_group`` (per session).
    """

    #: share of sessions starting in each group (the weights, normalised)
    session_starts: Mapping[Group, float]
    events_per_session: float
    p_single: float
    state_share: FloatArray
    page_share: Mapping[str, float]
    level_share: Mapping[str, float]
    auth_share: Mapping[str, float]
    status_share: Mapping[int, float]
    #: events that carry userId and user details
    identified_share: float
    #: Login pages per event
    login_share: float
    #: auth events (the event right after a Login page) per page view
    auth_per_page_view: float
    #: fraction of auth events that are successful logins
    auth_success: float
    #: status-change events (Submit Upgrade, Submit Downgrade, Cancel) per page view
    status_change_share: float
    #: listen events (NextSong) per page view
    listen_share: float
    #: where the next session of a user starts, per session
    next_group: Mapping[Group, float]


class Chain:
    """The absorbing Markov chain of one config's sessions."""

    def __init__(self, cfg: SimConfig) -> None:
        self.cfg = cfg
        self.states: tuple[State, ...] = cfg.states
        n = len(cfg.states)
        self.n = n
        p = np.zeros((n, n), dtype=np.float64)
        for i, (cum, dests) in enumerate(cfg.transitions):
            prev = 0.0
            for c, d in zip(cum, dests, strict=True):
                p[i, d] += c - prev
                prev = c
        self.P: FloatArray = p
        self.stop: FloatArray = np.clip(1.0 - p.sum(axis=1), 0.0, 1.0).astype(np.float64)
        self._check_sessions_end()
        self.N: FloatArray = np.linalg.inv(np.eye(n) - p).astype(np.float64)
        self.groups: tuple[Group, ...] = tuple(cfg.new_session)

        st = self.states
        self.is_song = np.array([s.page == LISTEN_PAGE for s in st])
        self.is_login = np.array([s.page == LOGIN_PAGE for s in st])
        self.is_status_change = np.array([s.page in STATUS_CHANGE_PAGES for s in st])
        self.shown = np.array([cfg.show_user_details.get(s.auth, False) for s in st])
        self.churned = np.array(
            [cfg.churned_state is not None and s.auth == cfg.churned_state for s in st]
        )
        logged_in = np.array([s.auth == LOGGED_IN for s in st], dtype=np.float64)
        # Per state: probability that an event follows it, and that this next event is
        # a successful login (only meaningful for Login pages).
        self.continues: FloatArray = 1.0 - self.stop
        self.continues_logged_in: FloatArray = p @ logged_in

    def _check_sessions_end(self) -> None:
        """Every state must be able to reach the end of a session, else N is infinite."""
        can_end = self.stop > 0
        while True:
            more = can_end | ((self.P > 0) & can_end[None, :]).any(axis=1)
            if (more == can_end).all():
                break
            can_end = more
        if not can_end.all():
            label = self.states[int(np.flatnonzero(~can_end)[0])].label()
            raise ConfigError(
                self.cfg.source,
                "transitions",
                f"a session that reaches state {label} can never end",
            )

    def start(self, group: Group) -> FloatArray:
        """Distribution of the first state of a session that starts in ``group``."""
        if group not in self.cfg.new_session:
            raise KeyError(f"no new-session group {group[0]}/{group[1]}")
        idxs, weights = self.cfg.new_session[group]
        v = np.zeros(self.n, dtype=np.float64)
        for i, w in zip(idxs, weights, strict=True):
            v[i] += w
        total = float(v.sum())
        if total <= 0:
            raise KeyError(f"new-session group {group[0]}/{group[1]} has no positive weight")
        return v / total

    def group_of_end(self, i: int) -> Group:
        """The group a user's next session starts in after a session ending in state i."""
        return CHURNED if self.churned[i] else self.states[i].group

    def session(self, group: Group) -> SessionStats:
        return self._sessions[group]

    @cached_property
    def _sessions(self) -> dict[Group, SessionStats]:
        out = {}
        for g in self.groups:
            start = self.start(g)
            visits = start @ self.N
            ends_in = visits * self.stop
            nxt: dict[Group, float] = {}
            for i in np.flatnonzero(ends_in > 0).tolist():
                key = self.group_of_end(i)
                nxt[key] = nxt.get(key, 0.0) + float(ends_in[i])
            out[g] = SessionStats(
                group=g,
                start=start,
                visits=visits,
                ends_in=ends_in,
                events=float(visits.sum()),
                p_single=float(start @ self.stop),
                next_group=dict(sorted(nxt.items(), key=lambda kv: -kv[1])),
            )
        return out

    def moment2(self, group: Group, u: FloatArray, v: FloatArray) -> float:
        """E[(u·V)(v·V)] for the visit counts V of a session that starts in ``group``.

        For an absorbing chain with fundamental matrix N and expected visits m,
        E[V_j V_k] = m_j N_jk + m_k N_kj - [j = k] m_j.
        """
        m = self.session(group).visits
        return float((m * u) @ (self.N @ v) + (m * v) @ (self.N @ u) - m @ (u * v))

    def variance(self, group: Group, w: FloatArray) -> float:
        """Var(w·V) for one session that starts in ``group`` (w: a weight per state)."""
        mean = float(self.session(group).visits @ w)
        return max(0.0, self.moment2(group, w, w) - mean * mean)

    def ratio_variance(
        self,
        counts: Mapping[Group, float],
        num: FloatArray,
        den: FloatArray,
        ratio: float,
        step_var: FloatArray | None = None,
    ) -> float:
        """Var(sum over sessions of num·V - ratio·den·V), given the sessions per group.

        With ``ratio`` the expected sum(num·V)/sum(den·V) this is the variance of the
        ratio estimator's numerator: divide its square root by sum(den·V) for the
        standard error of an observed share. ``step_var`` adds, per visit to a state,
        the variance of something decided by the step out of it (e.g. whether a login
        succeeds), treated as independent of the visit counts.
        """
        w = num - ratio * den
        total = 0.0
        for g, n in counts.items():
            if n > 0:
                total += n * self.variance(g, w)
                if step_var is not None:
                    total += n * float(self.session(g).visits @ step_var)
        return total

    def group_matrix(self) -> tuple[tuple[Group, ...], tuple[Group, ...], FloatArray]:
        """The session-level chain: (row groups, column groups, probabilities).

        Row g, column h: the probability that a session starting in g is followed by
        one starting in h. Columns are the start groups plus ``CHURNED``.
        """
        cols = (*self.groups, CHURNED)
        m = np.zeros((len(self.groups), len(cols)), dtype=np.float64)
        for r, g in enumerate(self.groups):
            for h, p in self.session(g).next_group.items():
                m[r, cols.index(h)] += p
        return self.groups, cols, m

    def mix(self, weights: Mapping[Group, float]) -> EventMix:
        """The expected event mix of sessions that start in groups with these weights.

        ``weights`` need not be normalised (counts are fine). Groups with no
        ``new-session`` entry must have weight 0.
        """
        w = {g: float(x) for g, x in weights.items() if x > 0}
        total_w = sum(w.values())
        if total_w <= 0:
            raise ValueError("the start-group weights must have a positive sum")
        unknown = [g for g in w if g not in self.cfg.new_session]
        if unknown:
            raise KeyError(f"no new-session group {unknown[0][0]}/{unknown[0][1]}")
        starts = {g: x / total_w for g, x in w.items()}
        visits = np.zeros(self.n, dtype=np.float64)
        p_single = 0.0
        nxt: dict[Group, float] = {}
        for g, share in starts.items():
            s = self.session(g)
            visits += share * s.visits
            p_single += share * s.p_single
            for h, p in s.next_group.items():
                nxt[h] = nxt.get(h, 0.0) + share * p
        events = float(visits.sum())
        share_of = visits / events

        def by(key: str) -> dict[str, float]:
            out: dict[str, float] = {}
            for st, x in zip(self.states, share_of.tolist(), strict=True):
                k = str(getattr(st, key))
                out[k] = out.get(k, 0.0) + x
            return dict(sorted(out.items(), key=lambda kv: -kv[1]))

        status: dict[int, float] = {}
        for st, x in zip(self.states, share_of.tolist(), strict=True):
            status[st.status] = status.get(st.status, 0.0) + x
        auth_events = float(visits[self.is_login] @ self.continues[self.is_login])
        auth_ok = float(visits[self.is_login] @ self.continues_logged_in[self.is_login])
        return EventMix(
            session_starts=starts,
            events_per_session=events,
            p_single=p_single,
            state_share=share_of,
            page_share=by("page"),
            level_share=by("level"),
            auth_share=by("auth"),
            status_share=dict(sorted(status.items())),
            identified_share=float(share_of[self.shown].sum()),
            login_share=float(share_of[self.is_login].sum()),
            auth_per_page_view=auth_events / events,
            auth_success=auth_ok / auth_events if auth_events > 0 else 0.0,
            status_change_share=float(share_of[self.is_status_change].sum()),
            listen_share=float(share_of[self.is_song].sum()),
            next_group=dict(sorted(nxt.items(), key=lambda kv: -kv[1])),
        )


def initial_weights(cfg: SimConfig) -> dict[Group, float]:
    """Session-start weights of the initial users: ``auths`` x ``levels``."""
    out: dict[Group, float] = {}
    for auth, wa in cfg.auths:
        for level, wl in cfg.levels:
            if wa > 0 and wl > 0:
                out[(auth, level)] = out.get((auth, level), 0.0) + float(wa * wl)
    return out


def analyse(cfg: SimConfig) -> Chain:
    """The config's chain (raises ``ConfigError`` if some session could never end)."""
    return Chain(cfg)


__all__ = [
    "CHURNED",
    "LOGGED_IN",
    "Chain",
    "EventMix",
    "Group",
    "SessionStats",
    "analyse",
    "initial_weights",
]
