from pathlib import Path

import pytest

from musify.errors import UsageError
from musify.settings import Settings, load_settings


def test_defaults() -> None:
    s = load_settings(environ={})
    assert s == Settings()
    assert s.home == Path(".musify")
    assert s.bind_host == "127.0.0.1"
    assert s.logs_dir == Path(".musify/logs")


def test_environment_layer_and_overrides() -> None:
    env = {"MUSIFY_HOME": "/tmp/x", "MUSIFY_BROKER_PORT": "19092", "PATH": "/bin"}
    s = load_settings(environ=env)
    assert s.home == Path("/tmp/x")
    assert s.broker_port == 19092
    # explicit arguments beat the environment; None means "not given"
    s2 = load_settings(environ=env, broker_port=1234, home=None)
    assert s2.broker_port == 1234
    assert s2.home == Path("/tmp/x")


def test_settings_are_frozen() -> None:
    s = Settings()
    with pytest.raises(AttributeError):
        s.home = Path("/elsewhere")  # type: ignore[misc]
    assert s.replace(broker_port=1).broker_port == 1


def test_bad_values_name_the_variable() -> None:
    with pytest.raises(UsageError, match="MUSIFY_BROKER_PORT"):
        load_settings(environ={"MUSIFY_BROKER_PORT": "ninety"})
    with pytest.raises(UsageError, match="MUSIFY_HOMER"):
        load_settings(environ={"MUSIFY_HOMER": "/tmp"})


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("MUSIFY_BROKER_PORT", "99999"),
        ("MUSIFY_BROKER_PORT", "-1"),
        ("MUSIFY_AIRFLOW_PORT", "0"),
        ("MUSIFY_DASHBOARD_PORT", "65536"),
        ("MUSIFY_WORKERS", "-3"),
        ("MUSIFY_BATCH_LOOKBACK_HOURS", "-5"),
        ("MUSIFY_TOPIC_PARTITIONS", "0"),
        ("MUSIFY_TOPIC_REPLICATION", "0"),
        ("MUSIFY_MAX_EVENT_FUTURE_SECONDS", "nan"),
        ("MUSIFY_DASHBOARD_REFRESH_SECONDS", "0"),
    ],
)
def test_numbers_out_of_range_name_the_variable(variable: str, value: str) -> None:
    with pytest.raises(UsageError, match=rf"{variable}='{value}': must be >") as exc:
        load_settings(environ={variable: value})
    assert exc.value.exit_code == 2


def test_numbers_at_the_edges_of_their_range_are_accepted() -> None:
    s = load_settings(
        environ={"MUSIFY_BROKER_PORT": "65535", "MUSIFY_WORKERS": "0", "MUSIFY_AIRFLOW_PORT": "1"}
    )
    assert (s.broker_port, s.workers, s.airflow_port) == (65535, 0, 1)


def test_every_setting_is_documented_in_the_readme() -> None:
    import dataclasses

    from tests.conftest import REPO

    readme = (REPO / "README.md").read_text()
    for f in dataclasses.fields(Settings):
        name = f"MUSIFY_{f.name.upper()}"
        short = f"_{f.name[3:].upper()}" if f.name.startswith("bq_") else name
        assert name in readme or short in readme, f"{name} is not in README.md's table"


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "localhost", "::1", "[::1]"])
def test_loopback_hosts_bind_without_a_warning(host: str) -> None:
    assert Settings(bind_host=host).check_bind_host() is None


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10", "example.org"])
def test_a_non_loopback_bind_host_is_refused_unless_allowed(host: str) -> None:
    with pytest.raises(UsageError, match="MUSIFY_ALLOW_REMOTE_BIND"):
        Settings(bind_host=host).check_bind_host()
    # --host of a command counts the same as the setting
    with pytest.raises(UsageError, match=host):
        Settings().check_bind_host(host)
    warning = Settings(bind_host=host, allow_remote_bind=True).check_bind_host()
    assert warning is not None and host in warning and "warning" in warning


def test_a_new_home_is_private(tmp_path: Path) -> None:
    home = tmp_path / "a" / "home"
    Settings(home=home).ensure_dirs()
    assert home.stat().st_mode & 0o777 == 0o700
    assert (home / "run").is_dir() and (home / "logs").is_dir()
