"""Reading ``musify validate``'s input: topic files (JSON lines) into compact columns.

``_read_page_views``, ``_read_listens``, ``_read_auth`` and ``_read_status`` stream one
file each, schema-check every line, count per-line violations in ``_Issues`` and keep a
few numeric columns (``_Cols``), with strings coded by ``_Vocab`` and states by ``_Ctx``.
``checker.validate_dir`` calls them; the checks on the columns are in ``structure``,
``base``, ``topics``, ``users``, ``stats`` and ``checker`` (the package docstring lists
every part of ``musify.sim.validate``).
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from musify.events import (
    AUTH_EVENTS,
    LISTEN_EVENTS,
    LISTEN_PAGE,
    PAGE_VIEW_EVENTS,
    STATUS_CHANGE_EVENTS,
    Topic,
    check_event,
)
from musify.sim.config import SimConfig
from musify.sim.validate.constants import DETAIL_KEYS, MAX_EXAMPLES


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
