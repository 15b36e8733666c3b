"""Which Iceberg catalog a lake opens, by configuration (MUSIFY_ICEBERG_CATALOG)."""

from __future__ import annotations

from pathlib import Path

import pytest

from musify.errors import UsageError
from musify.lake import Lake
from musify.lake.tables import LakeError, rest_properties
from musify.settings import load_settings

BIGLAKE = "https://biglake.googleapis.com/iceberg/v1/restcatalog"


def test_a_local_lake_carries_its_sqlite_catalog(tmp_path: Path) -> None:
    lake = Lake(tmp_path / "lake")
    assert lake.tables.exists("listen_events") is False
    lake.tables.table("listen_events")
    assert (tmp_path / "lake" / "catalog.db").is_file()
    # another process naming only the folder sees the same table
    assert Lake(tmp_path / "lake").tables.exists("listen_events")


def test_a_bucket_lake_keeps_its_default_catalog_under_musify_home(tmp_path: Path) -> None:
    settings = load_settings({}, home=tmp_path / "home", lake="gs://bucket/lake")
    lake = Lake.from_settings(settings)
    assert lake.catalog == f"sqlite:///{(tmp_path / 'home' / 'catalog.db').resolve()}"
    named = load_settings(
        {}, home=tmp_path / "home", lake="gs://bucket/lake", iceberg_catalog=BIGLAKE
    )
    assert Lake.from_settings(named).catalog == BIGLAKE


def test_biglake_gets_google_credentials_and_the_bucket_as_warehouse() -> None:
    props = rest_properties(BIGLAKE, "gs://my-lake/lake")
    assert props["uri"] == BIGLAKE
    assert props["warehouse"] == "gs://my-lake"
    assert props["auth"] == {"type": "google"}
    other = rest_properties("http://127.0.0.1:8181", "/data/lake")
    assert other["warehouse"] == "/data/lake" and "auth" not in other


def test_biglake_refuses_a_lake_outside_a_bucket() -> None:
    with pytest.raises(UsageError, match="gs:// bucket"):
        rest_properties(BIGLAKE, "/data/lake")


def test_an_unreachable_rest_catalog_is_one_line_naming_the_setting(tmp_path: Path) -> None:
    lake = Lake(tmp_path / "lake", "http://127.0.0.1:9")
    with pytest.raises(LakeError, match="MUSIFY_ICEBERG_CATALOG") as err:
        _ = lake.tables
    assert "\n" not in str(err.value)


def test_a_refresh_rereads_a_table_only_after_a_commit_changed_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from datetime import UTC, datetime

    from musify.lake.writer import write_events

    reader, writer = Lake(tmp_path / "lake"), Lake(tmp_path / "lake")
    table = reader.tables.table("auth_events")
    reads: list[str] = []
    refresh = type(table).refresh

    def counted(self: object) -> object:
        reads.append("refresh")
        return refresh(self)

    monkeypatch.setattr(type(table), "refresh", counted)
    assert reader.tables.table("auth_events", refresh=True).current_snapshot() is None
    assert reads == []  # nothing committed: the metadata is not read again
    ts = int(datetime(2024, 3, 18, 10, tzinfo=UTC).timestamp() * 1000)
    event = {"ts": ts, "sessionId": 1, "userId": 7, "success": True, "level": "free"}
    write_events(writer, {"auth_events": [event]}, 0)
    seen = reader.tables.table("auth_events", refresh=True).current_snapshot()
    assert seen is not None and reads == ["refresh"]  # another process's commit is seen
    assert seen.snapshot_id == writer.tables.table("auth_events").current_snapshot().snapshot_id
