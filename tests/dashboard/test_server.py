"""Serving: the command line, settings reaching the page, a taken port."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner

from musify.cli import app
from musify.dashboard.server import check_port, dashboard_command, settings_env
from musify.errors import UsageError
from musify.settings import Settings, load_settings


def test_settings_travel_to_the_page_as_environment(tmp_path: Path) -> None:
    s = Settings(home=tmp_path, dashboard_port=9999, dashboard_refresh_seconds=5.0)
    assert load_settings(settings_env(s)) == s


def test_command_binds_where_asked() -> None:
    cmd = dashboard_command(Settings(), "127.0.0.1", 8600)
    assert cmd[cmd.index("--server.address") + 1] == "127.0.0.1"
    assert cmd[cmd.index("--server.port") + 1] == "8600"
    assert cmd[cmd.index("--browser.gatherUsageStats") + 1] == "false"
    assert Settings().dashboard_port == 8501 and Settings().bind_host == "127.0.0.1"


def test_a_taken_port_is_a_clear_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(UsageError, match=rf"127\.0\.0\.1:{port}.*--port"):
            check_port("127.0.0.1", port)
        result = CliRunner().invoke(app, ["dashboard", "--port", str(port)])
    assert result.exit_code == 2
    assert "--port or MUSIFY_DASHBOARD_PORT" in result.output


def test_cli_help() -> None:
    result = CliRunner().invoke(app, ["dashboard", "--help"])
    assert result.exit_code == 0
    assert "--port" in result.output and "--host" in result.output


@pytest.mark.slow
def test_musify_dashboard_serves_and_stops_with_its_children(tmp_path: Path) -> None:
    """A real server on a free port; SIGTERM to ``musify dashboard`` stops Streamlit too."""
    import os
    import signal
    import subprocess
    import sys
    import time
    import urllib.request

    from musify.broker.local import free_port
    from musify.dashboard.server import url, wait_ready

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MUSIFY_")}
    env["MUSIFY_HOME"] = str(tmp_path)
    proc = subprocess.Popen(
        [sys.executable, "-m", "musify", "dashboard", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_ready("127.0.0.1", port, proc, timeout_s=120)
        with urllib.request.urlopen(url("127.0.0.1", port), timeout=10) as resp:
            assert resp.status == 200
        proc.send_signal(signal.SIGTERM)  # the parent only
        assert proc.wait(timeout=30) in (0, -signal.SIGTERM)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) != 0:
                    break
            time.sleep(0.2)
        else:
            pytest.fail(f"something still listens on {port} after musify dashboard stopped")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
