"""Evidently's ``DataDriftPreset`` on two parquet files, in a fresh process of the peer environment.

    .venv-peers/bin/python benchmarks/peers/evidently_drift.py REFERENCE.parquet CURRENT.parquet

Prints one JSON line: wall and CPU seconds of the timed work, the process's memory (see ``MemoryProbe``) and the
columns Evidently flagged. Float columns are declared numerical and string columns categorical, so
Evidently's own type inference plays no part. Timed: building the two ``Dataset``s from the pandas
frames, ``Report([DataDriftPreset()]).run(current, reference)`` and reading the per-column verdicts
from the snapshot. Not timed: the imports and reading the parquet files into pandas.

This file uses the standard library at import time only: the driftline side of the benchmark
(``benchmarks/bench_evidently.py``, in ``.venv``) imports ``MemoryProbe`` from it, so both tools'
memory is measured by the same code.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass

STATUS = "/proc/self/status"
CLEAR_REFS = "/proc/self/clear_refs"


def _status_mb(field: str) -> float:
    """One ``kB`` field of ``/proc/self/status`` (``VmRSS``, ``VmHWM``), in MB."""
    with open(STATUS) as status:
        for line in status:
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in {STATUS} (Linux only)")


def _reset_peak() -> bool:
    """Reset ``VmHWM`` to the current RSS (Linux >= 4.0: write 5 to clear_refs); False if refused."""
    try:
        with open(CLEAR_REFS, "w") as clear_refs:
            clear_refs.write("5")
    except OSError:
        return False
    return True


@dataclass
class MemoryProbe:
    """The process's memory before and during the timed work, all in MB.

    ``loaded()`` is called after the imports and reading the data: it records the RSS then
    (``rss_loaded_mb``, the baseline) and the high-water mark so far (``peak_loaded_mb``, which includes
    any transient memory of reading), then resets the high-water mark to the current RSS. ``done()``
    reads ``VmHWM`` again: the peak during the work alone (``peak_work_mb``). ``work_mb`` = that peak
    minus the baseline, the memory the work added; ``peak_mb`` = the process's peak over its whole life.
    """

    rss_loaded_mb: float = 0.0
    peak_loaded_mb: float = 0.0
    peak_work_mb: float = 0.0
    reset: bool = False

    def loaded(self) -> None:
        self.rss_loaded_mb = _status_mb("VmRSS")
        self.peak_loaded_mb = _status_mb("VmHWM")
        self.reset = _reset_peak()

    def done(self) -> dict[str, float | bool]:
        self.peak_work_mb = _status_mb("VmHWM")
        return {
            "rss_loaded_mb": self.rss_loaded_mb,
            "peak_loaded_mb": self.peak_loaded_mb,
            "peak_work_mb": self.peak_work_mb,
            "peak_mb": max(self.peak_loaded_mb, self.peak_work_mb),
            # Without the reset the peak may be reading's, not the work's: then work_mb is an upper bound.
            "work_mb": self.peak_work_mb - self.rss_loaded_mb,
            "peak_reset": self.reset,
        }


def run(reference_path: str, current_path: str) -> dict[str, object]:
    """Evidently's data drift report of ``current_path`` against ``reference_path``, timed and measured."""
    import pandas as pd
    from evidently import DataDefinition, Dataset, Report
    from evidently import __version__ as evidently_version
    from evidently.presets import DataDriftPreset

    probe = MemoryProbe()
    reference = pd.read_parquet(reference_path)
    current = pd.read_parquet(current_path)
    numerical = [name for name in reference.columns if pd.api.types.is_float_dtype(reference[name])]
    categorical = [name for name in reference.columns if name not in numerical]
    probe.loaded()

    started, cpu_started = time.perf_counter(), time.process_time()
    definition = DataDefinition(numerical_columns=numerical, categorical_columns=categorical)
    # include_tests: the per-column verdicts (a FAIL test per drifted column), Evidently's own decision.
    snapshot = Report([DataDriftPreset()], include_tests=True).run(
        current_data=Dataset.from_pandas(current, data_definition=definition),
        reference_data=Dataset.from_pandas(reference, data_definition=definition),
    )
    results = snapshot.dict()
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    memory = probe.done()

    prefix = "Value Drift for column "
    drifted = sorted(
        test["name"][len(prefix) :]
        for test in results["tests"]
        if test["name"].startswith(prefix) and test["status"] == "FAIL"
    )
    scores = {}
    drifted_count = None
    for metric in results["metrics"]:
        name = metric.get("metric_name", "")
        column = metric.get("config", {}).get("column")
        if name.startswith("DriftedColumnsCount"):
            drifted_count = int(metric["value"]["count"])
        elif name.startswith("ValueDrift") and column is not None:
            scores[column] = {
                "score": metric["value"],
                "method": metric["config"].get("method"),
                "threshold": metric["config"].get("threshold"),
            }
    if drifted_count != len(drifted):
        raise RuntimeError(f"DriftedColumnsCount says {drifted_count} drifted, the column tests {drifted}")
    return {
        "tool": f"evidently {evidently_version}",
        "pandas": pd.__version__,
        "rows": [len(reference), len(current)],
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        **memory,
        "drifted": drifted,
        "scores": scores,
    }


if __name__ == "__main__":
    print(json.dumps(run(sys.argv[1], sys.argv[2])))
