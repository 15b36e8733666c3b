"""Parsing and quarantine rules on Arrow arrays (no Spark, no broker: the job runs the
same code in Spark's Python workers)."""

from __future__ import annotations

from typing import Any

import orjson
import pyarrow as pa
import pytest

from musify.events import TOPICS
from musify.lake import schema
from musify.lake.schema import lake_schema
from musify.stream import parse
from musify.stream.parse import check_message, parse_values
from tests.stream.messages import listen

LISTEN = TOPICS["listen_events"]


def without(event: dict[str, Any], name: str) -> dict[str, Any]:
    return {k: v for k, v in event.items() if k != name}


#: (message, reason or None), for the listen_events topic.
CASES: list[tuple[bytes | None, str | None]] = [
    (orjson.dumps(listen()), None),
    (orjson.dumps(listen()) + b"\n", None),  # as the generator writes them
    (orjson.dumps(listen(extra={"ignored": [1, 2]})), None),
    (orjson.dumps(without(listen(), "userId")), None),  # optional
    (orjson.dumps(listen(duration=201)), None),  # an integer is a fine double
    (b"not json at all", "not a JSON object"),
    (b'{"ts":\xff\xfe}', "not UTF-8"),
    (orjson.dumps(listen(song="caf\u00e9")).replace("é".encode(), b"\xe9"), "not UTF-8"),
    (orjson.dumps(listen(ts="yesterday")), "wrong type for field ts (timestamp_ms)"),
    (orjson.dumps(without(listen(), "ts")), "missing required field ts"),
    (orjson.dumps(listen(sessionId=None)), "missing required field sessionId"),
    (orjson.dumps(listen(userId="seven")), "wrong type for field userId (long)"),
    (b"[1, 2]", "not a JSON object"),
    (b"5", "not a JSON object"),
    (None, "not a JSON object"),  # a Kafka tombstone
    (b"", "not a JSON object"),
    (b"{}", "missing required field artist"),
    (orjson.dumps(listen(zip=94566)), "wrong type for field zip (string)"),
    (orjson.dumps(listen(itemInSession=2**31)), "wrong type for field itemInSession (int)"),
    (orjson.dumps(listen(itemInSession=4.0)), "wrong type for field itemInSession (int)"),
    (orjson.dumps(listen(itemInSession=True)), "wrong type for field itemInSession (int)"),
    (orjson.dumps(listen(ts=10**17)), "wrong type for field ts (timestamp_ms)"),
    (orjson.dumps(listen(sessionId=2**64 - 1)), "wrong type for field sessionId (long)"),
    (orjson.dumps(listen()).replace(b'"duration":201.5', b'"duration":NaN'), "not a JSON object"),
    (orjson.dumps(listen()) + b" " + orjson.dumps(listen()), "not a JSON object"),
    (b'{"artist":"A",\n"song":"S"}', "missing required field duration"),
    # wrong types are reported before missing fields, whatever their order
    (orjson.dumps(without(listen(lat="north"), "artist")), "wrong type for field lat (double)"),
]


def test_reasons_one_by_one() -> None:
    for value, reason in CASES:
        row, why = check_message(LISTEN, value)
        assert why == reason, value
        assert (row is None) == (reason is not None)


def test_the_block_parser_agrees_with_the_one_by_one_rules() -> None:
    """Every case alone, every case among good messages (the block is rejected and
    split), and all of them at once: the same reasons and values every time."""
    good = orjson.dumps(listen()) + b"\n"
    expected = {i: r for i, (_, r) in enumerate(CASES) if r is not None}
    parsed = parse_values(LISTEN, pa.array([v for v, _ in CASES], pa.binary()))
    assert parsed.reasons == expected
    assert parsed.good_mask().tolist() == [r is None for _, r in CASES]
    for value, reason in CASES:
        block = [good] * 40 + [value] + [good] * 40
        parsed = parse_values(LISTEN, pa.array(block, pa.binary()))
        assert parsed.reasons == ({} if reason is None else {40: reason}), value
        if reason is None:
            row, _ = check_message(LISTEN, value)
            assert list(parsed.fields.slice(40, 1).to_pylist()[0].values()) == row
    # the fast path gives exactly what the rules give on good messages
    goods = [v for v, r in CASES if r is None] * 20
    fast = parse_values(LISTEN, pa.array(goods, pa.binary()))
    assert parse._at_once(LISTEN, pa.array(goods[:5], pa.binary())) is not None
    assert fast.reasons == {}
    assert [list(r.values()) for r in fast.fields.to_pylist()] == [
        check_message(LISTEN, v)[0] for v in goods
    ]
    large = parse_values(LISTEN, pa.array(goods, pa.large_binary()))
    assert large.fields.equals(fast.fields)


