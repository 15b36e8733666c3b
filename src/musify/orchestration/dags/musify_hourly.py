"""musify_hourly: the Airflow DAG that publishes each hour of the lake to the warehouse.

Every hour, for the hour that just ended: wait until the stream's watermark has passed the
end of the hour, load it (plus the look-back hours in which late events arrived) into the
raw tables, ``dbt build`` the star schema (models and their data tests), check that the
facts of those hours reconcile with the distinct events in the lake, and record them as
published.

``musify_backfill`` runs the same steps for a range of hours given when it is triggered
(``musify up`` publishes the generated history with it in one go). ``musify_maintenance``
keeps the lake's Iceberg tables small once a day (``musify lake maintain``: compaction
of closed hours, snapshot expiry, orphan files; safe while the stream writes).

This file runs in Airflow's own virtual environment and imports nothing from musify:
each task calls the ``musify`` CLI of the main environment, so Airflow and dbt never share
a dependency set. Environment (read at parse time):

- ``AIRFLOW_VAR_MUSIFY_CLI``: the musify executable (default: ``musify`` on PATH).
- ``AIRFLOW_VAR_MUSIFY_DAG_START``: the first hour to publish (ISO 8601, UTC). With it,
  missed hours are caught up; without it, only hours from now on run.
- ``MUSIFY_HOME`` and the other ``MUSIFY_*`` settings are inherited by every task.

Security: whoever may trigger a run chooses ``start`` and ``end``. They are checked twice
against ``HOUR_PATTERN`` (whole UTC hours, nothing else): by Airflow when the run is
triggered (the params' JSON schema; the REST API answers 400 and no run is created), and
by every task before it starts the CLI. The CLI is started with an argument list, never
through a shell, so no value can become a command.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from datetime import UTC, datetime, timedelta

from airflow.providers.standard.operators.python import PythonOperator
from airflow.providers.standard.sensors.python import PythonSensor
from airflow.sdk import DAG, Param
from airflow.sdk.exceptions import AirflowFailException
from airflow.timetables.interval import CronDataIntervalTimetable

CLI = os.environ.get("AIRFLOW_VAR_MUSIFY_CLI") or shutil.which("musify") or "musify"
_START = os.environ.get("AIRFLOW_VAR_MUSIFY_DAG_START", "")
START = (
    datetime.fromisoformat(_START).astimezone(UTC) if _START else datetime(2026, 1, 1, tzinfo=UTC)
)
#: Seconds past the end of the hour the stream must have reached: the generator's
#: producer batches and clock skew between hosts.
GRACE_S = 60
NOT_READY = 75  # `musify batch --steps wait` exits with it while the stream is behind
#: A run's bounds: a whole hour in UTC, e.g. 2024-03-18T05:00:00+00:00 or 2024-03-18T05:00Z.
HOUR_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:00(:00)?(\+00:00|Z)?$"
_HOUR = re.compile(HOUR_PATTERN)

# The data interval of a run is the hour that just ended. Airflow 3's "@hourly" gives
# data_interval_start == data_interval_end; the cron *data-interval* timetable does not.
HOURLY = CronDataIntervalTimetable("0 * * * *", timezone="UTC")
HOUR = {
    "start": "{{ data_interval_start.isoformat() }}",
    "end": "{{ data_interval_end.isoformat() }}",
}
RANGE = {"start": "{{ params.start }}", "end": "{{ params.end }}"}
#: Every task that writes the warehouse takes the one slot of this pool, so the hourly
#: runs and a backfill never write the DuckDB file at the same time. `musify up` creates it
#: (musify.orchestration.airflow_env.POOL: this file imports nothing of Musify's).
POOL = "musify_warehouse"
DEFAULT_ARGS = {
    "retries": 3,
    "retry_delay": timedelta(seconds=30),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=10),
    "execution_timeout": timedelta(minutes=30),
}


def batch_argv(steps: str, start: str, end: str, *extra: str) -> list[str]:
    """The CLI call of one step; AirflowFailException (no retry) for a bad window."""
    for name, value in (("start", start), ("end", end)):
        if not isinstance(value, str) or not _HOUR.fullmatch(value):
            raise AirflowFailException(
                f"{name}={value!r} is not a whole UTC hour (YYYY-MM-DDTHH:00[:00][+00:00]); "
                "nothing was run"
            )
    return [CLI, "batch", "--steps", steps, "--start", start, "--end", end, *extra]


def run_step(steps: str, start: str, end: str) -> None:
    code = subprocess.run(batch_argv(steps, start, end), check=False).returncode
    if code != 0:
        raise RuntimeError(f"musify batch --steps {steps} exited with code {code}")


def stream_passed(start: str, end: str) -> bool:
    """The sensor's poke: True once the stream has passed the end of the window."""
    argv = batch_argv("wait", start, end, "--grace", str(GRACE_S))
    code = subprocess.run(argv, check=False).returncode
    if code == NOT_READY:
        return False
    if code != 0:
        raise RuntimeError(f"musify batch --steps wait exited with code {code}")
    return True


def maintain_lake() -> None:
    code = subprocess.run([CLI, "lake", "maintain"], check=False).returncode
    if code != 0:
        raise RuntimeError(f"musify lake maintain exited with code {code}")


def publication(window: dict[str, str]) -> None:
    """wait_for_stream >> load >> dbt_build >> reconcile >> publish, for ``window``."""

    def step(task_id: str, steps: str) -> PythonOperator:
        return PythonOperator(
            task_id=task_id,
            python_callable=run_step,
            op_kwargs={"steps": steps, **window},
            pool=POOL,
        )

    wait_for_stream = PythonSensor(
        task_id="wait_for_stream",
        python_callable=stream_passed,
        op_kwargs=dict(window),
        mode="reschedule",
        poke_interval=30,
        timeout=timedelta(hours=6).total_seconds(),
    )
    load = step("load", "load")
    transform = step("dbt_build", "transform")
    reconcile = step("reconcile", "reconcile")
    publish = step("publish", "reconcile,publish")
    wait_for_stream >> load >> transform >> reconcile >> publish


with DAG(
    dag_id="musify_hourly",
    description="Publish the hour that just ended: lake -> warehouse -> dbt -> reconcile",
    schedule=HOURLY,
    start_date=START,
    catchup=bool(_START),
    max_active_runs=1,
    max_active_tasks=2,
    default_args=DEFAULT_ARGS,
    tags=["musify"],
    doc_md=__doc__,
):
    publication(HOUR)

with DAG(
    dag_id="musify_backfill",
    description="Publish a range of hours at once (musify up bootstraps the history with it)",
    schedule=None,
    start_date=START,
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    params={
        # No defaults: a run must name both bounds, and Airflow refuses anything else.
        "start": Param(type="string", pattern=HOUR_PATTERN, description="first hour, UTC"),
        "end": Param(type="string", pattern=HOUR_PATTERN, description="end hour (exclusive)"),
    },
    tags=["musify"],
):
    publication(RANGE)

with DAG(
    dag_id="musify_maintenance",
    description="Compact the lake's closed hours, expire old snapshots, remove orphan files",
    schedule=CronDataIntervalTimetable("0 3 * * *", timezone="UTC"),
    start_date=START,
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["musify"],
):
    # Idempotent and safe beside the stream and the hourly runs (it does not write the
    # warehouse): no pool, no window.
    PythonOperator(task_id="maintain_lake", python_callable=maintain_lake)
