"""A small published-ready home: a lake of a few hours and a stream status past them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from musify.lake import Lake
from musify.lake.writer import write_events
from musify.settings import Settings
from musify.stream.status import status_path
from tests.warehouse.lake_events import START, events

HOURS = 3


def set_watermark(
    settings: Settings, mark: datetime | None, newest: datetime | None = None
) -> None:
    """Pretend the stream committed a caught-up batch at ``mark`` whose event-time
    watermark is ``newest`` (default: ``mark``)."""
    settings.ensure_dirs()
    now = datetime.now(UTC)
    newest = newest or mark
    doc = {
        "batch_id": 1,
        "rows": {},
        "watermark": mark.isoformat() if mark else None,
        "at": now.isoformat(),
        "event_watermark": newest.isoformat() if newest else None,
        "freshness_s": (now - newest).total_seconds() if newest else None,
        "epoch": now.timestamp(),
    }
    status_path(settings).write_bytes(orjson.dumps(doc))


@pytest.fixture
def lake_home(tmp_path: Path, musify_cache: Path) -> tuple[Settings, dict[str, Any]]:
    settings = Settings(home=tmp_path / "home")
    evs = events(musify_cache, users=150, hours=HOURS)
    write_events(Lake(Path(settings.lake_root)), evs, 0)
    set_watermark(settings, START + timedelta(hours=HOURS, minutes=5))
    return settings, evs
