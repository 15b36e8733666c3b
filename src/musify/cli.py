"""The ``musify`` command line: a thin shell over the Python API.

Commands parse options, call one API function and render the result with Rich. No
behaviour lives here that a Python user could not get from the API.

Every failure ends in one line on stderr, ``error: ...``, and an exit code: 2 for bad
input (an option, a setting, a file the user gave; ``UsageError``), 1 for everything
else (``MusifyError``: an unreachable broker, another instance already running, a
damaged file; and unexpected exceptions). ``musify --debug ...`` adds the traceback.
"""

from __future__ import annotations

import dataclasses
import errno
import io
import sys
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import orjson
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from musify.errors import MusifyError, UsageError
from musify.logs import LEVELS
from musify.logs import configure as configure_logging
from musify.settings import Settings, load_settings

if TYPE_CHECKING:
    from musify.sim import GenerateSummary

app = typer.Typer(
    name="musify",
    help="Musify: a streaming-analytics pipeline for a simulated music service.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
broker_app = typer.Typer(help="The local Kafka-protocol development broker.", no_args_is_help=True)
app.add_typer(broker_app, name="broker")
lake_app = typer.Typer(
    help="The lake's Iceberg tables: maintenance, conversion, what they hold.",
    no_args_is_help=True,
)
app.add_typer(lake_app, name="lake")

err = Console(stderr=True)
out = Console()

#: Set by ``musify --debug``: failures show their traceback.
_debug = False
#: The longest ``--days``: a window from 1970 on ends within the year 9999 (later
#: starts are checked against the same limit when the window is known).
MAX_DAYS = 2_932_896
PORT = {"min": 1, "max": 65535}


def _version(value: bool) -> None:
    if value:
        from musify import __version__

        out.print(f"musify {__version__}", highlight=False)
        raise typer.Exit(0)


@app.callback()
def _options(
    debug: Annotated[
        bool,
        typer.Option("--debug", help="On a failure, show the Python traceback too."),
    ] = False,
    log_level: Annotated[
        str | None,
        typer.Option(
            help=f"Lowest level of log records shown: {', '.join(LEVELS)} (default: "
            "MUSIFY_LOG_LEVEL, else info). MUSIFY_LOG_FORMAT=json writes them as JSON lines."
        ),
    ] = None,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print Musify's version and exit."
        ),
    ] = False,
) -> None:
    global _debug
    _debug = debug
    if log_level is not None and log_level not in LEVELS:
        raise UsageError(f"--log-level {log_level!r}: expected one of {', '.join(LEVELS)}")
    settings = _settings(log_level=log_level)
    configure_logging(settings.log_level, settings.log_format)


def _above_zero(value: float | None) -> float | None:
    """Option callback: a number that must be > 0 (typer's ``min`` includes the bound)."""
    if value is not None and not value > 0:  # NaN too
        raise typer.BadParameter(f"{value:g} is not > 0")
    return value


def _settings(**overrides: Any) -> Settings:
    return load_settings(None, **overrides)


def _error_line(message: str) -> None:
    """``error: message`` as one line on stderr, whatever the message holds."""
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)


