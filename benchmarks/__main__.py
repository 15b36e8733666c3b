"""`make bench`: run every benchmark and print its figures."""

from __future__ import annotations

import sys

from benchmarks import (
    bench_dashboard,
    bench_generator,
    bench_install,
    bench_kafka_source,
    bench_live,
    bench_stack,
    bench_stream,
    bench_warehouse,
)

BENCHMARKS = {
    "generator": bench_generator.main,
    "kafka_source": bench_kafka_source.main,
    "stream": bench_stream.main,
    "dashboard": bench_dashboard.main,
    "warehouse": bench_warehouse.main,
    "stack": bench_stack.main,
    "live": bench_live.main,
    "install": bench_install.main,
}


def main() -> None:
    chosen = sys.argv[1:] or list(BENCHMARKS)
    for name in chosen:
        if name not in BENCHMARKS:
            sys.exit(f"unknown benchmark {name!r} (known: {', '.join(BENCHMARKS)})")
        BENCHMARKS[name]([])
        print()
    print("results saved under benchmarks/results/")


if __name__ == "__main__":
    main()
