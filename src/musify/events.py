"""THE schema of Musify's four event types.

This module is the single definition of what an event is. Every other representation
(the generator's JSON field order, Arrow and Spark schemas for the lake, BigQuery and
dbt source definitions) is derived from ``TOPICS`` below, never written out again.

The contract follows eventsim's viirya fork, which the original Streamify pipeline
consumed (see docs/events.md for the deliberate differences): JSON objects, one per
message, ``ts`` and ``registration`` in epoch milliseconds, ``zip`` a string, and the
user block (``userId`` and the user details) present exactly when the config's
``show-user-details`` says so for the event's auth.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class FieldType(StrEnum):
    STRING = "string"
    INT = "int"  # 32-bit
    LONG = "long"  # 64-bit
    DOUBLE = "double"
    BOOLEAN = "boolean"
    TIMESTAMP_MS = "timestamp_ms"  # a long holding epoch milliseconds (UTC)


@dataclass(frozen=True)
class Field:
    name: str
    type: FieldType
    #: Required fields are in every event of the topic; the rest may be absent.
    required: bool = True
    doc: str = ""


def _f(name: str, t: FieldType, required: bool = True, doc: str = "") -> Field:
    return Field(name, t, required, doc)


S = FieldType.STRING
INT = FieldType.INT
L = FieldType.LONG
D = FieldType.DOUBLE
B = FieldType.BOOLEAN
TS = FieldType.TIMESTAMP_MS

# Blocks shared by several topics, in eventsim's emitted order.
DEVICE: tuple[Field, ...] = (
    _f("city", S, doc="city of the user's device"),
    _f("zip", S, doc="US zip code, a string that keeps leading zeros"),
    _f("state", S, doc="two-letter US state code"),
    _f("userAgent", S, doc="browser user agent"),
    _f("lon", D),
    _f("lat", D),
)
USER: tuple[Field, ...] = (
    _f("userId", L, False, "present iff show-user-details is true for the event's auth"),
    _f("lastName", S, False),
    _f("firstName", S, False),
    _f("gender", S, False, "M or F"),
    _f("registration", TS, False, "when the user registered"),
    _f("tag", S, False, "the generator's --tag, on events that show user details"),
)
SONG: tuple[Field, ...] = (
    _f("artist", S),
    _f("song", S),
    _f("duration", D, doc="song length in seconds"),
)
SESSION: tuple[Field, ...] = (
    _f("ts", TS, doc="event time"),
    _f("sessionId", L),
)


def _optional(fields: tuple[Field, ...]) -> tuple[Field, ...]:
    return tuple(Field(f.name, f.type, False, f.doc) for f in fields)


@dataclass(frozen=True)
class Topic:
    name: str
    fields: tuple[Field, ...]
    doc: str

    @property
    def field_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    @property
    def required(self) -> frozenset[str]:
        return frozenset(f.name for f in self.fields if f.required)

    def field(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(name)


LISTEN_EVENTS = Topic(
    "listen_events",
    (
        *SONG,
        *SESSION,
        _f("auth", S),
        _f("level", S),
        _f("itemInSession", INT),
        *DEVICE,
        *USER,
    ),
    "every NextSong page: a song played",
)
PAGE_VIEW_EVENTS = Topic(
    "page_view_events",
    (
        *SESSION,
        _f("page", S),
        _f("auth", S),
        _f("method", S),
        _f("status", INT),
        _f("level", S),
        _f("itemInSession", INT),
        *DEVICE,
        *USER,
        *_optional(SONG),
    ),
    "every event; artist, song and duration on NextSong",
)
AUTH_EVENTS = Topic(
    "auth_events",
    (
        *SESSION,
        _f("level", S),
        _f("itemInSession", INT),
        *DEVICE,
        *USER,
        _f("success", B, doc="whether the login succeeded"),
    ),
    "the page after a Login: a login attempt",
)
STATUS_CHANGE_EVENTS = Topic(
    "status_change_events",
    (
        *SESSION,
        _f("auth", S),
        _f("level", S, doc="the level before the change"),
        _f("itemInSession", INT),
        *DEVICE,
        *USER,
        _f("page", S, doc="what changed: Submit Upgrade, Submit Downgrade or Cancel"),
    ),
    "upgrades, downgrades and cancellations",
)

TOPICS: dict[str, Topic] = {
    t.name: t for t in (LISTEN_EVENTS, PAGE_VIEW_EVENTS, AUTH_EVENTS, STATUS_CHANGE_EVENTS)
}
TOPIC_NAMES: tuple[str, ...] = tuple(TOPICS)

# Routing: which pages produce which extra topic besides page_view_events. eventsim
# hard-codes these page names; so do we, in this one place.
LISTEN_PAGE = "NextSong"
LOGIN_PAGE = "Login"
STATUS_CHANGE_PAGES = frozenset({"Submit Upgrade", "Submit Downgrade", "Cancel"})

#: Epoch milliseconds of 0001-01-01 and 10000-01-01: the timestamps the contract allows
#: (every engine downstream, the lake's Parquet included, can hold them).
TS_RANGE_MS = (-62_135_596_800_000, 253_402_300_800_000)
#: [low, high) of each integer type.
INT_RANGES: dict[FieldType, tuple[int, int]] = {
    FieldType.INT: (-(2**31), 2**31),
    FieldType.LONG: (-(2**63), 2**63),
    FieldType.TIMESTAMP_MS: TS_RANGE_MS,
}


def wrong_type(kind: FieldType, value: Any) -> bool:
    """Whether a non-null JSON value breaks a field's type: the contract's one type
    rule, which the generator's checks (``check_event``) and the stream's quarantine
    (``musify.stream.parse``) both apply. A boolean is not a number, an integer is a
    double, and integers must lie in their type's range."""
    t = type(value)
    if kind is FieldType.STRING:
        return t is not str
    if kind is FieldType.BOOLEAN:
        return t is not bool
    if kind is FieldType.DOUBLE:
        return t is not float and t is not int
    low, high = INT_RANGES[kind]
    return t is not int or not low <= value < high


def check_event(topic: Topic, event: Any) -> str | None:
    """Return why ``event`` (a decoded JSON value) breaks ``topic``'s contract, or None.

    Unknown extra fields are allowed (consumers ignore them), missing required fields,
    wrong types and out-of-range integers are not.
    """
    if not isinstance(event, dict):
        return f"not a JSON object ({type(event).__name__})"
    for f in topic.fields:
        if f.name not in event:
            if f.required:
                return f"missing required field {f.name!r}"
            continue
        value = event[f.name]
        if value is None:
            if f.required:
                return f"field {f.name!r} is null"
            continue
        if wrong_type(f.type, value):
            if type(value) is int and f.type in INT_RANGES:
                return f"field {f.name!r} is out of range for {f.type.value}"
            got = "boolean" if isinstance(value, bool) else type(value).__name__
            return f"field {f.name!r} should be {f.type.value}, got {got}"
    return None
