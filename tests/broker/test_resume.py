"""Resuming a run in Kafka: the last message of each partition, skipping what is there."""

from __future__ import annotations

from collections import defaultdict

import orjson
import pytest
from confluent_kafka import KafkaError

from musify.broker.kafka import KafkaSink
from musify.broker.partitioner import key_bytes, partition_for
from musify.broker.resume import (
    LIVE_HEADER,
    LastMessage,
    ResumeFilter,
    event_ts,
    live_header,
    read_last_messages,
)
from musify.errors import UsageError
from musify.events import TOPIC_NAMES
from tests.broker.conftest import consume

TOPIC = "listen_events"


def _run(n: int, n_keys: int = 50, tag: str = "a") -> tuple[list[int], list[bytes]]:
    """A run's events: time never goes back, and many events share a ts."""
    keys = [1 + (i * 7919) % n_keys for i in range(n)]
    lines = [
        orjson.dumps({"ts": 1_700_000_000_000 + 1000 * (i // 7), "tag": tag, "seq": i, "u": k})
        + b"\n"
        for i, k in enumerate(keys)
    ]
    return keys, lines


def _by_partition(keys: list[int], lines: list[bytes], n: int = 3) -> dict[int, list[bytes]]:
    out: dict[int, list[bytes]] = defaultdict(list)
    for k, line in zip(keys, lines, strict=True):
        out[partition_for(key_bytes(k), n)].append(line)
    return dict(out)


def _write(sink: KafkaSink, keys: list[int], lines: list[bytes], batch: int = 500) -> None:
    for i in range(0, len(lines), batch):
        sink.write(TOPIC, keys[i : i + batch], lines[i : i + batch])


def _last(topic: str, partition: int, line: bytes, offset: int = 9) -> LastMessage:
    return LastMessage(topic, partition, offset, b"k", line, event_ts(line), None)


# -- pure logic ---------------------------------------------------------------------------


def test_event_ts_reads_every_line_shape() -> None:
    assert event_ts(b'{"ts":1700000000000,"sessionId":3}\n') == 1_700_000_000_000
    assert event_ts(b'{"artist":"A \\"ts\\": B","ts":17,"x":1}\n') == 17
    assert event_ts(b'{"x":1,"ts":18}\n') == 18
    with pytest.raises(ValueError):
        event_ts(b'{"ts":"yesterday"}\n')


def test_live_header_round_trip() -> None:
    from musify.broker.resume import _parse_live

    assert _parse_live(live_header(1_700_000_000, 1_700_000_000.5)) == (
        1_700_000_000,
        1_700_000_000.5,
    )
    assert _parse_live([("other", b"x"), (LIVE_HEADER, b"bad")]) is None
    assert _parse_live(None) is None


def test_filter_skips_each_partition_up_to_its_last_message() -> None:
    keys, lines = _run(700, n_keys=10)
    part = {k: k % 2 for k in keys}
    by_part: dict[int, list[int]] = defaultdict(list)
    for i, k in enumerate(keys):
        by_part[part[k]].append(i)
    # Partition 0 holds its first 200 events, partition 1 its first 31 (mid-tie).
    cut = {0: by_part[0][199], 1: by_part[1][30]}
    last = {TOPIC: {p: _last(TOPIC, p, lines[i]) for p, i in cut.items()}}
    filt = ResumeFilter(last, lambda _t, k: part[k])
    out: list[tuple[str, list[int], list[bytes]]] = []
    for s in range(0, 700, 64):  # in chunks, as the runner writes
        out += [
            (t, list(k), list(v))
            for t, k, v in filt.offer(TOPIC, keys[s : s + 64], lines[s : s + 64])
        ]
    assert filt.done and filt.skipped[TOPIC] == 231
    produced = [line for _, _, batch in out for line in batch]
    expected = [lines[i] for i in range(700) if i > cut[part[keys[i]]]]
    assert produced == expected  # nothing twice, nothing lost, order kept


def test_filter_holds_everything_until_every_partition_is_confirmed() -> None:
    keys, lines = _run(100, n_keys=4)
    part = {k: k % 2 for k in keys}
    late = max(i for i, k in enumerate(keys) if part[k] == 1 and i < 80)
    early = min(i for i, k in enumerate(keys) if part[k] == 0)
    last = {TOPIC: {0: _last(TOPIC, 0, lines[early]), 1: _last(TOPIC, 1, lines[late])}}
    filt = ResumeFilter(last, lambda _t, k: part[k])
    assert filt.offer(TOPIC, keys[:50], lines[:50]) == []
    assert filt.offer("page_view_events", [1], [lines[0]]) == []  # other topics wait too
    assert filt.n_held > 0
    released = filt.offer(TOPIC, keys[50:], lines[50:])
    assert filt.done and released
    assert released[0][0] == TOPIC and released[1][0] == "page_view_events"
    assert filt.offer(TOPIC, keys[:1], lines[:1]) == [(TOPIC, keys[:1], lines[:1])]


def test_filter_reports_a_topic_that_holds_another_run() -> None:
    keys, lines = _run(50, n_keys=1)
    other = orjson.dumps({"ts": event_ts(lines[10]), "tag": "other"}) + b"\n"
    filt = ResumeFilter({TOPIC: {0: _last(TOPIC, 0, other)}}, lambda _t, _k: 0)
    with pytest.raises(UsageError, match=r"partition 0 of listen_events \(offset 9\).*does not"):
        filt.offer(TOPIC, keys, lines)
    ahead = ResumeFilter({TOPIC: {0: _last(TOPIC, 0, lines[49])}}, lambda _t, _k: 0)
    assert ahead.offer(TOPIC, keys[:20], lines[:20]) == []
    assert [m.partition for m in ahead.unmatched()] == [0]


def test_filter_checks_the_window() -> None:
    _, lines = _run(1)
    filt = ResumeFilter({TOPIC: {0: _last(TOPIC, 0, lines[0])}}, lambda _t, _k: 0)
    filt.check_window(1_700_000_000, 1_700_000_001)
    with pytest.raises(UsageError, match="outside this run's window"):
        filt.check_window(1_700_000_001, 2**62)


# -- against the broker -------------------------------------------------------------------


@pytest.mark.broker
def test_read_last_messages_finds_the_end_of_every_partition(broker: str) -> None:
    keys, lines = _run(5_000)
    with KafkaSink(broker, partitions=3) as sink:
        assert isinstance(sink, KafkaSink)
        _write(sink, keys, lines, batch=333)
        sink.mark_live(1_700_000_000, 1_700_000_123.0)
        _write(sink, keys[:1], [lines[0]])  # one more, with the live header
    counts = dict.fromkeys(TOPIC_NAMES, 3)
    last = read_last_messages(broker, counts)
    assert {t: len(p) for t, p in last.items()} == {t: 3 if t == TOPIC else 0 for t in counts}
    expected = _by_partition(keys, lines)
    p0 = partition_for(key_bytes(keys[0]), 3)
    expected[p0].append(lines[0])
    records = consume(broker, TOPIC, 5_001)
    for p, m in last[TOPIC].items():
        assert m.value == expected[p][-1]
        assert m.offset == max(r.offset for r in records if r.partition == p)
        assert m.live == ((1_700_000_000, 1_700_000_123.0) if p == p0 else None)


@pytest.mark.broker
def test_resumed_sink_writes_only_what_is_missing(broker: str) -> None:
    keys, lines = _run(20_000)
    # A "killed" first run: partitions stopped at different places, as when a producer
    # dies with messages of some partitions still queued.
    first_k, first_l = [], []
    for i, (k, line) in enumerate(zip(keys[:12_000], lines[:12_000], strict=True)):
        if partition_for(key_bytes(k), 3) != 1 or i < 9_000:
            first_k.append(k)
            first_l.append(line)
    with KafkaSink(broker) as first:
        assert isinstance(first, KafkaSink)
        _write(first, first_k, first_l)
    resumed = KafkaSink(broker, resume=True)
    with resumed:
        _write(resumed, keys, lines, batch=700)
    assert resumed.skipped[TOPIC] == len(first_l)
    assert resumed.resume_unmatched() == []
    records = consume(broker, TOPIC, len(lines))
    got: dict[int, list[bytes]] = defaultdict(list)
    for r in sorted(records, key=lambda r: (r.partition, r.offset)):
        got[r.partition].append(r.value)
    assert got == _by_partition(keys, lines)  # each event once, in order

    again = KafkaSink(broker, resume=True)
    with again:
        _write(again, keys, lines)
    assert again.skipped[TOPIC] == len(lines)
    assert len(consume(broker, TOPIC, len(lines))) == len(lines)


@pytest.mark.broker
def test_resumed_sink_on_empty_topics_writes_everything(broker: str) -> None:
    keys, lines = _run(1_000)
    with KafkaSink(broker, resume=True) as sink:
        assert isinstance(sink, KafkaSink)
        _write(sink, keys, lines)
    assert sink.skipped == dict.fromkeys(TOPIC_NAMES, 0)
    assert len(consume(broker, TOPIC, 1_000)) == 1_000


@pytest.mark.broker
def test_resume_refuses_topics_of_another_run_before_producing(broker: str) -> None:
    keys, lines = _run(2_000, tag="one")
    with KafkaSink(broker) as first:
        assert isinstance(first, KafkaSink)
        _write(first, keys[:1_000], lines[:1_000])
    other_keys, other_lines = _run(2_000, tag="two")
    sink = KafkaSink(broker, resume=True)
    with pytest.raises(UsageError, match="that this run does not generate"), sink:
        _write(sink, other_keys, other_lines)
    assert len(consume(broker, TOPIC, 1_000)) == 1_000  # nothing of run two


@pytest.mark.broker
def test_recovery_resends_in_produce_order(broker: str) -> None:
    """After the producer is replaced mid-stream, every partition is still a gap-free
    prefix at every point: a message is stored only after all that came before it."""
    keys, lines = _run(60_000, n_keys=200)
    with KafkaSink(broker) as sink:
        assert isinstance(sink, KafkaSink)
        for i in range(0, 60_000, 2_000):
            _write(sink, keys[i : i + 2_000], lines[i : i + 2_000], batch=2_000)
            if i in (10_000, 30_000, 44_000):  # with messages queued and in flight
                sink._on_error(KafkaError(KafkaError._FATAL, "injected", fatal=True))
    assert sink.producers_created == 4
    records = consume(broker, TOPIC, 60_000)
    seq_of = {line: i for i, line in enumerate(lines)}
    expected = {p: [seq_of[v] for v in vs] for p, vs in _by_partition(keys, lines).items()}
    by_part: dict[int, list[int]] = defaultdict(list)
    for r in sorted(records, key=lambda r: (r.partition, r.offset)):
        by_part[r.partition].append(seq_of[r.value])
    for p, seqs in by_part.items():
        rank = {s: n for n, s in enumerate(expected[p])}
        seen = -1
        for s in seqs:
            assert rank[s] <= seen + 1, f"partition {p}: {s} stored before all that precede it"
            seen = max(seen, rank[s])
        assert seen == len(expected[p]) - 1 and seqs[-1] == expected[p][-1]
