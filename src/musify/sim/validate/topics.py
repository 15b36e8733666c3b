"""Checks that the other three topic files agree with the page views.

``_TopicChecks._topic_matches``: listen events are exactly the NextSong page views,
status-change events exactly the status-change pages, auth events exactly the page
views after a Login page; it also marks the page views with an auth event for the
statistics (``stats``). A mixin of ``checker._Checker`` on ``base._CheckerBase``; rows
are made with ``structure._violations``. The package docstring lists every part of
``musify.sim.validate``.
"""

from __future__ import annotations

import numpy as np

from musify.events import STATUS_CHANGE_PAGES
from musify.sim.validate.base import _CheckerBase
from musify.sim.validate.constants import I64, Bool
from musify.sim.validate.structure import _PV, _example, _violations


class _TopicChecks(_CheckerBase):
    """listen_events, status_change_events and auth_events against the page views."""

    def _topic_matches(self, keys: list[I64], is_song_row: Bool) -> tuple[Bool, Bool]:
        pv, raw = self.pv, self.raw
        k_li, k_au, k_sc = keys
        # listen_events: exactly the NextSong page views.
        li = raw["li"]
        idx, found = self._match(pv, k_li)
        same = found & is_song_row[idx]
        for col in ("ts", "uid", "dev", "song"):
            same &= li.np(col).astype(np.int64, copy=False) == getattr(pv, col)[idx]
        same &= li.np("auth") == self.auth_of[pv.state[idx]]
        same &= li.np("level") == self.level_of[pv.state[idx]]
        dup = self._duplicates(k_li)
        n_song = int(np.count_nonzero(is_song_row))
        n_li = len(k_li)
        bad = int(np.count_nonzero(~same)) + dup + max(0, n_song - (n_li - dup))
        det = [f"{n_li:,} listen events, {n_song:,} NextSong page views"]
        if (~same).any():
            det.append(
                f"{int(np.count_nonzero(~same)):,} listen events without an "
                f"identical NextSong page view (first: listen event "
                f"#{int(np.flatnonzero(~same)[0]) + 1})"
            )
        if dup:
            det.append(f"{dup:,} duplicated (sessionId, itemInSession)")
        _violations(
            self.rows,
            "listen_events = NextSong page views",
            bad,
            max(n_song, n_li),
            "; ".join(det) if bad else "",
        )

        # status_change_events: exactly the page views of the status-change pages.
        sc = raw["sc"]
        idx, found = self._match(pv, k_sc)
        st = pv.state[idx]
        same = found & self.is_status_page[st]
        for col in ("ts", "uid", "dev"):
            same &= sc.np(col).astype(np.int64, copy=False) == getattr(pv, col)[idx]
        same &= sc.np("auth") == self.auth_of[st]
        same &= sc.np("level") == self.level_of[st]
        same &= sc.np("page") == self.page_of[st]
        dup = self._duplicates(k_sc)
        n_pages = int(np.count_nonzero(self.is_status_page[pv.state]))
        n_sc = len(k_sc)
        bad = int(np.count_nonzero(~same)) + dup + max(0, n_pages - (n_sc - dup))
        det = [
            f"{n_sc:,} status changes, {n_pages:,} "
            f"{'/'.join(sorted(STATUS_CHANGE_PAGES))} page views"
        ]
        if (~same).any():
            det.append(f"{int(np.count_nonzero(~same)):,} without an identical page view")
        _violations(
            self.rows,
            "status_change_events = status-change pages",
            bad,
            max(n_pages, n_sc),
            "; ".join(det) if bad else "",
        )

        # auth_events: the page view right after a Login page (same session).
        au = raw["au"]
        idx, found = self._match(pv, k_au)
        st = pv.state[idx]
        same = found.copy()
        for col in ("ts", "uid", "dev"):
            same &= au.np(col).astype(np.int64, copy=False) == getattr(pv, col)[idx]
        same &= au.np("level") == self.level_of[st]
        success = au.np("success").astype(bool)
        right_success = success == self.logged_in[st]
        complete = au.np("complete").astype(bool)
        shown_ok = complete & ((au.np("uid") >= 0) == self.shown[st])
        m = len(pv.ts)
        after_login = np.zeros(m, dtype=bool)
        if m:
            after_login[1:] = pv.step[1:] & self.is_login[pv.state[:-1]]
        unknown_prev = ~pv.step & (pv.item > 0)  # the previous event is not in the files
        allowed = after_login[idx] | unknown_prev[idx]
        dup = self._duplicates(k_au)
        has_auth = np.zeros(m, dtype=bool)
        has_auth[idx[found]] = True
        missing = after_login & ~has_auth
        n_bad = (
            int(np.count_nonzero(~same))
            + int(np.count_nonzero(same & ~allowed))
            + dup
            + int(np.count_nonzero(missing))
            + int(np.count_nonzero(same & ~right_success))
            + int(np.count_nonzero(same & ~shown_ok))
        )
        det = [
            f"{len(k_au):,} auth events, {int(np.count_nonzero(after_login)):,} page "
            "views after a Login page"
        ]
        for what, x in (
            ("without an identical page view", ~same),
            ("not after a Login page", same & ~allowed),
            ("with success ≠ (auth is Logged In)", same & ~right_success),
            ("with user details wrong for the page view's auth", same & ~shown_ok),
        ):
            if x.any():
                det.append(
                    f"{int(np.count_nonzero(x)):,} {what} (first: auth event "
                    f"#{int(np.flatnonzero(x)[0]) + 1})"
                )
        if missing.any():
            det.extend(_example(pv, np.flatnonzero(missing), lambda _: "no auth event after Login"))
        if dup:
            det.append(f"{dup:,} duplicated (sessionId, itemInSession)")
        _violations(
            self.rows,
            "auth_events = page after Login",
            n_bad,
            max(len(k_au), int(np.count_nonzero(after_login))),
            "; ".join(det) if n_bad else "",
        )
        # For the statistics: page views with an auth event (a successful one).
        auth_row = np.zeros(m, dtype=bool)
        auth_row[idx[same]] = True
        auth_ok_row = np.zeros(m, dtype=bool)
        auth_ok_row[idx[same & success]] = True
        return auth_row, auth_ok_row

    def _match(self, pv: _PV, key: I64) -> tuple[I64, Bool]:
        """Index of the page view with each key, and whether there is one."""
        if len(pv.key) == 0:
            return np.zeros(len(key), dtype=np.int64), np.zeros(len(key), dtype=bool)
        idx = np.minimum(np.searchsorted(pv.key, key), len(pv.key) - 1)
        return idx, pv.key[idx] == key

    @staticmethod
    def _duplicates(key: I64) -> int:
        if len(key) < 2:
            return 0
        s = np.sort(key)
        return int(np.count_nonzero(s[1:] == s[:-1]))
