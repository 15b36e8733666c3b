"""The ``musify`` command line: a thin shell over the Python API.

Commands parse options, call one API function and render the result with Rich. No
behaviour lives here that a Python user could not get from the API.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn

import orjson
import typer
from rich.console import Console
from rich.table import Table

from musify.errors import MusifyError, UsageError
from musify.settings import Settings, load_settings

app = typer.Typer(
    name="musify",
    help="Musify: a streaming-analytics pipeline for a simulated music service.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
broker_app = typer.Typer(help="The local Kafka-protocol development broker.", no_args_is_help=True)
app.add_typer(broker_app, name="broker")

err = Console(stderr=True)
out = Console()


def _settings(**overrides: Any) -> Settings:
    return load_settings(None, **overrides)


def _fail(exc: MusifyError) -> NoReturn:
    err.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
    raise typer.Exit(exc.exit_code)


def _time(value: str | None, option: str) -> datetime | None:
    if value is None:
        return None
    from musify.sim.clock import parse_time

    try:
        return parse_time(value)
    except ValueError as exc:
        raise UsageError(f"{option}: {exc}") from None


@app.command()
def generate(
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="eventsim JSON config file (default: Musify's own)."),
    ] = None,
    nusers: Annotated[int | None, typer.Option("--nusers", "-n", help="Initial users.")] = None,
    growth_rate: Annotated[float | None, typer.Option(help="Annual growth rate.")] = None,
    attrition_rate: Annotated[float | None, typer.Option(help="Annual attrition rate.")] = None,
    start_time: Annotated[
        str | None,
        typer.Option(help="Window start: ISO date-time (UTC unless it has an offset) or now-2d."),
    ] = None,
    end_time: Annotated[str | None, typer.Option(help="Window end (exclusive).")] = None,
    days: Annotated[float | None, typer.Option(help="Window length in days.")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed.")] = None,
    first_user_id: Annotated[int | None, typer.Option(help="First user id.")] = None,
    tag: Annotated[str | None, typer.Option(help="Tag added to identified events.")] = None,
    catalog: Annotated[
        Path | None,
        typer.Option(
            help="Song catalog in eventsim's listen_counts.txt.gz format "
            "(default: a built-in synthetic catalog)."
        ),
    ] = None,
    output_dir: Annotated[Path | None, typer.Option(help="Write DIR/<topic>.jsonl files.")] = None,
    bootstrap_servers: Annotated[
        str | None, typer.Option(help="Produce to Kafka at HOST:PORT.")
    ] = None,
    stdout: Annotated[bool, typer.Option("--stdout", help="Write events to stdout.")] = False,
    stdout_topic: Annotated[
        str, typer.Option(help="The topic --stdout writes (page_view_events holds every event).")
    ] = "page_view_events",
    partitions: Annotated[
        int | None, typer.Option(help="Partitions of topics created on Kafka.")
    ] = None,
    continuous: Annotated[
        bool, typer.Option("--continuous", help="After the history, keep going in real time.")
    ] = False,
    speed: Annotated[float, typer.Option(help="Simulated seconds per wall-clock second.")] = 1.0,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Kafka: the topics hold part of this same run (same options, fixed "
            "--start-time and --seed), e.g. from a killed generator; produce only the rest.",
        ),
    ] = False,
    faults: Annotated[
        str | None,
        typer.Option(
            help="Inject faults: 'default' or e.g. 'duplicate=0.01,late=0.005,reorder=0.01,"
            "malformed=0.001'."
        ),
    ] = None,
    fault_manifest: Annotated[
        Path | None,
        typer.Option(
            help="Where to record injected faults (default: next to the output, "
            "or MUSIFY_HOME/generator/faults.jsonl)."
        ),
    ] = None,
    workers: Annotated[
        int | None, typer.Option(help="Worker processes (default: one per CPU core).")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    json_summary: Annotated[
        bool, typer.Option("--json", help="Print the summary as JSON on stdout.")
    ] = False,
) -> None:
    """Simulate a music service's users and write their events (eventsim-compatible)."""
    from musify.sim import GenerateOptions, generate_events
    from musify.sim.faults import FaultRates

    try:
        chosen = [output_dir is not None, bootstrap_servers is not None, stdout]
        if sum(chosen) != 1:
            raise UsageError("choose exactly one of --output-dir, --bootstrap-servers, --stdout")
        if stdout and json_summary:
            raise UsageError("--json prints to stdout: it cannot be combined with --stdout")
        if resume and start_time is not None and start_time.strip().lower().startswith("now"):
            raise UsageError(
                f"--resume needs a fixed --start-time: {start_time!r} moves with the clock; "
                "give a date-time such as 2024-03-18T00:00:00"
            )
        settings = _settings(workers=workers)
        settings.ensure_dirs()
        rates = FaultRates.parse(faults) if faults is not None else None
        manifest = fault_manifest
        if rates is not None and manifest is None:
            manifest = (
                (output_dir / "faults.jsonl")
                if output_dir
                else (settings.generator_dir / "faults.jsonl")
            )
        opts = GenerateOptions(
            config=config,
            n_users=nusers,
            growth_rate=growth_rate,
            attrition_rate=attrition_rate,
            start=_time(start_time, "--start-time"),
            end=_time(end_time, "--end-time"),
            days=days,
            seed=seed,
            first_user_id=first_user_id,
            tag=tag,
            catalog=catalog,
            continuous=continuous,
            speed=speed,
            workers=settings.workers,
            faults=rates,
            fault_manifest=manifest,
            cache_dir=settings.cache_dir,
        )
        with _progress_bar(enabled=not quiet) as on_progress:
            summary = generate_events(
                opts,
                output_dir=output_dir,
                bootstrap_servers=bootstrap_servers,
                stdout_topic=stdout_topic if stdout else None,
                partitions=partitions or settings.topic_partitions,
                replication=settings.topic_replication,
                on_progress=on_progress,
                resume=resume,
            )
    except MusifyError as exc:
        _fail(exc)
    if json_summary:
        sys.stdout.write(orjson.dumps(summary, option=orjson.OPT_INDENT_2).decode() + "\n")
    elif not quiet:
        _print_summary(summary)


