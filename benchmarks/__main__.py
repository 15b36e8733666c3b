"""`make bench`: run every benchmark and print its figures."""

from __future__ import annotations

import sys
from collections.abc import Callable

from benchmarks import (
    bench_broker_store,
    bench_dashboard,
    bench_generator,
    bench_install,
    bench_kafka_source,
    bench_live,
    bench_scale,
    bench_soak,
    bench_stack,
    bench_stream,
    bench_tests,
    bench_warehouse,
)

BENCHMARKS: dict[str, Callable[[list[str] | None], object]] = {
    "generator": bench_generator.main,
    "kafka_source": bench_kafka_source.main,
    "broker_store": bench_broker_store.main,
    "stream": bench_stream.main,
    "dashboard": bench_dashboard.main,
    "warehouse": bench_warehouse.main,
    "stack": bench_stack.main,
    "live": bench_live.main,
    "install": bench_install.main,
    # last: about half an hour
    "scale": bench_scale.main,
    # only when named: hours
    "soak": bench_soak.main,
    # only when named: the test suite, twice or more (~25 minutes a repeat)
    "tests": bench_tests.main,
}
#: Run only when named: ``python -m benchmarks soak``.
OPT_IN = {"soak", "tests"}


def main() -> None:
    """``python -m benchmarks [NAME ...]``; one NAME may be followed by its options:
    ``python -m benchmarks scale --users 100000``."""
    args = sys.argv[1:]
    first = next((i for i, a in enumerate(args) if a.startswith("-")), len(args))
    chosen, options = args[:first] or [n for n in BENCHMARKS if n not in OPT_IN], args[first:]
    if options and len(chosen) != 1:
        sys.exit("options go to one benchmark: python -m benchmarks NAME [OPTIONS]")
    for name in chosen:
        if name not in BENCHMARKS:
            sys.exit(f"unknown benchmark {name!r} (known: {', '.join(BENCHMARKS)})")
        BENCHMARKS[name](options)
        print()
    print("results saved under benchmarks/results/")


if __name__ == "__main__":
    main()
