"""Serving the page: ``streamlit run`` of ``app.py`` as a child process.

``serve`` runs it in the foreground until Ctrl-C (``musify dashboard``); ``start`` runs it
in the background with its log under ``MUSIFY_HOME/logs`` (for ``musify up`` and tests)
and ``wait_ready`` polls Streamlit's health endpoint. The child gets every setting as a
``MUSIFY_*`` variable, so a Settings object built with overrides reaches the page.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from musify.errors import MusifyError, UsageError
from musify.settings import ENV_PREFIX, Settings

APP = Path(__file__).with_name("app.py")


class DashboardError(MusifyError):
    """The dashboard server did not start or stopped unexpectedly."""


def settings_env(settings: Settings) -> dict[str, str]:
    """Every setting as the MUSIFY_* variable that reproduces it."""
    env: dict[str, str] = {}
    for f in dataclasses.fields(settings):
        value = getattr(settings, f.name)
        text = str(value).lower() if isinstance(value, bool) else str(value)
        env[ENV_PREFIX + f.name.upper()] = text
    return env


def dashboard_command(settings: Settings, host: str, port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(APP),
        "--server.address",
        host,
        "--server.port",
        str(port),
        "--server.headless",
        "true",
        "--server.fileWatcherType",
        "none",
        "--server.runOnSave",
        "false",
        "--browser.gatherUsageStats",
        "false",
        "--client.toolbarMode",
        "minimal",
        "--theme.base",
        "dark",
        "--theme.primaryColor",
        "#00838F",
    ]


def check_port(host: str, port: int) -> None:
    """Fail clearly, before Streamlit does, if the address is taken."""
    if not 0 < port < 65536:
        raise UsageError(f"--port {port} is not a TCP port")
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        # as the server will: connections of a previous run in TIME_WAIT do not count
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise UsageError(
                f"cannot serve the dashboard on {host}:{port}: {exc.strerror or exc} "
                "(choose another with --port or MUSIFY_DASHBOARD_PORT)"
            ) from None


def url(host: str, port: int) -> str:
    return f"http://{'[' + host + ']' if ':' in host else host}:{port}/"


def _child_env(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    return {**env, **settings_env(settings)}


def _check_host(settings: Settings, host: str) -> None:
    """The dashboard has no login: loopback only, unless remote binding is allowed."""
    warning = settings.check_bind_host(host)
    if warning:
        print(warning, file=sys.stderr, flush=True)


def serve(settings: Settings, host: str | None = None, port: int | None = None) -> int:
    """Serve the dashboard in the foreground until interrupted; returns the exit code.

    Ctrl-C (SIGINT, which reaches the child through the terminal too) and SIGTERM stop
    the server; the child never outlives this process.
    """
    host = host or settings.bind_host
    port = port or settings.dashboard_port
    _check_host(settings, host)
    check_port(host, port)
    proc = subprocess.Popen(dashboard_command(settings, host, port), env=_child_env(settings))

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        proc.send_signal(signal.SIGINT)
        try:
            return proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait()
    finally:
        signal.signal(signal.SIGTERM, previous)
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def start(
    settings: Settings, host: str | None = None, port: int | None = None
) -> subprocess.Popen[bytes]:
    """Start the dashboard in the background (its own process group); log under logs/."""
    host = host or settings.bind_host
    port = port or settings.dashboard_port
    _check_host(settings, host)
    check_port(host, port)
    settings.ensure_dirs()
    log = (settings.logs_dir / "dashboard.log").open("ab")
    try:
        return subprocess.Popen(
            dashboard_command(settings, host, port),
            env=_child_env(settings),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    finally:
        log.close()


def wait_ready(
    host: str, port: int, proc: subprocess.Popen[bytes] | None = None, timeout_s: float = 60.0
) -> None:
    """Poll Streamlit's health endpoint until it answers ok."""
    health = url(host, port) + "_stcore/health"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise DashboardError(f"the dashboard exited with code {proc.returncode} at start")
        try:
            with urllib.request.urlopen(health, timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)
    raise DashboardError(f"the dashboard did not answer at {health} within {timeout_s:.0f} s")


def stop(proc: subprocess.Popen[bytes], timeout_s: float = 10.0) -> None:
    """Stop a dashboard started with ``start`` (SIGTERM to its group, then SIGKILL)."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        pass
