"""Where a flow run's wall time goes, from the timestamps the Prefect server keeps.

An event-driven step pays for more than its work: the automation reacts to the event, the worker picks
the run up, a fresh process starts and imports, and inside the run each task is orchestrated. The demo
and its benchmark split every run into stages from the run's state history, its task runs and the
event that triggered it, so a slow loop shows which of these to cut:

* ``trigger``: the triggering event occurred -> the automation created the run
* ``queue``: created -> Pending (worker poll, a deployment's concurrency slot)
* ``start``: Pending -> Running (process start, imports, pull steps, engine setup)
* ``tasks``: the run's task runs, end to end (the work itself, each task's own orchestration included)
* ``flow``: Running -> end minus ``tasks`` and the run's subflows (flow-level API calls, event emission,
  database waits)

A subflow (score-batch inside profile-batch) is a run of its own here: its work counts once, in its row,
and it has no trigger (nothing but its parent starts it).

Pure: the shell (``driftline.cli.prefect_api.flow_run_timings``) reads the server.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from driftline.events.records import (
    BATCH_ARRIVED,
    DRIFT_DETECTED,
    LABELS_ARRIVED,
    PERFORMANCE_DEGRADED,
    RETRAIN_DUE,
    SHADOW_DECIDED,
)

STAGES = ("trigger", "queue", "start", "tasks", "flow")
STAGE_MEANING = {
    "trigger": "event -> run created (automation)",
    "queue": "created -> picked up (worker poll, concurrency slot)",
    "start": "picked up -> running (process start, imports, engine)",
    "tasks": "task runs (the work)",
    "flow": "rest of the run (API calls, events, database waits)",
}

# Which event starts which deployment (prefect.yaml), and whether the run's batch_id must match the event's.
TRIGGERING_EVENTS: dict[str, tuple[tuple[str, ...], bool]] = {
    "profile-batch": ((BATCH_ARRIVED,), True),
    "shadow-evaluate": ((LABELS_ARRIVED,), True),
    "promote": ((SHADOW_DECIDED,), False),
}
RETRAIN_EVENTS = {"drift": (DRIFT_DETECTED, PERFORMANCE_DEGRADED), "labels": (RETRAIN_DUE,)}


@dataclass(frozen=True)
class RunTiming:
    """One flow run's timestamps (UTC) and its task runs' total run time."""

    flow: str
    created: datetime
    pending: datetime | None
    running: datetime | None
    ended: datetime | None
    task_seconds: float = 0.0
    parameters: Mapping[str, Any] = field(default_factory=dict)
    triggered_at: datetime | None = None  # None: started by hand or by a schedule, or no event matched
    subflow: bool = False  # run inside another run's process (its parent started it, no event)
    subflow_seconds: float = 0.0  # time this run spent in its own subflows (counted in their rows)

    def stages(self) -> dict[str, float | None]:
        """Seconds per stage; None where a timestamp is missing (a run still under way, or not triggered)."""

        def span(start: datetime | None, end: datetime | None) -> float | None:
            return None if start is None or end is None else max(0.0, (end - start).total_seconds())

        body = span(self.running, self.ended)
        if body is not None:
            body = max(0.0, body - self.subflow_seconds)
        tasks = None if body is None else min(self.task_seconds, body)
        return {
            "trigger": span(self.triggered_at, self.created),
            "queue": span(self.created, self.pending),
            "start": span(self.pending, self.running),
            "tasks": tasks,
            "flow": None if body is None or tasks is None else body - tasks,
        }

    @property
    def event_to_start(self) -> float | None:
        """Seconds from the triggering event to the run's flow code starting."""
        if self.triggered_at is None or self.running is None:
            return None
        return max(0.0, (self.running - self.triggered_at).total_seconds())


