"""The real-time half: Kafka → Spark Structured Streaming → the Parquet lake.

Public API: ``run_stream(settings, StreamOptions(...))`` (what ``musify stream`` runs;
a ``StreamSummary``), ``stream_status(settings)`` (a ``StreamStatus`` holding the latest
``StatusRecord``), ``last_record(settings)`` and ``watermark(settings)``. See README.md
in this folder.

The job's names are imported on first use, so ``musify.stream.status`` (standard
library only) can be imported where Spark and the job's dependencies are not installed.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from musify.stream.job import (
        DEFAULT_TRIGGER,
        StreamError,
        StreamOptions,
        StreamSummary,
        parse_trigger,
        run_stream,
    )
    from musify.stream.status import (
        StatusRecord,
        StreamStatus,
        last_record,
        stream_status,
        watermark,
    )

_WHERE = {
    "DEFAULT_TRIGGER": "musify.stream.job",
    "StreamError": "musify.stream.job",
    "StreamOptions": "musify.stream.job",
    "StreamSummary": "musify.stream.job",
    "StatusRecord": "musify.stream.status",
    "StreamStatus": "musify.stream.status",
    "last_record": "musify.stream.status",
    "parse_trigger": "musify.stream.job",
    "run_stream": "musify.stream.job",
    "stream_status": "musify.stream.status",
    "watermark": "musify.stream.status",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'musify.stream' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "DEFAULT_TRIGGER",
    "StatusRecord",
    "StreamError",
    "StreamOptions",
    "StreamStatus",
    "StreamSummary",
    "last_record",
    "parse_trigger",
    "run_stream",
    "stream_status",
    "watermark",
]
