"""The model names Python reads (musify.warehouse.models) are models of the dbt project,
by the manifest ``dbt parse`` writes, and the dashboard's queries name no other."""

from __future__ import annotations

import inspect
import re
from typing import Any

import orjson
import pytest

from musify.batch import DBT_PROJECT
from musify.dashboard import queries
from musify.warehouse.models import FACTS, MARTS, READ_MODELS


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from dbt.cli.main import dbtRunner

    tmp = tmp_path_factory.mktemp("dbt-parse")
    mp = pytest.MonkeyPatch()
    mp.setenv("MUSIFY_WAREHOUSE", str(tmp / "warehouse.duckdb"))
    try:
        res = dbtRunner().invoke(
            [
                "parse",
                "--project-dir", str(DBT_PROJECT),
                "--profiles-dir", str(DBT_PROJECT),
                "--target-path", str(tmp / "target"),
                "--log-path", str(tmp / "logs"),
                "--quiet",
            ]
        )  # fmt: skip
    finally:
        mp.undo()
    assert res.success, res.exception
    doc: dict[str, Any] = orjson.loads((tmp / "target" / "manifest.json").read_bytes())
    return doc


def models(manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n["name"]: n for n in manifest["nodes"].values() if n["resource_type"] == "model"}


@pytest.mark.slow
def test_every_model_python_reads_is_a_table_of_the_dbt_project(
    manifest: dict[str, Any],
) -> None:
    found = models(manifest)
    missing = sorted(READ_MODELS - set(found))
    assert not missing, f"models Python reads that dbt does not build: {missing}"
    for name in READ_MODELS:
        assert found[name]["config"]["materialized"] in {"table", "incremental"}, name
    assert {found[f]["original_file_path"].split("/")[1] for f in FACTS.values()} == {"core"}
    assert {found[m]["original_file_path"].split("/")[1] for m in MARTS} == {"marts"}


def test_the_dashboards_queries_name_only_the_marts() -> None:
    named = set(re.findall(r"\{analytics\.(\w+)\}", inspect.getsource(queries)))
    assert named == set(MARTS), named ^ set(MARTS)


@pytest.mark.slow
def test_the_models_python_reads_are_documented_and_each_mart_feeds_a_tile(
    manifest: dict[str, Any],
) -> None:
    found = models(manifest)
    undocumented = sorted(
        f"{name}.{col}"
        for name in READ_MODELS
        for col, spec in found[name]["columns"].items()
        if not spec.get("description")
    )
    assert not undocumented, f"columns without a description: {undocumented}"
    assert all(found[name]["description"] for name in READ_MODELS)
    fed = {
        node.rsplit(".", 1)[-1]
        for exposure in manifest["exposures"].values()
        for node in exposure["depends_on"]["nodes"]
    }
    assert set(MARTS) <= fed, f"marts no exposure reads: {sorted(set(MARTS) - fed)}"
    # every mart's grain is tested
    grains = {
        n["attached_node"].rsplit(".", 1)[-1]
        for n in manifest["nodes"].values()
        if n["resource_type"] == "test"
        and n.get("test_metadata", {}).get("name") == "unique_combination"
    }
    assert set(MARTS) <= grains, f"marts without a grain test: {sorted(set(MARTS) - grains)}"