def with_triggers(runs: Iterable[RunTiming], events: Sequence[Mapping[str, Any]]) -> list[RunTiming]:
    """Each run with the occurrence time of the event that started it (the latest matching one before the
    run was created; a drift retrain names its event id). Runs nothing triggered keep ``triggered_at``
    None."""
    from dataclasses import replace

    parsed = sorted(
        (
            (datetime.fromisoformat(str(e["occurred"])), str(e["event"]), (e.get("payload") or {}))
            for e in events
            if e.get("occurred")
        ),
        key=lambda item: item[0],
    )
    matched = []
    for run in runs:
        if run.subflow:
            matched.append(run)
            continue
        names, by_batch = TRIGGERING_EVENTS.get(run.flow, ((), False))
        event_id = None
        if run.flow == "retrain":
            trigger = str(run.parameters.get("trigger") or "")
            names = RETRAIN_EVENTS.get(trigger, ())
            event_id = run.parameters.get("drift_event_id") or None
        batch_id = run.parameters.get("batch_id") if by_batch else None
        found = None
        for occurred, name, payload in parsed:
            if occurred > run.created:
                break
            if name not in names:
                continue
            if batch_id is not None and payload.get("batch_id") != batch_id:
                continue
            if event_id is not None and payload.get("event_id") != event_id:
                continue
            found = occurred
        matched.append(replace(run, triggered_at=found))
    return matched


@dataclass(frozen=True)
class StageSummary:
    """One flow's runs: how many, and per stage the median and total seconds."""

    flow: str
    runs: int
    median: dict[str, float | None]
    total: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return {"flow": self.flow, "runs": self.runs, "median": self.median, "total": self.total}


@dataclass(frozen=True)
class RunBreakdown:
    """Where the flow runs' time went, per flow and in all, with the median event -> run start latency."""

    flows: list[StageSummary]
    total: dict[str, float]
    event_to_run_start_median: float | None
    event_to_run_start_n: int
    runs: int

    def share(self) -> dict[str, float]:
        """Each stage's share of all the stages' seconds."""
        whole = sum(self.total.values())
        return {stage: (seconds / whole if whole else 0.0) for stage, seconds in self.total.items()}

    def to_dict(self) -> dict[str, Any]:
        return {
            "runs": self.runs,
            "flows": [summary.to_dict() for summary in self.flows],
            "total": self.total,
            "share": self.share(),
            "event_to_run_start_median_seconds": self.event_to_run_start_median,
            "event_to_run_start_n": self.event_to_run_start_n,
        }

    def lines(self) -> list[str]:
        """A fixed-width table: one row per flow (runs, median seconds per stage), then the totals."""
        header = f"{'flow':<16} {'runs':>4} " + " ".join(f"{stage:>7}" for stage in STAGES)
        rows = [header]
        for summary in self.flows:
            cells = " ".join(_cell(summary.median[stage]) for stage in STAGES)
            rows.append(f"{summary.flow:<16} {summary.runs:>4} {cells}")
        share = self.share()
        rows.append(f"{'all (s, total)':<16} {self.runs:>4} " + " ".join(_cell(self.total[s]) for s in STAGES))
        rows.append(f"{'share':<16} {'':>4} " + " ".join(f"{100 * share[s]:>6.0f}%" for s in STAGES))
        return rows


def _cell(value: float | None) -> str:
    return f"{'-':>7}" if value is None else f"{value:>7.2f}"


def breakdown(runs: Sequence[RunTiming]) -> RunBreakdown:
    """Per-flow medians and totals of each stage over the finished runs, and the median event -> start."""
    finished = [run for run in runs if run.ended is not None]
    by_flow: dict[str, list[RunTiming]] = {}
    for run in finished:
        by_flow.setdefault(run.flow, []).append(run)
    summaries = []
    total = dict.fromkeys(STAGES, 0.0)
    for flow in sorted(by_flow):
        stages = [run.stages() for run in by_flow[flow]]
        median: dict[str, float | None] = {}
        flow_total: dict[str, float] = {}
        for stage in STAGES:
            values = [s[stage] for s in stages if s[stage] is not None]
            median[stage] = statistics.median(values) if values else None
            flow_total[stage] = sum(values)
            total[stage] += flow_total[stage]
        summaries.append(StageSummary(flow, len(stages), median, flow_total))
    latencies = [run.event_to_start for run in finished if run.event_to_start is not None]
    return RunBreakdown(
        flows=summaries,
        total=total,
        event_to_run_start_median=statistics.median(latencies) if latencies else None,
        event_to_run_start_n=len(latencies),
        runs=len(finished),
    )
