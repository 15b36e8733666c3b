"""``musify validate``: does a folder of generated events behave like eventsim?

``validate_dir(directory, config)`` reads the four topic files a ``--output-dir`` run
wrote (``<topic>.jsonl``), streaming them line by line and keeping only a few numeric
columns per event, and returns a ``Report``: one row per check.

**Structure** (exact; docs/eventsim-spec.md §5.6, §6.2 and §10 "Further checks", with
the engine's documented deviations from eventsim):

- every line is valid for its topic (``musify.events.check_event``); ``zip`` is a
  string; auth events have no ``auth`` and no ``page`` field;
- ``userId`` and the user details (and ``tag``) are present iff ``show-user-details``
  is true for the event's auth (auth events: the auth of their page view);
- every page view is a state of the config, every step within a session is one of the
  config's transitions, and a session's first event (``itemInSession`` 0) is a
  ``new-session`` state of its (auth, level) group;
- ``itemInSession`` is unique and contiguous within a session, and time never goes
  back within a session or within a file; timestamps are whole seconds and no
  identified event precedes the user's ``registration``;
- a redirect (status 300-398) comes exactly 1 s after the previous event of its
  session; a NextSong whose session's previous song has not ended when the previous
  event happened comes exactly when that song ends (start + ⌊duration⌋);
- listen events are exactly the NextSong page views, status-change events exactly the
  page views of ``STATUS_CHANGE_PAGES``, auth events exactly the page views right after
  a Login page (with ``success`` = auth is Logged In); each one carries the same ts,
  session, item, auth/level, user and device as its page view;
- a session belongs to one user with one device; a user has one name, registration and
  device;
- per identified user, consecutive sessions: the next starts in the (auth, level) in
  which the previous ended (skipped if the config can change group without showing
  the user), at least ``session-gap`` seconds later, and only a user's first session
  may have begun before the window; nothing follows a session that ended churned.

**Statistics**, against the config's absorbing Markov chain (``musify.sim.markov``)
*conditioned on the observed mix of session starts*: the sessions counted are those
whose first event (``itemInSession`` 0) is in the files and that started at least
``COMPLETE_MARGIN`` before the last event (so they are complete); their start groups
are the weights. Upgrades over a long run change that mix, not the expectations given
it, so drift does not matter. Checked: events per session, share of single-event
sessions, the share of every page, level and status code, identified events, auth
events per page view and their success rate, status-change events per page view, the
first page of sessions per start group (against the ``new-session`` weights) and the
group each session ends in per start group (the session-level chain).

Tolerances. Events of one session are not independent (a paid session plays dozens of
songs), so a share's standard error is that of a ratio estimator over sessions, and it
comes from the chain itself rather than from the sample: the exact second moments of
the visit counts of an absorbing chain (``Chain.ratio_variance``), summed over the
observed sessions per start group. Unlike a sample estimate it is right for small runs
and for shares that are rare or never seen. A statistic passes when it is within
``Z`` = 4.5 standard errors of its expectation; the tolerance is never below a floor:

- shares: ``SHARE_FLOOR_ABS`` (0.05 percentage points) + ``SHARE_FLOOR_REL`` (2 %) of
  the expected share. The floor absorbs immaterial differences in huge runs (the model
  ignores, e.g., sessions cut by the end of the window) and is what a big run gets:
  ±1.7 points for NextSong's 84 %, ±0.07 points for a 1 % page;
- rare shares (under 100 expected occurrences): up to the upper Poisson quantile of
  the expected count (scaled by the model's dispersion), so that two Cancel pages where
  0.1 was expected do not fail a small run;
- means (events per session): ``MEAN_FLOOR_REL`` (3 %) of the expected mean;
- an occurrence of something the chain cannot produce (expected share exactly 0)
  always fails.

At 4.5 SE each row fails by chance with probability ~1e-5; in calibration runs (three
configs, 100 to 20,000 users, 1 to 28 days, ~100 runs) no statistical row failed,
and the z-scores were close to standard normal. Session-level proportions (first page,
end group, single-event sessions) use binomial standard errors of the session counts.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
from rich.console import Console
from rich.table import Table

from musify.errors import UsageError
from musify.events import (
    AUTH_EVENTS,
    LISTEN_EVENTS,
    LISTEN_PAGE,
    LOGIN_PAGE,
    PAGE_VIEW_EVENTS,
    STATUS_CHANGE_EVENTS,
    STATUS_CHANGE_PAGES,
    Topic,
    check_event,
)
from musify.sim.config import SimConfig, load_config
from musify.sim.markov import CHURNED, LOGGED_IN, Chain, EventMix, Group, analyse

#: Standard errors a statistic may be off by.
Z = 4.5
#: Smallest tolerance of a share: absolute part (fraction) and relative part.
SHARE_FLOOR_ABS = 0.0005
SHARE_FLOOR_REL = 0.02
#: Smallest tolerance of a mean, relative to the expected value.
MEAN_FLOOR_REL = 0.03
#: Sessions counted by the statistics started at least this long before the last event.
COMPLETE_MARGIN = 12 * 3600
#: Violations quoted per failing check.
MAX_EXAMPLES = 3

DETAIL_KEYS = ("userId", "lastName", "firstName", "gender", "registration")
TOPIC_FILES = {
    t.name: f"{t.name}.jsonl"
    for t in (PAGE_VIEW_EVENTS, LISTEN_EVENTS, AUTH_EVENTS, STATUS_CHANGE_EVENTS)
}

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
Bool = npt.NDArray[np.bool_]


# ------------------------------------------------------------------------ report
@dataclass(frozen=True)
class Row:
    """One check. ``unit`` says how to read the numbers.

    - ``"violations"``: ``observed`` events/pairs/sessions break the rule out of
      ``checked``; ``expected`` 0, tolerance exact.
    - ``"share"``: fractions; ``tolerance`` is the allowed absolute difference.
    - ``"mean"``: a mean; ``tolerance`` as for shares.
    """

    name: str
    kind: str  # "structure" or "statistics"
    unit: str
    passed: bool
    observed: float | None
    expected: float | None
    tolerance: float | None = None
    checked: int = 0
    detail: str = ""
    skipped: bool = False

    def cells(self) -> tuple[str, str, str]:
        if self.skipped:
            return ("–", "–", "–")
        if self.unit == "violations":
            return (f"{int(self.observed or 0):,} of {self.checked:,}", "0", "exact")
        if self.unit == "share":
            return (_pct(self.observed), _pct(self.expected), f"±{_pts(self.tolerance)}")
        return (_num(self.observed), _num(self.expected), f"±{_num(self.tolerance)}")


def _pct(x: float | None) -> str:
    if x is None:
        return "–"
    v = 100.0 * x
    return f"{v:.2f}%" if v >= 1 or v == 0 else f"{v:.3f}%"


def _pts(x: float | None) -> str:
    if x is None:
        return "–"
    v = 100.0 * x
    return f"{v:.2f} pts" if v >= 1 else f"{v:.3f} pts"


def _num(x: float | None) -> str:
    return "–" if x is None else f"{x:,.3f}"


@dataclass
class Report:
    directory: str
    config: str
    counts: dict[str, int]
    sessions: int
    users: int
    rows: list[Row] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(r.passed for r in self.rows)

    @property
    def failures(self) -> list[Row]:
        return [r for r in self.rows if not r.passed]

    def row(self, name: str) -> Row:
        for r in self.rows:
            if r.name == name:
                return r
        raise KeyError(name)

    def render(self, console: Console) -> None:
        for kind, title in (
            ("structure", "Structure (exact)"),
            ("statistics", "Statistics (vs the config's Markov chain)"),
        ):
            rows = [r for r in self.rows if r.kind == kind]
            if not rows:
                continue
            t = Table(title=f"musify validate: {title}", header_style="bold", title_justify="left")
            t.add_column("", width=1)
            t.add_column("check")
            t.add_column("observed", justify="right")
            t.add_column("expected", justify="right")
            t.add_column("tolerance", justify="right")
            t.add_column("detail", overflow="fold")
            for r in rows:
                mark = "[dim]–[/]" if r.skipped else "[green]✓[/]" if r.passed else "[red]✗[/]"
                obs, exp, tol = r.cells()
                name = r.name if r.passed else f"[red]{r.name}[/]"
                t.add_row(mark, name, obs, exp, tol, r.detail)
            console.print(t)
        n_fail = len(self.failures)
        checks = [r for r in self.rows if not r.skipped]
        c = self.counts
        what = (
            f"{c.get('page_view_events', 0):,} page views, {c.get('listen_events', 0):,} "
            f"listens, {c.get('auth_events', 0):,} auth, {c.get('status_change_events', 0):,} "
            f"status changes; {self.sessions:,} sessions, {self.users:,} identified users"
        )
        if n_fail == 0:
            console.print(
                f"[bold green]✓ all {len(checks)} checks passed[/] ({what})", highlight=False
            )
        else:
            names = ", ".join(r.name for r in self.failures[:5])
            more = f" and {n_fail - 5} more" if n_fail > 5 else ""
            console.print(
                f"[bold red]✗ {n_fail} of {len(checks)} checks failed[/]: {names}{more} ({what})",
                highlight=False,
            )

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "directory": self.directory,
            "config": self.config,
            "counts": dict(self.counts),
            "sessions": self.sessions,
            "users": self.users,
            "passed": sum(r.passed for r in self.rows),
            "failed": len(self.failures),
            "rows": [asdict(r) for r in self.rows],
        }


# ------------------------------------------------------------------------ reading
class _Issues:
    """Counts violations of one rule and keeps the first few as examples."""

    def __init__(self) -> None:
        self.n = 0
        self.examples: list[str] = []

    def add(self, msg: str) -> None:
        self.n += 1
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append(msg)

    @property
    def detail(self) -> str:
        return "; ".join(self.examples)


class _Vocab:
    """Strings to small integer codes."""

    def __init__(self, initial: Iterable[str] = ()) -> None:
        self.codes: dict[str, int] = {}
        self.names: list[str] = []
        for s in initial:
            self.code(s)

    def code(self, s: str) -> int:
        c = self.codes.get(s)
        if c is None:
            c = self.codes[s] = len(self.names)
            self.names.append(s)
        return c


class _Cols:
    """Compact growable columns (``array.array``), turned into numpy at the end."""

    def __init__(self, **typecodes: str) -> None:
        self.cols = {k: array(t) for k, t in typecodes.items()}

    def np(self, name: str) -> npt.NDArray[Any]:
        a = self.cols[name]
        dtype = {"q": np.int64, "i": np.int32, "b": np.int8, "h": np.int16}[a.typecode]
        # A view, no copy: the arrays are complete and never grow again.
        return np.frombuffer(a, dtype=dtype) if len(a) else np.zeros(0, dtype=dtype)

    def __len__(self) -> int:
        return len(next(iter(self.cols.values())))


@dataclass
class _Ctx:
    cfg: SimConfig
    #: state tuple (page, auth, method, status, level) -> code; codes >= n_config are
    #: states the config does not know
    state_codes: dict[tuple[Any, ...], int]
    state_tuples: list[tuple[Any, ...]]
    n_config: int
    auths: _Vocab
    levels: _Vocab
    pages: _Vocab
    issues: dict[str, _Issues]

    def state(self, key: tuple[Any, ...]) -> int:
        code = self.state_codes.get(key)
        if code is None:
            code = self.state_codes[key] = len(self.state_tuples)
            self.state_tuples.append(key)
            for v, vocab in ((key[0], self.pages), (key[1], self.auths), (key[4], self.levels)):
                if isinstance(v, str):
                    vocab.code(v)
        return code

    def shown(self, auth: Any) -> bool:
        return bool(self.cfg.show_user_details.get(auth, False))


def _lines(path: Path) -> Iterable[tuple[int, bytes]]:
    with open(path, "rb") as f:
        yield from enumerate(f, 1)


def _identity_ok(e: dict[str, Any], shown: bool) -> bool:
    n = (
        ("userId" in e)
        + ("lastName" in e)
        + ("firstName" in e)
        + ("gender" in e)
        + ("registration" in e)
    )
    return n == 5 if shown else (n == 0 and "tag" not in e)


def _person(e: dict[str, Any]) -> int:
    return hash((e.get("lastName"), e.get("firstName"), e.get("gender"), e.get("registration")))


def _device(e: dict[str, Any]) -> int:
    return hash((e["city"], e["zip"], e["state"], e["userAgent"], e["lon"], e["lat"]))


def _read(
    path: Path, topic: Topic, ctx: _Ctx, extract: Callable[[dict[str, Any], int], None]
) -> None:
    """Parse, schema-check and extract every line of one topic file."""
    loads, decode_error = orjson.loads, orjson.JSONDecodeError
    schema = ctx.issues[f"schema: {topic.name}"]
    zips = ctx.issues["zip is a string"]
    before_reg = ctx.issues["no event before registration"]
    for lineno, line in _lines(path):
        try:
            e = loads(line)
        except decode_error as exc:
            schema.add(f"{topic.name} line {lineno}: not JSON ({exc.msg})")
            continue
        if isinstance(e, dict) and "zip" in e and not isinstance(e["zip"], str):
            zips.add(f"{topic.name} line {lineno}: zip {e['zip']!r}")
        why = check_event(topic, e)
        if why is not None:
            schema.add(f"{topic.name} line {lineno}: {why}")
            continue
        reg = e.get("registration")
        if reg is not None and e["ts"] < reg:
            before_reg.add(f"{topic.name} line {lineno}: ts {e['ts']} < registration {reg}")
        extract(e, lineno)


def _read_page_views(path: Path, ctx: _Ctx) -> _Cols:
    c = _Cols(
        ts="q",
        sid="q",
        item="q",
        state="i",
        uid="q",
        person="q",
        dev="q",
        song="q",
        dfloor="q",
        line="q",
    )
    a = {k: v.append for k, v in c.cols.items()}
    ts_a, sid_a, item_a, st_a, uid_a = a["ts"], a["sid"], a["item"], a["state"], a["uid"]
    person_a, dev_a, song_a, df_a, line_a = (
        a["person"],
        a["dev"],
        a["song"],
        a["dfloor"],
        a["line"],
    )
    codes = ctx.state_codes
    new_state = ctx.state
    shown_cache: dict[int, bool] = {}
    ident = ctx.issues["user details iff shown"]
    songs = ctx.issues["song fields only on NextSong"]

    def extract(e: dict[str, Any], lineno: int) -> None:
        key = (e["page"], e["auth"], e["method"], e["status"], e["level"])
        code = codes.get(key)
        if code is None:
            code = new_state(key)
        shown = shown_cache.get(code)
        if shown is None:
            shown = shown_cache[code] = ctx.shown(e["auth"])
        if not _identity_ok(e, shown):
            ident.add(
                f"page_view_events line {lineno}: auth {e['auth']!r}, "
                f"userId {'present' if 'userId' in e else 'absent'}"
            )
        uid = e.get("userId")
        ts_a(e["ts"])
        sid_a(e["sessionId"])
        item_a(e["itemInSession"])
        st_a(code)
        uid_a(-1 if uid is None else uid)
        person_a(_person(e) if uid is not None else 0)
        dev_a(_device(e))
        line_a(lineno)
        has = ("artist" in e) + ("song" in e) + ("duration" in e)
        if e["page"] == LISTEN_PAGE:
            if has == 3:
                d = e["duration"]
                song_a(hash((e["artist"], e["song"], d)))
                df_a(math.floor(d) if 0 <= d < 1e9 else -1)  # -1: no timing check
                return
            songs.add(f"page_view_events line {lineno}: NextSong without artist/song/duration")
        elif has:
            songs.add(f"page_view_events line {lineno}: {e['page']} has song fields")
        song_a(0)
        df_a(-1)

    _read(path, PAGE_VIEW_EVENTS, ctx, extract)
    return c


def _read_listens(path: Path, ctx: _Ctx) -> _Cols:
    c = _Cols(ts="q", sid="q", item="q", auth="i", level="i", uid="q", dev="q", song="q")
    a = {k: v.append for k, v in c.cols.items()}
    ident = ctx.issues["user details iff shown"]
    auth_code, level_code = ctx.auths.code, ctx.levels.code

    def extract(e: dict[str, Any], lineno: int) -> None:
        if not _identity_ok(e, ctx.shown(e["auth"])):
            ident.add(
                f"listen_events line {lineno}: auth {e['auth']!r}, "
                f"userId {'present' if 'userId' in e else 'absent'}"
            )
        uid = e.get("userId")
        a["ts"](e["ts"])
        a["sid"](e["sessionId"])
        a["item"](e["itemInSession"])
        a["auth"](auth_code(e["auth"]))
        a["level"](level_code(e["level"]))
        a["uid"](-1 if uid is None else uid)
        a["dev"](_device(e))
        a["song"](hash((e["artist"], e["song"], e["duration"])))

    _read(path, LISTEN_EVENTS, ctx, extract)
    return c


def _read_auth(path: Path, ctx: _Ctx) -> _Cols:
    c = _Cols(ts="q", sid="q", item="q", level="i", uid="q", dev="q", success="b", complete="b")
    a = {k: v.append for k, v in c.cols.items()}
    fields = ctx.issues["auth events have no auth and no page"]
    level_code = ctx.levels.code

    def extract(e: dict[str, Any], lineno: int) -> None:
        if "auth" in e or "page" in e:
            fields.add(
                f"auth_events line {lineno}: has "
                + " and ".join(k for k in ("auth", "page") if k in e)
            )
        uid = e.get("userId")
        a["ts"](e["ts"])
        a["sid"](e["sessionId"])
        a["item"](e["itemInSession"])
        a["level"](level_code(e["level"]))
        a["uid"](-1 if uid is None else uid)
        a["dev"](_device(e))
        a["success"](1 if e["success"] else 0)
        # all-or-nothing user block; whether it should be there is decided by the
        # paired page view's auth
        n = sum(k in e for k in DETAIL_KEYS)
        a["complete"](1 if n in (0, 5) and (n == 5 or "tag" not in e) else 0)

    _read(path, AUTH_EVENTS, ctx, extract)
    return c


def _read_status(path: Path, ctx: _Ctx) -> _Cols:
    c = _Cols(ts="q", sid="q", item="q", auth="i", level="i", page="i", uid="q", dev="q")
    a = {k: v.append for k, v in c.cols.items()}
    ident = ctx.issues["user details iff shown"]

    def extract(e: dict[str, Any], lineno: int) -> None:
        if not _identity_ok(e, ctx.shown(e["auth"])):
            ident.add(
                f"status_change_events line {lineno}: auth {e['auth']!r}, "
                f"userId {'present' if 'userId' in e else 'absent'}"
            )
        uid = e.get("userId")
        a["ts"](e["ts"])
        a["sid"](e["sessionId"])
        a["item"](e["itemInSession"])
        a["auth"](ctx.auths.code(e["auth"]))
        a["level"](ctx.levels.code(e["level"]))
        a["page"](ctx.pages.code(e["page"]))
        a["uid"](-1 if uid is None else uid)
        a["dev"](_device(e))

    _read(path, STATUS_CHANGE_EVENTS, ctx, extract)
    return c


# ------------------------------------------------------------------------ checking
STRUCTURE_CHECKS = (
    "schema: page_view_events",
    "schema: listen_events",
    "schema: auth_events",
    "schema: status_change_events",
    "zip is a string",
    "user details iff shown",
    "auth events have no auth and no page",
    "song fields only on NextSong",
    "page views are config states",
    "steps are config transitions",
    "sessions start in a new-session state",
    "itemInSession unique and contiguous",
    "time order within sessions",
    "ts non-decreasing in each file",
    "ts whole seconds",
    "no event before registration",
    "redirects 1 s after the previous event",
    "NextSong at the end of the previous song",
    "listen_events = NextSong page views",
    "status_change_events = status-change pages",
    "auth_events = page after Login",
    "one user and device per session",
    "one name, registration and device per user",
    "next session starts where the last ended",
    "session gap at least session-gap",
    "nothing after churn",
)


@dataclass
class _PV:
    """Page views sorted by (session, itemInSession), with per-row helpers."""

    ts: I64
    sid: I64
    item: I64
    state: I64
    uid: I64
    person: I64
    dev: I64
    song: I64
    dfloor: I64
    line: I64
    key: I64
    #: row starts a new session
    first: Bool
    #: row directly follows the previous row of its session (item + 1)
    step: Bool
    seg: I64
    first_idx: I64
    last_idx: I64


def _example(pv: _PV, rows: npt.NDArray[Any], what: Callable[[int], str]) -> list[str]:
    out = []
    for j in rows[:MAX_EXAMPLES].tolist():
        out.append(
            f"session {int(pv.sid[j])} item {int(pv.item[j])} "
            f"(page_view_events line {int(pv.line[j])}): {what(j)}"
        )
    return out


def _violations(
    rows: list[Row],
    name: str,
    bad: Bool | npt.NDArray[Any] | int,
    checked: int,
    detail: str = "",
    issues: _Issues | None = None,
) -> None:
    n = int(np.count_nonzero(bad)) if isinstance(bad, np.ndarray) else int(bad)
    if issues is not None:
        n += issues.n
        detail = "; ".join(x for x in (detail, issues.detail) if x)
    rows.append(
        Row(
            name,
            "structure",
            "violations",
            n == 0,
            float(n),
            0.0,
            None,
            checked,
            detail if n else "",
        )
    )


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


class _Checker:
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

    def _match(self, pv: _PV, key: I64) -> tuple[I64, Bool]:
        """Index of the page view with each key, and whether there is one."""
        if len(pv.key) == 0:
            return np.zeros(len(key), dtype=np.int64), np.zeros(len(key), dtype=bool)
        idx = np.minimum(np.searchsorted(pv.key, key), len(pv.key) - 1)
        return idx, pv.key[idx] == key

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

    @staticmethod
    def _duplicates(key: I64) -> int:
        if len(key) < 2:
            return 0
        s = np.sort(key)
        return int(np.count_nonzero(s[1:] == s[:-1]))

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

    # ------------------------------------------------------------------ statistics
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


__all__ = ["Report", "Row", "validate_dir"]
