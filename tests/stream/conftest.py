"""Fixtures of the stream's tests: a local broker per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from musify.broker.local import free_port, running_broker


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[tuple[str, Path, int]]:
    """A fresh local broker: (bootstrap servers, its home, its port)."""
    port = free_port()
    home = tmp_path / "broker-home"
    with running_broker(port, home) as bootstrap:
        yield bootstrap, home, port
