"""Drift check time on two 50-column profiles against whylogs' own ``calculate_drift_scores``.

Two profiles of 100k rows x 50 columns (40 float, 10 string with 5-200 categories; the current one
with 4 shifted float columns and 2 re-weighted string columns) are built once with ``profile_frame``
and serialised; every timed call gets the current profile parsed afresh (outside the timing), as a
batch's profile is read from the store (one view reused by all three calls made the later calls up to
25% faster: they ran on memory the first had just walked).

Timed, per check, as production does per batch (``monitoring.check_batch_drift``):

* warm (the headline figure): ``ReferenceCache.get(store, key)`` on a ``MemoryStore`` holding the
  reference (a metadata read and a cache hit: the reference was parsed and prepared by an earlier
  check), then ``compare_profiles(prepared, current)``: every statistic, noise floors, verdicts, reasons.
* cold (nothing cached): ``compare_profiles(reference_view, current)``, which prepares the reference
  inside (its sketch queries included); the parse of the reference bytes, which the cache also saves, is
  given separately.

Baseline: whylogs 1.6.4's ``calculate_drift_scores(target_view, reference_view, with_thresholds=True)``
(KS p-value for numbers, chi-square for frequent items, each with its default NO_DRIFT/POSSIBLE_DRIFT/
DRIFT p-value bands) on the same parsed views. Warm, cold and baseline checks are interleaved, ``RUNS``
rounds after a warm-up; medians (and minima) of wall time, CPU time of the thread beside it (less
disturbed by other processes on a busy machine). Ratio = ours / baseline (lower is faster).

``calculate_drift_scores`` lives in ``whylogs.viz.drift.column_drift_algorithms``; importing it runs
``whylogs/viz/__init__.py``, which imports IPython (not installed) and the notebook visualiser. The
benchmark registers an empty ``whylogs.viz`` package (same ``__path__``) in ``sys.modules`` first, so
the real submodules load without that ``__init__``; the drift code itself is whylogs' own, unchanged.

    .venv/bin/python -m benchmarks drift
"""

from __future__ import annotations

import importlib.util
import statistics
import sys
import time
import types
from collections.abc import Callable
from typing import Any

import numpy as np

from benchmarks.data import mixed_frame

ROWS = 100_000
NUMERIC = 40
CATEGORY_COUNTS = tuple(int(n) for n in np.linspace(5, 200, 10))
SHIFTED = (0, 9, 18, 27)
TILTED = (2, 7)
RUNS = 25
SEED = 20261126


def whylogs_calculate_drift_scores() -> Callable[..., dict[str, Any]]:
    """whylogs' ``calculate_drift_scores`` without running ``whylogs/viz/__init__.py`` (needs IPython)."""
    from driftline.data.whylogs_compat import whylogs

    whylogs()
    if "whylogs.viz" not in sys.modules:
        spec = importlib.util.find_spec("whylogs.viz")
        if spec is None or spec.submodule_search_locations is None:
            raise ImportError("whylogs.viz not found")
        package = types.ModuleType("whylogs.viz")
        package.__path__ = list(spec.submodule_search_locations)
        package.__package__ = "whylogs.viz"
        sys.modules["whylogs.viz"] = package
    from whylogs.viz.drift.column_drift_algorithms import calculate_drift_scores

    return calculate_drift_scores


def _interleaved(fns: dict[str, Callable[[Any], Any]], fresh: Callable[[], Any], rounds: int) -> dict[str, dict]:
    """Each function once per round, in turn, each call on its own ``fresh()`` input made outside the
    timing (a warm-up round first): median and minimum wall ms, median CPU ms of this thread."""
    for fn in fns.values():
        fn(fresh())
    wall: dict[str, list[float]] = {name: [] for name in fns}
    cpu: dict[str, list[float]] = {name: [] for name in fns}
    results: dict[str, Any] = {}
    for _ in range(rounds):
        for name, fn in fns.items():
            item = fresh()
            started, started_cpu = time.perf_counter(), time.thread_time()
            results[name] = fn(item)
            cpu[name].append(time.thread_time() - started_cpu)
            wall[name].append(time.perf_counter() - started)
    return {
        name: {
            "median": statistics.median(wall[name]) * 1e3,
            "min": min(wall[name]) * 1e3,
            "cpu": statistics.median(cpu[name]) * 1e3,
            "result": results[name],
        }
        for name in fns
    }


