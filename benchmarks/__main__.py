"""Run every benchmark; each prints its measurements and the ratio against a baseline measured in the same run.

    make bench            # or: .venv/bin/python -m benchmarks [name ...]
"""

from __future__ import annotations

import sys

from benchmarks import bench_store

BENCHMARKS = {"store": bench_store.main}


def main(argv: list[str]) -> int:
    selected = argv or list(BENCHMARKS)
    unknown = [name for name in selected if name not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark(s) {unknown}; choose from {sorted(BENCHMARKS)}", file=sys.stderr)
        return 2
    for name in selected:
        print(f"== {name}")
        BENCHMARKS[name]()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