def _fail(exc: MusifyError) -> NoReturn:
    if _debug:
        traceback.print_exception(exc, file=sys.stderr)
    err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
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
    nusers: Annotated[
        int | None, typer.Option("--nusers", "-n", min=1, help="Initial users.")
    ] = None,
    growth_rate: Annotated[float | None, typer.Option(min=0, help="Annual growth rate.")] = None,
    attrition_rate: Annotated[
        float | None, typer.Option(min=0, help="Annual attrition rate.")
    ] = None,
    start_time: Annotated[
        str | None,
        typer.Option(help="Window start: ISO date-time (UTC unless it has an offset) or now-2d."),
    ] = None,
    end_time: Annotated[str | None, typer.Option(help="Window end (exclusive).")] = None,
    days: Annotated[
        float | None,
        typer.Option(max=MAX_DAYS, callback=_above_zero, help="Window length in days (> 0)."),
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed.")] = None,
    first_user_id: Annotated[int | None, typer.Option(min=0, help="First user id.")] = None,
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
        int | None, typer.Option(min=1, help="Partitions of topics created on Kafka.")
    ] = None,
    continuous: Annotated[
        bool, typer.Option("--continuous", help="After the history, keep going in real time.")
    ] = False,
    speed: Annotated[
        float,
        typer.Option(callback=_above_zero, help="Simulated seconds per wall-clock second."),
    ] = 1.0,
    replay: Annotated[
        bool,
        typer.Option(
            "--replay",
            help="With --continuous: play the history too at --speed, from its start, "
            "instead of all at once; once it reaches the present, follow the clock.",
        ),
    ] = False,
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
        int | None,
        typer.Option(min=0, help="Worker processes (default, or 0: one per CPU core)."),
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
        if resume and bootstrap_servers is None:
            raise UsageError("--resume continues a run in Kafka: give --bootstrap-servers")
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
            replay=replay,
            workers=settings.workers,
            faults=rates,
            fault_manifest=manifest,
            cache_dir=settings.cache_dir,
        )
        with _progress_bar(enabled=not quiet) as on_progress:
            if bootstrap_servers is not None:
                from musify.broker.local import producer_options
                from musify.broker.produce import produce_events

                summary = produce_events(
                    opts,
                    bootstrap_servers,
                    partitions=partitions or settings.topic_partitions,
                    replication=settings.topic_replication,
                    on_progress=on_progress,
                    resume=resume,
                    sink_options=producer_options(settings),
                )
            else:
                summary = generate_events(
                    opts,
                    output_dir=output_dir,
                    stdout_topic=stdout_topic if stdout else None,
                    on_progress=on_progress,
                )
    except MusifyError as exc:
        _fail(exc)
    if json_summary:
        sys.stdout.write(
            orjson.dumps(summary.as_dict(), option=orjson.OPT_INDENT_2).decode() + "\n"
        )
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


