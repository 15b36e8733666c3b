"""``musify validate``'s statistics against the config's absorbing Markov chain.

``_share_row`` and ``_poisson_upper`` make one share's row with its tolerance;
``_StatisticsChecks`` computes every statistic (events per session, shares of pages,
levels, statuses, auth, first pages and end groups per start group). A mixin of
``checker._Checker`` on ``base._CheckerBase``; the tolerances are in ``constants`` and
the method in the package docstring, which lists every part of ``musify.sim.validate``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from musify.sim.markov import CHURNED, EventMix, Group
from musify.sim.validate.base import _CheckerBase
from musify.sim.validate.constants import (
    COMPLETE_MARGIN,
    F64,
    I64,
    MEAN_FLOOR_REL,
    SHARE_FLOOR_ABS,
    SHARE_FLOOR_REL,
    Bool,
    Z,
)
from musify.sim.validate.report import Row


def _share_row(
    name: str, obs: float, exp: float, se: float, n: int, detail: str = "", rare_ok: bool = True
) -> Row:
    """A share of ``n`` things (events, sessions) against its expectation.

    With ``rare_ok``, a rare share (under 100 expected occurrences) may be off by up to
    the upper quantile of a Poisson count with the model's dispersion: a few
    occurrences of something expected 0.1 times are many standard errors, yet no
    evidence against the config.
    """
    tol = max(Z * se, SHARE_FLOOR_ABS + SHARE_FLOOR_REL * exp)
    lam = exp * n
    if rare_ok and 0 < lam < 100:
        d = max(1.0, (se * n) ** 2 / lam)  # variance / mean of the count
        tol = max(tol, (d * _poisson_upper(lam / d) - lam) / n)
    # Something the chain can never produce fails however rare it is.
    passed = abs(obs - exp) <= tol and not (exp == 0 and obs > 0)
    if exp == 0 and obs > 0:
        detail = "; ".join(x for x in (detail, "impossible under the config") if x)
    return Row(name, "statistics", "share", passed, obs, exp, tol, n, detail)


def _poisson_upper(lam: float) -> int:
    """The smallest k with P(Poisson(lam) > k) below the one-sided tail of ``Z``."""
    alpha = 0.5 * math.erfc(Z / math.sqrt(2))
    pmf = math.exp(-lam)
    cdf = pmf
    k = 0
    while 1.0 - cdf >= alpha and k < 10_000:
        k += 1
        pmf *= lam / k
        cdf += pmf
    return k


class _StatisticsChecks(_CheckerBase):
    """The statistics against the config's Markov chain (the package docstring)."""

    def _statistics(self, auth_row: Bool, auth_ok_row: Bool) -> None:
        pv, chain, cfg = self.pv, self.chain, self.cfg
        fi, la = pv.first_idx, pv.last_idx
        n_s = len(fi)
        sizes = (la - fi + 1).astype(np.float64)
        start_state = pv.state[fi]
        started = (pv.item[fi] == 0) & self.known[start_state]
        group_names = [
            (str(self.ctx.state_tuples[int(c)][1]), str(self.ctx.state_tuples[int(c)][4]))
            for c in range(self.n_codes)
        ]
        in_cfg = np.array([g in cfg.new_session for g in group_names], dtype=bool)
        started &= in_cfg[start_state]

        # First page of sessions per group, over every session that starts in the files.
        self._first_pages(started, start_state)

        t_max = int(pv.ts.max()) if len(pv.ts) else 0
        complete = started & (pv.ts[fi] <= t_max - COMPLETE_MARGIN * 1000)
        sample_note = f"{int(np.count_nonzero(complete)):,} complete sessions"
        if not complete.any():
            complete = started
            sample_note = (
                f"{int(np.count_nonzero(complete)):,} sessions (the files span "
                "under 12 h: some are cut short)"
            )
        sessions = np.flatnonzero(complete)
        if len(sessions) == 0:
            self.rows.append(
                Row(
                    "statistics",
                    "statistics",
                    "share",
                    True,
                    None,
                    None,
                    skipped=True,
                    detail="no session starts in the files",
                )
            )
            return
        weights: dict[Group, float] = {}
        for c, cnt in zip(*np.unique(start_state[sessions], return_counts=True), strict=True):
            g = group_names[int(c)]
            weights[g] = weights.get(g, 0.0) + float(cnt)
        mix = chain.mix(weights)
        x = sizes[sessions]
        s_n = len(sessions)

        def per_session(flag: Bool) -> F64:
            w = flag.astype(np.float64)
            return np.bincount(pv.seg, weights=w, minlength=n_s)[sessions].astype(np.float64)

        # Standard errors come from the chain itself (exact second moments of the visit
        # counts, given the sessions per start group), not from the sample: they stay
        # right for small runs and for shares that are rare or never observed.
        n_cfg = self.ctx.n_config
        ones = np.ones(n_cfg)
        total_x = float(x.sum())

        def se_of(
            num: F64, den: F64, ratio: float, total: float, step_var: F64 | None = None
        ) -> float:
            if total <= 0:
                return 0.0
            return math.sqrt(chain.ratio_variance(weights, num, den, ratio, step_var)) / total

        # Events per session and single-event sessions.
        mean = total_x / s_n
        exp_mean = mix.events_per_session
        se = math.sqrt(sum(n * chain.variance(g, ones) for g, n in weights.items())) / s_n
        tol = max(Z * se, MEAN_FLOOR_REL * exp_mean)
        self.rows.append(
            Row(
                "events per session",
                "statistics",
                "mean",
                abs(mean - exp_mean) <= tol,
                mean,
                exp_mean,
                tol,
                s_n,
                sample_note,
            )
        )
        var_single = sum(
            n * chain.session(g).p_single * (1 - chain.session(g).p_single)
            for g, n in weights.items()
        )
        self.rows.append(
            _share_row(
                "single-event sessions",
                float(np.count_nonzero(x == 1)) / s_n,
                mix.p_single,
                math.sqrt(var_single) / s_n,
                s_n,
                "share of sessions",
            )
        )

        state = pv.state

        def share(name: str, code_flag: Bool, exp: float) -> None:
            """The share of events whose state is flagged by ``code_flag``."""
            r = float(per_session(code_flag[state]).sum()) / total_x
            se = se_of(code_flag[:n_cfg].astype(np.float64), ones, exp, total_x)
            self.rows.append(_share_row(name, r, exp, se, int(total_x)))

        pages = list(
            dict.fromkeys(
                [*mix.page_share, *(self.ctx.state_tuples[int(c)][0] for c in np.unique(state))]
            )
        )
        for p in pages:
            code = self.ctx.pages.codes.get(p, -2) if isinstance(p, str) else -2
            share(f"page {p}", self.page_of == code, mix.page_share.get(p, 0.0))
        for lv in mix.level_share:
            share(
                f"level {lv or '-'}", self.level_of == self.ctx.levels.code(lv), mix.level_share[lv]
            )
        codes = sorted({*mix.status_share, *(int(s) for s in np.unique(self.status_of[state]))})
        for st in codes:
            share(f"status {st}", self.status_of == st, mix.status_share.get(st, 0.0))
        share("identified events (userId shown)", self.shown, mix.identified_share)

        # Auth events are counted from auth_events.jsonl (matched to their page views).
        # Whether a Login is followed by an event, and whether that event is Logged In,
        # is decided by the step out of the Login: its variance is added per visit.
        login = chain.is_login.astype(np.float64)
        c, c_ok = chain.continues, chain.continues_logged_in
        auth_w, ok_w = login * c, login * c_ok
        n_auth = float(per_session(auth_row).sum())
        self.rows.append(
            _share_row(
                "auth events per page view",
                n_auth / total_x,
                mix.auth_per_page_view,
                se_of(auth_w, ones, mix.auth_per_page_view, total_x, login * c * (1 - c)),
                int(total_x),
            )
        )
        rate = mix.auth_success
        outcome_var = login * (
            c_ok * (1 - rate) ** 2 + (c - c_ok) * rate**2 - (c_ok - rate * c) ** 2
        )
        n_ok = float(per_session(auth_ok_row).sum())
        if n_auth > 0:
            self.rows.append(
                _share_row(
                    "auth success rate",
                    n_ok / n_auth,
                    rate,
                    se_of(ok_w, auth_w, rate, n_auth, np.maximum(outcome_var, 0.0)),
                    int(n_auth),
                    "of auth events",
                )
            )
        else:
            self.rows.append(
                Row(
                    "auth success rate",
                    "statistics",
                    "share",
                    True,
                    None,
                    rate,
                    skipped=True,
                    detail="no auth events in the sessions counted",
                )
            )
        share("status changes per page view", self.is_status_page, mix.status_change_share)
        self._end_groups(sessions, start_state, group_names, mix)

    def _group_sel(self, codes: I64, g: Group) -> Bool:
        """Which of these state codes belong to group g."""
        if g not in self.groups:
            return np.zeros(len(codes), dtype=bool)
        return np.asarray(self.group_code[codes] == self.groups.index(g), dtype=bool)

    def _first_pages(self, started: Bool, start_state: I64) -> None:
        chain = self.chain
        for g in chain.groups:
            members = np.flatnonzero(started & self._group_sel(start_state, g))
            n_g = len(members)
            if n_g == 0:
                continue
            p = chain.start(g)
            obs = np.bincount(start_state[members], minlength=self.n_codes)[: len(p)] / n_g
            self.rows.append(
                self._worst(
                    f"first page | {g[0]}/{g[1] or '-'}",
                    obs,
                    p,
                    n_g,
                    lambda i: str(self.ctx.state_tuples[i][0]),
                    "sessions",
                )
            )

    def _worst(
        self, name: str, obs: F64, exp: F64, n: int, label: Callable[[int], str], what: str
    ) -> Row:
        """One row for a categorical distribution: its worst category (by tolerance)."""
        se = np.sqrt(exp * (1 - exp) / n)
        tol = np.maximum(Z * se, SHARE_FLOOR_ABS + SHARE_FLOOR_REL * exp)
        # Rare categories: a handful of occurrences is no evidence against the config,
        # though it can be many standard errors. Allow up to the Poisson quantile.
        rare = np.flatnonzero((exp > 0) & (exp * n < 100))
        for i in rare.tolist():
            lam = float(exp[i]) * n
            tol[i] = max(float(tol[i]), (_poisson_upper(lam) - lam) / n)
        score = np.abs(obs - exp) / tol
        score[(exp == 0) & (obs > 0)] = np.inf  # impossible under the config
        i = int(np.argmax(score))
        return Row(
            name,
            "statistics",
            "share",
            bool(score[i] <= 1.0),
            float(obs[i]),
            float(exp[i]),
            float(tol[i]),
            n,
            f"worst: {label(i)} ({n:,} {what})",
        )

    def _end_groups(
        self, sessions: I64, start_state: I64, group_names: list[Group], mix: EventMix
    ) -> None:
        """The session-level chain: which group each complete session ends in."""
        pv, chain = self.pv, self.chain
        last_state = pv.state[pv.last_idx[sessions]]
        known = self.known[last_state]
        targets = [*chain.groups, CHURNED]
        tcode = {g: i for i, g in enumerate(targets)}
        end = np.array(
            [
                tcode.get(CHURNED if self.churned[c] else group_names[c], -1)
                for c in last_state.tolist()
            ],
            dtype=np.int64,
        )
        starts = start_state[sessions]
        for g in chain.groups:
            sel = known & self._group_sel(starts, g)
            n_g = int(np.count_nonzero(sel))
            if n_g == 0:
                continue
            e = end[sel]
            obs = np.bincount(e[e >= 0], minlength=len(targets)).astype(np.float64) / n_g
            exp = np.array([chain.session(g).next_group.get(t, 0.0) for t in targets])
            lab = [f"{t[0]}/{t[1]}" if t != CHURNED else "churned" for t in targets]
            row = self._worst(
                f"session ends in | {g[0]}/{g[1] or '-'}",
                obs,
                exp,
                n_g,
                lab.__getitem__,
                "sessions",
            )
            if (e < 0).any():
                row = Row(
                    row.name,
                    row.kind,
                    row.unit,
                    False,
                    row.observed,
                    row.expected,
                    row.tolerance,
                    n_g,
                    f"{int(np.count_nonzero(e < 0))} sessions end "
                    "in a group with no new-session entry",
                )
            self.rows.append(row)
