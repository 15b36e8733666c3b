"""Before Spark starts: one stream per checkpoint, and a broker that answers."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from musify.broker.local import free_port
from musify.errors import BrokerError
from musify.locks import LockHeld
from musify.settings import Settings
from musify.stream import StreamOptions, run_stream
from musify.stream import job as stream_job
from musify.stream.guard import checkpoint_key, lock_path
from tests.locking import hold_lock


@pytest.fixture
def no_spark(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*_: Any, **__: Any) -> None:
        raise AssertionError("Spark was started")

    monkeypatch.setattr(stream_job, "build_spark", fail)


def test_a_second_stream_on_a_checkpoint_stops_before_spark(tmp_path: Path, no_spark: None) -> None:
    settings = Settings(home=tmp_path / "home")
    settings.ensure_dirs()
    with hold_lock(lock_path(settings)) as first:
        with pytest.raises(LockHeld, match=rf"already running \(pid {first.pid}\)") as exc:
            run_stream(settings, StreamOptions(bootstrap_servers="127.0.0.1:1"))
        assert settings.checkpoint_location in str(exc.value)
    assert not Path(settings.checkpoint_location).exists()


def test_the_same_checkpoint_is_one_lock_whatever_its_spelling(tmp_path: Path) -> None:
    assert checkpoint_key("gs://b/ck/stream/") == checkpoint_key("gs://b/ck/stream")
    assert checkpoint_key("gs://b/ck/a") != checkpoint_key("gs://b/ck/b")
    a = Settings(home=tmp_path / "home", checkpoint=str(tmp_path / "ck"))
    b = Settings(home=tmp_path / "home", checkpoint=f"file://{tmp_path}/x/../ck/")
    assert lock_path(a) == lock_path(b)
    assert lock_path(a) != lock_path(Settings(home=tmp_path / "home"))


def test_an_unreachable_broker_is_one_line_in_seconds(tmp_path: Path, no_spark: None) -> None:
    settings = Settings(home=tmp_path / "home")
    bootstrap = f"127.0.0.1:{free_port()}"
    t0 = time.monotonic()
    with pytest.raises(BrokerError, match=bootstrap) as exc:
        run_stream(settings, StreamOptions(bootstrap_servers=bootstrap))
    assert time.monotonic() - t0 < 10
    assert "\n" not in str(exc.value)
    # and the checkpoint is free again for the next attempt
    with hold_lock(lock_path(settings)):
        pass
