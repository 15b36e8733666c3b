"""deploy/compose.yaml and deploy/Dockerfile, checked offline.

The Compose binary validates the files (`config` needs no Docker daemon) and resolves
them into the model Docker would run; the structural tests read that model, so anchors,
merges and variable defaults are applied exactly as Compose applies them.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import importlib.util
import json
import re
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from musify.settings import Settings, load_settings
from tests.conftest import lock_tool
from tests.deploy.conftest import DEPLOY, REPO, clean_env, venv_tool

COMPOSE = DEPLOY / "compose.yaml"
COMPOSE_GCP = DEPLOY / "compose.gcp.yaml"
DOCKERFILE = DEPLOY / "Dockerfile"
GCP_VARS = {"GCP_PROJECT": "musify-test-project", "LAKE_BUCKET": "musify-test-lake"}
SETTING_NAMES = {f"MUSIFY_{f.name.upper()}" for f in dataclasses.fields(Settings)}


def compose(
    tmp: Path,
    *args: str,
    files: tuple[Path, ...] = (COMPOSE,),
    extra_env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    # An empty env file: a developer's deploy/.env must not change what is tested.
    empty = tmp / "empty.env"
    empty.write_text("")
    cmd = [str(venv_tool("docker-compose")), "--env-file", str(empty)]
    for f in files:
        cmd += ["-f", str(f)]
    env = clean_env(tmp) | (extra_env or {})
    return subprocess.run(
        [*cmd, *args], capture_output=True, text=True, env=env, timeout=60, cwd=DEPLOY
    )


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The resolved base file, with every variable at its default."""
    res = compose(tmp_path_factory.mktemp("compose"), "config", "--format", "json")
    assert res.returncode == 0, res.stderr
    return dict(json.loads(res.stdout))


