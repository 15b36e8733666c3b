"""Orchestration: the hourly publication steps, the Airflow DAG that schedules them, and
the local stack (`musify up`). See README.md in this folder."""
