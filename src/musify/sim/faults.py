"""Fault injection: the bad days a pipeline must survive, on purpose and on record.

``--faults`` perturbs the event stream at configurable rates (per event, per topic):

- ``duplicate``: the event is delivered twice (an at-least-once producer retrying);
- ``late``: the event is held back and delivered 1-4 hours of simulated time later,
  behind newer events (a phone coming back online);
- ``reorder``: a burst of 2-20 consecutive events of the topic is delivered in reverse;
- ``malformed``: an extra, broken message is inserted: not JSON, not UTF-8, a wrong
  type, or a missing required field.

Every injected fault is written to a JSON-lines manifest, so a test can check that the
pipeline de-duplicated, placed or quarantined each one. Events are identified by
(topic, sessionId, itemInSession), which is unique per event. Injection is seeded, so
the same seed gives the same faults.
"""

from __future__ import annotations

import base64
import random
from dataclasses import dataclass, fields
from pathlib import Path
from typing import IO, Any

import orjson

from musify.errors import UsageError
from musify.sim.engine import ENGINE_TOPICS

_KINDS = ("duplicate", "late", "reorder", "malformed")
_MALFORMED = ("not_json", "not_utf8", "wrong_type", "missing_field")
DEFAULT_RATE = 0.001
#: One topic's events of a chunk: (event times, keys, lines), parallel lists.
Batch = tuple[list[int], list[int], list[bytes]]


@dataclass(frozen=True)
class FaultRates:
    duplicate: float = 0.0
    late: float = 0.0
    reorder: float = 0.0
    malformed: float = 0.0

    def any(self) -> bool:
        return any(getattr(self, k) > 0 for k in _KINDS)

    @classmethod
    def parse(cls, text: str) -> FaultRates:
        """``default`` (every kind at 0.1 %) or ``kind=rate,...``, e.g. ``late=0.01``."""
        text = text.strip()
        if text in ("", "default", "on", "true"):
            return cls(*(DEFAULT_RATE,) * len(_KINDS))
        values: dict[str, float] = {}
        for part in text.split(","):
            name, sep, raw = part.partition("=")
            name = name.strip().replace("-", "_")
            if not sep or name not in _KINDS:
                raise UsageError(
                    f"--faults: {part.strip()!r} is not kind=rate with kind one of "
                    f"{', '.join(_KINDS)}"
                )
            try:
                rate = float(raw)
            except ValueError:
                rate = -1.0
            if not 0.0 <= rate <= 1.0:
                raise UsageError(f"--faults: the rate of {name} must be in [0, 1], got {raw!r}")
            values[name] = rate
        return cls(**values)

    def as_dict(self) -> dict[str, float]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _event_id(line: bytes) -> dict[str, Any]:
    ev = orjson.loads(line)
    return {
        "sessionId": ev.get("sessionId"),
        "itemInSession": ev.get("itemInSession"),
        "ts": ev.get("ts"),
    }


class FaultInjector:
    def __init__(self, rates: FaultRates, seed: int, manifest: Path | None) -> None:
        self.rates = rates
        self.rand = random.Random(f"musify-faults:{seed}").random
        self.counts: dict[str, int] = dict.fromkeys(_KINDS, 0)
        self.held: list[list[tuple[int, int, bytes, int]]] = [[] for _ in ENGINE_TOPICS]
        self._manifest: IO[bytes] | None = None
        if manifest is not None:
            manifest.parent.mkdir(parents=True, exist_ok=True)
            self._manifest = open(manifest, "wb")  # noqa: SIM115 - closed in close()

    def _record(self, kind: str, topic: str, **info: Any) -> None:
        self.counts[kind] += 1
        if self._manifest is not None:
            self._manifest.write(orjson.dumps({"kind": kind, "topic": topic, **info}) + b"\n")

    def _malformed(self, line: bytes) -> tuple[bytes, str]:
        variant = _MALFORMED[int(self.rand() * len(_MALFORMED))]
        body = line.rstrip(b"\n")
        if variant == "not_json":
            bad = body[: max(1, int(len(body) * self.rand()))]
        elif variant == "not_utf8":
            bad = b'{"ts":\xff\xfe' + body[6:]
        elif variant == "wrong_type":
            ev = orjson.loads(body)
            ev["ts"] = "yesterday"
            bad = orjson.dumps(ev)
        else:
            ev = orjson.loads(body)
            ev.pop("sessionId", None)
            bad = orjson.dumps(ev)
        return bad + b"\n", variant

    def apply(self, merged: list[Batch], until: int) -> list[Batch]:
        r = self.rates
        rand = self.rand
        out: list[Batch] = []
        for k, (ts, keys, lines) in enumerate(merged):
            topic = ENGINE_TOPICS[k]
            o_ts: list[int] = []
            o_keys: list[int] = []
            o_lines: list[bytes] = []
            burst: list[tuple[int, int, bytes]] = []
            burst_left = 0
            for t, key, line in zip(ts, keys, lines, strict=True):
                if r.late and rand() < r.late:
                    delay = int(3600 + rand() * 3 * 3600)
                    self.held[k].append((t + delay, key, line, delay))
                    self._record("late", topic, delay_seconds=delay, **_event_id(line))
                    continue
                if r.malformed and rand() < r.malformed:
                    bad, why = self._malformed(line)
                    o_ts.append(t)
                    o_keys.append(key)
                    o_lines.append(bad)
                    self._record("malformed", topic, reason=why, raw=base64.b64encode(bad).decode())
                copies = 2 if r.duplicate and rand() < r.duplicate else 1
                if copies == 2:
                    self._record("duplicate", topic, **_event_id(line))
                if burst_left == 0 and r.reorder and rand() < r.reorder:
                    burst_left = 2 + int(rand() * 19)
                    burst = []
                if burst_left:
                    burst.extend([(t, key, line)] * copies)
                    burst_left -= 1
                    if burst_left == 0:
                        self._flush_burst(topic, burst, o_ts, o_keys, o_lines)
                    continue
                for _ in range(copies):
                    o_ts.append(t)
                    o_keys.append(key)
                    o_lines.append(line)
            if burst_left:
                self._flush_burst(topic, burst, o_ts, o_keys, o_lines)
            # Release held events whose delay has passed, behind everything newer.
            still = []
            for item in self.held[k]:
                if item[0] < until:
                    o_ts.append(item[0])
                    o_keys.append(item[1])
                    o_lines.append(item[2])
                else:
                    still.append(item)
            self.held[k] = still
            out.append((o_ts, o_keys, o_lines))
        return out

    def _flush_burst(
        self,
        topic: str,
        burst: list[tuple[int, int, bytes]],
        o_ts: list[int],
        o_keys: list[int],
        o_lines: list[bytes],
    ) -> None:
        if len(burst) > 1:
            self._record("reorder", topic, events=[_event_id(b[2]) for b in burst])
        for t, key, line in reversed(burst):
            o_ts.append(t)
            o_keys.append(key)
            o_lines.append(line)

    def drain(self) -> list[tuple[list[int], list[bytes]]]:
        """Everything still held back, delivered at the end of the run."""
        out = [([i[1] for i in held], [i[2] for i in held]) for held in self.held]
        self.held = [[] for _ in ENGINE_TOPICS]
        return out

    def close(self) -> None:
        if self._manifest is not None:
            self._manifest.close()
            self._manifest = None
