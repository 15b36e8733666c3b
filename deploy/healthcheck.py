"""Container health checks for deploy/compose.yaml, standard library only.

Every image has Python but not necessarily curl, so the compose health checks call this
script: ``python /opt/musify/deploy/healthcheck.py <check> ...``. Exit status 0 means
healthy; anything else prints one line saying what is wrong.

Checks:
  http URL [--contains TEXT]        GET URL answers 2xx (and its body contains TEXT)
  kafka-topics BOOTSTRAP TOPIC...   the broker answers and holds every TOPIC
  stream                            the stream job of MUSIFY_HOME is running (pid file)
"""

from __future__ import annotations

import argparse
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence

TIMEOUT_S = 5.0


def check_http(url: str, contains: str | None = None, timeout: float = TIMEOUT_S) -> str | None:
    """None when ``url`` answers 2xx (with ``contains`` in its body), else the problem."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            body = resp.read(1 << 20).decode("utf-8", "replace")
            status = int(resp.status)
    except urllib.error.HTTPError as exc:
        return f"{url}: HTTP {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        return f"{url}: {getattr(exc, 'reason', exc)}"
    if not 200 <= status < 300:
        return f"{url}: HTTP {status}"
    if contains is not None and contains not in body:
        return f"{url}: answer does not contain {contains!r}"
    return None


def check_kafka_topics(bootstrap: str, topics: Sequence[str]) -> str | None:
    """None when the broker at ``bootstrap`` answers and has every topic."""
    from confluent_kafka.admin import AdminClient

    try:
        meta = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=TIMEOUT_S)
    except Exception as exc:  # KafkaException carries the broker's reason
        return f"kafka {bootstrap}: {exc}"
    missing = sorted(set(topics) - set(meta.topics))
    return f"kafka {bootstrap}: missing topics {', '.join(missing)}" if missing else None


def check_stream() -> str | None:
    """None when the stream job of this container's MUSIFY_HOME is running."""
    from musify.errors import MusifyError
    from musify.settings import load_settings
    from musify.stream.status import stream_status

    try:
        status = stream_status(load_settings())
    except (MusifyError, OSError, ValueError) as exc:
        return f"stream status: {exc}"
    return None if status.running else "the stream job is not running"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="check", required=True)
    http = sub.add_parser("http")
    http.add_argument("url")
    http.add_argument("--contains")
    kafka = sub.add_parser("kafka-topics")
    kafka.add_argument("bootstrap")
    kafka.add_argument("topics", nargs="+")
    sub.add_parser("stream")
    args = parser.parse_args(argv)
    if args.check == "http":
        problem = check_http(args.url, args.contains)
    elif args.check == "kafka-topics":
        problem = check_kafka_topics(args.bootstrap, args.topics)
    else:
        problem = check_stream()
    if problem:
        print(f"unhealthy: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
