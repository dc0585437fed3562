"""Drift check time on two 50-column profiles against whylogs' own ``calculate_drift_scores``.

Two profiles of 100k rows x 50 columns (40 float, 10 string with 5-200 categories; the current one
with 4 shifted float columns and 2 re-weighted string columns) are built once with
``profile_frame``. Timed: ``driftline.drift.compare_profiles(reference, current)`` (every statistic,
noise floors, verdicts and reasons), median of ``RUNS`` after a warm-up. Baseline: whylogs 1.6.4's
``calculate_drift_scores(target_view, reference_view, with_thresholds=True)`` (KS p-value for numbers,
chi-square for frequent items, each with its default NO_DRIFT/POSSIBLE_DRIFT/DRIFT p-value bands) on
the same two views, median of ``RUNS``. Ratio = ours / baseline (lower is faster).

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
    from driftline.whylogs_compat import whylogs

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


def _timed_ms(fn: Callable[[], Any], runs: int) -> tuple[float, float, Any]:
    """Median and minimum milliseconds of ``runs`` calls after a warm-up, and the last result."""
    result = fn()
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        result = fn()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples) * 1e3, min(samples) * 1e3, result


def main() -> dict[str, dict]:
    """The drift check time as a result entry."""
    from driftline.drift import compare_profiles
    from driftline.profiling import profile_frame

    calculate_drift_scores = whylogs_calculate_drift_scores()
    reference = profile_frame(mixed_frame(ROWS, numeric=NUMERIC, category_counts=CATEGORY_COUNTS, seed=SEED))
    current = profile_frame(
        mixed_frame(
            ROWS, numeric=NUMERIC, category_counts=CATEGORY_COUNTS, seed=SEED + 1, shifted=SHIFTED, tilted=TILTED
        )
    )
    columns = len(reference.get_columns())

    ours_ms, ours_min_ms, report = _timed_ms(lambda: compare_profiles(reference, current), RUNS)
    baseline_ms, baseline_min_ms, scores = _timed_ms(
        lambda: calculate_drift_scores(target_view=current, reference_view=reference, with_thresholds=True), RUNS
    )

    planted = {f"num_{i:02d}" for i in SHIFTED} | {f"cat_{i}" for i in TILTED}
    flagged = sorted(name for name, score in scores.items() if score and score.get("drift_category") == "DRIFT")
    print(
        f"compare_profiles {columns} columns x {ROWS:,} rows: median {ours_ms:.1f} ms (min {ours_min_ms:.1f}) of "
        f"{RUNS}; calculate_drift_scores: median {baseline_ms:.1f} ms (min {baseline_min_ms:.1f})"
    )
    ours_flagged = report.drifted_features
    print(
        f"  drifted, {len(planted)} planted: driftline {len(ours_flagged)} "
        f"({len(set(ours_flagged) - planted)} not planted); whylogs DRIFT {len(flagged)} "
        f"({len(set(flagged) - planted)} not planted: {sorted(set(flagged) - planted)})"
    )
    return {
        "drift_check_ms_50_columns": {
            "value": ours_ms,
            "unit": "ms",
            "baseline": baseline_ms,
            "ratio": ours_ms / baseline_ms,
            "notes": (
                f"compare_profiles on two {columns}-column profiles ({NUMERIC} float + {len(CATEGORY_COUNTS)} "
                f"string, {ROWS:,} rows each), median of {RUNS} (min {ours_min_ms:.1f}); baseline whylogs "
                "calculate_drift_scores(with_thresholds=True) on the same views; ratio = ours / baseline, lower "
                "is faster; target < 50 ms"
            ),
        }
    }


if __name__ == "__main__":
    import json

    print(json.dumps(main(), indent=2))
