"""The generator's output contract, determinism and eventsim's bugs, fixed."""

from __future__ import annotations

import copy
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

import orjson
import pytest

from musify.events import STATUS_CHANGE_PAGES, TOPICS, check_event
from musify.sim import GenerateOptions, GenerateSummary, MemorySink, plan_run, run
from musify.sim.clock import parse_time, to_epoch
from musify.sim.config import BUILTIN_CONFIG, load_config
from tests.conftest import read_jsonl

Runner = Callable[..., tuple[Path, GenerateSummary]]
START = "2024-03-18T00:00:00"  # a Monday


@pytest.fixture(scope="module")
def builtin_run(
    tmp_path_factory: pytest.TempPathFactory, run_generator: Runner
) -> tuple[dict[str, list[dict[str, Any]]], GenerateSummary]:
    out, summary = run_generator(
        tmp_path_factory.mktemp("builtin"),
        config=BUILTIN_CONFIG,
        n_users=700,
        growth_rate=3.0,
        start=START,
        days=3,
        seed=11,
        first_user_id=1000,
        tag="ctl",
    )
    events = {t: read_jsonl(out / f"{t}.jsonl") for t in TOPICS}
    return events, summary


def test_summary_counts_match_files(builtin_run: Any) -> None:
    events, summary = builtin_run
    assert {t: len(v) for t, v in events.items()} == summary.events
    assert summary.events["page_view_events"] > 5000
    assert summary.users > 700  # growth added users


def test_every_event_meets_the_schema(builtin_run: Any) -> None:
    events, _ = builtin_run
    for topic, evs in events.items():
        for ev in evs:
            assert check_event(TOPICS[topic], ev) is None, (topic, ev)
            assert isinstance(ev["zip"], str)


def test_user_details_exactly_when_shown(builtin_run: Any) -> None:
    events, _ = builtin_run
    show = load_config(BUILTIN_CONFIG).show_user_details
    detail_keys = {"userId", "firstName", "lastName", "gender", "registration", "tag"}
    for topic in ("page_view_events", "listen_events", "status_change_events"):
        for ev in events[topic]:
            present = detail_keys & ev.keys()
            assert present == (detail_keys if show[ev["auth"]] else set()), ev
    for ev in events["auth_events"]:
        assert "auth" not in ev and "page" not in ev
        assert ("userId" in ev) == ev["success"]


def test_topic_routing(builtin_run: Any) -> None:
    events, _ = builtin_run
    pv = events["page_view_events"]
    key = lambda e: (e["sessionId"], e["itemInSession"])  # noqa: E731
    by_key = {key(e): e for e in pv}
    assert len(by_key) == len(pv), "(sessionId, itemInSession) identifies an event"
    songs = [e for e in pv if e["page"] == "NextSong"]
    assert sorted(map(key, songs)) == sorted(map(key, events["listen_events"]))
    for li in events["listen_events"]:
        p = by_key[key(li)]
        assert (li["ts"], li["artist"], li["song"], li["duration"]) == (
            p["ts"],
            p["artist"],
            p["song"],
            p["duration"],
        )
    changes = [e for e in pv if e["page"] in STATUS_CHANGE_PAGES]
    assert sorted(map(key, changes)) == sorted(map(key, events["status_change_events"]))
    for sc in events["status_change_events"]:
        assert sc["page"] == by_key[key(sc)]["page"]
        assert sc["level"] == (
            "free"
            if sc["page"] == "Submit Upgrade"
            else "paid"
            if sc["page"] == "Submit Downgrade"
            else sc["level"]
        )
    # auth events: exactly the pages right after a Login page (no spurious ones, §9.10)
    after_login = [
        e
        for e in pv
        if by_key.get((e["sessionId"], e["itemInSession"] - 1), {}).get("page") == "Login"
    ]
    assert sorted(map(key, after_login)) == sorted(map(key, events["auth_events"]))
    for au in events["auth_events"]:
        assert au["success"] == (by_key[key(au)]["auth"] == "Logged In")


