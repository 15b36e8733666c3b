"""``validate_dir``: generated runs pass, tampered ones fail the right checks."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from rich.console import Console

from musify.errors import UsageError
from musify.sim import GenerateOptions, generate_events
from musify.sim.clock import parse_time
from musify.sim.config import load_config
from musify.sim.markov import analyse, initial_weights
from musify.sim.validate import Report, validate_dir

SHARED_EVENTSIM = Path(__file__).resolve().parents[2].parent / "shared" / "eventsim"

Event = dict[str, Any]


def example_config_path() -> Path:
    path = SHARED_EVENTSIM / "example-config.json"
    if not path.exists():
        pytest.skip(f"{path} is not available (../shared is absent)")
    return path


def variant_config(path: Path) -> dict[str, Any]:
    """The example config with other transitions, session starts, levels and timing."""
    raw: dict[str, Any] = orjson.loads(path.read_bytes())
    raw["alpha"] = 45.0
    raw["beta"] = 302400.0
    raw["levels"] = [{"level": "free", "weight": 10}, {"level": "paid", "weight": 6}]
    raw["auths"] = [
        {"auth": "Guest", "weight": 0},
        {"auth": "Logged In", "weight": 10},
        {"auth": "Logged Out", "weight": 4},
    ]
    for ns in raw["new-session"]:
        key = (ns["page"], ns["auth"], ns["level"])
        ns["weight"] = {
            ("NextSong", "Logged In", "free"): 500,
            ("Home", "Logged In", "paid"): 2000,
            ("Login", "Logged Out", "free"): 1500,
        }.get(key, ns["weight"])
    for t in raw["transitions"]:
        s, d = t["source"], t["dest"]
        if s["page"] == "NextSong" and d["page"] == "NextSong":
            t["p"] = 0.7 if s["level"] == "free" else 0.85
        elif s["page"] == "NextSong" and d["page"] == "Upgrade":
            t["p"] = 0.03
        elif s["page"] == "Login" and d["page"] == "Home":
            t["p"] = 0.6 if d["auth"] == "Logged In" else 0.399
    return raw


def _generate(out: Path, config: Path, cache: Path, **kw: Any) -> Path:
    opts = GenerateOptions(
        config=config,
        start=parse_time(kw.pop("start", "2022-03-07T00:00:00")),
        workers=1,
        cache_dir=cache,
        **kw,
    )
    generate_events(opts, output_dir=out)
    return out


@pytest.fixture(scope="module")
def people_cache(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The suite's shared people cache if there is one, else a fresh one."""
    try:
        cache: Path = request.getfixturevalue("musify_cache")
    except pytest.FixtureLookupError:
        cache = tmp_path_factory.mktemp("people-cache")
    return cache


@pytest.fixture(scope="module")
def example_run(tmp_path_factory: pytest.TempPathFactory, people_cache: Path) -> Path:
    """1,000 users for 7 days with eventsim's example config."""
    out = tmp_path_factory.mktemp("example-run")
    return _generate(out, example_config_path(), people_cache, n_users=1000, days=7, seed=3)


def _failed(report: Report) -> set[str]:
    return {r.name for r in report.failures}


def _read(path: Path) -> list[Event]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line]


def _write(path: Path, events: list[Event]) -> None:
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))


def _tampered(run: Path, tmp_path: Path, topic: str, change: Callable[[list[Event]], None]) -> Path:
    out = tmp_path / "run"
    shutil.copytree(run, out)
    path = out / f"{topic}.jsonl"
    events = _read(path)
    change(events)
    _write(path, events)
    return out


