"""The raw tables and dbt sources are derived from the one event schema."""

from __future__ import annotations

from musify.batch import DBT_PROJECT
from musify.events import TOPICS
from musify.warehouse.raw import dbt_sources_yaml, raw_columns


def test_raw_columns_follow_the_event_schema() -> None:
    for name, topic in TOPICS.items():
        cols = dict(raw_columns(name))
        assert list(cols)[: len(topic.fields)] == list(topic.field_names)
        assert cols["ts"] == "timestamp"
        assert {"kafka_partition", "kafka_offset", "event_hour", "loaded_at"} <= set(cols)


def test_dbt_sources_file_is_generated_from_the_schema() -> None:
    committed = (DBT_PROJECT / "models" / "staging" / "sources.yml").read_text()
    assert committed == dbt_sources_yaml(), "regenerate with: make dbt-sources"