@contextmanager
def _progress_bar(enabled: bool) -> Iterator[Callable[[Any], None] | None]:
    """A progress bar with the event rate on stderr, or nothing when disabled."""
    if not enabled:
        yield None
        return
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[sim]}"),
        TextColumn("{task.fields[events]} events, {task.fields[rate]}/s"),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    )
    task = bar.add_task("simulating", total=None, sim="", events="0", rate="0")

    def update(p: Any) -> None:
        from musify.sim.clock import from_epoch

        if not bar.live.is_started:
            bar.start()
        span = p.end - p.start
        total = span if p.end < 2**62 else None
        done = max(0, min(p.sim_time - p.start, span))
        bar.update(
            task,
            description="live" if p.live else "simulating",
            total=total,
            completed=done,
            sim=f"{from_epoch(p.sim_time):%Y-%m-%d %H:%M}",
            events=f"{p.lines:,}",
            rate=f"{p.lines / max(p.elapsed, 1e-9):,.0f}",
        )

    try:
        yield update
    finally:
        if bar.live.is_started:
            bar.stop()


def _print_summary(summary: dict[str, object]) -> None:
    t = Table(title="musify generate", show_header=True, header_style="bold")
    t.add_column("topic")
    t.add_column("events", justify="right")
    events = summary["events"]
    assert isinstance(events, dict)
    for topic, n in events.items():
        t.add_row(topic, f"{n:,}")
    t.add_row("[bold]total[/]", f"[bold]{sum(events.values()):,}[/]")
    err.print(t)
    err.print(
        f"window {summary['start']} → {summary['end'] or '(open)'}, users {summary['users']:,}, "
        f"{summary['seconds']} s, {summary['page_views_per_second']:,} page views/s "
        f"({summary['lines_per_second']:,} lines/s) → {summary['target']}",
        highlight=False,
        soft_wrap=True,
    )
    if summary.get("faults"):
        err.print(
            f"faults injected: {summary['faults']} (manifest: {summary['fault_manifest']})",
            highlight=False,
        )
    skipped = summary.get("skipped")
    if isinstance(skipped, dict):
        err.print(
            f"resumed: {sum(skipped.values()):,} events were already in Kafka and were skipped",
            highlight=False,
        )


