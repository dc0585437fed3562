"""The demo's wall time and how long an event takes to start the flow run it triggers.

Runs ``driftline demo --json`` (the default story: 24 batches x 5,000 rows) and ``driftline demo --fast
--json`` (10 x 2,000) on the local stack, as ``make demo`` does (the stack is brought up if it is down,
and left up), each under a fresh model name. From each summary:

* ``demo_seconds`` / ``demo_fast_seconds``: the demo's own wall time, stack start included; the baseline is
  the work inside the flow runs (the summed run time of their task runs, ``timings.total.tasks``), so the
  ratio says how many seconds of wall time each second of work costs. Targets: <= 400 s and <= 150 s.
* ``event_to_run_start_seconds``: median seconds from an event to the code of the flow run it triggered
  starting (automation, worker pick-up, process start, imports), over every triggered run of the default
  story; the baseline is the median of the run's work (``tasks``) for scale.

A demo that reaches no promotion is reported (``promoted: false`` in the notes), never a crash of the
benchmark: on a busy machine the figures move, the run still ends.

    .venv/bin/python -m benchmarks demo
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
TIMEOUT_S = 1800


def _run_demo(*args: str) -> tuple[dict[str, Any] | None, float, str]:
    """The demo's JSON summary (None if it failed), its wall seconds and the tail of its stderr."""
    command = [str(REPO / ".venv" / "bin" / "driftline"), "demo", "--json", *args]
    started = time.perf_counter()
    print(f"   {' '.join(command[1:])} ...", flush=True)
    try:
        done = subprocess.run(
            command, cwd=REPO, capture_output=True, text=True, timeout=TIMEOUT_S, env=dict(os.environ), check=False
        )
    except subprocess.TimeoutExpired:
        return None, time.perf_counter() - started, f"timed out after {TIMEOUT_S} s"
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        return None, seconds, done.stderr[-2000:]
    try:
        return json.loads(done.stdout), seconds, done.stderr[-2000:]
    except json.JSONDecodeError:
        return None, seconds, f"no JSON summary: {done.stdout[-500:]}"


def _tasks_median(timings: dict[str, Any]) -> float | None:
    values = [flow["median"]["tasks"] for flow in timings.get("flows", []) if flow["median"].get("tasks") is not None]
    return statistics.median(values) if values else None


def _entry(name: str, summary: dict[str, Any] | None, seconds: float, stderr: str, story: str) -> dict[str, dict]:
    if summary is None:
        print(f"   {story} demo failed: {stderr[-600:]}", file=sys.stderr)
        return {
            name: {
                "value": round(seconds, 1),
                "unit": "s",
                "baseline": None,
                "ratio": None,
                "notes": f"{story} demo FAILED after {seconds:.0f} s: {stderr[-300:]}",
            }
        }
    timings = summary.get("timings") or {}
    work = (timings.get("total") or {}).get("tasks")
    share = timings.get("share") or {}
    split = ", ".join(f"{stage} {100 * value:.0f}%" for stage, value in share.items())
    return {
        name: {
            "value": summary["seconds"],
            "unit": "s",
            "baseline": round(work, 1) if work else None,
            "ratio": round(summary["seconds"] / work, 2) if work else None,
            "notes": (
                f"driftline demo {story}: {summary['batches']} batches x {summary['rows_per_batch']:,} rows, "
                f"promoted: {summary['promoted']}, {timings.get('runs', '?')} flow runs; run time split {split}; "
                f"baseline = the flow runs' task work summed (s); ratio = wall / work"
            ),
        }
    }


def main() -> dict[str, dict]:
    entries: dict[str, dict] = {}
    fast, fast_seconds, fast_err = _run_demo("--fast")
    entries.update(_entry("demo_fast_seconds", fast, fast_seconds, fast_err, "--fast"))
    full, full_seconds, full_err = _run_demo()
    entries.update(_entry("demo_seconds", full, full_seconds, full_err, "default"))
    timings = (full or fast or {}).get("timings") or {}
    latency = timings.get("event_to_run_start_median_seconds")
    work = _tasks_median(timings)
    entries["event_to_run_start_seconds"] = {
        "value": round(latency, 2) if latency is not None else None,
        "unit": "s",
        "baseline": round(work, 2) if work is not None else None,
        "ratio": round(latency / work, 2) if latency is not None and work else None,
        "notes": (
            f"median seconds from an event to the triggered flow run's code starting, over "
            f"{timings.get('event_to_run_start_n', 0)} runs of the {'default' if full else '--fast'} demo; "
            "baseline = median of the per-flow median task work (s)"
        ),
    }
    for summary in (fast, full):
        if summary and summary.get("timings"):
            from driftline.cli.demo import timing_table

            print(timing_table(summary["timings"]))
    return entries
