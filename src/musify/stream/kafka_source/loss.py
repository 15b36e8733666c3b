"""Data loss and topic identity for the ``musify_kafka`` source, on the driver and in
tasks alike.

``KafkaDataLossError`` and its message (``_Loss``, ``data_loss_message``), a topic
created again (``_recreated``, ``_describe_topic_ids`` through an AdminClient made by
``_new_admin``), and the Kafka error helpers (``_TOPIC_GONE``, ``_code``,
``_error_text``, ``KafkaSourceError``). The driver's reader and probe (``reader``,
``probe``) and the tasks (``consume``) use them; the package docstring lists every part.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, KafkaException

from musify.errors import MusifyError
from musify.stream.kafka_source.offsets import TP
from musify.stream.kafka_source.options import SourceOptions, _option_error, log

#: Marks the messages of data-loss errors; the stream job can look for it.
DATA_LOSS = "Kafka data loss"
_RESET_HINT = (
    "The lost records cannot be recovered. To continue from what the broker has now, "
    "restart with --reset-on-data-loss (source option failOnDataLoss=false); the loss "
    "is then logged as a warning."
)

#: Consumer settings an AdminClient rejects or ignores.
_CONSUMER_ONLY = frozenset(
    {
        "group.id",
        "enable.auto.commit",
        "enable.auto.offset.store",
        "enable.partition.eof",
        "auto.offset.reset",
        "isolation.level",
        "queued.min.messages",
        "fetch.wait.max.ms",
        "allow.auto.create.topics",
    }
)

_TOPIC_GONE = frozenset(
    getattr(KafkaError, name)
    for name in (
        "UNKNOWN_TOPIC_OR_PART",
        "_UNKNOWN_TOPIC",
        "_UNKNOWN_PARTITION",
        "UNKNOWN_TOPIC_ID",
    )
    if hasattr(KafkaError, name)
)

#: The id Kafka uses for "no id" (brokers before topic ids).
_NO_TOPIC_ID = "AAAAAAAAAAAAAAAAAAAAAA"


class KafkaDataLossError(MusifyError):
    """The broker no longer has records the query was about to read."""


class KafkaSourceError(MusifyError):
    """The source cannot read what it planned (other than data loss)."""


@dataclass(frozen=True)
class _Loss:
    tp: TP
    expected: int
    broker_has: str

    def text(self) -> str:
        topic, partition = self.tp
        return (
            f"topic {topic} partition {partition}: expected offset {self.expected} "
            f"(the next one after the checkpoint), but {self.broker_has}"
        )


def _recreated(topic: str, old_id: str, new_id: str) -> str:
    return (
        f"topic {topic} is not the one the checkpoint read: its topic id is {new_id} on "
        f"the broker, {old_id} in the checkpoint (the topic was created again, and its "
        "offsets restarted)"
    )


def _new_admin(opts: SourceOptions, role: str) -> Any:
    from confluent_kafka.admin import AdminClient

    # The consumer's own client settings (security, timeouts), minus what only a
    # consumer understands.
    conf = {
        k: v
        for k, v in opts.consumer_config(**{"client.id": f"musify-kafka-source-{role}"}).items()
        if k not in _CONSUMER_ONLY
    }
    try:
        return AdminClient(conf)
    except (KafkaException, ValueError, TypeError) as exc:
        raise _option_error(f"invalid Kafka client options: {_error_text(exc)}") from None


def _describe_topic_ids(admin: Any, topics: Sequence[str], timeout: float) -> dict[str, str]:
    """Ids of the topics that exist; empty where the broker cannot tell (no ids before
    Kafka 2.8, or an error: the id check is then skipped, never guessed)."""
    if not topics:
        return {}
    from confluent_kafka import TopicCollection

    out: dict[str, str] = {}
    try:
        futures = admin.describe_topics(TopicCollection(list(topics)), request_timeout=timeout)
    except (KafkaException, ValueError, TypeError, AttributeError) as exc:
        log.debug("describe_topics failed: %s", _error_text(exc))
        return out
    for topic, future in futures.items():
        try:
            topic_id = str(future.result(timeout=timeout + 5).topic_id)
        except Exception as exc:  # any failure: no id, so no check (never a guess)
            log.debug("no topic id for %s: %s", topic, _error_text(exc))
            continue
        if topic_id and topic_id != _NO_TOPIC_ID and topic_id != "None":
            out[topic] = topic_id
    return out


def data_loss_message(losses: Sequence[_Loss], bootstrap: str) -> str:
    shown = "; ".join(loss.text() for loss in losses[:10])
    more = f" (and {len(losses) - 10} more partitions)" if len(losses) > 10 else ""
    return (
        f"{DATA_LOSS} at {bootstrap}: {shown}{more}. The broker lost records that were "
        f"never read (was it restarted? the local broker keeps topics in memory only). "
        f"{_RESET_HINT}"
    )


def _code(exc: BaseException) -> Any:
    err = exc.args[0] if exc.args else None
    return err.code() if isinstance(err, KafkaError) else None


def _error_text(exc: BaseException) -> str:
    err = exc.args[0] if exc.args else None
    if isinstance(err, KafkaError):
        return str(err.str())
    return str(exc) or type(exc).__name__
