"""The base of ``musify validate``'s checker: inputs and tables per state code.

``_CheckerBase.__init__`` takes the config, its chain and the columns ``read`` made, and
builds lookup arrays per state code (page, auth, level, status, transitions, starts,
groups). The groups of checks subclass it: ``topics._TopicChecks``,
``users._UserChecks`` and ``stats._StatisticsChecks``; ``checker._Checker`` combines them
and runs everything. The package docstring lists every part of ``musify.sim.validate``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from musify.events import LISTEN_PAGE, LOGIN_PAGE, STATUS_CHANGE_PAGES
from musify.sim.config import SimConfig
from musify.sim.markov import LOGGED_IN, Chain, Group
from musify.sim.validate.read import _Cols, _Ctx
from musify.sim.validate.report import Row
from musify.sim.validate.structure import _PV


class _CheckerBase:
    """The checker's inputs and per-state tables, shared by the groups of checks
    (``topics``, ``users``, ``stats``) that ``checker._Checker`` combines."""

    #: the page views sorted by session, set by ``_Checker.run``
    pv: _PV

    def __init__(
        self,
        cfg: SimConfig,
        chain: Chain,
        ctx: _Ctx,
        directory: Path,
        config: Path,
        pv: _Cols,
        li: _Cols,
        au: _Cols,
        sc: _Cols,
    ) -> None:
        self.cfg, self.chain, self.ctx = cfg, chain, ctx
        self.directory, self.config = directory, config
        self.counts = {
            "page_view_events": len(pv),
            "listen_events": len(li),
            "auth_events": len(au),
            "status_change_events": len(sc),
        }
        self.rows: list[Row] = []
        self.issues = ctx.issues
        self.raw = {"pv": pv, "li": li, "au": au, "sc": sc}
        # Per state code (config states first, then unknown ones).
        tuples = ctx.state_tuples
        self.n_codes = len(tuples)
        self.known = np.arange(self.n_codes) < ctx.n_config
        self.page_of = np.array(
            [ctx.pages.code(t[0]) if isinstance(t[0], str) else -1 for t in tuples], dtype=np.int64
        )
        self.auth_of = np.array(
            [ctx.auths.code(t[1]) if isinstance(t[1], str) else -1 for t in tuples], dtype=np.int64
        )
        self.level_of = np.array(
            [ctx.levels.code(t[4]) if isinstance(t[4], str) else -1 for t in tuples], dtype=np.int64
        )
        self.status_of = np.array([t[3] for t in tuples], dtype=np.int64)
        self.is_redirect = (self.status_of >= 300) & (self.status_of <= 398)
        self.is_song = np.array([t[0] == LISTEN_PAGE for t in tuples])
        self.is_login = np.array([t[0] == LOGIN_PAGE for t in tuples])
        self.is_status_page = np.array([t[0] in STATUS_CHANGE_PAGES for t in tuples])
        self.shown = np.array([ctx.shown(t[1]) for t in tuples])
        self.logged_in = np.array([t[1] == LOGGED_IN for t in tuples])
        self.churned = np.array(
            [cfg.churned_state is not None and t[1] == cfg.churned_state for t in tuples]
        )
        stop = np.zeros(self.n_codes)
        stop[: ctx.n_config] = chain.stop
        self.stop = stop
        allowed = np.zeros((self.n_codes, self.n_codes), dtype=bool)
        allowed[: ctx.n_config, : ctx.n_config] = chain.P > 0
        self.allowed = allowed
        can_start = np.zeros(self.n_codes, dtype=bool)
        for idxs, weights in cfg.new_session.values():
            for i, w in zip(idxs, weights, strict=True):
                if w > 0:
                    can_start[i] = True
        self.can_start = can_start
        groups: dict[Group, int] = {}
        self.group_code = np.array(
            [groups.setdefault((str(t[1]), str(t[4])), len(groups)) for t in tuples], dtype=np.int64
        )
        self.groups = list(groups)
