"""musify_hourly: the Airflow DAG that publishes each hour of the lake to the warehouse.

Every hour, for the hour that just ended: wait until the stream's watermark has passed the
end of the hour, load it (plus the look-back hours, for late events) into the raw tables,
``dbt build`` the star schema (models and their data tests), check that the facts of the
hour reconcile with the distinct events in the lake, and record the hour as published.

``musify_backfill`` runs the same steps for a range of hours given when it is triggered
(``musify up`` publishes the generated history with it in one go).

This file runs in Airflow's own virtual environment and imports nothing from musify:
each task calls the ``musify`` CLI of the main environment, so Airflow and dbt never share
a dependency set. Environment (read at parse time):

- ``AIRFLOW_VAR_MUSIFY_CLI``: the musify executable (default: ``musify`` on PATH).
- ``AIRFLOW_VAR_MUSIFY_DAG_START``: the first hour to publish (ISO 8601, UTC). With it,
  missed hours are caught up; without it, only hours from now on run.
- ``MUSIFY_HOME`` and the other ``MUSIFY_*`` settings are inherited by every task.
"""

from __future__ import annotations

import os
import shlex
import shutil
from datetime import UTC, datetime, timedelta

from airflow.providers.standard.operators.bash import BashOperator
from airflow.providers.standard.sensors.bash import BashSensor
from airflow.sdk import DAG, Param
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

# The data interval of a run is the hour that just ended. Airflow 3's "@hourly" gives
# data_interval_start == data_interval_end; the cron *data-interval* timetable does not.
HOURLY = CronDataIntervalTimetable("0 * * * *", timezone="UTC")
HOUR = "--start {{ data_interval_start.isoformat() }} --end {{ data_interval_end.isoformat() }}"
RANGE = "--start {{ params.start }} --end {{ params.end }}"
#: Every task that writes the warehouse takes the one slot of this pool, so the hourly
#: runs and a backfill never write the DuckDB file at the same time. `musify up` creates it.
POOL = "musify_warehouse"
DEFAULT_ARGS = {
    "retries": 3,
    "retry_delay": timedelta(seconds=30),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=10),
    "execution_timeout": timedelta(minutes=30),
}


def publication(window: str) -> None:
    """wait_for_stream >> load >> dbt_build >> reconcile >> publish, for ``window``."""

    def batch(steps: str, extra: str = "") -> str:
        return f"{shlex.quote(CLI)} batch --steps {steps} {window} {extra}".strip()

    wait_for_stream = BashSensor(
        task_id="wait_for_stream",
        bash_command=batch("wait", f"--grace {GRACE_S}"),
        retry_exit_code=NOT_READY,
        mode="reschedule",
        poke_interval=30,
        timeout=timedelta(hours=6).total_seconds(),
    )
    load = BashOperator(task_id="load", bash_command=batch("load"), pool=POOL)
    transform = BashOperator(task_id="dbt_build", bash_command=batch("transform"), pool=POOL)
    reconcile = BashOperator(task_id="reconcile", bash_command=batch("reconcile"), pool=POOL)
    publish = BashOperator(task_id="publish", bash_command=batch("reconcile,publish"), pool=POOL)
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
        "start": Param("", type="string", description="first hour, ISO 8601 UTC"),
        "end": Param("", type="string", description="end hour (exclusive), ISO 8601 UTC"),
    },
    tags=["musify"],
):
    publication(RANGE)