def _print_summary(summary: GenerateSummary) -> None:
    t = Table(title="musify generate", show_header=True, header_style="bold")
    t.add_column("topic")
    t.add_column("events", justify="right")
    for topic, n in summary.events.items():
        t.add_row(topic, f"{n:,}")
    t.add_row("[bold]total[/]", f"[bold]{sum(summary.events.values()):,}[/]")
    err.print(t)
    end = "(open)" if summary.end is None else summary.end.isoformat()
    err.print(
        f"window {summary.start.isoformat()} → {end}, users {summary.users:,}, "
        f"{summary.seconds} s, {summary.page_views_per_second:,} page views/s "
        f"({summary.lines_per_second:,} lines/s) → {summary.target}",
        highlight=False,
        soft_wrap=True,
    )
    if summary.faults:
        err.print(
            f"faults injected: {summary.faults} (manifest: {summary.fault_manifest})",
            highlight=False,
        )
    if summary.skipped is not None:
        err.print(
            f"resumed: {sum(summary.skipped.values()):,} events were already in Kafka "
            "and were skipped",
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
            help="Micro-batch period, e.g. 2m or 30s (default: MUSIFY_STREAM_TRIGGER, else 2m)."
        ),
    ] = None,
    warmup_trigger: Annotated[
        str | None,
        typer.Option(
            help="A shorter period for the first two minutes, e.g. 5s, so the first data "
            "and the first changes show sooner (default: none)."
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
        int | None, typer.Option(min=1, help="At most this many messages per micro-batch.")
    ] = None,
    json_summary: Annotated[
        bool, typer.Option("--json", help="Print the final summary as JSON on stdout.")
    ] = False,
) -> None:
    """Stream the four topics into the Parquet lake (Spark Structured Streaming)."""
    from musify.stream import DEFAULT_TRIGGER, StreamOptions, parse_trigger, run_stream

    try:
        settings = _settings(
            bootstrap_servers=bootstrap_servers,
            spark_master=master,
            kafka_source=source,
            stream_trigger=trigger,
        )
        opts = StreamOptions(
            bootstrap_servers=settings.bootstrap_servers,
            trigger_seconds=parse_trigger(settings.stream_trigger or DEFAULT_TRIGGER),
            until_caught_up=until_caught_up,
            master=settings.spark_master,
            source=settings.kafka_source,
            reset_on_data_loss=reset_on_data_loss,
            max_offsets_per_trigger=max_offsets_per_trigger,
            warmup_trigger_seconds=(
                parse_trigger(warmup_trigger, "--warmup-trigger") if warmup_trigger else None
            ),
        )
        summary = run_stream(settings, opts)
    except MusifyError as exc:
        _fail(exc)
    if json_summary:
        sys.stdout.write(
            orjson.dumps(summary.as_dict(), option=orjson.OPT_INDENT_2).decode() + "\n"
        )
        return
    err.print(
        f"stream: {summary.batches} micro-batches, "
        + ", ".join(f"{t} {n:,}" for t, n in summary.rows.items())
        + f", quarantined {summary.quarantined:,} → {summary.lake} "
        f"({summary.seconds} s)",
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
            min=0,
            help="Also re-load this many hours before --start where the lake changed "
            "since they were loaded, for late events "
            "(default: MUSIFY_BATCH_LOOKBACK_HOURS, 2).",
        ),
    ] = None,
    reload_lookback: Annotated[
        bool,
        typer.Option(
            "--reload-lookback",
            help="Load and build the look-back hours even where the lake did not change "
            "(after the raw tables were edited by hand).",
        ),
    ] = False,
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
        typer.Option(min=0, help="wait: seconds to wait for the stream (exit 75 when not ready)."),
    ] = 0.0,
    grace: Annotated[
        int, typer.Option(min=0, help="wait: seconds past --end the stream must have reached.")
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

    from musify.batch import resolve_window
    from musify.orchestration import hourly

    try:
        chosen = hourly.parse_steps("load" if no_dbt else steps)
        settings = _settings()
        first, last = resolve_window(_time(start, "--start"), _time(end, "--end"))
        run = hourly.run_steps(
            settings,
            first,
            last,
            chosen,
            lookback_hours=lookback,
            grace=timedelta(seconds=grace),
            wait_timeout=wait_timeout,
            full_refresh=full_refresh,
            reload_lookback=reload_lookback,
        )
    except MusifyError as exc:
        _fail(exc)
    if json_summary:
        sys.stdout.write(orjson.dumps(run.as_dict(), option=orjson.OPT_INDENT_2).decode() + "\n")
        return
    err.print(f"{run.describe()} → {settings.warehouse_path}", highlight=False, soft_wrap=True)


@app.command()
def dashboard(
    port: Annotated[
        int | None, typer.Option(**PORT, help="Port (default: MUSIFY_DASHBOARD_PORT, 8501).")
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
    users: Annotated[
        int, typer.Option(min=1, help="Simulated users (fixed at the first up).")
    ] = 1000,
    history: Annotated[
        str, typer.Option(help="Simulated history before now, e.g. 2d, 6h (first up only).")
    ] = "2d",
    catchup_hours: Annotated[
        int,
        typer.Option(
            min=0,
            help="The last N complete hours of history are published by hourly DAG runs; "
            "older history by one backfill run (first up only).",
        ),
    ] = 2,
    speed: Annotated[
        float,
        typer.Option(
            min=1.0,
            help="Replay the history at this many simulated seconds per wall-clock second "
            "instead of all at once, every hour published by its own hourly DAG run: "
            "accelerated time for soaks (first up only).",
        ),
    ] = 1.0,
    trigger: Annotated[
        str | None,
        typer.Option(help="Stream micro-batch period (default: MUSIFY_STREAM_TRIGGER, else 30s)."),
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
            speed=speed,
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
        sys.stdout.write(orjson.dumps(doc.as_dict(), option=orjson.OPT_INDENT_2).decode() + "\n")
        return
    t = Table(title=f"musify status ({doc.home})", header_style="bold")
    t.add_column("component")
    t.add_column("state")
    t.add_column("details")
    for row in doc.components:
        color = {"running": "green", "healthy": "green", "stopped": "dim"}.get(row.state, "red")
        t.add_row(row.name, f"[{color}]{row.state}[/]", row.details)
    out.print(t)


@broker_app.command("start")
def broker_start(
    port: Annotated[
        int | None, typer.Option(**PORT, help="Port on 127.0.0.1 (default 9092).")
    ] = None,
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
    """Stop the local broker (in memory, its topics are lost; on disk, they are kept)."""
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
        out.print(f"running: {st.bootstrap_servers} (pid {st.pid}, {st.storage})", highlight=False)
    else:
        out.print("not running")
        raise typer.Exit(1)


@lake_app.command("maintain")
def lake_maintain(
    retention_hours: Annotated[
        float | None,
        typer.Option(
            min=0,
            help="Expire snapshots older than this (default: "
            "MUSIFY_LAKE_SNAPSHOT_RETENTION_HOURS, 24).",
        ),
    ] = None,
    orphan_age_hours: Annotated[
        float, typer.Option(min=0, help="Remove unreferenced files older than this.")
    ] = 24.0,
    closed_before: Annotated[
        str | None,
        typer.Option(help="Compact partitions that ended before this (default: now-2h)."),
    ] = None,
    json_summary: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Compact closed hours, expire old snapshots, remove orphan files (safe while the
    stream writes; changes no reader's counts)."""
    from datetime import timedelta

    from musify.lake import Lake
    from musify.lake.maintenance import maintain

    try:
        settings = _settings()
        hours = (
            settings.lake_snapshot_retention_hours if retention_hours is None else retention_hours
        )
        report = maintain(
            Lake.from_settings(settings),
            retention=timedelta(hours=hours),
            orphan_age=timedelta(hours=orphan_age_hours),
            closed_before=_time(closed_before, "--closed-before"),
        )
    except MusifyError as exc:
        _fail(exc)
    if json_summary:
        sys.stdout.write(orjson.dumps(report.as_dict(), option=orjson.OPT_INDENT_2).decode() + "\n")
        return
    t = Table(title="musify lake maintain", header_style="bold")
    for col in ("table", "partitions compacted", "files", "snapshots expired", "orphans removed"):
        t.add_column(col, justify="left" if col == "table" else "right")
    for name, r in report.tables.items():
        files = f"{r.files_before:,} → {r.files_after:,}" if r.partitions_compacted else "-"
        t.add_row(
            name,
            f"{r.partitions_compacted:,}",
            files,
            f"{r.snapshots_expired:,}",
            f"{r.orphans_removed:,}",
        )
    err.print(t)
    err.print(f"done in {report.seconds:.1f} s", highlight=False)


@lake_app.command("migrate")
def lake_migrate() -> None:
    """Convert a lake written by Musify before Iceberg (Parquet files and _commits/
    records) into the lake's tables, in place, once."""
    from musify.lake import Lake
    from musify.lake.migrate import migrate

    try:
        settings = _settings()
        lake = Lake.from_settings(settings)
        err.print(f"migrating {lake.url} into Iceberg tables …", highlight=False)
        report = migrate(
            lake, settings.checkpoint_location, lambda m: err.print(m, highlight=False)
        )
    except MusifyError as exc:
        _fail(exc)
    err.print(
        f"migrated {report.batches:,} batches: "
        + ", ".join(f"{n} {r:,} rows" for n, r in report.rows.items())
        + f"; {report.removed:,} files of an interrupted batch removed",
        highlight=False,
        soft_wrap=True,
    )


@lake_app.command("tables")
def lake_tables(
    json_out: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Each table: its location, current snapshot, rows, data files, last batch."""
    from musify.lake import Lake
    from musify.lake.tables import describe_tables

    try:
        rows = describe_tables(Lake.from_settings(_settings()))
    except MusifyError as exc:
        _fail(exc)
    if json_out:
        docs = [dataclasses.asdict(r) for r in rows]
        sys.stdout.write(orjson.dumps(docs, option=orjson.OPT_INDENT_2).decode() + "\n")
        return
    t = Table(title="musify lake tables", header_style="bold")
    for col in ("table", "rows", "data files", "snapshots", "last batch", "location"):
        t.add_column(col, justify="right" if col not in ("table", "location") else "left")
    for r in rows:
        t.add_row(
            r.table,
            f"{r.rows:,}",
            f"{r.data_files:,}",
            f"{r.snapshots:,}",
            str(r.last_batch),
            r.location,
        )
    out.print(t)


def _open_file_in(tb: TracebackType | None) -> str | None:
    """The name of an open file a frame of ``tb`` was using, innermost first: where a
    write failed when the error does not say (``f.write`` raises without a file name)."""
    frames = [frame for frame, _ in traceback.walk_tb(tb)]
    for frame in reversed(frames):
        for value in frame.f_locals.values():
            name = getattr(value, "name", None)
            if isinstance(value, io.IOBase) and isinstance(name, str) and name:
                return name
    return None


def describe(exc: BaseException) -> str:
    """One line for an exception no command turned into a ``MusifyError``."""
    if isinstance(exc, OSError) and exc.errno is not None:
        where = exc.filename or _open_file_in(exc.__traceback__)
        cause = (
            "no space left on device"
            if exc.errno == errno.ENOSPC
            else (exc.strerror or errno.errorcode.get(exc.errno, str(exc.errno))).lower()
        )
        message = f"{cause} ({where})" if where else cause
        if exc.errno == errno.ENOSPC:
            message += ": free some space and run the command again"
    else:
        try:
            text = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
        except Exception:  # e.g. a Py4J error whose message lives in a JVM that is gone
            text = ""
        if len(text) > 400:
            text = text[:400] + " …"
        kind = type(exc).__qualname__
        module = type(exc).__module__
        if module not in ("builtins", "__main__"):
            kind = f"{module.split('.')[0].lstrip('_')}.{kind}"
        message = f"{kind}: {text}" if text else kind
    return f"{message} (rerun with --debug for the traceback)"


def run(args: list[str] | None = None) -> int:
    """Run the command line ``args`` (default: ``sys.argv[1:]``); its exit code.

    Parsing errors (an unknown option, a value out of range) are one line with exit 2,
    as bad input is; without ``--debug`` no failure prints a traceback."""
    global _debug
    _debug = False  # until the options say otherwise
    command = typer.main.get_command(app)
    try:
        code = command.main(args, prog_name="musify", standalone_mode=False)
    except typer.TyperException as exc:  # Click's usage errors, raised before a command runs
        if type(exc).__name__ == "NoArgsIsHelpError":
            return exc.exit_code  # `musify` alone: the help is printed already
        where = getattr(getattr(exc, "ctx", None), "command_path", "musify")
        _error_line(f"{exc.format_message()} (see `{where} --help`)")
        return exc.exit_code
    except typer.Abort:
        _error_line("aborted")
        return 1
    except MusifyError as exc:  # raised outside a command's own handling
        if _debug:
            traceback.print_exception(exc, file=sys.stderr)
        _error_line(str(exc))
        return exc.exit_code
    except Exception as exc:
        if _debug:
            raise
        _error_line(describe(exc))
        return 1
    return code if isinstance(code, int) else 0


def main() -> None:
    sys.exit(run())


if __name__ == "__main__":
    main()
