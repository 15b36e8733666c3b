"""The event generator: a Python reimplementation of eventsim.

Public API: ``generate_events`` (what ``musify generate`` runs), ``GenerateOptions``,
the sinks, and ``validate_dir`` in ``musify.sim.validate``. See README.md in this folder
for what each module owns.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from musify.sim.runner import GenerateOptions, Progress, ProgressCallback, plan_run, run
from musify.sim.sinks import FileSink, MemorySink, Sink, StdoutSink


def make_sink(
    *,
    output_dir: Path | None = None,
    bootstrap_servers: str | None = None,
    stdout_topic: str | None = None,
    partitions: int = 3,
    replication: int = 1,
    continuous: bool = False,
) -> Sink:
    if output_dir is not None:
        return FileSink(output_dir)
    if bootstrap_servers is not None:
        from musify.broker.kafka import KafkaSink

        sink: Sink = KafkaSink(
            bootstrap_servers, partitions=partitions, replication=replication, continuous=continuous
        )
        return sink
    if stdout_topic is not None:
        return StdoutSink(stdout_topic)
    raise ValueError("no destination: give output_dir, bootstrap_servers or stdout_topic")


def generate_events(
    opts: GenerateOptions,
    *,
    output_dir: Path | None = None,
    bootstrap_servers: str | None = None,
    stdout_topic: str | None = None,
    partitions: int = 3,
    replication: int = 1,
    on_progress: ProgressCallback | None = None,
) -> dict[str, Any]:
    """Plan and run a generator job into one destination; returns the summary."""
    plan = plan_run(opts)
    sink = make_sink(
        output_dir=output_dir,
        bootstrap_servers=bootstrap_servers,
        stdout_topic=stdout_topic,
        partitions=partitions,
        replication=replication,
        continuous=opts.continuous,
    )
    progress = run(
        plan, sink, faults=opts.faults, fault_manifest=opts.fault_manifest, on_progress=on_progress
    )
    summary = progress.as_dict()
    summary["target"] = sink.target
    summary["workers"] = plan.workers
    if progress.faults:
        summary["fault_manifest"] = str(opts.fault_manifest)
    return summary


__all__ = [
    "FileSink",
    "GenerateOptions",
    "MemorySink",
    "Progress",
    "Sink",
    "StdoutSink",
    "generate_events",
    "make_sink",
    "plan_run",
    "run",
]