@pytest.fixture(scope="module")
def gcp_model(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The base file with the cloud profile layered over it."""
    res = compose(
        tmp_path_factory.mktemp("compose-gcp"),
        "config",
        "--format",
        "json",
        files=(COMPOSE, COMPOSE_GCP),
        extra_env=GCP_VARS,
    )
    assert res.returncode == 0, res.stderr
    return dict(json.loads(res.stdout))


def services(model: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return dict(model["services"])


def one_shots(model: dict[str, Any]) -> set[str]:
    """Jobs that run to completion (init steps), as opposed to servers."""
    return {n for n, s in services(model).items() if s.get("restart", "no") == "no"}


# --- the files are valid Compose ----------------------------------------------------------


def test_compose_file_is_valid(tmp_path: Path) -> None:
    res = compose(tmp_path, "config", "--quiet")
    assert res.returncode == 0, res.stderr


def test_cloud_profile_is_valid(tmp_path: Path) -> None:
    res = compose(tmp_path, "config", "--quiet", files=(COMPOSE, COMPOSE_GCP), extra_env=GCP_VARS)
    assert res.returncode == 0, res.stderr


def test_cloud_profile_names_its_missing_variables(tmp_path: Path) -> None:
    res = compose(tmp_path, "config", "--quiet", files=(COMPOSE, COMPOSE_GCP))
    assert res.returncode != 0
    assert "GCP_PROJECT" in res.stderr and "LAKE_BUCKET" in res.stderr


def test_the_validator_rejects_an_unknown_key(tmp_path: Path) -> None:
    # Proof that `config --quiet` checks the schema rather than only parsing YAML.
    bad = tmp_path / "compose.yaml"
    bad.write_text("services:\n  a:\n    image: busybox:1.37\n    helthcheck: {}\n")
    res = compose(tmp_path, "config", "--quiet", files=(bad,))
    assert res.returncode != 0
    assert "helthcheck" in res.stderr


# --- structure of the resolved model ------------------------------------------------------


def test_the_stack_has_every_component(model: dict[str, Any]) -> None:
    expected = {
        "kafka",
        "spark-master",
        "spark-worker",
        "stream",
        "generator",
        "postgres",
        "airflow-init",
        "airflow-apiserver",
        "airflow-scheduler",
        "airflow-dag-processor",
        "dashboard",
    }
    assert expected <= set(services(model))


def test_every_server_has_a_healthcheck(model: dict[str, Any]) -> None:
    servers = set(services(model)) - one_shots(model)
    missing = sorted(
        n for n in servers if not services(model)[n].get("healthcheck", {}).get("test")
    )
    assert missing == []


def test_one_shot_jobs_are_awaited_to_completion(model: dict[str, Any]) -> None:
    jobs = one_shots(model)
    assert jobs == {"init", "airflow-init"}
    for name, svc in services(model).items():
        for dep, spec in svc.get("depends_on", {}).items():
            expected = "service_completed_successfully" if dep in jobs else "service_healthy"
            assert spec["condition"] == expected, f"{name} -> {dep}"


def test_published_ports_bind_loopback_only(model: dict[str, Any]) -> None:
    published = [
        (name, port) for name, svc in services(model).items() for port in svc.get("ports", [])
    ]
    assert published, "the dashboard and Airflow UI must be reachable from the host"
    for name, port in published:
        assert port.get("host_ip") == "127.0.0.1", f"{name} publishes {port} beyond loopback"


def test_published_ports_follow_publish_host(tmp_path: Path) -> None:
    res = compose(tmp_path, "config", "--format", "json", extra_env={"PUBLISH_HOST": "10.1.2.3"})
    assert res.returncode == 0, res.stderr
    for svc in json.loads(res.stdout)["services"].values():
        for port in svc.get("ports", []):
            assert port["host_ip"] == "10.1.2.3"


def test_images_are_pinned(model: dict[str, Any]) -> None:
    for name, svc in services(model).items():
        image = svc["image"]
        repo, _, tag = image.rpartition(":")
        assert repo and "/" not in tag, f"{name}: image {image} has no tag"
        assert tag != "latest" and re.match(r"\d", tag), f"{name}: image {image} is not pinned"


def test_state_lives_in_named_volumes(model: dict[str, Any]) -> None:
    declared = set(model.get("volumes", {}))
    assert {"musify-home", "kafka-data", "postgres-data"} <= declared
    for name, svc in services(model).items():
        for mount in svc.get("volumes", []):
            if mount["type"] == "volume":
                assert mount["source"] in declared, f"{name}: undeclared volume {mount}"
            else:
                # The only host folder mounted is the DAG folder of this repository, read-only.
                assert mount["type"] == "bind" and mount.get("read_only"), f"{name}: {mount}"
                assert Path(mount["source"]).resolve().is_relative_to(REPO), f"{name}: {mount}"


def test_the_dag_folder_is_mounted_into_airflow(model: dict[str, Any]) -> None:
    for name in ("airflow-scheduler", "airflow-dag-processor", "airflow-apiserver"):
        binds = [m for m in services(model)[name]["volumes"] if m["type"] == "bind"]
        assert [Path(m["source"]).resolve() for m in binds] == [
            REPO / "src" / "musify" / "orchestration" / "dags"
        ]
        assert binds[0]["target"] == "/opt/musify/src/musify/orchestration/dags"


def test_airflow_runs_api_server_scheduler_and_dag_processor(model: dict[str, Any]) -> None:
    svcs = services(model)
    assert svcs["airflow-apiserver"]["command"][0] == "api-server"
    assert svcs["airflow-scheduler"]["command"] == ["scheduler", "--skip-serve-logs"]
    assert svcs["airflow-dag-processor"]["command"] == ["dag-processor"]
    env = svcs["airflow-scheduler"]["environment"]
    assert (
        env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-apiserver:8080/execution/"
    )


def test_airflow_init_creates_the_dags_pool(model: dict[str, Any]) -> None:
    dag = (REPO / "src" / "musify" / "orchestration" / "dags" / "musify_hourly.py").read_text()
    (pool,) = re.findall(r'^POOL = "([^"]+)"', dag, re.MULTILINE)
    script = "\n".join(services(model)["airflow-init"]["command"])
    assert "airflow db migrate" in script
    assert f"airflow pools set {pool} 1" in script


def test_env_example_is_a_valid_env_file(tmp_path: Path) -> None:
    example = DEPLOY / ".env.example"
    res = subprocess.run(
        [
            str(venv_tool("docker-compose")),
            "--env-file",
            str(example),
            "-f",
            str(COMPOSE),
            "config",
            "--quiet",
        ],
        capture_output=True,
        text=True,
        env=clean_env(tmp_path),
        timeout=60,
        cwd=DEPLOY,
    )
    assert res.returncode == 0, res.stderr
    # It lists every variable the two files read, so nobody has to read YAML to find them.
    used = set()
    for f in (COMPOSE, COMPOSE_GCP):
        used |= set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", f.read_text()))
    assert used <= set(re.findall(r"^#? ?([A-Z][A-Z0-9_]*)=", example.read_text(), re.MULTILINE))


_SECRET_KEY = re.compile(r"PASSWORD|SECRET|TOKEN|FERNET|(^|_)KEY$|SQL_ALCHEMY_CONN$")


def test_no_secret_is_written_in_the_files(model: dict[str, Any]) -> None:
    # Secrets are read from generated files (_FILE / _CMD), never given as values.
    for name, svc in services(model).items():
        for key in svc.get("environment") or {}:
            if _SECRET_KEY.search(key):
                assert key.endswith(("_FILE", "_CMD")), f"{name}: {key} carries a secret value"


@pytest.mark.parametrize("profile", ["base", "gcp"])
def test_musify_variables_are_real_settings(
    profile: str, model: dict[str, Any], gcp_model: dict[str, Any]
) -> None:
    # Unknown MUSIFY_* variables stop every musify command: catch them here, not at run time.
    chosen = model if profile == "base" else gcp_model
    for name, svc in services(chosen).items():
        env = {k: v for k, v in (svc.get("environment") or {}).items() if k.startswith("MUSIFY_")}
        assert set(env) <= SETTING_NAMES, f"{name}: {sorted(set(env) - SETTING_NAMES)}"
        load_settings(env)  # values parse as their settings' types


def test_stream_runs_on_the_spark_cluster_with_the_native_connector(model: dict[str, Any]) -> None:
    stream = services(model)["stream"]
    settings = load_settings(stream["environment"])
    assert settings.kafka_source == "kafka"
    assert settings.spark_master == "spark://spark-master:7077"
    assert settings.bootstrap_servers == "kafka:9092"
    # The driver advertises its own container name so executors can call back.
    assert settings.bind_host == stream["hostname"] == "stream"
    assert "musify-home" in {m["source"] for m in services(model)["spark-worker"]["volumes"]}


def test_spark_versions_agree(model: dict[str, Any]) -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    stream_extra = pyproject["project"]["optional-dependencies"]["stream"]
    (pin,) = [d for d in stream_extra if d.startswith("pyspark==")]
    pyspark = pin.split("==")[1]
    for name in ("spark-master", "spark-worker"):
        tag = services(model)[name]["image"].split(":")[1]
        assert tag.split("-")[0] == pyspark, f"{name} runs Spark {tag}, the driver {pyspark}"
    args = services(model)["stream"]["environment"]["PYSPARK_SUBMIT_ARGS"]
    assert f"org.apache.spark:spark-sql-kafka-0-10_2.13:{pyspark}" in args
    assert args.rstrip().endswith("pyspark-shell")


def test_generator_and_dashboard_commands(model: dict[str, Any]) -> None:
    gen = services(model)["generator"]["command"]
    assert gen[:2] == ["musify", "generate"] and "--continuous" in gen
    assert gen[gen.index("--bootstrap-servers") + 1] == "kafka:9092"
    dash = services(model)["dashboard"]["command"]
    assert dash == ["musify", "dashboard", "--host", "0.0.0.0", "--port", "8501"]


def test_kafka_runs_kraft_without_zookeeper(model: dict[str, Any]) -> None:
    kafka = services(model)["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    env = kafka["environment"]
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert not any("ZOOKEEPER" in k for k in env)


def test_cloud_profile_points_at_gcs_and_bigquery(gcp_model: dict[str, Any]) -> None:
    for name in ("airflow-scheduler", "dashboard", "stream"):
        settings = load_settings(
            {
                k: v
                for k, v in services(gcp_model)[name]["environment"].items()
                if k.startswith("MUSIFY_")
            }
        )
        assert settings.lake_root == "gs://musify-test-lake/lake"
        assert settings.bq_project == "musify-test-project"


# --- the Dockerfile -----------------------------------------------------------------------


def dockerfile_stages() -> dict[str, list[str]]:
    """Instructions per build stage (continuation lines joined)."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    stages: dict[str, list[str]] = {"_global": []}
    current = "_global"
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = re.match(r"FROM\s+\S+\s+AS\s+(\S+)", line, re.IGNORECASE)
        if m:
            current = m.group(1)
            stages[current] = []
        stages[current].append(line)
    return stages


def test_dockerfile_base_images_are_pinned() -> None:
    args = dict(
        line.split(None, 1)[1].split("=", 1)
        for line in dockerfile_stages()["_global"]
        if line.startswith("ARG") and "_IMAGE=" in line
    )
    assert args["PYTHON_IMAGE"].startswith("python:3.11.")
    assert re.fullmatch(r"apache/airflow:3\.\d+\.\d+-python3\.11", args["AIRFLOW_IMAGE"])
    for image in args.values():
        assert not image.endswith(":latest")


def test_images_run_as_a_non_root_user() -> None:
    for stage, lines in dockerfile_stages().items():
        if stage == "_global":
            continue
        users = [line.split()[1] for line in lines if line.startswith("USER")]
        assert users and users[-1] not in {"root", "0", "0:0"}, f"stage {stage} ends as root"


def test_images_install_from_their_hashed_locks() -> None:
    stages = dockerfile_stages()
    musify, airflow = " ".join(stages["musify"]), " ".join(stages["airflow"])
    assert "openjdk-17-jre-headless" in musify
    for text, lock in ((musify, "requirements/image.txt"), (airflow, "image-airflow.txt")):
        assert re.search(rf"uv pip sync .*--require-hashes .*{re.escape(lock)}", text), lock
        assert re.search(r"pip install .*--require-hashes .*requirements/uv\.txt", text)
        # Musify itself adds no unlocked dependency, and is a wheel (its dbt project is
        # package data), not an editable install of the build context
        assert re.search(r"uv pip install .*--no-deps\s+/opt/musify(\s|$)", text)
        assert not re.search(r"uv pip install .*\s-e\s", text)


def test_image_locks_cover_what_the_images_run() -> None:
    extras = set(
        tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    )
    envs = {env.lock: set(env.extras) for env in lock_tool().ENVIRONMENTS}
    assert {"broker", "stream", "warehouse", "gcp", "dashboard"} <= envs["image"] <= extras
    assert {"warehouse"} <= envs["image-airflow"] <= extras
    assert "dev" not in envs["image"] | envs["image-airflow"]


def test_everything_the_dockerfile_copies_is_in_the_context() -> None:
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
    allowed = {line[1:].removesuffix("/**") for line in ignore if line.startswith("!")}
    for lines in dockerfile_stages().values():
        for line in lines:
            if not line.startswith("COPY") or "--from=" in line:
                continue
            sources = [p for p in line.split()[1:-1] if not p.startswith("--")]
            for src in sources:
                assert (REPO / src).exists(), f"COPY {src}: not in the repository"
                assert any(fnmatch.fnmatch(src, pattern) for pattern in allowed), (
                    f"COPY {src}: excluded by Dockerfile.dockerignore"
                )


# --- the health check script --------------------------------------------------------------


def load_healthcheck() -> ModuleType:
    spec = importlib.util.spec_from_file_location("healthcheck", DEPLOY / "healthcheck.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("healthcheck", module)
    spec.loader.exec_module(module)
    return module


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        status = 200 if self.path == "/ok" else 503
        body = b'{"status": "ok"}' if status == 200 else b"down"
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def http_server() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_http_check(http_server: str) -> None:
    hc = load_healthcheck()
    assert hc.check_http(f"{http_server}/ok") is None
    assert hc.check_http(f"{http_server}/ok", contains='"ok"') is None
    assert "does not contain" in hc.check_http(f"{http_server}/ok", contains="healthy")
    assert "HTTP 503" in hc.check_http(f"{http_server}/down")


def test_http_check_names_an_unreachable_server(capsys: pytest.CaptureFixture[str]) -> None:
    hc = load_healthcheck()
    with socket_closed_port() as port:
        assert hc.main(["http", f"http://127.0.0.1:{port}/"]) == 1
    assert f"127.0.0.1:{port}" in capsys.readouterr().err


class socket_closed_port:
    """A loopback port nobody listens on (bound, then closed)."""

    def __enter__(self) -> int:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])

    def __exit__(self, *exc: object) -> None:
        return None


def test_stream_check_follows_the_jobs_pid_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    from musify.stream.status import pid_path

    hc = load_healthcheck()
    monkeypatch.setenv("MUSIFY_HOME", str(tmp_path))
    assert hc.check_stream() == "the stream job is not running"
    pid_file = pid_path(load_settings())
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    pid_file.write_text(str(os.getpid()))
    assert hc.check_stream() is None