@app.command()
def validate(
    directory: Annotated[Path, typer.Argument(help="Folder written by --output-dir.")],
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="The config that made it (default: Musify's own)."),
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print results as JSON.")] = False,
) -> None:
    """Check generated events against the config's statistics and eventsim's invariants."""
    from musify.sim.validate import validate_dir

    try:
        from musify.sim.config import BUILTIN_CONFIG

        report = validate_dir(directory, config or BUILTIN_CONFIG)
    except MusifyError as exc:
        _fail(exc)
    if json_out:
        sys.stdout.write(orjson.dumps(report.as_dict(), option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        report.render(out)
    raise typer.Exit(0 if report.ok else 1)


@app.command()
def stream(
    bootstrap_servers: Annotated[
        str | None, typer.Option(help="Kafka to read (default: MUSIFY_BOOTSTRAP_SERVERS).")
    ] = None,
    trigger: Annotated[
        str | None,
        typer.Option(
            help="Micro-batch period, e.g. 2m or 30s (default: MUSIFY_STREAM_TRIGGER, 2m)."
        ),
    ] = None,
    until_caught_up: Annotated[
        bool,
        typer.Option("--until-caught-up", help="Process everything the topics hold, then exit."),
    ] = False,
    master: Annotated[
        str | None, typer.Option(help="Spark master: local[*] (default) or a cluster URL.")
    ] = None,
    source: Annotated[
        str | None,
        typer.Option(help="musify_kafka (built in) or kafka (Spark's connector, if installed)."),
    ] = None,
    reset_on_data_loss: Annotated[
        bool,
        typer.Option(
            "--reset-on-data-loss",
            help="If the broker lost data, continue from what it has instead of stopping.",
        ),
    ] = False,
    max_offsets_per_trigger: Annotated[
        int | None, typer.Option(help="At most this many messages per micro-batch.")
    ] = None,
    json_summary: Annotated[
        bool, typer.Option("--json", help="Print the final summary as JSON on stdout.")
    ] = False,
) -> None:
    """Stream the four topics into the Parquet lake (Spark Structured Streaming)."""
    from musify.stream import StreamOptions, parse_trigger, run_stream

    try:
        settings = _settings(
            bootstrap_servers=bootstrap_servers,
            spark_master=master,
            kafka_source=source,
            stream_trigger=trigger,
        )
        opts = StreamOptions(
            bootstrap_servers=settings.bootstrap_servers,
            trigger_seconds=parse_trigger(settings.stream_trigger),
            until_caught_up=until_caught_up,
            master=settings.spark_master,
            source=settings.kafka_source,
            reset_on_data_loss=reset_on_data_loss,
            max_offsets_per_trigger=max_offsets_per_trigger,
        )
        summary = run_stream(settings, opts)
    except MusifyError as exc:
        _fail(exc)
    if json_summary:
        sys.stdout.write(orjson.dumps(summary, option=orjson.OPT_INDENT_2).decode() + "\n")
        return
    rows = summary["rows"]
    err.print(
        f"stream: {summary['batches']} micro-batches, "
        + ", ".join(f"{t} {n:,}" for t, n in rows.items())
        + f", quarantined {summary['quarantined']:,} → {summary['lake']} "
        f"({summary['seconds']} s)",
        highlight=False,
        soft_wrap=True,
    )


@app.command()
def batch(
    start: Annotated[
        str | None,
        typer.Option(
            help="First hour to load (ISO, on the hour; default: the last complete hour)."
        ),
    ] = None,
    end: Annotated[str | None, typer.Option(help="End of the window (exclusive).")] = None,
    lookback: Annotated[
        int | None,
        typer.Option(
            help="Also re-load this many hours before --start, for late events "
            "(default: MUSIFY_BATCH_LOOKBACK_HOURS, 2)."
        ),
    ] = None,
    no_dbt: Annotated[
        bool, typer.Option("--no-dbt", help="Only load the raw tables (same as --steps load).")
    ] = False,
    steps: Annotated[
        str,
        typer.Option(
            help="Comma-separated steps, in this order: wait (for the stream to pass --end), "
            "load, transform (dbt build), reconcile (facts = lake per hour), publish."
        ),
    ] = "load,transform,reconcile,publish",
    wait_timeout: Annotated[
        float,
        typer.Option(help="wait: seconds to wait for the stream (exit 75 when not ready)."),
    ] = 0.0,
    grace: Annotated[
        int, typer.Option(help="wait: seconds past --end the stream must have reached.")
    ] = 60,
    full_refresh: Annotated[
        bool,
        typer.Option(
            "--full-refresh",
            help="transform: rebuild every incremental model from all loaded rows (once, "
            "after an upgrade changed the models' columns).",
        ),
    ] = False,
    json_summary: Annotated[
        bool, typer.Option("--json", help="Print the summary as JSON.")
    ] = False,
) -> None:
    """Load lake hours into the warehouse, build the dbt models, reconcile and publish."""
    from datetime import timedelta

    from musify.batch import resolve_window, run_batch
    from musify.orchestration import hourly

    chosen = [s.strip() for s in steps.split(",") if s.strip()]
    try:
        unknown = sorted(set(chosen) - set(hourly.STEPS))
        if unknown:
            raise UsageError(f"--steps: unknown step(s) {', '.join(unknown)}; use {hourly.STEPS}")
        if no_dbt:
            chosen = ["load"]
        settings = _settings()
        first, last = resolve_window(_time(start, "--start"), _time(end, "--end"))
        doc: dict[str, Any] = {"start": first.isoformat(), "end": last.isoformat()}
        if "wait" in chosen:
            ready = hourly.wait_for_stream(settings, last, timedelta(seconds=grace), wait_timeout)
            doc["wait"] = ready.describe()
        if "load" in chosen or "transform" in chosen:
            result = run_batch(
                settings,
                first,
                last,
                lookback_hours=lookback,
                load="load" in chosen,
                run_dbt="transform" in chosen,
                full_refresh=full_refresh,
            )
            doc.update(result.as_dict())
        counts = None
        if "reconcile" in chosen or "publish" in chosen:
            counts = hourly.reconcile(settings, first, last)
            doc["reconciled"] = {h.isoformat(): c for h, c in counts.items()}
        if "publish" in chosen and counts is not None:
            hourly.publish(settings, counts)
            doc["published"] = [h.isoformat() for h in counts]
    except MusifyError as exc:
        _fail(exc)
    if json_summary:
        sys.stdout.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n")
        return
    parts = [f"batch {first:%Y-%m-%dT%H:%M} → {last:%Y-%m-%dT%H:%M}"]
    if "wait" in doc:
        parts.append(doc["wait"])
    if "rows" in doc:
        rows = ", ".join(f"{t} {n:,}" for t, n in doc["rows"].items())
        parts.append(f"loaded from {doc['loaded_from']}: {rows}")
        parts.append(f"missing hours: {len(doc['missing_hours'])}")
    if "dbt_seconds" in doc:
        parts.append(f"load {doc['load_seconds']} s, dbt {doc['dbt_seconds']} s")
    if "reconciled" in doc:
        parts.append(f"{len(doc['reconciled'])} hour(s) reconcile with the lake")
    if "published" in doc:
        parts.append("published")
    err.print("; ".join(parts) + f" → {settings.warehouse_path}", highlight=False, soft_wrap=True)


@app.command()
def dashboard(
    port: Annotated[
        int | None, typer.Option(help="Port (default: MUSIFY_DASHBOARD_PORT, 8501).")
    ] = None,
    host: Annotated[
        str | None, typer.Option(help="Interface (default: MUSIFY_BIND_HOST, 127.0.0.1).")
    ] = None,
) -> None:
    """Serve the analytics dashboard (Streamlit) over the warehouse marts until Ctrl-C."""
    from musify.dashboard.server import serve, url

    try:
        settings = _settings(dashboard_port=port, bind_host=host)
        err.print(
            f"dashboard on {url(settings.bind_host, settings.dashboard_port)} "
            f"(warehouse {settings.warehouse_path}); Ctrl-C stops it",
            highlight=False,
            soft_wrap=True,
        )
        code = serve(settings)
    except MusifyError as exc:
        _fail(exc)
    raise typer.Exit(code)


@app.command()
def up(
    users: Annotated[int, typer.Option(help="Simulated users (fixed at the first up).")] = 1000,
    history: Annotated[
        str, typer.Option(help="Simulated history before now, e.g. 2d, 6h (first up only).")
    ] = "2d",
    catchup_hours: Annotated[
        int,
        typer.Option(
            help="The last N complete hours of history are published by hourly DAG runs; "
            "older history by one backfill run (first up only)."
        ),
    ] = 2,
    trigger: Annotated[
        str | None, typer.Option(help="Stream micro-batch period (default: MUSIFY_STREAM_TRIGGER).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Generator seed (first up only).")] = 1,
    config: Annotated[
        Path | None, typer.Option(help="eventsim JSON config (first up only).")
    ] = None,
    no_airflow: Annotated[bool, typer.Option("--no-airflow", help="Do not start Airflow.")] = False,
    no_dashboard: Annotated[
        bool, typer.Option("--no-dashboard", help="Do not start the dashboard.")
    ] = False,
) -> None:
    """Run the whole local pipeline until Ctrl-C: broker, generator, stream, Airflow, dashboard."""
    from musify.orchestration.stack import UpOptions
    from musify.orchestration.stack import up as run_up
    from musify.sim.clock import parse_duration

    try:
        try:
            span = parse_duration(history)
        except ValueError as exc:
            raise UsageError(f"--history: {exc}") from None
        opts = UpOptions(
            users=users,
            history=span,
            catchup_hours=catchup_hours,
            trigger=trigger,
            seed=seed,
            config=config,
            airflow=not no_airflow,
            dashboard=not no_dashboard,
        )
        run_up(_settings(), opts, say=lambda m: err.print(m, highlight=False, soft_wrap=True))
    except MusifyError as exc:
        _fail(exc)


@app.command()
def down() -> None:
    """Stop what `musify up` started (the broker keeps running: its topics are in memory)."""
    from musify.orchestration.stack import down as run_down

    try:
        run_down(_settings(), say=lambda m: err.print(m, highlight=False))
    except MusifyError as exc:
        _fail(exc)


@app.command()
def status(
    json_out: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """One screen with the state of each component, lag, freshness, last published hour."""
    from musify.orchestration.status import collect

    try:
        doc = collect(_settings())
    except MusifyError as exc:
        _fail(exc)
    if json_out:
        sys.stdout.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n")
        return
    t = Table(title=f"musify status ({doc['home']})", header_style="bold")
    t.add_column("component")
    t.add_column("state")
    t.add_column("details")
    for row in doc["components"]:
        state = row["state"]
        color = {"running": "green", "healthy": "green", "stopped": "dim"}.get(state, "red")
        t.add_row(row["name"], f"[{color}]{state}[/]", row["details"])
    out.print(t)


@broker_app.command("start")
def broker_start(
    port: Annotated[int | None, typer.Option(help="Port on 127.0.0.1 (default 9092).")] = None,
) -> None:
    """Start the local broker in the background and print its bootstrap address."""
    from musify.broker.local import start_broker

    try:
        info = start_broker(_settings(broker_port=port))
    except MusifyError as exc:
        _fail(exc)
    out.print(info.bootstrap_servers, highlight=False)
    err.print(f"broker running (pid {info.pid}, log {info.log_path})", highlight=False)


@broker_app.command("stop")
def broker_stop() -> None:
    """Stop the local broker (its topics are in memory and are lost)."""
    from musify.broker.local import stop_broker

    try:
        stopped = stop_broker(_settings())
    except MusifyError as exc:
        _fail(exc)
    err.print("broker stopped" if stopped else "no broker was running")


@broker_app.command("status")
def broker_status() -> None:
    """Is the local broker running, and where?"""
    from musify.broker.local import broker_status as status

    try:
        st = status(_settings())
    except MusifyError as exc:
        _fail(exc)
    if st.running:
        out.print(f"running: {st.bootstrap_servers} (pid {st.pid})", highlight=False)
    else:
        out.print("not running")
        raise typer.Exit(1)


def main() -> None:
    try:
        app()
    except MusifyError as exc:  # raised outside a command, e.g. bad MUSIFY_* variables
        err.print(f"[bold red]error:[/] {exc}", highlight=False)
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
