"""The event generator: a Python reimplementation of eventsim.

Public API: ``generate_events`` (what ``musify generate`` runs), ``GenerateOptions``,
the sinks, and ``validate_dir`` in ``musify.sim.validate``. See README.md in this folder
for what each module owns.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from musify.errors import UsageError
from musify.sim.clock import from_epoch
from musify.sim.runner import (
    GenerateOptions,
    Plan,
    Progress,
    ProgressCallback,
    check_resumable,
    plan_run,
    run,
)
from musify.sim.sinks import FileSink, MemorySink, Sink, StdoutSink


def make_sink(
    *,
    output_dir: Path | None = None,
    bootstrap_servers: str | None = None,
    stdout_topic: str | None = None,
    partitions: int = 3,
    replication: int = 1,
    continuous: bool = False,
    resume: bool = False,
) -> Sink:
    if output_dir is not None:
        return FileSink(output_dir)
    if bootstrap_servers is not None:
        from musify.broker.kafka import KafkaSink

        sink: Sink = KafkaSink(
            bootstrap_servers,
            partitions=partitions,
            replication=replication,
            continuous=continuous,
            resume=resume,
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
    resume: bool = False,
) -> dict[str, Any]:
    """Plan and run a generator job into one destination; returns the summary.

    ``resume`` (Kafka only): the topics hold part of this very run (same config,
    users, seed, start time), e.g. from a generator that was killed; produce only the
    events they do not hold yet. The summary's ``skipped`` counts, per topic, the events
    regenerated but not produced because they were there already.
    """
    plan = plan_run(opts)
    if resume:
        if bootstrap_servers is None:
            raise UsageError("--resume continues a run in Kafka: give --bootstrap-servers")
        check_resumable(opts, plan)
    sink = make_sink(
        output_dir=output_dir,
        bootstrap_servers=bootstrap_servers,
        stdout_topic=stdout_topic,
        partitions=partitions,
        replication=replication,
        continuous=opts.continuous,
        resume=resume,
    )
    if resume:
        plan = _open_for_resume(plan, sink)
    progress = run(
        plan, sink, faults=opts.faults, fault_manifest=opts.fault_manifest, on_progress=on_progress
    )
    summary = progress.as_dict()
    summary["target"] = sink.target
    summary["workers"] = plan.workers
    if progress.faults:
        summary["fault_manifest"] = str(opts.fault_manifest)
    if resume:
        from musify.broker.kafka import KafkaSink

        assert isinstance(sink, KafkaSink)
        summary["skipped"] = dict(sink.skipped)
        summary["produced"] = {t: n - sink.skipped.get(t, 0) for t, n in progress.counts.items()}
        unmatched = sink.resume_unmatched()
        if unmatched and progress.sim_time >= plan.end:
            raise UsageError(
                f"cannot resume: this run ended without generating the last message of "
                f"{'; '.join(unmatched)}, so nothing was produced; the topics hold events of "
                "another run (resume needs the same options as the run that wrote them)"
            )
    return summary


def _open_for_resume(plan: Plan, sink: Sink) -> Plan:
    """Read where each partition ends, and take over the live switch of the continuous
    run that wrote the topics, if any."""
    from musify.broker.kafka import KafkaSink

    assert isinstance(sink, KafkaSink)
    sink.prepare()
    sink.check_resume_window(plan.start, plan.end)
    recorded = sink.recorded_live
    if recorded is None:
        return plan
    live_from, anchor = recorded
    if not plan.continuous:
        raise UsageError(
            "cannot resume: the topics were written by a --continuous run; "
            "resume it with --continuous"
        )
    if not plan.start <= live_from:
        raise UsageError(
            f"cannot resume: the topics were written by a run that went live at "
            f"{from_epoch(live_from):%Y-%m-%dT%H:%M:%S}Z, before this run's start; "
            "resume needs the same --start-time"
        )
    return replace(plan, live_from=live_from, live_anchor=anchor)


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
