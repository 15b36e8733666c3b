"""Logging is configured once, by the CLI: levels, human lines, JSON lines, --version."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from datetime import datetime

import orjson
import pytest

from musify import __version__, logs
from musify.cli import run


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    musify_level = logging.getLogger("musify").level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.getLogger("musify").setLevel(musify_level)


def test_json_lines_carry_the_record_and_its_extra_fields() -> None:
    buf = io.StringIO()
    logs.configure("info", "json", stream=buf)
    logging.getLogger("musify.stream.job").info(
        "batch %d: %s rows", 7, "1,000", extra={"batch": {"batch_id": 7, "rows": {"a": 1}}}
    )
    (line,) = buf.getvalue().splitlines()
    doc = orjson.loads(line)
    assert doc["level"] == "info"
    assert doc["logger"] == "musify.stream.job"
    assert doc["message"] == "batch 7: 1,000 rows"
    assert doc["batch"] == {"batch_id": 7, "rows": {"a": 1}}
    assert datetime.fromisoformat(doc["ts"]).tzinfo is not None


def test_text_lines_are_one_line_per_record_without_the_package_prefix() -> None:
    buf = io.StringIO()
    logs.configure("info", "text", stream=buf)
    logging.getLogger("musify.batch").info("hour %s has no events", "2024-03-19T20")
    (line,) = buf.getvalue().splitlines()
    assert line.endswith(" info batch: hour 2024-03-19T20 has no events")


def test_the_level_filters_musify_and_other_libraries_stay_at_warning() -> None:
    buf = io.StringIO()
    logs.configure("warning", "text", stream=buf)
    logging.getLogger("musify.batch").info("not shown")
    logging.getLogger("musify.batch").warning("shown")
    logs.configure("debug", "text", stream=buf)  # replaces the first handler
    logging.getLogger("musify.batch").debug("debug shown")
    logging.getLogger("py4j.clientserver").info("a library's info: not shown")
    lines = buf.getvalue().splitlines()
    assert [line.split(": ", 1)[1] for line in lines] == ["shown", "debug shown"]


def test_configure_rejects_unknown_levels_and_formats() -> None:
    with pytest.raises(ValueError, match="log level 'verbose'"):
        logs.configure("verbose")
    with pytest.raises(ValueError, match="log format 'xml'"):
        logs.configure("info", "xml")


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"musify {__version__}"


def test_a_bad_log_level_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["--log-level", "loud", "lake", "tables"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: --log-level 'loud': expected one of debug, info, warning, error"]


def test_a_bad_log_format_in_the_environment_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MUSIFY_LOG_FORMAT", "xml")
    assert run(["lake", "tables"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "error: environment variable MUSIFY_LOG_FORMAT='xml': expected one of text, json"
    ]
