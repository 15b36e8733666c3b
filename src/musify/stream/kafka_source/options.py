"""The ``musify_kafka`` source's options: ``parse_options`` validates what Spark passes
(keys case-insensitive) into a ``SourceOptions``, whose ``consumer_config`` is the
librdkafka settings of every client the source creates.

Also what the other parts share: the format name, the Kafka client timeouts and the
source's loggers. The other parts of ``musify.stream.kafka_source`` (its package
docstring lists them all) import from here; this module imports none of them.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from musify.errors import UsageError

#: The source's logger, one name for all its parts (they were one module).
log = logging.getLogger("musify.stream.kafka_source")
#: librdkafka's own log lines from the source's consumers.
client_log = logging.getLogger("musify.stream.kafka_source.librdkafka")

FORMAT = "musify_kafka"

#: Default of ``kafkaConsumer.pollTimeoutMs`` (Spark's default, spark.network.timeout).
POLL_TIMEOUT_MS = 120_000
#: Seconds to wait for the broker's metadata and ListOffsets answers.
METADATA_TIMEOUT = 10.0

_OPTIONS = (
    "kafka.bootstrap.servers",
    "subscribe",
    "startingOffsets",
    "maxOffsetsPerTrigger",
    "failOnDataLoss",
    "kafkaConsumer.pollTimeoutMs",
    "output",
)
#: What ``read()`` returns: the records (the native format's columns), or only the
#: offset ranges, for a next stage that reads them itself (``ranges``).
OUTPUTS = ("records", "ranges")
_NATIVE_ONLY = {
    "subscribepattern": "subscribe with a comma-separated list of topics",
    "assign": "subscribe with a comma-separated list of topics",
    "endingoffsets": "a streaming query (trigger availableNow to stop at the end)",
    "startingtimestamp": "startingOffsets",
    "startingoffsetsbytimestamp": "startingOffsets",
    "includeheaders": "the native format (headers are not read)",
    "minpartitions": "the default split (a task per 200,000 offsets; short ranges share one)",
}
#: librdkafka settings the source owns: offsets live in Spark's checkpoint.
_OWNED = {
    "enable.auto.commit": "offsets are kept in Spark's checkpoint",
    "auto.offset.reset": "use startingOffsets; lost offsets follow failOnDataLoss",
    "enable.partition.eof": "the source needs end-of-partition events",
    "enable.auto.offset.store": "offsets are kept in Spark's checkpoint",
}


@dataclass(frozen=True)
class SourceOptions:
    """The source's options, validated."""

    bootstrap_servers: str
    topics: tuple[str, ...]
    starting_offsets: str = "earliest"
    max_offsets_per_trigger: int | None = None
    fail_on_data_loss: bool = True
    poll_timeout_ms: int = POLL_TIMEOUT_MS
    #: One of ``OUTPUTS``.
    output: str = "records"
    #: ``kafka.*`` options other than bootstrap.servers, without the prefix.
    client_config: dict[str, str] = field(default_factory=dict)

    def consumer_config(self, **overrides: Any) -> dict[str, Any]:
        """librdkafka settings for an assign-only consumer that commits nothing."""
        conf: dict[str, Any] = {
            "client.id": "musify-kafka-source",
            # Required by confluent-kafka; never joined (assign() only), nothing committed.
            "group.id": "musify-kafka-source",
            **self.client_config,
            "bootstrap.servers": self.bootstrap_servers,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "enable.partition.eof": True,
            # An offset the broker no longer has must surface as an error, never be
            # skipped silently: failOnDataLoss decides.
            "auto.offset.reset": "error",
            "logger": client_log,
        }
        conf.update(overrides)
        return conf


def _option_error(problem: str) -> UsageError:
    return UsageError(f"{FORMAT} source: {problem}")


def parse_options(options: Mapping[str, str]) -> SourceOptions:
    """Validate the source's options (keys case-insensitive, as Spark passes them)."""
    known = {name.lower(): name for name in _OPTIONS}
    values: dict[str, str] = {}
    client: dict[str, str] = {}
    for raw_key, raw_value in options.items():
        key = raw_key.lower()
        value = "" if raw_value is None else str(raw_value)
        if key in known:
            values[known[key]] = value.strip()
        elif key.startswith("kafka."):
            name = raw_key[len("kafka.") :]
            if name.lower() in _OWNED:
                raise _option_error(f"option {raw_key!r} is not supported ({_OWNED[name.lower()]})")
            client[name] = value
        elif key in _NATIVE_ONLY:
            raise _option_error(
                f"option {raw_key!r} of Spark's kafka format is not supported; "
                f"use {_NATIVE_ONLY[key]}"
            )
        else:
            raise _option_error(
                f"unknown option {raw_key!r} (known: {', '.join(_OPTIONS)}, and kafka.* "
                "options for the Kafka client)"
            )
    bootstrap = values.get("kafka.bootstrap.servers", "")
    if not bootstrap:
        raise _option_error("option 'kafka.bootstrap.servers' is required")
    topics = tuple(dict.fromkeys(t.strip() for t in values.get("subscribe", "").split(",")))
    topics = tuple(t for t in topics if t)
    if not topics:
        raise _option_error("option 'subscribe' is required: a comma-separated list of topics")
    starting = values.get("startingOffsets", "earliest").lower()
    if starting not in ("earliest", "latest"):
        raise _option_error(
            f"option 'startingOffsets' must be 'earliest' or 'latest', not "
            f"{values['startingOffsets']!r}"
        )
    max_offsets: int | None = None
    if values.get("maxOffsetsPerTrigger"):
        max_offsets = _positive_int("maxOffsetsPerTrigger", values["maxOffsetsPerTrigger"])
    fail = values.get("failOnDataLoss", "true").lower()
    if fail not in ("true", "false"):
        raise _option_error(
            f"option 'failOnDataLoss' must be 'true' or 'false', not {values['failOnDataLoss']!r}"
        )
    poll_timeout = POLL_TIMEOUT_MS
    if values.get("kafkaConsumer.pollTimeoutMs"):
        poll_timeout = _positive_int(
            "kafkaConsumer.pollTimeoutMs", values["kafkaConsumer.pollTimeoutMs"]
        )
    output = values.get("output", "records").lower()
    if output not in OUTPUTS:
        raise _option_error(
            f"option 'output' must be {' or '.join(map(repr, OUTPUTS))}, not {values['output']!r}"
        )
    return SourceOptions(
        bootstrap_servers=bootstrap,
        topics=topics,
        starting_offsets=starting,
        max_offsets_per_trigger=max_offsets,
        fail_on_data_loss=fail == "true",
        poll_timeout_ms=poll_timeout,
        output=output,
        client_config=client,
    )


def _positive_int(name: str, text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise _option_error(f"option {name!r} must be a positive integer, not {text!r}") from None
    if value < 1:
        raise _option_error(f"option {name!r} must be a positive integer, not {text!r}")
    return value
