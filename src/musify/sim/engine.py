"""The simulation core: eventsim's user model, one block of users at a time.

Users are independent of each other, so they are simulated in fixed blocks
(``BLOCK_USERS`` users each, plus the growth users dealt to the block). Each block has
its own random streams derived from (seed, block number), so a block's events do not
depend on which process simulates it or how many processes there are: that is what
makes output byte-identical for any number of workers.

A block advances in chunks of simulated time. Dormant users (between sessions) live
in numpy arrays; only users with an event due in the chunk are touched, and each runs
in a tight Python loop over its session until its next event falls past the chunk.
Event lines are built from JSON fragments precomputed per state, song, location, user
agent and name, so the hot loop only formats numbers.

The model is eventsim's (docs/eventsim-spec.md §4-5): per-user log-normal alpha/beta,
exponential gaps in whole seconds, 1 s before redirects, NextSong spaced by the song's
length, the daily warp and weekend/holiday damping of session starts, growth. Fixed
against eventsim (each one documented in docs/generator.md):

- user ids start at first-user-id (§9.4); nobody has events before registration
  (§9.6): growth users start their first session when they arrive;
- initial users' registration is exponential with mean 1/growth-rate years, truncated
  at 5 years (uniform over 5 years without growth) instead of piling up (§9.5);
- attrition is a rate: each user leaves after an exponential time with mean
  1/attrition-rate years (§9.2);
- the session gap is a true minimum (§9.13);
- auth events follow only a real Login page (§9.10) and cancellations are status
  changes too (§9.10);
- warm-up starts in equilibrium a few hours before the window instead of simulating
  weeks of discarded history (§5.4).
"""

from __future__ import annotations

import hashlib
import math
import random
from bisect import bisect_right
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
import orjson

from musify.events import LISTEN_PAGE, LOGIN_PAGE, STATUS_CHANGE_PAGES
from musify.sim.catalog import Catalog, load_catalog, synthetic_catalog
from musify.sim.clock import YEAR, Calendar
from musify.sim.config import SimConfig, parse_config
from musify.sim.people import MALE_SHARE, People, load_people

BLOCK_USERS = 500
#: Simulated time before the window in which initial users may already be mid-session.
WARMUP_SECONDS = 6 * 3600
#: Registration of initial users lies at most this far before the window.
SERVICE_AGE = 5 * YEAR
NEVER = 2**62
_MAX_GAP_TRIES = 64

#: Topic order of the engine's output lists, and the topic each position holds.
PAGE_VIEW, LISTEN, AUTH, STATUS = 0, 1, 2, 3
ENGINE_TOPICS = ("page_view_events", "listen_events", "auth_events", "status_change_events")


@dataclass
class TopicOut:
    ts: list[int] = field(default_factory=list)
    keys: list[int] = field(default_factory=list)
    lines: list[bytes] = field(default_factory=list)

    def extend(self, other: TopicOut) -> None:
        self.ts.extend(other.ts)
        self.keys.extend(other.keys)
        self.lines.extend(other.lines)


