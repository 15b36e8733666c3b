from __future__ import annotations

import base64
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from musify.errors import UsageError
from musify.events import TOPICS, check_event
from musify.sim.config import BUILTIN_CONFIG
from musify.sim.faults import FaultRates


def test_parse_rates() -> None:
    assert FaultRates.parse("default").any()
    r = FaultRates.parse("duplicate=0.01, late=0.5")
    assert (r.duplicate, r.late, r.reorder, r.malformed) == (0.01, 0.5, 0.0, 0.0)
    with pytest.raises(UsageError, match="kind=rate"):
        FaultRates.parse("dupes=0.1")
    with pytest.raises(UsageError, match=r"must be in \[0, 1\]"):
        FaultRates.parse("late=2")


def test_faults_are_injected_and_recorded(
    tmp_path: Path, run_generator: Callable[..., Any]
) -> None:
    rates = FaultRates(duplicate=0.01, late=0.01, reorder=0.005, malformed=0.01)
    kw = dict(config=BUILTIN_CONFIG, n_users=500, start="2024-03-18T00:00:00", days=2, seed=4)
    clean, clean_summary = run_generator(tmp_path / "clean", **kw)
    out, summary = run_generator(
        tmp_path / "faulty", faults=rates, fault_manifest=tmp_path / "faulty" / "faults.jsonl", **kw
    )
    manifest = [orjson.loads(x) for x in (out / "faults.jsonl").read_bytes().splitlines()]
    kinds = Counter(m["kind"] for m in manifest)
    assert set(kinds) == {"duplicate", "late", "reorder", "malformed"}
    assert dict(kinds) == summary.faults
    for topic in TOPICS:
        lines = (out / f"{topic}.jsonl").read_bytes().splitlines()
        good: Counter[bytes] = Counter()
        bad = []
        for line in lines:
            try:
                ev = orjson.loads(line)
            except orjson.JSONDecodeError:
                bad.append(line)
                continue
            if check_event(TOPICS[topic], ev) is not None:
                bad.append(line)
            else:
                good[line] += 1
        expected_bad = [
            base64.b64decode(m["raw"]).rstrip(b"\n")
            for m in manifest
            if m["kind"] == "malformed" and m["topic"] == topic
        ]
        assert sorted(bad) == sorted(expected_bad)
        dupes = sum(n - 1 for n in good.values())
        assert dupes == sum(1 for m in manifest if m["kind"] == "duplicate" and m["topic"] == topic)
        # nothing lost: the distinct good events are exactly the clean run's events
        clean_lines = (clean / f"{topic}.jsonl").read_bytes().splitlines()
        assert sorted(good) == sorted(clean_lines)
        assert len(good) == clean_summary.events[topic]