def test_timing_rules(builtin_run: Any) -> None:
    events, _ = builtin_run
    cfg = load_config(BUILTIN_CONFIG)
    redirect_pages = {s.page for s in cfg.states if s.is_redirect}
    sessions: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for e in events["page_view_events"]:
        sessions[e["sessionId"]].append(e)
    checked = 0
    for evs in sessions.values():
        evs.sort(key=lambda e: e["itemInSession"])
        for a, b in pairwise(evs):
            assert b["itemInSession"] == a["itemInSession"] + 1
            if b["page"] in redirect_pages:
                assert b["ts"] - a["ts"] == 1000
                checked += 1
            if a["page"] == b["page"] == "NextSong":
                assert b["ts"] - a["ts"] == int(a["duration"]) * 1000
    assert checked > 50


def test_window_is_exact_and_ordered(builtin_run: Any) -> None:
    events, summary = builtin_run
    lo = to_epoch(parse_time(START)) * 1000
    hi = lo + 3 * 86400 * 1000
    for evs in events.values():
        ts = [e["ts"] for e in evs]
        assert ts == sorted(ts)
        assert all(lo <= t < hi for t in ts)
    assert summary.start == datetime(2024, 3, 18, tzinfo=UTC)


def test_user_ids_registration_and_tag(builtin_run: Any) -> None:
    events, summary = builtin_run
    ids = set()
    for e in events["page_view_events"]:
        if "userId" in e:
            ids.add(e["userId"])
            assert e["registration"] <= e["ts"], "no events before registration (§9.6)"
            assert e["tag"] == "ctl"
    assert min(ids) >= 1000 and max(ids) < 1000 + summary.users
    assert max(ids) >= 1700, "growth users are identified after registering"


def test_session_gap_is_a_true_minimum(builtin_run: Any) -> None:
    events, _ = builtin_run
    gap_ms = load_config(BUILTIN_CONFIG).session_gap * 1000
    per_user: dict[int, dict[int, list[int]]] = defaultdict(lambda: defaultdict(list))
    for e in events["page_view_events"]:
        if "userId" in e:
            per_user[e["userId"]][e["sessionId"]].append(e["ts"])
    gaps = 0
    for sessions in per_user.values():
        spans = sorted((min(v), max(v)) for v in sessions.values())
        for (_, end), (start, _) in pairwise(spans):
            assert start - end >= gap_ms
            gaps += 1
    assert gaps > 20


def _run_bytes(tmp: Path, run_generator: Runner, **kw: Any) -> dict[str, bytes]:
    out, _ = run_generator(tmp, config=BUILTIN_CONFIG, n_users=1200, start=START, days=1, **kw)
    return {t: (out / f"{t}.jsonl").read_bytes() for t in TOPICS}


@pytest.mark.medium  # four generator runs: seconds
def test_same_seed_same_bytes_whatever_the_workers(tmp_path: Path, run_generator: Runner) -> None:
    one = _run_bytes(tmp_path / "a", run_generator, seed=5, workers=1)
    two = _run_bytes(tmp_path / "b", run_generator, seed=5, workers=2)
    three = _run_bytes(tmp_path / "c", run_generator, seed=5, workers=3)
    assert one == two == three
    other = _run_bytes(tmp_path / "d", run_generator, seed=6, workers=2)
    assert other["page_view_events"] != one["page_view_events"]


def test_command_line_overrides_config(tmp_path: Path, example_config: Path) -> None:
    raw = orjson.loads(example_config.read_bytes())
    raw.update(
        {
            "n-users": 5,
            "first-user-id": 77,
            "growth-rate": 1.0,
            "tag": "cfg",
            "start-date": "2023-01-02T00:00:00",
            "end-date": "2023-01-03T00:00:00",
        }
    )
    path = tmp_path / "c.json"
    path.write_bytes(orjson.dumps(raw))
    from_config = plan_run(GenerateOptions(config=path))
    assert (from_config.spec.n_users, from_config.spec.first_user_id) == (5, 77)
    assert from_config.spec.tag == "cfg" and from_config.spec.growth_rate == 1.0
    assert from_config.start == to_epoch(datetime(2023, 1, 2, tzinfo=UTC))
    assert from_config.end - from_config.start == 86400
    cli = plan_run(
        GenerateOptions(
            config=path,
            n_users=50,
            first_user_id=1,
            growth_rate=0.0,
            tag="cli",
            start=parse_time("2023-02-01T00:00:00"),
            days=2,
        )
    )
    assert (cli.spec.n_users, cli.spec.first_user_id, cli.spec.growth_rate) == (50, 1, 0.0)
    assert cli.spec.tag == "cli" and cli.end - cli.start == 2 * 86400


