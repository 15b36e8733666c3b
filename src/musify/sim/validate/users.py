"""Checks of users across sessions.

``_UserChecks._users``: a session has one user and device, a user one name,
registration and device, and a user's consecutive sessions chain up (same group, the
session gap, nothing after churn). A mixin of ``checker._Checker`` on
``base._CheckerBase``; rows are made with ``structure._violations``. The package
docstring lists every part of ``musify.sim.validate``.
"""

from __future__ import annotations

import math

import numpy as np

from musify.sim.validate.base import _CheckerBase
from musify.sim.validate.structure import _violations


class _UserChecks(_CheckerBase):
    """Users and their sessions."""

    def _users(self) -> None:
        """Sessions belong to one user; consecutive sessions of a user chain up."""
        pv, cfg = self.pv, self.cfg
        fi, la = pv.first_idx, pv.last_idx
        n_s = len(fi)
        ident = pv.uid >= 0
        big = np.iinfo(np.int64).max
        if n_s:
            uid_max = np.maximum.reduceat(pv.uid, fi)
            uid_min = np.minimum.reduceat(np.where(ident, pv.uid, big), fi)
            dev_max = np.maximum.reduceat(pv.dev, fi)
            dev_min = np.minimum.reduceat(pv.dev, fi)
        else:
            uid_max = uid_min = dev_max = dev_min = np.zeros(0, dtype=np.int64)
        mixed = (uid_max >= 0) & (uid_min != uid_max)
        dev_mixed = dev_min != dev_max
        det = []
        if mixed.any():
            det.append(
                f"{int(np.count_nonzero(mixed)):,} sessions with several userIds "
                f"(first: session {int(pv.sid[fi[np.flatnonzero(mixed)[0]]])})"
            )
        if dev_mixed.any():
            det.append(
                f"{int(np.count_nonzero(dev_mixed)):,} sessions with several devices "
                f"(first: session {int(pv.sid[fi[np.flatnonzero(dev_mixed)[0]]])})"
            )
        _violations(
            self.rows, "one user and device per session", mixed | dev_mixed, n_s, "; ".join(det)
        )

        # One name/registration/device per user (identified page views).
        rows = np.flatnonzero(ident)
        order = rows[np.argsort(pv.uid[rows], kind="stable")]
        u = pv.uid[order]
        same_user = u[1:] == u[:-1]
        bad_p = same_user & (pv.person[order][1:] != pv.person[order][:-1])
        bad_d = same_user & (pv.dev[order][1:] != pv.dev[order][:-1])
        users = np.unique(u)
        self.n_users = len(users)
        bad_users = np.unique(u[1:][bad_p | bad_d])
        _violations(
            self.rows,
            "one name, registration and device per user",
            len(bad_users),
            len(users),
            f"userId {int(bad_users[0])} changes" if len(bad_users) else "",
        )

        # Chains of a user's sessions (sessions with at least one identified event).
        s_uid = uid_max
        known = np.flatnonzero(s_uid >= 0)
        first_ts = pv.ts[fi]
        order_s = known[np.lexsort((first_ts[known], s_uid[known]))]
        a, b = order_s[:-1], order_s[1:]
        pair = s_uid[a] == s_uid[b]
        a, b = a[pair], b[pair]
        last_state = pv.state[la[a]]
        next_state = pv.state[fi[b]]
        hidden_moves = self._hidden_group_changes()
        bad_group = self.group_code[last_state] != self.group_code[next_state]
        if hidden_moves:
            bad_group[:] = False
        cut_later = pv.item[fi[b]] > 0
        cant_end = (self.stop[last_state] <= 0) & self.known[last_state]
        bad_chain = bad_group | cut_later | cant_end
        det = []
        for what, x in (
            ("start in another group than the previous session ended in", bad_group),
            ("began before the window though not the user's first", cut_later),
            ("follow a session whose last state cannot end a session", cant_end),
        ):
            if x.any():
                s0 = int(np.flatnonzero(x)[0])
                det.append(
                    f"{int(np.count_nonzero(x)):,} sessions {what} (first: session "
                    f"{int(pv.sid[fi[b[s0]]])} of user {int(s_uid[b[s0]])})"
                )
        if hidden_moves:
            det.append(
                "group check skipped: the config changes (auth, level) without showing the user"
            )
        _violations(
            self.rows, "next session starts where the last ended", bad_chain, len(a), "; ".join(det)
        )
        gap_ms = pv.ts[fi[b]] - pv.ts[la[a]]
        min_gap = math.floor(cfg.session_gap) * 1000
        short = gap_ms < min_gap
        _violations(
            self.rows,
            "session gap at least session-gap",
            short,
            len(a),
            f"{int(np.count_nonzero(short)):,} gaps under {cfg.session_gap:g} s "
            f"(shortest {int(gap_ms.min()) // 1000 if len(gap_ms) else 0} s)",
        )
        churn = self.churned[last_state]
        _violations(
            self.rows,
            "nothing after churn",
            churn,
            len(a),
            f"first: user {int(s_uid[a[np.flatnonzero(churn)[0]]])}" if churn.any() else "",
        )

    def _hidden_group_changes(self) -> bool:
        """Can a session move between (auth, level) groups without showing the user?"""
        cfg = self.cfg
        for i, (_, dests) in enumerate(cfg.transitions):
            s = cfg.states[i]
            for d in dests:
                t = cfg.states[d]
                if (
                    not cfg.show_user_details.get(s.auth, False)
                    and not cfg.show_user_details.get(t.auth, False)
                    and s.group != t.group
                ):
                    return True
        return False
