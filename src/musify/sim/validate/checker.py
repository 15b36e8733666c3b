"""``validate_dir``, the entry point of ``musify validate``, and ``_Checker``, which runs it.

``validate_dir`` reads the four topic files with ``read``'s readers and hands the columns
to ``_Checker``. ``_Checker.run`` sorts the page views by session and does the
file-order, state, transition, item, time, redirect and song-timing checks itself, then
those of its mixins: ``topics._TopicChecks``, ``users._UserChecks`` and
``stats._StatisticsChecks`` (all on ``base._CheckerBase``); it returns a
``report.Report``. The package docstring lists every part of ``musify.sim.validate``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from musify.errors import UsageError
from musify.sim.config import load_config
from musify.sim.markov import analyse
from musify.sim.validate.constants import I64, TOPIC_FILES, Bool
from musify.sim.validate.read import (
    _Ctx,
    _Issues,
    _read_auth,
    _read_listens,
    _read_page_views,
    _read_status,
    _Vocab,
)
from musify.sim.validate.report import Report
from musify.sim.validate.stats import _StatisticsChecks
from musify.sim.validate.structure import _PV, STRUCTURE_CHECKS, _example, _violations
from musify.sim.validate.topics import _TopicChecks
from musify.sim.validate.users import _UserChecks


def validate_dir(directory: Path, config: Path) -> Report:
    """Check ``directory``'s four topic files against ``config``; see the module doc."""
    directory = Path(directory)
    if not directory.is_dir():
        raise UsageError(
            f"{directory} is not a folder (expected the --output-dir of `musify generate`)"
        )
    paths = {t: directory / f for t, f in TOPIC_FILES.items()}
    missing = [p.name for p in paths.values() if not p.is_file()]
    if missing:
        raise UsageError(
            f"{directory} lacks {', '.join(missing)} (expected the four "
            "<topic>.jsonl files that `musify generate --output-dir` writes)"
        )
    cfg = load_config(config)
    chain = analyse(cfg)

    n = len(cfg.states)
    state_tuples: list[tuple[Any, ...]] = [
        (s.page, s.auth, s.method, s.status, s.level) for s in cfg.states
    ]
    ctx = _Ctx(
        cfg=cfg,
        state_codes={k: i for i, k in enumerate(state_tuples)},
        state_tuples=state_tuples,
        n_config=n,
        auths=_Vocab(s.auth for s in cfg.states),
        levels=_Vocab(s.level for s in cfg.states),
        pages=_Vocab(s.page for s in cfg.states),
        issues={name: _Issues() for name in STRUCTURE_CHECKS},
    )
    checker = _Checker(
        cfg,
        chain,
        ctx,
        directory,
        Path(config),
        _read_page_views(paths["page_view_events"], ctx),
        _read_listens(paths["listen_events"], ctx),
        _read_auth(paths["auth_events"], ctx),
        _read_status(paths["status_change_events"], ctx),
    )
    return checker.run()