# --------------------------------------------------------------------- passing runs
def test_example_run_passes(example_run: Path) -> None:
    report = validate_dir(example_run, example_config_path())
    assert report.ok, [(r.name, r.observed, r.expected, r.detail) for r in report.failures]
    names = {r.name for r in report.rows}
    for expected in (
        "schema: page_view_events",
        "user details iff shown",
        "listen_events = NextSong page views",
        "auth_events = page after Login",
        "redirects 1 s after the previous event",
        "NextSong at the end of the previous song",
        "next session starts where the last ended",
        "page NextSong",
        "level paid",
        "status 307",
        "auth success rate",
        "first page | Logged In/paid",
        "session ends in | Logged In/paid",
    ):
        assert expected in names
    # The exact checks really checked something.
    assert report.row("redirects 1 s after the previous event").checked > 50
    assert report.row("NextSong at the end of the previous song").checked > 1000
    assert report.row("auth_events = page after Login").checked > 20
    assert report.row("next session starts where the last ended").checked > 500
    assert report.counts["page_view_events"] > 5000
    assert report.sessions > 1000


def test_report_renders_and_serialises(example_run: Path) -> None:
    report = validate_dir(example_run, example_config_path())
    console = Console(record=True, width=200)
    report.render(console)
    text = console.export_text()
    assert "✓" in text and "✗" not in text
    assert "page NextSong" in text
    assert f"all {len(report.rows)} checks passed" in text
    d = report.as_dict()
    assert d["ok"] is True and d["failed"] == 0
    assert len(d["rows"]) == len(report.rows)
    orjson.dumps(d)  # JSON-serialisable
    row = next(r for r in d["rows"] if r["name"] == "page NextSong")
    assert row["unit"] == "share" and 0.5 < row["expected"] < 1 and row["tolerance"] > 0


def test_variant_config_passes_and_differs(
    tmp_path: Path, example_run: Path, people_cache: Path
) -> None:
    config = tmp_path / "variant.json"
    config.write_bytes(orjson.dumps(variant_config(example_config_path())))
    base_cfg, var_cfg = load_config(example_config_path()), load_config(config)
    base = analyse(base_cfg).mix(initial_weights(base_cfg))
    var = analyse(var_cfg).mix(initial_weights(var_cfg))
    assert abs(base.auth_success - var.auth_success) > 0.25
    assert abs(base.page_share["Home"] - var.page_share["Home"]) > 0.03

    run = _generate(tmp_path / "run", config, people_cache, n_users=1000, days=7, seed=5)
    report = validate_dir(run, config)
    assert report.ok, [(r.name, r.observed, r.expected, r.detail) for r in report.failures]
    # ... and the statistics have the power to tell the two configs apart.
    wrong = _failed(validate_dir(run, example_config_path()))
    assert "auth success rate" in wrong
    assert any(n.startswith("first page") for n in wrong)
    assert all(not n.startswith("schema") for n in wrong)
    # and vice versa
    assert not validate_dir(example_run, config).ok


def test_growth_run_passes(tmp_path: Path, people_cache: Path) -> None:
    """Growth brings Guest users (hidden until they register) and registrations."""
    run = _generate(
        tmp_path / "run",
        example_config_path(),
        people_cache,
        n_users=800,
        days=7,
        seed=9,
        growth_rate=8.0,
        tag="t",
    )
    report = validate_dir(run, example_config_path())
    assert report.ok, [(r.name, r.observed, r.expected, r.detail) for r in report.failures]
    assert report.row("first page | Guest/free").checked > 20


def test_builtin_config_run_passes(tmp_path: Path, people_cache: Path) -> None:
    """Musify's own config (no ../shared needed), with growth and a tag."""
    from musify.sim.config import BUILTIN_CONFIG

    run = _generate(
        tmp_path / "run",
        BUILTIN_CONFIG,
        people_cache,
        n_users=500,
        days=5,
        seed=2,
        growth_rate=2.0,
        tag="builtin",
    )
    report = validate_dir(run, BUILTIN_CONFIG)
    assert report.ok, [(r.name, r.observed, r.expected, r.detail) for r in report.failures]
    assert report.counts["page_view_events"] > 1000


# --------------------------------------------------------------------- tampering
def test_deleted_listen_events_fail(example_run: Path, tmp_path: Path) -> None:
    def change(events: list[Event]) -> None:
        del events[100:105]

    report = validate_dir(
        _tampered(example_run, tmp_path, "listen_events", change), example_config_path()
    )
    assert _failed(report) == {"listen_events = NextSong page views"}
    assert report.row("listen_events = NextSong page views").observed == 5


