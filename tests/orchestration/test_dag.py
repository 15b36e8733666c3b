"""The Airflow DAGs, in Airflow's own environment: they import, their data intervals are
the previous hour, and `airflow dags test` publishes an hour that reconciles."""

from __future__ import annotations

import subprocess
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from musify.orchestration import airflow_env, hourly
from musify.settings import Settings
from tests.warehouse.lake_events import START

pytestmark = [pytest.mark.airflow]

_INSPECT = """
import json, sys
import pendulum
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(sys.argv[1])
dag = bag.dags["musify_hourly"]
at = pendulum.datetime(2024, 3, 18, 5, 30, tz="UTC")
manual = dag.timetable.infer_manual_data_interval(run_after=at)
print(json.dumps({
    "errors": {k: str(v) for k, v in bag.import_errors.items()},
    "dags": sorted(bag.dags),
    "interval": [manual.start.isoformat(), manual.end.isoformat()],
    "catchup": dag.catchup,
    "max_active_runs": dag.max_active_runs,
    "tasks": {d: sorted(bag.dags[d].task_ids) for d in bag.dags},
    "pools": sorted({t.pool for t in dag.tasks}),
}))
"""


def _inspect(settings: Settings, env: dict[str, str]) -> dict[str, Any]:
    exe = airflow_env.airflow_bin(settings).parent / "python"
    res = subprocess.run(
        [str(exe), "-c", _INSPECT, str(airflow_env.DAGS_FOLDER)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    doc: dict[str, Any] = orjson.loads(res.stdout.strip().splitlines()[-1])
    return doc


def test_dags_import_with_hourly_intervals(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home")
    env = airflow_env.airflow_environ(settings, dag_start=START)
    doc = _inspect(settings, env)
    assert doc["errors"] == {}
    assert doc["dags"] == ["musify_backfill", "musify_hourly", "musify_maintenance"]
    # the run at 05:30 covers the hour that ended at 05:00, not an empty interval
    assert doc["interval"] == ["2024-03-18T04:00:00+00:00", "2024-03-18T05:00:00+00:00"]
    assert doc["catchup"] is True and doc["max_active_runs"] == 1
    steps = ["dbt_build", "load", "publish", "reconcile", "wait_for_stream"]
    assert doc["tasks"] == {
        "musify_backfill": steps,
        "musify_hourly": steps,
        "musify_maintenance": ["maintain_lake"],
    }
    assert airflow_env.POOL[0] in doc["pools"]  # the pool `musify up` sets


@pytest.mark.slow
def test_dags_test_publishes_a_reconciled_hour(lake_home: Any) -> None:
    settings, evs = lake_home
    env = airflow_env.airflow_environ(settings, dag_start=START)
    airflow_env.migrate(settings, env)
    # the run for the interval [01:00, 02:00)
    args = ["dags", "test", airflow_env.DAG_ID, (START + timedelta(hours=2)).isoformat()]
    res = airflow_env.run_airflow(settings, args, env)
    out = res.stdout + res.stderr
    assert "state=success" in out, out[-3000:]
    hour = START + timedelta(hours=1)
    assert hourly.last_published(settings) == hour
    counts = hourly.reconcile(settings, hour, hour + timedelta(hours=1)).counts
    in_hour = [
        e
        for e in evs["listen_events"]
        if hour.timestamp() * 1000 <= e["ts"] < (hour.timestamp() + 3600) * 1000
    ]
    assert counts[hour]["listen_events"] == len(in_hour) > 0
