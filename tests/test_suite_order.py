"""The order in which ``make test``'s workers take the test files (tests/conftest.py)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest

from tests.conftest import LONGEST_FILES, REPO, _heaviest_files_first


@dataclass
class _Item:
    path: Path
    name: str
    cost: str

    @property
    def nodeid(self) -> str:
        return f"{self.path.relative_to(REPO).as_posix()}::{self.name}"

    def iter_markers(self) -> list[Any]:
        return [getattr(pytest.mark, self.cost).mark]


def test_every_listed_long_file_exists() -> None:
    missing = [f for f in LONGEST_FILES if not (REPO / f).is_file()]
    assert missing == [], f"LONGEST_FILES names files that are gone: {missing}"


def test_listed_files_first_then_the_heaviest_each_file_in_its_order() -> None:
    fast, medium = REPO / "tests/a/test_fast.py", REPO / "tests/b/test_medium.py"
    second, first = (REPO / f for f in LONGEST_FILES[1::-1])
    items = [
        _Item(fast, "f1", "fast"),
        _Item(medium, "m1", "medium"),
        _Item(second, "s1", "slow"),
        _Item(fast, "f2", "fast"),
        _Item(first, "l1", "medium"),
        _Item(medium, "m2", "fast"),
        _Item(first, "l2", "fast"),
    ]
    _heaviest_files_first(cast(list[pytest.Item], items))
    assert [i.name for i in items] == ["l1", "l2", "s1", "m1", "m2", "f1", "f2"]
