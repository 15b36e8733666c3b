"""eventsim's JSON config format: loading, validation and the compiled state machine.

The format is read unchanged (see docs/eventsim-spec.md §3). Unlike eventsim, every
mistake is found at load time and reported with the file and the offending key:
probabilities of one state summing above 1, negative weights, a state referenced by
``new-session`` but unknown to ``transitions``, an auth with no ``show-user-details``
entry, an (auth, level) in which a session can start but that has no ``new-session``
group, unknown keys anywhere.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from musify.errors import ConfigError

# Keys eventsim reads (spec §3.1), plus two it carries but never reads (upgrades,
# downgrades). Anything else is a typo we would otherwise silently ignore.
TOP_LEVEL_KEYS = frozenset(
    {
        "seed",
        "alpha",
        "beta",
        "damping",
        "weekend-damping",
        "weekend-damping-offset",
        "weekend-damping-scale",
        "session-gap",
        "churned-state",
        "new-user-auth",
        "new-user-level",
        "show-user-details",
        "levels",
        "auths",
        "new-session",
        "transitions",
        "start-date",
        "end-date",
        "n-users",
        "first-user-id",
        "growth-rate",
        "attrition-rate",
        "tag",
        "upgrades",
        "downgrades",
    }
)
#: Musify's own config (eventsim format), used when no --config is given.
BUILTIN_CONFIG = Path(__file__).parent / "configs" / "musify.json"
STATE_KEYS = frozenset({"page", "auth", "status", "method", "level"})
# Tolerance for float sums of probabilities written with a few decimals.
_P_EPSILON = 1e-9


@dataclass(frozen=True, order=True)
class State:
    """A node of the state machine. Identity is the whole 5-tuple (spec §3.2)."""

    page: str
    auth: str
    status: int
    method: str = ""
    level: str = ""

    @property
    def group(self) -> tuple[str, str]:
        return (self.auth, self.level)

    @property
    def is_redirect(self) -> bool:
        # eventsim treats 300-398 as redirects that follow after exactly one second.
        return 300 <= self.status <= 398

    def label(self) -> str:
        return f"{self.page}/{self.auth}/{self.level or '-'}"


@dataclass(frozen=True)
class SimConfig:
    """A validated eventsim config. Defaults are eventsim's (spec §3.1)."""

    source: str
    states: tuple[State, ...]
    #: per state index: (cumulative end probabilities, destination state indexes)
    transitions: tuple[tuple[tuple[float, ...], tuple[int, ...]], ...]
    #: (auth, level) -> (state indexes, integer weights)
    new_session: Mapping[tuple[str, str], tuple[tuple[int, ...], tuple[int, ...]]]
    show_user_details: Mapping[str, bool]
    levels: tuple[tuple[str, int], ...]
    auths: tuple[tuple[str, int], ...]
    seed: int = 0
    alpha: float = 60.0
    beta: float = 259200.0
    damping: float = 0.0625
    weekend_damping: float = 0.5
    weekend_damping_offset: float = 6.0  # minutes
    weekend_damping_scale: float = 6.0  # minutes
    session_gap: float = 1800.0
    churned_state: str | None = None
    new_user_auth: str = "Guest"
    new_user_level: str = "free"
    # Run parameters a config may carry; the command line overrides them.
    n_users: int | None = None
    first_user_id: int | None = None
    growth_rate: float | None = None
    attrition_rate: float | None = None
    tag: str | None = None
    start_date: datetime | None = None
    end_date: datetime | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def stop_probability(self, i: int) -> float:
        cum, _ = self.transitions[i]
        return max(0.0, 1.0 - cum[-1]) if cum else 1.0

    def groups_that_start_sessions(self) -> set[tuple[str, str]]:
        """Every (auth, level) in which some user may have to start a session."""
        needed = set()
        for i, st in enumerate(self.states):
            if self.stop_probability(i) > 0 and st.auth != self.churned_state:
                needed.add(st.group)
        return needed


