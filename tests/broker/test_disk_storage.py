"""The disk-backed local broker (MUSIFY_BROKER_STORAGE=disk): Tansu's s3:// engine on a
local object store. Topics, records and consumer-group offsets survive a kill -9."""

from __future__ import annotations

import os
import signal
import time
from dataclasses import replace

import psutil
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from musify.broker import local
from musify.broker.local import broker_status, start_broker, stop_broker
from musify.errors import UsageError
from musify.settings import Settings, load_settings
from tests.broker.conftest import consume

pytestmark = pytest.mark.broker

TOPIC = "listen_events"
N = 3000


def _produce(bootstrap: str, start: int, n: int) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    for i in range(start, start + n):
        producer.produce(TOPIC, b'{"n":%d}' % i, key=b"%d" % (i % 7))
    assert producer.flush(15) == 0


def _commit(bootstrap: str, offsets: dict[int, int]) -> None:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "musify-disk"})
    try:
        consumer.commit(
            offsets=[TopicPartition(TOPIC, p, o) for p, o in offsets.items()], asynchronous=False
        )
    finally:
        consumer.close()


def _committed(bootstrap: str) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "musify-disk"})
    try:
        tps = consumer.committed([TopicPartition(TOPIC, p) for p in range(3)], timeout=10)
        return {tp.partition: tp.offset for tp in tps}
    finally:
        consumer.close()


def test_topics_records_and_offsets_survive_a_kill_9(broker_settings: Settings) -> None:
    s = replace(broker_settings, broker_storage="disk")
    info = start_broker(s)
    try:
        admin = AdminClient({"bootstrap.servers": info.bootstrap_servers})
        admin.create_topics([NewTopic(TOPIC, 3, 1)])[TOPIC].result(10)
        _produce(info.bootstrap_servers, 0, N)
        _commit(info.bootstrap_servers, {0: 5, 1: 6, 2: 7})
        assert list((s.home / "broker" / local.STORE_BUCKET).rglob("*.batch")), "files on disk"

        os.kill(info.pid, signal.SIGKILL)  # the broker dies; its store keeps the files
        deadline = time.monotonic() + 10
        while local._alive(info.pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        again = start_broker(s)
        assert again.pid != info.pid
        records = consume(again.bootstrap_servers, TOPIC, N)
        assert sorted(int(r.value[5:-1]) for r in records) == list(range(N))
        assert _committed(again.bootstrap_servers) == {0: 5, 1: 6, 2: 7}
        _produce(again.bootstrap_servers, N, 100)  # and it takes new records after them
        assert len(consume(again.bootstrap_servers, TOPIC, N + 100)) == N + 100

        store_pid, _ = local._running_store(s) or (0, 0)
        listening = {
            c.laddr.ip for c in psutil.Process(store_pid).net_connections() if c.status == "LISTEN"
        }
        assert listening == {"127.0.0.1"}, "only the broker talks to the store"
        assert broker_status(s).running and broker_status(s).storage == "disk"
    finally:
        assert stop_broker(s)
    assert local._running_store(s) is None and not psutil.pid_exists(store_pid)
    assert not (s.run_dir / "broker-store.pid").exists()


def test_batches_older_than_the_retention_are_deleted_and_reading_starts_after_them(
    broker_settings: Settings,
) -> None:
    s = replace(broker_settings, broker_storage="disk", broker_retention_hours=2 / 3600)
    info = start_broker(s)
    try:
        admin = AdminClient({"bootstrap.servers": info.bootstrap_servers})
        admin.create_topics([NewTopic(TOPIC, 3, 1)])[TOPIC].result(10)
        for i in range(5):  # several batches per partition
            _produce(info.bootstrap_servers, i * 200, 200)
        bucket = s.home / "broker" / local.STORE_BUCKET
        before = list(bucket.rglob("*.batch"))
        time.sleep(4.0)  # older than the retention (2 s), and a sweep (every 1 s) later
        _produce(info.bootstrap_servers, 1000, 100)
        records = consume(info.bootstrap_servers, TOPIC, 100, timeout=10, settle=1.0)
        values = sorted(int(r.value[5:-1]) for r in records)
        assert set(range(1000, 1100)) <= set(values), "nothing younger is gone"
        assert len(values) < 1100, "the old batches were deleted"
        assert min(r.offset for r in records) > 0, "reading starts after them"
        left = list(bucket.rglob("*.batch"))
        assert len(left) < len(before)
        assert {p.parent for p in left} == {p.parent for p in before}  # newest ones kept
    finally:
        assert stop_broker(s)


def test_the_storage_setting_is_checked() -> None:
    assert load_settings({"MUSIFY_BROKER_STORAGE": "disk"}).broker_storage == "disk"
    with pytest.raises(UsageError, match="MUSIFY_BROKER_STORAGE"):
        load_settings({"MUSIFY_BROKER_STORAGE": "tape"})
    assert load_settings({"MUSIFY_BROKER_RETENTION_HOURS": "0.5"}).broker_retention_hours == 0.5
    with pytest.raises(UsageError, match="MUSIFY_BROKER_RETENTION_HOURS"):
        load_settings({"MUSIFY_BROKER_RETENTION_HOURS": "-1"})