class _Checker(_TopicChecks, _UserChecks, _StatisticsChecks):
    """All checks of one folder: ``run`` does the file-order, state, item, time, redirect
    and song-timing checks here, then those of ``topics``, ``users`` and ``stats``."""

    # ------------------------------------------------------------------ helpers
    def _sorted_pv(self, rank: I64, k: int, off: int) -> _PV:
        c = self.raw["pv"]
        cols = {name: c.np(name).astype(np.int64, copy=False) for name in c.cols}
        key = rank * k + (cols["item"] - off)
        order = np.argsort(key, kind="stable")
        s = {name: a[order] for name, a in cols.items()}
        key = key[order]
        r = rank[order]
        m = len(key)
        first = np.ones(m, dtype=bool)
        if m:
            first[1:] = r[1:] != r[:-1]
        step = np.zeros(m, dtype=bool)
        if m:
            step[1:] = ~first[1:] & (s["item"][1:] - s["item"][:-1] == 1)
        seg = np.cumsum(first) - 1
        first_idx = np.flatnonzero(first)
        last_idx = np.r_[first_idx[1:] - 1, m - 1] if m else np.zeros(0, dtype=np.int64)
        return _PV(
            ts=s["ts"],
            sid=s["sid"],
            item=s["item"],
            state=s["state"],
            uid=s["uid"],
            person=s["person"],
            dev=s["dev"],
            song=s["song"],
            dfloor=s["dfloor"],
            line=s["line"],
            key=key,
            first=first,
            step=step,
            seg=seg,
            first_idx=first_idx,
            last_idx=last_idx.astype(np.int64),
        )

    # ------------------------------------------------------------------ run
    def run(self) -> Report:
        raw = self.raw
        # File-order checks first: after sorting, the raw page-view columns are dropped.
        n_back, back_detail = 0, []
        for t, name in (
            ("pv", "page_view_events"),
            ("li", "listen_events"),
            ("au", "auth_events"),
            ("sc", "status_change_events"),
        ):
            ts = raw[t].np("ts")
            back_rows = np.flatnonzero(ts[1:] < ts[:-1]) if len(ts) > 1 else ts[:0]
            if len(back_rows):
                back_detail.append(
                    f"{name}: {len(back_rows):,} (first at line {int(back_rows[0]) + 2:,})"
                )
            n_back += len(back_rows)
        not_whole = sum(
            int(np.count_nonzero(raw[t].np("ts") % 1000)) for t in ("pv", "li", "au", "sc")
        )
        items = [raw[t].np("item").astype(np.int64, copy=False) for t in ("pv", "li", "au", "sc")]
        sids = [raw[t].np("sid").astype(np.int64, copy=False) for t in ("pv", "li", "au", "sc")]
        all_items = np.concatenate(items)
        off = int(all_items.min()) if len(all_items) else 0
        k = int(all_items.max()) - off + 1 if len(all_items) else 1
        del all_items
        _, inv = np.unique(np.concatenate(sids), return_inverse=True)
        inv = inv.astype(np.int64, copy=False).reshape(-1)
        bounds = np.cumsum([0] + [len(s) for s in sids])
        ranks = [inv[bounds[i] : bounds[i + 1]] for i in range(4)]
        keys = [ranks[i] * k + (items[i] - off) for i in range(1, 4)]
        pv = self._sorted_pv(ranks[0], k, off)
        del items, sids, inv, ranks
        del raw["pv"]
        self.pv = pv
        is_song_row = self.is_song[pv.state]

        issues = self.issues
        for t in ("page_view_events", "listen_events", "auth_events", "status_change_events"):
            name = f"schema: {t}"
            _violations(self.rows, name, 0, self.counts[t] + issues[name].n, issues=issues[name])
        total_lines = sum(self.counts.values())
        _violations(self.rows, "zip is a string", 0, total_lines, issues=issues["zip is a string"])
        _violations(
            self.rows,
            "user details iff shown",
            0,
            self.counts["page_view_events"]
            + self.counts["listen_events"]
            + self.counts["status_change_events"],
            issues=issues["user details iff shown"],
        )
        _violations(
            self.rows,
            "auth events have no auth and no page",
            0,
            self.counts["auth_events"],
            issues=issues["auth events have no auth and no page"],
        )
        _violations(
            self.rows,
            "song fields only on NextSong",
            0,
            len(pv.ts),
            issues=issues["song fields only on NextSong"],
        )

        # States, transitions, starts.
        unknown = ~self.known[pv.state]
        _violations(
            self.rows,
            "page views are config states",
            unknown,
            len(pv.ts),
            "; ".join(
                _example(
                    pv,
                    np.flatnonzero(unknown),
                    lambda j: "unknown state " + repr(self.ctx.state_tuples[int(pv.state[j])]),
                )
            ),
        )
        j = np.flatnonzero(pv.step)
        bad = (
            ~self.allowed[pv.state[j - 1], pv.state[j]]
            & self.known[pv.state[j - 1]]
            & self.known[pv.state[j]]
        )
        _violations(
            self.rows,
            "steps are config transitions",
            bad,
            len(j),
            "; ".join(_example(pv, j[bad], lambda x: self._step_label(x))),
        )
        starts = np.flatnonzero(pv.first & (pv.item == 0))
        bad_start = ~self.can_start[pv.state[starts]] & self.known[pv.state[starts]]
        _violations(
            self.rows,
            "sessions start in a new-session state",
            bad_start,
            len(starts),
            "; ".join(
                _example(
                    pv, starts[bad_start], lambda x: "first state " + self._label(int(pv.state[x]))
                )
            ),
        )
        # Items and time.
        nonfirst = np.flatnonzero(~pv.first)
        gap_items = pv.item[nonfirst] - pv.item[nonfirst - 1]
        bad_items = gap_items != 1
        _violations(
            self.rows,
            "itemInSession unique and contiguous",
            bad_items,
            len(pv.ts),
            "; ".join(
                _example(
                    pv,
                    nonfirst[bad_items],
                    lambda x: (
                        "duplicate"
                        if pv.item[x] == pv.item[x - 1]
                        else f"follows item {int(pv.item[x - 1])}"
                    ),
                )
            ),
        )
        back = pv.ts[nonfirst] < pv.ts[nonfirst - 1]
        _violations(
            self.rows,
            "time order within sessions",
            back,
            len(nonfirst),
            "; ".join(
                _example(
                    pv,
                    nonfirst[back],
                    lambda x: (
                        f"ts {int(pv.ts[x])} before item {int(pv.item[x - 1])}'s "
                        f"{int(pv.ts[x - 1])}"
                    ),
                )
            ),
        )
        _violations(
            self.rows,
            "ts non-decreasing in each file",
            n_back,
            total_lines,
            "; ".join(back_detail),
        )
        _violations(self.rows, "ts whole seconds", not_whole, total_lines)
        _violations(
            self.rows,
            "no event before registration",
            0,
            total_lines,
            issues=issues["no event before registration"],
        )

        # Redirects: exactly one second after the previous event of the session.
        r = np.flatnonzero(pv.step & self.is_redirect[pv.state])
        bad_r = pv.ts[r] - pv.ts[r - 1] != 1000
        _violations(
            self.rows,
            "redirects 1 s after the previous event",
            bad_r,
            len(r),
            "; ".join(
                _example(
                    pv,
                    r[bad_r],
                    lambda x: f"{int(pv.ts[x] - pv.ts[x - 1])} ms after the previous event",
                )
            ),
        )
        self._song_timing(is_song_row)
        auth_row, auth_ok_row = self._topic_matches(keys, is_song_row)
        self._users()

        self._statistics(auth_row, auth_ok_row)
        return Report(
            str(self.directory),
            str(self.config),
            self.counts,
            sessions=len(pv.first_idx),
            users=self.n_users,
            rows=self.rows,
        )

    def _label(self, code: int) -> str:
        t = self.ctx.state_tuples[code]
        return f"{t[0]}/{t[1]}/{t[4] or '-'}"

    def _step_label(self, j: int) -> str:
        pv = self.pv
        return (
            f"{self._label(int(pv.state[j - 1]))} → {self._label(int(pv.state[j]))} "
            "is not a transition"
        )

    def _song_timing(self, is_song_row: Bool) -> None:
        """The engine: at a NextSong step, if the previous event happened before the
        session's current song ended, the new song starts when it ends; otherwise after
        an exponential gap. Checkable when the previous song is in the files and every
        event since it too (contiguous items)."""
        pv = self.pv
        m = len(pv.ts)
        idx = np.arange(m)
        run_start = np.maximum.accumulate(np.where(pv.step, 0, idx)) if m else idx
        last_song = np.maximum.accumulate(np.where(is_song_row, idx, -1)) if m else idx
        j = np.flatnonzero(is_song_row & pv.step)
        i = last_song[j - 1]
        ok = i >= run_start[j]
        j, i = j[ok], i[ok]
        song_end = pv.ts[i] + pv.dfloor[i] * 1000
        must = (pv.ts[j - 1] < song_end) & (pv.dfloor[i] >= 0)
        j, song_end = j[must], song_end[must]
        bad = pv.ts[j] != song_end
        _violations(
            self.rows,
            "NextSong at the end of the previous song",
            bad,
            len(j),
            "; ".join(
                _example(
                    pv,
                    j[bad],
                    lambda x: (
                        f"ts {int(pv.ts[x])}, the previous song ends at "
                        f"{int(song_end[np.searchsorted(j, x)])}"
                    ),
                )
            ),
        )