class _Reader:
    """Typed access to a JSON mapping that names the path of anything wrong."""

    def __init__(self, where: str) -> None:
        self.where = where

    def fail(self, key: str, problem: str) -> ConfigError:
        return ConfigError(self.where, key, problem)

    def number(
        self,
        obj: Mapping[str, Any],
        key: str,
        path: str,
        *,
        minimum: float | None = None,
        maximum: float | None = None,
    ) -> float:
        value = obj[key]
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise self.fail(path, f"must be a number, got {value!r}")
        if minimum is not None and value < minimum:
            raise self.fail(path, f"must be >= {minimum:g}, got {value!r}")
        if maximum is not None and value > maximum:
            raise self.fail(path, f"must be <= {maximum:g}, got {value!r}")
        return float(value)

    def string(self, obj: Mapping[str, Any], key: str, path: str) -> str:
        value = obj[key]
        if not isinstance(value, str):
            raise self.fail(path, f"must be a string, got {value!r}")
        return value

    def array(self, obj: Mapping[str, Any], key: str) -> list[Any]:
        if key not in obj:
            raise self.fail(key, "is missing")
        value = obj[key]
        if not isinstance(value, list):
            raise self.fail(key, f"must be a list, got {type(value).__name__}")
        return value

    def obj(self, value: Any, path: str, allowed: frozenset[str]) -> Mapping[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(path, f"must be an object, got {value!r}")
        unknown = sorted(set(value) - allowed)
        if unknown:
            raise self.fail(
                f"{path}.{unknown[0]}", f"unknown key (allowed: {', '.join(sorted(allowed))})"
            )
        return value

    def state(self, value: Any, path: str, extra: frozenset[str] = frozenset()) -> State:
        o = self.obj(value, path, STATE_KEYS | extra)
        for key in ("page", "auth", "status"):
            if key not in o:
                raise self.fail(f"{path}.{key}", "is missing")
        status = self.number(o, "status", f"{path}.status", minimum=100, maximum=599)
        if status != int(status):
            raise self.fail(
                f"{path}.status", f"must be an integer HTTP status, got {o['status']!r}"
            )
        return State(
            page=self.string(o, "page", f"{path}.page"),
            auth=self.string(o, "auth", f"{path}.auth"),
            status=int(status),
            method=self.string(o, "method", f"{path}.method") if "method" in o else "",
            level=self.string(o, "level", f"{path}.level") if "level" in o else "",
        )

    def weighted(self, obj: Mapping[str, Any], key: str, name: str) -> tuple[tuple[str, int], ...]:
        out = []
        for n, item in enumerate(self.array(obj, key)):
            path = f"{key}[{n}]"
            o = self.obj(item, path, frozenset({name, "weight"}))
            for k in (name, "weight"):
                if k not in o:
                    raise self.fail(f"{path}.{k}", "is missing")
            w = self.number(o, "weight", f"{path}.weight", minimum=0)
            out.append((self.string(o, name, f"{path}.{name}"), int(w)))
        if not out or sum(w for _, w in out) <= 0:
            raise self.fail(key, "needs at least one entry with a positive weight")
        return tuple(out)


def _parse_date(reader: _Reader, raw: Mapping[str, Any], key: str) -> datetime | None:
    if key not in raw or raw[key] is None:
        return None
    from musify.sim.clock import parse_time

    value = raw[key]
    if not isinstance(value, str):
        raise reader.fail(key, f"must be an ISO date-time string, got {value!r}")
    try:
        return parse_time(value)
    except ValueError as exc:
        raise reader.fail(key, str(exc)) from None


def parse_config(raw: Any, where: str = "<config>") -> SimConfig:
    """Validate a decoded eventsim config and compile its state machine."""
    r = _Reader(where)
    if not isinstance(raw, dict):
        raise r.fail("", "the top level must be a JSON object")
    unknown = sorted(set(raw) - TOP_LEVEL_KEYS)
    if unknown:
        raise r.fail(unknown[0], "unknown key")

    scalars: dict[str, Any] = {}
    for key, attr, lo, hi in (
        ("alpha", "alpha", 0.0, None),
        ("beta", "beta", 0.0, None),
        ("damping", "damping", 0.0, 0.5),
        ("weekend-damping", "weekend_damping", 0.0, 1.0),
        ("weekend-damping-offset", "weekend_damping_offset", 0.0, 1440.0),
        ("weekend-damping-scale", "weekend_damping_scale", 0.0, 1440.0),
        ("session-gap", "session_gap", 0.0, None),
    ):
        if key in raw:
            scalars[attr] = r.number(raw, key, key, minimum=lo, maximum=hi)
    if scalars.get("weekend_damping_scale", 1.0) == 0.0:
        raise r.fail("weekend-damping-scale", "must be > 0 (it divides the weekend ramp)")
    if "seed" in raw:
        scalars["seed"] = int(r.number(raw, "seed", "seed"))
    for key, attr in (("n-users", "n_users"), ("first-user-id", "first_user_id")):
        if key in raw:
            scalars[attr] = int(
                r.number(raw, key, key, minimum=0 if attr == "first_user_id" else 1)
            )
    for key, attr in (("growth-rate", "growth_rate"), ("attrition-rate", "attrition_rate")):
        if key in raw:
            scalars[attr] = r.number(raw, key, key, minimum=0)
    for key, attr in (
        ("churned-state", "churned_state"),
        ("new-user-auth", "new_user_auth"),
        ("new-user-level", "new_user_level"),
        ("tag", "tag"),
    ):
        if key in raw:
            scalars[attr] = r.string(raw, key, key)
    scalars["start_date"] = _parse_date(r, raw, "start-date")
    scalars["end_date"] = _parse_date(r, raw, "end-date")

    # Transitions define the states.
    index: dict[State, int] = {}
    edges: dict[int, list[tuple[float, int]]] = {}

    def intern(st: State) -> int:
        if st not in index:
            index[st] = len(index)
        return index[st]

    for n, item in enumerate(r.array(raw, "transitions")):
        path = f"transitions[{n}]"
        o = r.obj(item, path, frozenset({"source", "dest", "p"}))
        for k in ("source", "dest", "p"):
            if k not in o:
                raise r.fail(f"{path}.{k}", "is missing")
        src = intern(r.state(o["source"], f"{path}.source"))
        dst = intern(r.state(o["dest"], f"{path}.dest"))
        p = r.number(o, "p", f"{path}.p", minimum=0.0, maximum=1.0)
        edges.setdefault(src, []).append((p, dst))
        total = sum(q for q, _ in edges[src])
        if total > 1.0 + _P_EPSILON:
            label = next(s for s, i in index.items() if i == src).label()
            raise r.fail(
                f"{path}.p",
                f"probabilities leaving state {label} sum to {total:.6g}, above 1",
            )
    if not index:
        raise r.fail("transitions", "needs at least one transition")

    # new-session: grouped by (auth, level); every state must be known.
    groups: dict[tuple[str, str], tuple[list[int], list[int]]] = {}
    for n, item in enumerate(r.array(raw, "new-session")):
        path = f"new-session[{n}]"
        st = r.state(item, path, frozenset({"weight"}))
        if "weight" not in item:
            raise r.fail(f"{path}.weight", "is missing")
        w = r.number(item, "weight", f"{path}.weight", minimum=0)
        if st not in index:
            raise r.fail(path, f"state {st.label()} does not appear in transitions")
        idxs, ws = groups.setdefault(st.group, ([], []))
        idxs.append(index[st])
        ws.append(int(w))

    show: dict[str, bool] = {}
    for n, item in enumerate(r.array(raw, "show-user-details")):
        path = f"show-user-details[{n}]"
        o = r.obj(item, path, frozenset({"auth", "show"}))
        if "auth" not in o or "show" not in o:
            raise r.fail(path, "needs both 'auth' and 'show'")
        if not isinstance(o["show"], bool):
            raise r.fail(f"{path}.show", f"must be true or false, got {o['show']!r}")
        show[r.string(o, "auth", f"{path}.auth")] = o["show"]

    levels = r.weighted(raw, "levels", "level")
    auths = r.weighted(raw, "auths", "auth")

    states = tuple(sorted(index, key=index.__getitem__))
    compiled = []
    for i in range(len(states)):
        cum: list[float] = []
        dests: list[int] = []
        acc = 0.0
        for p, d in edges.get(i, []):
            if p <= 0:
                continue
            acc += p
            cum.append(min(acc, 1.0))
            dests.append(d)
        compiled.append((tuple(cum), tuple(dests)))

    cfg = SimConfig(
        source=where,
        states=states,
        transitions=tuple(compiled),
        new_session={g: (tuple(i), tuple(w)) for g, (i, w) in groups.items()},
        show_user_details=show,
        levels=levels,
        auths=auths,
        raw=raw,
        **scalars,
    )
    if "new-user-level" not in raw:
        # eventsim's default "Free" matches no shipped config (spec §9.8): default to
        # the first configured level instead.
        cfg = _replace(cfg, new_user_level=levels[0][0])
    _check_coverage(cfg, r)
    return cfg


def _replace(cfg: SimConfig, **changes: Any) -> SimConfig:
    import dataclasses

    return dataclasses.replace(cfg, **changes)


def _check_coverage(cfg: SimConfig, r: _Reader) -> None:
    """Fail at load time where eventsim would crash mid-run (spec §9.16)."""
    auths_in_use = {st.auth for st in cfg.states} | {a for a, w in cfg.auths if w > 0}
    auths_in_use.add(cfg.new_user_auth)
    for auth in sorted(auths_in_use):
        if auth not in cfg.show_user_details:
            raise r.fail("show-user-details", f"has no entry for auth {auth!r}")
    for g, (_, weights) in cfg.new_session.items():
        if sum(weights) <= 0:
            raise r.fail("new-session", f"group {g[0]}/{g[1]} has no positive weight")
    needed = cfg.groups_that_start_sessions()
    needed |= {(a, lv) for a, wa in cfg.auths if wa > 0 for lv, wl in cfg.levels if wl > 0}
    for auth, level in sorted(needed):
        if (auth, level) not in cfg.new_session:
            raise r.fail(
                "new-session",
                f"has no entry for auth {auth!r} and level {level!r}, where sessions can start",
            )


def check_growth_group(cfg: SimConfig) -> None:
    """With growth, new users start sessions in (new-user-auth, new-user-level)."""
    g = (cfg.new_user_auth, cfg.new_user_level)
    if g not in cfg.new_session:
        key = "new-user-level" if any(a == g[0] for a, _ in cfg.new_session) else "new-user-auth"
        raise ConfigError(
            cfg.source,
            key,
            f"no new-session entry for {g[0]!r}/{g[1]!r}, where users created by growth start",
        )


def load_config(path: str | Path) -> SimConfig:
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise ConfigError(str(p), "", f"cannot read: {exc.strerror}") from None
    try:
        raw = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        line = data[: exc.pos].count(b"\n") + 1
        raise ConfigError(str(p), f"line {line}", f"not valid JSON ({exc.msg})") from None
    return parse_config(raw, str(p))
