"""The event generator: a Python reimplementation of eventsim.

Public API: ``generate_events`` (what ``musify generate`` runs into files or standard
output; into Kafka: ``musify.broker.produce``), ``GenerateOptions``, the sinks, and
``validate_dir`` in ``musify.sim.validate``. See README.md in this folder
for what each module owns.
"""

from __future__ import annotations

from pathlib import Path

from musify.sim.runner import (
    GenerateOptions,
    GenerateSummary,
    Plan,
    Progress,
    ProgressCallback,
    plan_run,
    run,
)
from musify.sim.sinks import FileSink, MemorySink, Sink, StdoutSink


def make_sink(*, output_dir: Path | None = None, stdout_topic: str | None = None) -> Sink:
    """Files in ``output_dir``, or one topic's lines on standard output (Kafka's sink is
    ``musify.broker``'s: ``musify.broker.produce``)."""
    if output_dir is not None:
        return FileSink(output_dir)
    if stdout_topic is not None:
        return StdoutSink(stdout_topic)
    raise ValueError("no destination: give output_dir or stdout_topic")


def generate_events(
    opts: GenerateOptions,
    *,
    output_dir: Path | None = None,
    stdout_topic: str | None = None,
    sink: Sink | None = None,
    on_progress: ProgressCallback | None = None,
) -> GenerateSummary:
    """Plan and run a generator job into one destination (``sink``, files or standard
    output); returns the summary."""
    plan = plan_run(opts)
    if sink is None:
        sink = make_sink(output_dir=output_dir, stdout_topic=stdout_topic)
    progress = run(
        plan, sink, faults=opts.faults, fault_manifest=opts.fault_manifest, on_progress=on_progress
    )
    return summary_of(opts, plan, sink, progress)


def summary_of(
    opts: GenerateOptions, plan: Plan, sink: Sink, progress: Progress
) -> GenerateSummary:
    """A finished job's summary."""
    return progress.summary(sink.target, plan.workers, opts.fault_manifest)


__all__ = [
    "FileSink",
    "GenerateOptions",
    "GenerateSummary",
    "MemorySink",
    "Plan",
    "Progress",
    "ProgressCallback",
    "Sink",
    "StdoutSink",
    "generate_events",
    "make_sink",
    "plan_run",
    "run",
    "summary_of",
]
