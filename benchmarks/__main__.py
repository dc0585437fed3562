"""Run benchmarks; print each figure with its baseline (measured in the same run) and save them.

    make bench            # or: .venv/bin/python -m benchmarks [name ...]

Every benchmark's ``main()`` returns ``{name: {"value", "unit", "baseline", "ratio", "notes"}}``. The
entries of the benchmarks run are merged into ``benchmarks/results.json``; entries of benchmarks not run
this time are kept.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks import (
    bench_dask,
    bench_demo,
    bench_drift,
    bench_evidently,
    bench_profiling,
    bench_retrain,
    bench_scoring,
    bench_store,
)

BENCHMARKS: dict[str, Callable[[], dict[str, dict]]] = {
    "profiling": bench_profiling.main,
    "drift": bench_drift.main,
    "store": bench_store.main,
    "retrain": bench_retrain.main,
    "scoring": bench_scoring.main,
    # 10M rows on a 2-worker LocalCluster vs the single-process path (several minutes).
    "dask": bench_dask.main,
    # driftline's drift check vs Evidently's DataDriftPreset on 1M x 20 (needs .venv-peers, `make peers`; minutes).
    "evidently": bench_evidently.main,
    # `driftline demo --fast` then the default demo on the local stack, timed with the flow runs' breakdown.
    "demo": bench_demo.main,
}
RESULTS = Path(__file__).resolve().parent / "results.json"


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.3g}" if abs(value) < 10 else f"{value:.1f}"


def format_table(entries: dict[str, dict]) -> str:
    """A fixed-width table of result entries: name, value, unit, baseline, ratio."""
    header = ("figure", "value", "unit", "baseline", "ratio")
    rows = [
        (name, _number(e["value"]), e["unit"], _number(e.get("baseline")), _number(e.get("ratio")))
        for name, e in entries.items()
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = []
    for row in [header, *rows]:
        cells = [row[0].ljust(widths[0]), row[1].rjust(widths[1]), row[2].ljust(widths[2])]
        cells += [row[3].rjust(widths[3]), row[4].rjust(widths[4])]
        lines.append("  ".join(cells))
    return "\n".join(lines)


def save(entries: dict[str, dict], path: Path = RESULTS) -> dict[str, dict]:
    """Merge ``entries`` into the results file (keeping other figures); returns the merged content."""
    merged = json.loads(path.read_text()) if path.exists() else {}
    merged.update(entries)
    path.write_text(json.dumps(merged, indent=2, sort_keys=True) + "\n")
    return merged


def main(argv: list[str]) -> int:
    selected = argv or list(BENCHMARKS)
    unknown = [name for name in selected if name not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark(s) {unknown}; choose from {sorted(BENCHMARKS)}", file=sys.stderr)
        return 2
    os.environ.setdefault("WHYLOGS_NO_ANALYTICS", "1")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    entries: dict[str, dict] = {}
    for name in selected:
        print(f"== {name}", flush=True)
        started = time.perf_counter()
        entries.update(BENCHMARKS[name]())
        print(f"   ({time.perf_counter() - started:.0f} s)", flush=True)
    save(entries)
    print(f"\n{format_table(entries)}\n")
    for name, entry in entries.items():
        if entry.get("notes"):
            print(f"{name}: {entry['notes']}")
    print(f"\nsaved to {RESULTS.relative_to(Path.cwd()) if RESULTS.is_relative_to(Path.cwd()) else RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
