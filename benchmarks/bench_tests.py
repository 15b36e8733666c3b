"""Test-suite benchmark (issue: `make test` <= 12 minutes on a fresh checkout, 2 cores).

In a copy of the tracked tree (as a fresh clone: no venvs, ../shared absent, the uv cache
the machine has):

- *end to end*: `make install`, then `make test` (lint, types, the suite on
  `TEST_WORKERS` workers): what a newcomer's `make test` takes (target <= 12 minutes);
- *workers* and *serial*, alternating `--repeats` times in the same run: `make test`
  with the suite on two workers and in one process (`TEST_WORKERS=0`), their medians and
  the ratio.

Opt-in (`python -m benchmarks tests`): one repeat is about 25 minutes on 2 cores.
`--pytest-args "-m fast"` measures the fast subset instead (a couple of minutes).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.common import checkout, median, save, timed

TARGET_S = 12 * 60


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=1, help="alternating pairs after the first")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--pytest-args", default="", help='passed on, e.g. "-m fast"')
    ap.add_argument("--no-baseline", action="store_true", help="skip the serial runs")
    args = ap.parse_args(argv)

    def make_test(workers: int) -> list[str]:
        return ["make", "test", f"TEST_WORKERS={workers}", f"PYTEST_ARGS={args.pytest_args}"]

    with tempfile.TemporaryDirectory(prefix="musify-tests-") as tmp:
        tree = checkout(Path(tmp) / "musify")
        install = timed(["make", "install"], tree, {})
        first = timed(make_test(args.workers), tree, {})
        end_to_end = install + first
        verdict = "met" if end_to_end <= TARGET_S else "missed"
        print(
            f"make test end to end: {end_to_end:.1f} s (install {install:.1f} s, test "
            f"{first:.1f} s; target {TARGET_S} s: {verdict})",
            flush=True,
        )
        workers: list[float] = []
        serial: list[float] = []
        for _ in range(0 if args.no_baseline else args.repeats):
            workers.append(timed(make_test(args.workers), tree, {}))
            serial.append(timed(make_test(0), tree, {}))
        result: dict[str, Any] = {
            "pytest_args": args.pytest_args,
            "install_s": install,
            "first_test_s": first,
            "end_to_end_s": end_to_end,
            "workers": args.workers,
            "workers_s": workers,
            "serial_s": serial,
        }
        if workers:
            ratio = median(workers) / median(serial)
            result["ratio"] = ratio
            print(
                f"make test on {args.workers} workers {median(workers):.1f} s, in one process "
                f"{median(serial):.1f} s (median of {len(workers)}): x{ratio:.2f}",
                flush=True,
            )
    print(f"saved {save('tests', result)}")
    return result


if __name__ == "__main__":
    main()