@pytest.mark.parametrize("topic", list(TOPICS))
def test_lake_columns_follow_the_event_schema(topic: str) -> None:
    names = [f.name for f in lake_schema(TOPICS[topic])]
    assert names == [*TOPICS[topic].field_names, *schema.KAFKA_COLUMNS, schema.EXTRA_COLUMN]
    assert schema.EXTRA_COLUMN not in TOPICS[topic].field_names


def test_unknown_fields_are_kept_and_counted_never_dropped() -> None:
    """Whatever path a message takes (a block parsed at once, or one by one next to a
    bad message), its unknown fields are kept exactly and counted per field."""
    plain = orjson.dumps(listen())
    odd = orjson.dumps(listen(mood="happy", extra={"nested": [1, None]}))
    nulls = orjson.dumps(listen(flag=None))
    blocks = {
        "at once": [plain] * 10 + [odd] + [plain] * 10 + [nulls],
        "one by one": [plain] * 3 + [odd, b"bad", nulls],
        "mixed types": [orjson.dumps(listen(mood=m)) for m in ("a", 1, [2])] * 30,
    }
    for name, block in blocks.items():
        parsed = parse_values(LISTEN, pa.array(block, pa.binary()))
        extra = parsed.extra_column().to_pylist()
        for i, value in enumerate(block):
            if i in parsed.reasons:
                continue
            event = orjson.loads(value)
            unknown = {k: v for k, v in event.items() if k not in LISTEN.field_names}
            assert (orjson.loads(extra[i]) if extra[i] else {}) == unknown, (name, i)
        expected: dict[str, int] = {}
        for i, value in enumerate(block):
            if i not in parsed.reasons:
                for k in orjson.loads(value):
                    if k not in LISTEN.field_names:
                        expected[k] = expected.get(k, 0) + 1
        assert parsed.unknown_fields == expected, name
    assert parse_values(LISTEN, pa.array(blocks["at once"])).unknown_fields == {
        "mood": 1,
        "extra": 1,
        "flag": 1,
    }


def test_events_from_the_future_are_quarantined() -> None:
    now = 1_710_774_000_000
    ahead = [listen(ts=now + 299_000), listen(ts=now + 301_000), listen(ts=4_102_444_800_000)]
    block = [orjson.dumps(e) for e in [listen(ts=now - 5_000), *ahead]] * 20
    parsed = parse_values(LISTEN, pa.array(block, pa.binary()), not_after_ms=now + 300_000)
    bad = sorted(parsed.reasons)
    assert bad == [i for i in range(len(block)) if i % 4 in (2, 3)]
    assert "2100-01-01T00:00:00.000+00:00 is in the future" in parsed.reasons[3]
    assert "MUSIFY_MAX_EVENT_FUTURE_SECONDS" in parsed.reasons[3]
    # without the stream's clock (e.g. files), nothing is refused for its time
    assert parse_values(LISTEN, pa.array(block, pa.binary())).reasons == {}


#: Values to put in place of a field: every JSON type, and integers at the types' edges.
MUTATIONS: tuple[Any, ...] = (
    None, "x", "", 0, 1, -1, 2**31 - 1, 2**31, -(2**31) - 1, 2**40, 2**62, 2**63 - 1,
    -(2**63), 1.5, 0.0, True, False, [1], {"a": 1},
)  # fmt: skip


def test_the_generators_check_and_the_streams_quarantine_are_one_contract() -> None:
    """musify.events.check_event (the generator's checks, `musify validate`) accepts
    exactly the messages the stream does not quarantine: every field of every topic
    set to every kind of JSON value, or left out."""
    from musify.events import check_event

    samples = {"listen_events": listen()}
    samples["page_view_events"] = {
        **listen(), "page": "NextSong", "method": "PUT", "status": 200,
    }  # fmt: skip
    samples["auth_events"] = {**without(listen(), "artist"), "success": True}
    samples["status_change_events"] = {**without(listen(), "artist"), "page": "Cancel"}
    checked = 0
    for name, sample in samples.items():
        topic = TOPICS[name]
        assert check_event(topic, sample) is None, name
        variants = [without(sample, f.name) for f in topic.fields]
        variants += [{**sample, f.name: v} for f in topic.fields for v in MUTATIONS]
        for event in variants:
            mine = check_event(topic, event) is None
            stream = check_message(topic, orjson.dumps(event))[1] is None
            assert mine == stream, (name, event, check_event(topic, event))
            checked += 1
    assert checked > 1000