def new_outs() -> tuple[TopicOut, TopicOut, TopicOut, TopicOut]:
    return (TopicOut(), TopicOut(), TopicOut(), TopicOut())


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild the model in another process (picklable)."""

    config_raw: dict[str, Any]
    config_source: str
    catalog_path: str | None
    cache_dir: str | None
    tag: str | None
    window_start: int
    window_end: int  # NEVER for an unbounded continuous run
    first_user_id: int
    n_users: int
    growth_rate: float
    attrition_rate: float
    seed: int

    @property
    def n_blocks(self) -> int:
        return max(1, math.ceil(self.n_users / BLOCK_USERS))

    def block_users(self, b: int) -> tuple[int, int]:
        """Initial users [lo, hi) of block b (0-based indexes among initial users)."""
        n, k = self.n_users, self.n_blocks
        return (b * n // k, (b + 1) * n // k)


def _json(s: str) -> bytes:
    return orjson.dumps(s)


def _num(x: float) -> bytes:
    # Shortest round-trip repr, like Jackson's float printing.
    return orjson.dumps(float(x))


class Model:
    """The compiled, read-only part of a simulation, shared by all blocks of a process."""

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec
        cfg = parse_config(spec.config_raw, spec.config_source)
        self.cfg: SimConfig = cfg
        self.catalog: Catalog = (
            load_catalog(spec.catalog_path) if spec.catalog_path else synthetic_catalog()
        )
        self.people: People = load_people(Path(spec.cache_dir) if spec.cache_dir else None)
        self.calendar = Calendar(
            cfg.damping,
            cfg.weekend_damping,
            cfg.weekend_damping_offset,
            cfg.weekend_damping_scale,
        )
        states = cfg.states
        self.n_states = len(states)
        self.trans_cum = [list(c) for c, _ in cfg.transitions]
        self.trans_dest = [list(d) for _, d in cfg.transitions]
        self.is_redirect = [s.is_redirect for s in states]
        self.is_song = [s.page == LISTEN_PAGE for s in states]
        self.is_login = [s.page == LOGIN_PAGE for s in states]
        self.is_status = [s.page in STATUS_CHANGE_PAGES for s in states]
        self.show = [cfg.show_user_details[s.auth] for s in states]
        self.churned = [
            cfg.churned_state is not None and s.auth == cfg.churned_state for s in states
        ]
        self.success = [s.auth == "Logged In" for s in states]
        # Session starts per (auth, level) group, as cumulative probabilities.
        self.group_of = [s.group for s in states]
        self.new_session: dict[tuple[str, str], tuple[list[float], list[int]]] = {}
        for g, (idxs, weights) in cfg.new_session.items():
            w = np.cumsum(np.asarray(weights, dtype=np.float64))
            self.new_session[g] = ((w / w[-1]).tolist(), list(idxs))
        self.start_of_state: list[tuple[list[float], list[int]] | None] = [
            self.new_session.get(g) for g in self.group_of
        ]

        # JSON fragments per state.
        def mid(*keys: str) -> list[bytes]:
            out = []
            for s in states:
                vals = {
                    "page": s.page,
                    "auth": s.auth,
                    "method": s.method,
                    "status": s.status,
                    "level": s.level,
                }
                parts = [b'"%b":%b' % (k.encode(), orjson.dumps(vals[k])) for k in keys]
                out.append(b",".join(parts) + b',"itemInSession":')
            return out

        self.pv_mid = mid("page", "auth", "method", "status", "level")
        self.listen_mid = mid("auth", "level")
        self.auth_mid = mid("level")
        self.status_mid = mid("auth", "level")
        self.status_page = [_json(s.page) for s in states]
        # Songs.
        cat = self.catalog
        self.song_cum = cat.cumulative.tolist()
        self.song_floor = [int(d) for d in cat.durations.tolist()]
        self.song_core = [
            b'"artist":%b,"song":%b,"duration":%b' % (_json(a), _json(t), _num(d))
            for a, t, d in zip(cat.artists, cat.titles, cat.durations.tolist(), strict=True)
        ]
        self.song_tail = [b"," + c for c in self.song_core]
        # People.
        ppl = self.people
        self.loc_head = [
            b'"city":%b,"zip":%b,"state":%b'
            % (_json(str(r[0])), _json(str(r[1])), _json(str(r[2])))
            for r in ppl.locations.rows
        ]
        self.loc_geo = [
            b',"lon":%b,"lat":%b' % (_num(float(str(r[4]))), _num(float(str(r[3]))))
            for r in ppl.locations.rows
        ]
        self.ua_json = [b',"userAgent":' + _json(str(r[0])) for r in ppl.user_agents.rows]
        self.first_json = (
            [_json(str(r[0])) for r in ppl.first_male.rows],
            [_json(str(r[0])) for r in ppl.first_female.rows],
        )
        self.last_json = [_json(str(r[0])) for r in ppl.last.rows]
        tag = spec.tag
        self.tag_frag = b',"tag":' + _json(tag) if tag else b""

    def pick_start(self, group: tuple[str, str], u: float) -> int:
        cum, idxs = self.new_session[group]
        return idxs[min(bisect_right(cum, u), len(idxs) - 1)]


def block_seed(seed: int, block: int, stream: str) -> int:
    digest = hashlib.sha256(f"musify:{seed}:{block}:{stream}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


#: A sessionId is the run's tag in the high bits and the run's own session number in the
#: low SESSION_BITS: 2^40 sessions per run (a million users for a thousand years at three
#: sessions a day) and 2^23 - 1 tags, so every id stays a positive int64.
SESSION_BITS = 40
RUN_TAGS = (1 << (63 - SESSION_BITS)) - 1


def run_tag(spec: ModelSpec) -> int:
    """The run's identity in its session ids, in [1, RUN_TAGS].

    Derived from everything that decides the run's events (seed, users, window start,
    config), so the same run regenerated (``--resume``, a re-run) gets the same ids and
    runs that differ get different ones: two different runs share a tag with odds of
    1 in 8.4 million. The window's end is left out: extending a run keeps its ids.
    """
    identity = orjson.dumps(
        {
            "seed": spec.seed,
            "first_user_id": spec.first_user_id,
            "n_users": spec.n_users,
            "window_start": spec.window_start,
            "growth_rate": spec.growth_rate,
            "attrition_rate": spec.attrition_rate,
            "tag": spec.tag,
            "config": spec.config_raw,
        },
        option=orjson.OPT_SORT_KEYS,
        default=str,
    )
    digest = hashlib.sha256(b"musify-run:" + identity).digest()
    return int.from_bytes(digest[:8], "little") % RUN_TAGS + 1


class _Arrays:
    """Growable per-user columns of one block."""

    COLUMNS: ClassVar[dict[str, Any]] = {
        "uid": np.int64,
        "alpha": np.float64,
        "beta": np.float64,
        "registration": np.int64,
        "gender": np.int8,
        "first": np.int32,
        "last": np.int32,
        "loc": np.int32,
        "ua": np.int32,
        "leave": np.int64,
        "next_ts": np.int64,
        "next_state": np.int32,
    }

    def __init__(self, capacity: int) -> None:
        self.n = 0
        self.cols: dict[str, npt.NDArray[Any]] = {
            k: np.zeros(max(capacity, 8), dtype=t) for k, t in self.COLUMNS.items()
        }

    def append(self, **values: npt.NDArray[Any]) -> None:
        m = len(next(iter(values.values())))
        need = self.n + m
        cap = len(self.cols["uid"])
        if need > cap:
            new_cap = max(need, cap * 2)
            for k, a in self.cols.items():
                b = np.zeros(new_cap, dtype=a.dtype)
                b[: self.n] = a[: self.n]
                self.cols[k] = b
        for k, v in values.items():
            self.cols[k][self.n : need] = v
        self.n = need


class Block:
    """One block of users and its random streams."""

    def __init__(self, model: Model, block: int) -> None:
        self.model = model
        self.block = block
        spec = model.spec
        self.rand = random.Random(block_seed(spec.seed, block, "events")).random
        self.np_rng = np.random.Generator(np.random.PCG64(block_seed(spec.seed, block, "users")))
        self.n_blocks = spec.n_blocks
        self.sessions = 0
        self.session_base = run_tag(spec) << SESSION_BITS
        # Mid-session users at a chunk boundary: uidx -> session state.
        self.active: dict[int, list[int]] = {}
        #: No user of the block is due before this second (a lower bound; see ``due_before``).
        self.wake = -NEVER
        lo, hi = spec.block_users(block)
        self.users = _Arrays(hi - lo)
        self._create_initial(lo, hi)

    # ----------------------------------------------------------------- user creation
    def _people(self, m: int, now: int) -> dict[str, npt.NDArray[Any]]:
        mdl, rng = self.model, self.np_rng
        cfg = mdl.cfg
        ppl = mdl.people
        gender = (rng.random(m) >= MALE_SHARE).astype(np.int8)  # 0 = M, 1 = F
        u_first = rng.random(m)
        first = np.where(
            gender == 0, ppl.first_male.pick(u_first), ppl.first_female.pick(u_first)
        ).astype(np.int32)
        alpha = cfg.alpha * np.exp(rng.standard_normal(m) - 0.5)
        beta = cfg.beta * np.exp(rng.standard_normal(m) - 0.5)
        a = self.model.spec.attrition_rate
        leave = (
            now + np.floor(rng.exponential(YEAR / a, m)).astype(np.int64)
            if a > 0
            else np.full(m, NEVER, dtype=np.int64)
        )
        return {
            "alpha": alpha,
            "beta": beta,
            "gender": gender,
            "first": first,
            "last": ppl.last.pick(rng.random(m)).astype(np.int32),
            "loc": ppl.locations.pick(rng.random(m)).astype(np.int32),
            "ua": ppl.user_agents.pick(rng.random(m)).astype(np.int32),
            "leave": leave,
        }

    def _create_initial(self, lo: int, hi: int) -> None:
        m = hi - lo
        if m <= 0:
            return
        mdl, rng, spec = self.model, self.np_rng, self.model.spec
        cfg = mdl.cfg
        start = spec.window_start
        cols = self._people(m, start)
        # Registration: users present at the start joined at an exponential age with
        # mean 1/growth years (the age distribution of an exponentially growing
        # service), truncated to the service's age; uniform over it without growth.
        g = spec.growth_rate
        u = rng.random(m)
        if g > 0:
            rate = g / YEAR
            age = -np.log1p(-u * (1.0 - math.exp(-rate * SERVICE_AGE))) / rate
        else:
            age = u * SERVICE_AGE
        registration = start - np.ceil(age).astype(np.int64)
        auth_names = [a for a, _ in cfg.auths]
        auth_w = np.asarray([w for _, w in cfg.auths], dtype=np.float64)
        level_names = [lv for lv, _ in cfg.levels]
        level_w = np.asarray([w for _, w in cfg.levels], dtype=np.float64)
        auth_i = np.searchsorted(np.cumsum(auth_w) / auth_w.sum(), rng.random(m), side="right")
        level_i = np.searchsorted(np.cumsum(level_w) / level_w.sum(), rng.random(m), side="right")
        auth_i = np.minimum(auth_i, len(auth_names) - 1)
        level_i = np.minimum(level_i, len(level_names) - 1)
        u_start = rng.random(m)
        first_state = np.fromiter(
            (
                mdl.pick_start((auth_names[a], level_names[lv]), x)
                for a, lv, x in zip(
                    auth_i.tolist(), level_i.tolist(), u_start.tolist(), strict=True
                )
            ),
            dtype=np.int32,
            count=m,
        )
        next_ts = self._equilibrium_starts(cols["beta"], start - WARMUP_SECONDS)
        uid = spec.first_user_id + np.arange(lo, hi, dtype=np.int64)
        self.users.append(
            uid=uid, registration=registration, next_ts=next_ts, next_state=first_state, **cols
        )

    def _equilibrium_starts(self, beta: npt.NDArray[np.float64], t0: int) -> npt.NDArray[np.int64]:
        """First session start after t0 for users in the steady state of their cycle.

        Between sessions eventsim waits session-gap plus an exponential with mean
        beta_u. For a user observed at a random moment, the time to the next start is
        that cycle's forward recurrence time: with probability beta/(beta+gap) an
        exponential with mean beta (memorylessness), else the rest of the fixed gap
        plus the exponential. Warp and weekend damping then apply as for any start.
        """
        rng = self.np_rng
        cal = self.model.calendar
        gap = self.model.cfg.session_gap
        m = len(beta)
        in_gap = rng.random(m) < gap / (beta + gap)
        residual = rng.exponential(1.0, m) * beta + np.where(in_gap, rng.random(m) * gap, 0.0)
        cand = cal.warp_array(t0 + np.floor(residual).astype(np.int64))
        # Weekend/holiday rejection: a rejected candidate retries from itself (§5.8).
        todo = np.arange(m)
        for _ in range(_MAX_GAP_TRIES):
            wd = cal.weekend_damping_array(cand[todo])
            reject = rng.random(len(todo)) < wd
            if not reject.any():
                break
            todo = todo[reject]
            extra = np.floor(rng.exponential(1.0, len(todo)) * beta[todo]).astype(np.int64)
            cand[todo] = cal.warp_array(cand[todo] + extra + int(gap))
        return cand

    def add_growth_users(self, arrivals: list[tuple[int, int]]) -> None:
        """Users created by growth: (arrival second, global growth index) pairs."""
        m = len(arrivals)
        if m == 0:
            return
        mdl, spec = self.model, self.model.spec
        ts = np.asarray([a for a, _ in arrivals], dtype=np.int64)
        cols = self._people(m, int(ts[0]))
        if spec.attrition_rate > 0:
            cols["leave"] = cols["leave"] - int(ts[0]) + ts
        group = (mdl.cfg.new_user_auth, mdl.cfg.new_user_level)
        first_state = np.asarray(
            [mdl.pick_start(group, x) for x in self.np_rng.random(m).tolist()], dtype=np.int32
        )
        uid = (
            spec.first_user_id + spec.n_users + np.asarray([i for _, i in arrivals], dtype=np.int64)
        )
        self.users.append(uid=uid, registration=ts, next_ts=ts, next_state=first_state, **cols)
        self.wake = min(self.wake, int(ts.min()))

    # ---------------------------------------------------------------- sessions
    def _frags(self, u: int) -> tuple[bytes, bytes]:
        """JSON of the device block, and of device + user details, for user u."""
        mdl, c = self.model, self.users.cols
        loc, ua = int(c["loc"][u]), int(c["ua"][u])
        dev = mdl.loc_head[loc] + mdl.ua_json[ua] + mdl.loc_geo[loc]
        g = int(c["gender"][u])
        details = b',"userId":%d,"lastName":%b,"firstName":%b,"gender":"%b","registration":%d' % (
            int(c["uid"][u]),
            mdl.last_json[int(c["last"][u])],
            mdl.first_json[g][int(c["first"][u])],
            b"F" if g else b"M",
            int(c["registration"][u]) * 1000,
        )
        return dev, dev + details + mdl.tag_frag

    def next_session_start(self, t_last: int, beta: float) -> int:
        """eventsim's next-session-start (§5.8) with the session gap a true minimum."""
        cal = self.model.calendar
        gap = self.model.cfg.session_gap
        rand = self.rand
        earliest = t_last + gap
        base = t_last
        c = int(earliest)
        for _ in range(_MAX_GAP_TRIES):
            c = cal.warp(base + int(-beta * math.log(1.0 - rand())) + int(gap))
            if c < earliest:
                continue  # the warp pulled it inside the gap: draw again
            wd = cal.weekend_damping(c)
            if wd > 0.0 and rand() < wd:
                base = c
                continue
            return c
        return max(c, int(earliest))

    def _open_session(self, t: int, s: int) -> tuple[int, int, int, int, bool]:
        """A new session starting at (t, s): (sessionId, item, song, song end, after login).

        Session ids are unique across blocks: block b numbers its sessions b+1, b+1+k,
        ... for k blocks, under the run's tag (``run_tag``). A session that opens with
        NextSong draws its song now (§5.5).
        """
        mdl = self.model
        number = self.sessions * self.n_blocks + self.block + 1
        if number >> SESSION_BITS:
            raise RuntimeError(f"a run cannot open more than 2^{SESSION_BITS} sessions")
        sid = self.session_base | number
        self.sessions += 1
        song, song_end = -1, 0
        if mdl.is_song[s]:
            song = min(bisect_right(mdl.song_cum, self.rand()), len(mdl.song_floor) - 1)
            song_end = t + mdl.song_floor[song]
        return sid, 0, song, song_end, False

    def due_before(self, t_end: int) -> bool:
        """May a user of the block have an event before ``t_end``? In a live step of one
        second at 1M users nearly every block has none: answering from ``wake`` spares the
        scan of its users (and the step's cost grows with the events, not the users)."""
        return self.wake < t_end

    def advance(self, t_end: int, outs: tuple[TopicOut, TopicOut, TopicOut, TopicOut]) -> int:
        """Simulate every user of the block up to (not including) t_end.

        Appends the events in [window start, window end) to ``outs``; returns the
        number of page views emitted.
        """
        mdl = self.model
        cols = self.users.cols
        n = self.users.n
        next_ts_arr = cols["next_ts"]
        if not self.due_before(t_end):
            return 0
        due = np.flatnonzero(next_ts_arr[:n] < t_end).tolist()
        if not due:
            self.wake = int(next_ts_arr[:n].min()) if n else NEVER
            return 0
        next_state_arr = cols["next_state"]
        alpha_arr = cols["alpha"]
        beta_arr = cols["beta"]
        uid_arr = cols["uid"]
        leave_arr = cols["leave"]

        rand = self.rand
        log = math.log
        trans_cum, trans_dest = mdl.trans_cum, mdl.trans_dest
        is_redirect, is_song, is_login = mdl.is_redirect, mdl.is_song, mdl.is_login
        is_status, show, churned = mdl.is_status, mdl.show, mdl.churned
        success = mdl.success
        song_cum, song_floor = mdl.song_cum, mdl.song_floor
        n_songs = len(song_floor)
        song_core, song_tail = mdl.song_core, mdl.song_tail
        pv_mid, listen_mid, auth_mid = mdl.pv_mid, mdl.listen_mid, mdl.auth_mid
        status_mid, status_page = mdl.status_mid, mdl.status_page
        start_of_state = mdl.start_of_state
        win_start, win_end = mdl.spec.window_start, mdl.spec.window_end
        pv, li, au, sc = outs
        pv_ts, pv_keys, pv_lines = pv.ts, pv.keys, pv.lines
        li_ts, li_keys, li_lines = li.ts, li.keys, li.lines
        active = self.active
        emitted = 0
        for u in due:
            key = int(uid_arr[u])
            alpha = float(alpha_arr[u])
            dev, shown = self._frags(u)
            st = active.pop(u, None)
            if st is None:
                t = int(next_ts_arr[u])
                s = int(next_state_arr[u])
                sid, item, song, song_end, prev_login = self._open_session(t, s)
            else:
                t, s, sid, item, song, song_end, pl = st
                prev_login = bool(pl)
            while True:
                if t >= t_end:
                    active[u] = [t, s, sid, item, song, song_end, int(prev_login)]
                    next_ts_arr[u] = t
                    break
                # ---- emit the event at (t, s)
                if win_start <= t < win_end:
                    ms = t * 1000
                    frag = shown if show[s] else dev
                    if is_song[s]:
                        pv_lines.append(
                            b'{"ts":%d,"sessionId":%d,%b%d,%b%b}\n'
                            % (ms, sid, pv_mid[s], item, frag, song_tail[song])
                        )
                        li_ts.append(t)
                        li_keys.append(key)
                        li_lines.append(
                            b'{%b,"ts":%d,"sessionId":%d,%b%d,%b}\n'
                            % (song_core[song], ms, sid, listen_mid[s], item, frag)
                        )
                    else:
                        pv_lines.append(
                            b'{"ts":%d,"sessionId":%d,%b%d,%b}\n' % (ms, sid, pv_mid[s], item, frag)
                        )
                        if is_status[s]:
                            sc.ts.append(t)
                            sc.keys.append(key)
                            sc.lines.append(
                                b'{"ts":%d,"sessionId":%d,%b%d,%b,"page":%b}\n'
                                % (ms, sid, status_mid[s], item, frag, status_page[s])
                            )
                    pv_ts.append(t)
                    pv_keys.append(key)
                    emitted += 1
                    if prev_login:
                        au.ts.append(t)
                        au.keys.append(key)
                        au.lines.append(
                            b'{"ts":%d,"sessionId":%d,%b%d,%b,"success":%b}\n'
                            % (
                                ms,
                                sid,
                                auth_mid[s],
                                item,
                                frag,
                                b"true" if success[s] else b"false",
                            )
                        )
                # ---- move to the next state
                cum = trans_cum[s]
                k = bisect_right(cum, rand())
                if k >= len(cum):
                    # The session is over (§5.7).
                    if churned[s]:
                        next_ts_arr[u] = NEVER
                        break
                    nt = self.next_session_start(t, float(beta_arr[u]))
                    if nt >= leave_arr[u]:
                        next_ts_arr[u] = NEVER
                        break
                    starts = start_of_state[s]
                    if starts is None:  # config validation makes this unreachable
                        next_ts_arr[u] = NEVER
                        break
                    cum_s, idx_s = starts
                    ns = idx_s[min(bisect_right(cum_s, rand()), len(idx_s) - 1)]
                    next_ts_arr[u] = nt
                    next_state_arr[u] = ns
                    if nt >= t_end:
                        break
                    t, s = nt, ns
                    sid, item, song, song_end, prev_login = self._open_session(t, s)
                    continue
                ns = trans_dest[s][k]
                prev_login = is_login[s]
                if is_redirect[ns]:
                    t += 1
                elif is_song[ns]:
                    if song >= 0 and t < song_end:
                        t = song_end
                    else:
                        t += int(-alpha * log(1.0 - rand()))
                    song = min(bisect_right(song_cum, rand()), n_songs - 1)
                    song_end = t + song_floor[song]
                else:
                    t += int(-alpha * log(1.0 - rand()))
                s = ns
                item += 1
        # Every due user now waits at t_end or later.
        self.wake = int(next_ts_arr[:n].min())
        return emitted


__all__ = [
    "AUTH",
    "BLOCK_USERS",
    "ENGINE_TOPICS",
    "LISTEN",
    "NEVER",
    "PAGE_VIEW",
    "STATUS",
    "Block",
    "Model",
    "ModelSpec",
    "TopicOut",
    "new_outs",
]