def main() -> dict[str, dict]:
    """The drift check time, warm (reference cached) and cold, as result entries."""
    from driftline.data.profiling import deserialize, profile_frame, serialize
    from driftline.data.references import ReferenceCache
    from driftline.statistics.drift import compare_profiles
    from driftline.storage.store import MemoryStore

    calculate_drift_scores = whylogs_calculate_drift_scores()
    reference = profile_frame(mixed_frame(ROWS, numeric=NUMERIC, category_counts=CATEGORY_COUNTS, seed=SEED))
    current_bytes = serialize(
        profile_frame(
            mixed_frame(
                ROWS, numeric=NUMERIC, category_counts=CATEGORY_COUNTS, seed=SEED + 1, shifted=SHIFTED, tilted=TILTED
            )
        )
    )
    columns = len(reference.get_columns())
    store, cache, key = MemoryStore(), ReferenceCache(), "profiles/bench/reference/v1.bin"
    store.put(key, serialize(reference))
    reference_view = deserialize(store.get(key))
    cache.get(store, key)  # the first batch's miss (parse + prepare); the cold figure times that path

    timings = _interleaved(
        {
            "warm": lambda current: compare_profiles(cache.get(store, key), current),
            "cold": lambda current: compare_profiles(reference_view, current),
            "whylogs": lambda current: calculate_drift_scores(
                target_view=current, reference_view=reference_view, with_thresholds=True
            ),
        },
        lambda: deserialize(current_bytes),
        RUNS,
    )
    parse_ms = statistics.median(_parse_ms(store.get(key), deserialize) for _ in range(5))
    warm, cold, baseline = timings["warm"], timings["cold"], timings["whylogs"]
    report, scores = warm["result"], baseline["result"]
    if report.to_dict() != cold["result"].to_dict():
        print("  WARNING: the warm and the cold report differ")

    planted = {f"num_{i:02d}" for i in SHIFTED} | {f"cat_{i}" for i in TILTED}
    flagged = sorted(name for name, score in scores.items() if score and score.get("drift_category") == "DRIFT")
    print(
        f"compare_profiles {columns} columns x {ROWS:,} rows, median of {RUNS} interleaved: warm {warm['median']:.1f} "
        f"ms (min {warm['min']:.1f}, cpu {warm['cpu']:.1f}); cold {cold['median']:.1f} ms (min {cold['min']:.1f}, "
        f"cpu {cold['cpu']:.1f}); calculate_drift_scores {baseline['median']:.1f} ms (min {baseline['min']:.1f}, "
        f"cpu {baseline['cpu']:.1f}); reference parse {parse_ms:.1f} ms"
    )
    ours_flagged = report.drifted_features
    print(
        f"  drifted, {len(planted)} planted: driftline {len(ours_flagged)} "
        f"({len(set(ours_flagged) - planted)} not planted); whylogs DRIFT {len(flagged)} "
        f"({len(set(flagged) - planted)} not planted: {sorted(set(flagged) - planted)})"
    )
    shape = f"two {columns}-column profiles ({NUMERIC} float + {len(CATEGORY_COUNTS)} string, {ROWS:,} rows each)"
    interleaving = (
        f"warm, cold and baseline interleaved, median of {RUNS}; baseline whylogs "
        "calculate_drift_scores(with_thresholds=True) on the same parsed views "
        f"(median {baseline['median']:.1f}, min {baseline['min']:.1f}, cpu {baseline['cpu']:.1f} ms)"
    )
    return {
        "drift_check_ms_50_columns": {
            "value": warm["median"],
            "unit": "ms",
            "baseline": baseline["median"],
            "ratio": warm["median"] / baseline["median"],
            "notes": (
                f"warm, the per-batch production path: ReferenceCache.get (metadata read + hit, reference parsed and "
                f"prepared once) + compare_profiles(prepared, fresh current view) on {shape}; min {warm['min']:.1f}, "
                f"cpu {warm['cpu']:.1f} ms (cpu ratio {warm['cpu'] / baseline['cpu']:.3f}); {interleaving}; cold path "
                f"(nothing cached) {cold['median']:.1f} ms, see drift_check_cold_ms_50_columns; ratio = ours / "
                "baseline, lower is faster; target < 10 ms and ratio <= 0.05"
            ),
        },
        "drift_check_cold_ms_50_columns": {
            "value": cold["median"],
            "unit": "ms",
            "baseline": baseline["median"],
            "ratio": cold["median"] / baseline["median"],
            "notes": (
                f"cold, nothing cached: compare_profiles(reference view, fresh current view) on {shape}, the "
                f"reference prepared inside; min {cold['min']:.1f}, cpu {cold['cpu']:.1f} ms; parsing the reference "
                f"bytes (not timed here, saved by the cache too) {parse_ms:.1f} ms; {interleaving}; ratio = ours / "
                "baseline, lower is faster"
            ),
        },
    }


def _parse_ms(data: bytes, deserialize: Callable[[bytes], Any]) -> float:
    started = time.perf_counter()
    deserialize(data)
    return (time.perf_counter() - started) * 1e3


if __name__ == "__main__":
    import json

    print(json.dumps(main(), indent=2))