def test_changed_listen_event_fails(example_run: Path, tmp_path: Path) -> None:
    def change(events: list[Event]) -> None:
        events[10]["song"] = "Not The Song That Played"

    report = validate_dir(
        _tampered(example_run, tmp_path, "listen_events", change), example_config_path()
    )
    assert _failed(report) == {"listen_events = NextSong page views"}


def test_broken_ts_order_fails(example_run: Path, tmp_path: Path) -> None:
    def change(events: list[Event]) -> None:
        # swap two events of different sessions whose ts differ
        i = next(
            i
            for i in range(50, len(events) - 1)
            if events[i]["ts"] < events[i + 1]["ts"]
            and events[i]["sessionId"] != events[i + 1]["sessionId"]
        )
        events[i], events[i + 1] = events[i + 1], events[i]

    report = validate_dir(
        _tampered(example_run, tmp_path, "page_view_events", change), example_config_path()
    )
    assert _failed(report) == {"ts non-decreasing in each file"}


def test_user_id_on_a_hidden_event_fails(example_run: Path, tmp_path: Path) -> None:
    def change(events: list[Event]) -> None:
        e = next(e for e in events if e["auth"] == "Logged Out")
        e["userId"] = 12345

    report = validate_dir(
        _tampered(example_run, tmp_path, "page_view_events", change), example_config_path()
    )
    assert "user details iff shown" in _failed(report)
    assert report.row("user details iff shown").observed == 1


def test_missing_user_details_fail(example_run: Path, tmp_path: Path) -> None:
    def change(events: list[Event]) -> None:
        e = next(e for e in events if e["auth"] == "Logged In")
        del e["lastName"]

    report = validate_dir(
        _tampered(example_run, tmp_path, "listen_events", change), example_config_path()
    )
    assert "user details iff shown" in _failed(report)


def test_shifted_redirect_fails(example_run: Path, tmp_path: Path) -> None:
    def change(events: list[Event]) -> None:
        by_key = {(e["sessionId"], e["itemInSession"]): e for e in events}
        for e in events:
            prev = by_key.get((e["sessionId"], e["itemInSession"] - 1))
            nxt = by_key.get((e["sessionId"], e["itemInSession"] + 1))
            if (
                e["status"] == 307
                and e["page"] in ("Logout", "Save Settings")
                and prev is not None
                and (nxt is None or nxt["ts"] - e["ts"] >= 3000)
            ):
                e["ts"] += 1000
                return
        raise AssertionError("no redirect to shift")

    report = validate_dir(
        _tampered(example_run, tmp_path, "page_view_events", change), example_config_path()
    )
    failed = _failed(report)
    assert "redirects 1 s after the previous event" in failed
    assert report.row("redirects 1 s after the previous event").observed == 1
    # Moving one event forward by a second can also break the file's time order.
    assert failed <= {"redirects 1 s after the previous event", "ts non-decreasing in each file"}


def test_early_next_song_fails(example_run: Path, tmp_path: Path) -> None:
    """A NextSong right after another must come when the previous song ends."""

    def change(events: list[Event]) -> None:
        by_key = {(e["sessionId"], e["itemInSession"]): e for e in events}
        for e in events:
            prev = by_key.get((e["sessionId"], e["itemInSession"] - 1))
            if (
                e["page"] == "NextSong"
                and prev is not None
                and prev["page"] == "NextSong"
                and e["ts"] - prev["ts"] >= 10_000
            ):
                e["ts"] -= 5000
                return
        raise AssertionError("no consecutive songs")

    report = validate_dir(
        _tampered(example_run, tmp_path, "page_view_events", change), example_config_path()
    )
    failed = _failed(report)
    assert "NextSong at the end of the previous song" in failed
    # the listen event no longer matches its page view; the file may be out of order
    assert failed <= {
        "NextSong at the end of the previous song",
        "listen_events = NextSong page views",
        "ts non-decreasing in each file",
    }