def _count_sessions_per_user(lines: list[bytes]) -> float:
    sessions: dict[int, set[int]] = defaultdict(set)
    for line in lines:
        e = orjson.loads(line)
        if "userId" in e:
            sessions[e["userId"]].add(e["sessionId"])
    return sum(len(s) for s in sessions.values()) / max(1, len(sessions))


@pytest.mark.medium  # a simulation long enough for a rate: seconds
def test_attrition_is_a_rate(example_config: Path) -> None:
    """eventsim's --attrition-rate > 0 removed every user after one session (§9.2)."""

    def sessions(rate: float) -> float:
        plan = plan_run(
            GenerateOptions(
                config=example_config,
                n_users=400,
                start=parse_time(START),
                days=14,
                seed=3,
                attrition_rate=rate,
                workers=1,
            )
        )
        sink = MemorySink()
        run(plan, sink)
        return _count_sessions_per_user(sink.lines["page_view_events"])

    base, mild, harsh = sessions(0.0), sessions(1.0), sessions(200.0)
    assert base > 3
    assert mild > 0.9 * base  # a 100 %/year attrition barely shows in two weeks
    assert harsh < 0.6 * base  # mean stay of ~2.6 weeks/100 cuts sessions substantially


def test_cancellations_are_status_changes_and_final(
    tmp_path: Path, example_config: Path, run_generator: Runner
) -> None:
    raw = orjson.loads(example_config.read_bytes())
    raw = copy.deepcopy(raw)
    for t in raw["transitions"]:  # make cancelling common
        if t["source"]["page"] == "NextSong" and t["dest"]["page"] == "Settings":
            t["p"] = 0.05 if t["source"]["level"] == "free" else 0.02
        if (t["source"]["page"], t["dest"]["page"], t["source"]["level"]) == (
            "NextSong",
            "NextSong",
            "paid",
        ):
            t["p"] -= 0.02
        if t["source"]["page"] == "Settings" and t["dest"]["page"] == "Cancel":
            t["p"] = 0.2
        if t["source"]["page"] == "Settings" and t["dest"]["page"] == "Save Settings":
            t["p"] = 0.005
    path = tmp_path / "cancel.json"
    path.write_bytes(orjson.dumps(raw))
    out, _ = run_generator(tmp_path / "out", config=path, n_users=300, start=START, days=7, seed=2)
    changes = read_jsonl(out / "status_change_events.jsonl")
    cancels = [c for c in changes if c["page"] == "Cancel"]
    assert len(cancels) > 10
    cancelled = {c["userId"] for c in cancels}
    last_page: dict[int, str] = {}
    for e in read_jsonl(out / "page_view_events.jsonl"):
        if "userId" in e:
            if e["userId"] in cancelled and last_page.get(e["userId"]) == (
                "Cancellation Confirmation"
            ):
                pytest.fail(f"user {e['userId']} came back after cancelling")
            last_page[e["userId"]] = e["page"]
    assert all(last_page[u] == "Cancellation Confirmation" for u in cancelled if u in last_page)


def _identities(**opts: Any) -> set[tuple[int, int]]:
    plan = plan_run(
        GenerateOptions(
            config=BUILTIN_CONFIG, n_users=60, start=parse_time(START), days=1, workers=1, **opts
        )
    )
    sink = MemorySink()
    run(plan, sink)
    keys = set()
    for line in sink.lines["page_view_events"]:
        e = orjson.loads(line)
        keys.add((e["sessionId"], e["itemInSession"]))
    assert keys
    return keys


def test_event_identity_is_unique_across_runs_and_stable_within_one() -> None:
    """eventsim numbers sessions from 1 in every run: two runs over the same hours
    collided. Runs that differ in seed, first user id or start share no event identity;
    the same run regenerated has exactly the same identities."""
    base = _identities(seed=1, first_user_id=1)
    assert _identities(seed=1, first_user_id=1) == base
    for other in (
        _identities(seed=2, first_user_id=1),
        _identities(seed=1, first_user_id=1000),
        _identities(seed=1, first_user_id=1, tag="other"),
    ):
        assert not other & base
    sessions = {s for s, _ in base}
    assert min(sessions) > 2**40 and max(sessions) < 2**63, "a positive int64 above any counter"
