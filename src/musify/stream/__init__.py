"""The real-time half: Kafka → Spark Structured Streaming → the Parquet lake.

Public API: ``run_stream(settings, StreamOptions(...))`` (what ``musify stream`` runs),
``stream_status(settings)``. See README.md in this folder.
"""

from musify.stream.job import StreamError, StreamOptions, parse_trigger, run_stream
from musify.stream.status import stream_status

__all__ = ["StreamError", "StreamOptions", "parse_trigger", "run_stream", "stream_status"]