def test_missing_page_view_fails(example_run: Path, tmp_path: Path) -> None:
    def change(events: list[Event]) -> None:
        by_key = {(e["sessionId"], e["itemInSession"]): i for i, e in enumerate(events)}
        for i, e in enumerate(events):
            if e["page"] == "Home" and (e["sessionId"], e["itemInSession"] + 1) in by_key:
                del events[i]
                return
        raise AssertionError("no Home page in the middle of a session")

    report = validate_dir(
        _tampered(example_run, tmp_path, "page_view_events", change), example_config_path()
    )
    assert "itemInSession unique and contiguous" in _failed(report)


def test_missing_auth_event_fails(example_run: Path, tmp_path: Path) -> None:
    def change(events: list[Event]) -> None:
        del events[3]

    report = validate_dir(
        _tampered(example_run, tmp_path, "auth_events", change), example_config_path()
    )
    assert _failed(report) == {"auth_events = page after Login"}


def test_auth_event_with_auth_field_fails(example_run: Path, tmp_path: Path) -> None:
    def change(events: list[Event]) -> None:
        events[0]["auth"] = "Logged In"

    report = validate_dir(
        _tampered(example_run, tmp_path, "auth_events", change), example_config_path()
    )
    assert _failed(report) == {"auth events have no auth and no page"}


def test_wrong_auth_success_fails(example_run: Path, tmp_path: Path) -> None:
    def change(events: list[Event]) -> None:
        events[0]["success"] = not events[0]["success"]

    report = validate_dir(
        _tampered(example_run, tmp_path, "auth_events", change), example_config_path()
    )
    assert "auth_events = page after Login" in _failed(report)


def test_integer_zip_fails(example_run: Path, tmp_path: Path) -> None:
    def change(events: list[Event]) -> None:
        events[7]["zip"] = 12345

    report = validate_dir(
        _tampered(example_run, tmp_path, "status_change_events", change), example_config_path()
    )
    failed = _failed(report)
    assert {"zip is a string", "schema: status_change_events"} <= failed


def test_malformed_line_fails(example_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    shutil.copytree(example_run, out)
    with open(out / "listen_events.jsonl", "ab") as f:
        f.write(b'{"ts": 1, "broken\n')
    report = validate_dir(out, example_config_path())
    assert "schema: listen_events" in _failed(report)


def test_unknown_state_fails(example_run: Path, tmp_path: Path) -> None:
    def change(events: list[Event]) -> None:
        # a Home page of a session that starts in the files, days before their end
        keys = {(e["sessionId"], e["itemInSession"]) for e in events}
        end = events[-1]["ts"]
        e = next(
            e
            for e in events
            if e["page"] == "Home"
            and e["itemInSession"] > 0
            and all((e["sessionId"], i) in keys for i in range(e["itemInSession"]))
            and e["ts"] < end - 2 * 86400_000
        )
        e["page"] = "Karaoke"

    report = validate_dir(
        _tampered(example_run, tmp_path, "page_view_events", change), example_config_path()
    )
    failed = _failed(report)
    assert "page views are config states" in failed
    assert "page Karaoke" in failed  # expected share 0: impossible, however rare
    assert failed <= {"page views are config states", "page Karaoke"}


# --------------------------------------------------------------------- usage errors
def test_missing_folder_or_files_are_usage_errors(tmp_path: Path) -> None:
    config = example_config_path()
    with pytest.raises(UsageError, match="not a folder"):
        validate_dir(tmp_path / "nope", config)
    (tmp_path / "page_view_events.jsonl").write_bytes(b"")
    with pytest.raises(UsageError, match=r"listen_events\.jsonl"):
        validate_dir(tmp_path, config)


def test_empty_files_do_not_crash(tmp_path: Path) -> None:
    for topic in ("page_view_events", "listen_events", "auth_events", "status_change_events"):
        (tmp_path / f"{topic}.jsonl").write_bytes(b"")
    report = validate_dir(tmp_path, example_config_path())
    assert report.ok
    assert any(r.skipped for r in report.rows)
