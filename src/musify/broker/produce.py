"""A generator run into Kafka: ``produce_events`` (what ``musify generate
--bootstrap-servers`` runs), resuming a run the topics hold part of.

The simulation (``musify.sim``) knows only its ``Sink`` base class; the Kafka sink and
what resuming needs from the topics live here, one layer up, so that the generator
never imports the broker.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from musify.broker.kafka import KafkaSink
from musify.errors import UsageError
from musify.sim import (
    GenerateOptions,
    GenerateSummary,
    Plan,
    ProgressCallback,
    plan_run,
    run,
    summary_of,
)
from musify.sim.clock import from_epoch
from musify.sim.runner import check_resumable


def produce_events(
    opts: GenerateOptions,
    bootstrap_servers: str,
    *,
    partitions: int = 3,
    replication: int = 1,
    on_progress: ProgressCallback | None = None,
    resume: bool = False,
    sink_options: Mapping[str, Any] | None = None,
) -> GenerateSummary:
    """Plan and run a generator job into the Kafka at ``bootstrap_servers``; returns the
    summary.

    ``resume``: the topics hold part of this very run (same config, users, seed, start
    time), e.g. from a generator that was killed; produce only the events they do not
    hold yet. The summary's ``skipped`` counts, per topic, the events regenerated but
    not produced because they were there already. ``sink_options``: more ``KafkaSink``
    arguments (``musify.broker.local.producer_options``).
    """
    plan = plan_run(opts)
    if resume:
        check_resumable(opts, plan)
    sink = KafkaSink(
        bootstrap_servers,
        partitions=partitions,
        replication=replication,
        continuous=opts.continuous,
        resume=resume,
        **(sink_options or {}),
    )
    if resume:
        plan = _open_for_resume(plan, sink)
    progress = run(
        plan, sink, faults=opts.faults, fault_manifest=opts.fault_manifest, on_progress=on_progress
    )
    summary = summary_of(opts, plan, sink, progress)
    if resume:
        summary = replace(
            summary,
            skipped=dict(sink.skipped),
            produced={t: n - sink.skipped.get(t, 0) for t, n in progress.counts.items()},
        )
        unmatched = sink.resume_unmatched()
        if unmatched and progress.sim_time >= plan.end:
            raise UsageError(
                f"cannot resume: this run ended without generating the last message of "
                f"{'; '.join(unmatched)}, so nothing was produced; the topics hold events of "
                "another run (resume needs the same options as the run that wrote them)"
            )
    return summary


def _open_for_resume(plan: Plan, sink: KafkaSink) -> Plan:
    """Read where each partition ends, and take over the live switch of the continuous
    run that wrote the topics, if any."""
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
