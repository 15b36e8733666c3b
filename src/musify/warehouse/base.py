"""The warehouse adapter interface (one adapter per engine, as in SQLMesh)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import datetime
from typing import ClassVar

from musify.lake import Lake


@dataclass(frozen=True)
class LoadResult:
    """Rows loaded per topic and hour; hours with no lake files load 0 rows."""

    rows: dict[str, dict[str, int]] = field(default_factory=dict)  # topic -> hour -> rows
    missing_hours: tuple[str, ...] = ()

    def total(self, topic: str | None = None) -> int:
        topics = [topic] if topic else list(self.rows)
        return sum(sum(self.rows.get(t, {}).values()) for t in topics)


class Warehouse(ABC):
    """Loads lake hours into raw tables, atomically and idempotently."""

    #: The dbt target that builds models on this engine.
    dbt_target: ClassVar[str]
    #: Whether a load of several hours is one transaction (all or nothing).
    transactional_load: ClassVar[bool]

    @abstractmethod
    def ensure_raw_tables(self) -> None:
        """Create the raw schema and tables if they do not exist."""

    @abstractmethod
    def load_hours(self, lake: Lake, hours: list[datetime]) -> LoadResult:
        """Replace the raw rows of these hours with the lake's committed files for them.

        Loading an hour twice leaves the tables as loading it once. A corrupt lake file
        fails the whole load with a message naming the file and changes nothing.
        """

    @abstractmethod
    def raw_count(self, topic: str, start: datetime, end: datetime) -> int:
        """Raw rows of a topic with event time in [start, end)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""
