"""`driftline demo`: the whole loop on the local stack, driven by events once a batch is ingested.

The demo only does what a user's pipeline would do: upload features and, later, labels, each announced
with an event. Profiling, drift, retraining, gates, the shadow test, promotion and rollback are all
Prefect deployments started by the automations of prefect.yaml; the demo watches the server's events
and prints them as a timeline, then summarises what the loop did.
"""

from __future__ import annotations

import io
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from rich.console import Console

from driftline.cli import prefect_api
from driftline.cli.context import load_settings, local_settings
from driftline.cli.uploads import submit_batch, submit_labels
from driftline.errors import InfrastructureError, InputError
from driftline.events.prefect_http import PrefectEventSink
from driftline.events.records import (
    BATCH_PROFILED,
    BATCH_REJECTED,
    DRIFT_DETECTED,
    MODEL_EVENTS,
    MODEL_PROMOTED,
    PERFORMANCE_DEGRADED,
    SHADOW_DECIDED,
    model_resource_id,
)
from driftline.models import registry
from driftline.models.spec import ModelSpec, load_spec
from driftline.replay import synth
from driftline.reports import run_timing
from driftline.reports.model_history import served_metric, version_metric
from driftline.storage import layout
from driftline.storage.store import ObjectStore, open_store

# The fast story told in 10 batches (events scale with it: input drift at 3, concept drift at 6).
FAST_BATCHES = 10
LOOKBACK = timedelta(seconds=30)
# Waits follow what the server does: they end only after this long with no new event and no run changing
# state (a loaded machine is slow, not stuck), or after BUSY_TIMEOUT_S while a run stays under way unchanged.
IDLE_TIMEOUT_S = 120.0
BUSY_TIMEOUT_S = 900.0
WAIT_PROFILED_S = IDLE_TIMEOUT_S
WAIT_SCORED_S = IDLE_TIMEOUT_S
PROGRESS_EVERY_S = 15.0
RUNS_EVERY_S = 5.0


@dataclass(frozen=True)
class DemoOptions:
    """What the user chose on the command line."""

    spec_path: Path
    model: str | None = None
    fast: bool = False
    batches: int | None = None
    rows: int | None = None
    seed: int = 7
    settle_timeout: float = 600.0
    extra_batches: int = 6


@dataclass
class DemoSummary:
    """The demo's outcome: printed at the end and returned as JSON with --json."""

    model: str
    promoted: bool
    promoted_version: str | None
    seconds: float
    batches: int
    rows_per_batch: int
    scenario: dict[str, Any]
    versions: list[dict[str, Any]]
    verdicts: list[dict[str, Any]]
    champion_metric: dict[str, float | None]
    per_batch: list[dict[str, Any]]
    events: dict[str, int]
    ui: dict[str, Any]
    reasons: list[str] = field(default_factory=list)
    # Where the flow runs' time went (run_timing.RunBreakdown.to_dict()); empty when the server could not say.
    timings: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------------------------- waiting
@dataclass(frozen=True)
class Activity:
    """What the server showed at one look: how many events were seen, and the unfinished flow runs."""

    events: int
    runs: frozenset[tuple[str, str]] = frozenset()  # (flow run id, state name)
    busy: bool = False  # a run is PENDING or RUNNING: work is under way


def has_moved(before: Activity | None, after: Activity) -> bool:
    """Whether anything happened between two looks: a new event, a run created, changing state or ending."""
    return before is None or after.events != before.events or after.runs != before.runs


def keep_waiting(idle_seconds: float, busy: bool, idle_timeout: float, busy_timeout: float = BUSY_TIMEOUT_S) -> bool:
    """Whether to go on waiting after ``idle_seconds`` without movement.

    Args:
        idle_seconds: seconds since ``has_moved`` was last true.
        busy: a run is PENDING or RUNNING right now.
        idle_timeout: how long nothing may move while nothing runs (queued runs alone do not count: with
            the worker down they never start).
        busy_timeout: how long a run may stay under way unchanged (a crashed worker leaves runs RUNNING).

    Returns:
        True to keep waiting, False to give up.
    """
    return idle_seconds < idle_timeout or (busy and idle_seconds < max(busy_timeout, idle_timeout))


def describe_runs(runs: list[dict[str, Any]]) -> str:
    """``running: score-batch x2; queued: profile-batch (Late) x1``, or ``no runs`` when there are none."""
    groups: dict[str, dict[str, int]] = {"running": {}, "queued": {}}
    for run in runs:
        group = "running" if run.get("state") in ("PENDING", "RUNNING") else "queued"
        label = run["flow"] if group == "running" else f"{run['flow']} ({run.get('state_name')})"
        groups[group][label] = groups[group].get(label, 0) + 1
    parts = [
        f"{group}: " + ", ".join(f"{label} x{n}" for label, n in sorted(counts.items()))
        for group, counts in groups.items()
        if counts
    ]
    return "; ".join(parts) or "no runs"


# --------------------------------------------------------------------------------------------- timeline
class Timeline:
    """Prints the model's events as the server stores them (polled; the API pages by 50)."""

    def __init__(self, api_url: str, model: str, console: Console, started: datetime) -> None:
        self.api_url = api_url
        self.model = model
        self.console = console
        self.started = started
        self.since = started - timedelta(seconds=5)
        self.seen: set[str] = set()
        self.events: list[dict[str, Any]] = []
        self.poll_every = 1.0
        self.runs: list[dict[str, Any]] = []
        self._runs_read_at = -math.inf
        self.last_activity = "none yet"

    def read_runs(self) -> list[dict[str, Any]]:
        """The model's flow runs that are due or under way (every ``RUNS_EVERY_S``; the last answer on an error)."""
        if time.monotonic() - self._runs_read_at >= RUNS_EVERY_S:
            self._runs_read_at = time.monotonic()
            try:
                runs = prefect_api.active_flow_runs(self.api_url)
            except InfrastructureError:
                return self.runs  # a busy server is not a reason to give up; the idle timeout still runs
            self.runs = [run for run in runs if run.get("model") == self.model]
        return self.runs

    def activity(self) -> Activity:
        runs = self.read_runs()
        return Activity(
            events=len(self.events),
            runs=frozenset((str(run["id"]), str(run.get("state_name"))) for run in runs),
            busy=any(run.get("state") in ("PENDING", "RUNNING") for run in runs),
        )

    def poll(self) -> list[dict[str, Any]]:
        fresh: list[dict[str, Any]] = []
        while True:
            page = prefect_api.find_events(
                self.api_url, list(MODEL_EVENTS), [model_resource_id(self.model)], since=self.since, limit=50
            )
            new = [event for event in page if event["id"] not in self.seen]
            for event in new:
                self.seen.add(event["id"])
                self.events.append(event)
                fresh.append(event)
                self._print(event)
            if len(page) < 50:
                if page:
                    # A look-back: an event stamped earlier can be stored after a later one (its sender was
                    # slower); the seen ids keep the overlap from printing twice.
                    last = datetime.fromisoformat(page[-1]["occurred"])
                    self.since = max(self.since, last - LOOKBACK)
                return fresh
            following = datetime.fromisoformat(page[-1]["occurred"])  # a full page: go on after it
            if following <= self.since:
                return fresh
            self.since = following

    def wait(self, done: Callable[[], bool], timeout: float, what: str, limit: float | None = None) -> None:
        """Poll the timeline until ``done()``, for as long as the server shows progress.

        Gives up when nothing moved (no new event, no run changing state) for ``timeout`` seconds, see
        ``keep_waiting``, or after ``limit`` seconds in all; prints what is queued and running every
        ``PROGRESS_EVERY_S``.

        Raises:
            InfrastructureError: naming what was awaited, what is queued or running and the last activity.
        """
        started = last_moved = last_progress = time.monotonic()
        before: Activity | None = None
        while True:
            fresh = self.poll()
            if done():
                return
            now_activity = self.activity()
            now = time.monotonic()
            if has_moved(before, now_activity):
                if before is not None:
                    last_moved = now
                    self.last_activity = self._describe_change(before, now_activity, fresh)
                before = now_activity
            idle = now - last_moved
            over_limit = limit is not None and now - started >= limit
            if over_limit or not keep_waiting(idle, now_activity.busy, timeout):
                why = f"within {limit:.0f} s" if over_limit else f"within {timeout:.0f} s without progress"
                raise InfrastructureError(
                    f"demo: no {what} {why} ({describe_runs(self.runs)}; last activity {idle:.0f} s ago: "
                    f"{self.last_activity}); is the worker running (`driftline status`)? "
                    "Its log: .driftline/logs/worker.log"
                )
            if now - last_progress >= PROGRESS_EVERY_S:
                last_progress = now
                self.console.print(
                    f"[dim]waiting for {what} ({now - started:.0f} s): {describe_runs(self.runs)}; "
                    f"last activity {idle:.0f} s ago: {self.last_activity}[/dim]"
                )
            time.sleep(self.poll_every)

    def _describe_change(self, before: Activity, after: Activity, fresh: list[dict[str, Any]]) -> str:
        if fresh:
            last = fresh[-1]
            batch = (last.get("payload") or {}).get("batch_id")
            return last["event"].removeprefix("driftline.") + (f" {batch}" if batch else "")
        flows = {str(run["id"]): run["flow"] for run in self.runs}
        changed = sorted(f"{flows.get(run_id, 'run')} {state}" for run_id, state in after.runs - before.runs)
        if changed:
            return "run " + ", ".join(changed)
        return f"{len(before.runs - after.runs)} run(s) ended"

    def named(self, *names: str) -> list[dict[str, Any]]:
        return [event for event in self.events if event["event"] in names]

    def _print(self, event: dict[str, Any]) -> None:
        occurred = datetime.fromisoformat(event["occurred"])
        elapsed = (occurred - self.started).total_seconds()
        name = event["event"].removeprefix("driftline.")
        style = _STYLES.get(name, "")
        text = describe_event(event["event"], event.get("payload") or {})
        self.console.print(
            f"[dim]{elapsed:7.1f}s[/dim]  [{style}]{name:<22}[/{style}] {text}"
            if style
            else f"[dim]{elapsed:7.1f}s[/dim]  {name:<22} {text}"
        )


_STYLES = {
    "drift.detected": "bold yellow",
    "performance.degraded": "bold yellow",
    "candidate.registered": "cyan",
    "candidate.rejected": "red",
    "shadow.decided": "bold cyan",
    "model.promoted": "bold green",
    "model.rolled_back": "bold red",
    "batch.rejected": "red",
    "scoring.failed": "bold red",
}


def _fmt(value: Any, digits: int = 4) -> str:
    return f"{value:.{digits}g}" if isinstance(value, int | float) and value is not None else str(value)


def describe_event(name: str, payload: dict[str, Any]) -> str:
    """One line per event: the ids and numbers a reader of the timeline needs."""
    short = name.removeprefix("driftline.")
    batch = payload.get("batch_id", "")
    if short == "batch.arrived":
        return f"{batch}"
    if short == "batch.profiled":
        verdict = "drift" if payload.get("drift") else "no input drift"
        return f"{batch}: {payload.get('rows')} rows, {verdict} (score {_fmt(payload.get('score'), 3)})"
    if short == "batch.rejected":
        return f"{batch}: {'; '.join(payload.get('problems', []))}"
    if short == "labels.arrived":
        return f"{batch}: {payload.get('rows')} labels"
    if short == "drift.detected":
        kind = payload.get("kind", "input")
        features = ", ".join(payload.get("top_features") or [])
        return f"{batch}: {kind} drift, score {_fmt(payload.get('score'), 3)}" + (f" ({features})" if features else "")
    if short == "performance.degraded":
        return (
            f"{batch}: champion {payload.get('reference_version')} loss +{_fmt(payload.get('estimate'), 3)} over its "
            f"holdout (lower bound {_fmt(payload.get('lower'), 3)}, {payload.get('n')} labelled rows)"
        )
    if short in ("candidate.registered", "candidate.rejected"):
        metrics = payload.get("metrics") or {}
        shown = ", ".join(f"{k} {_fmt(v, 4)}" for k, v in metrics.items() if k in ("auc", "logloss", "rmse"))
        return f"{payload.get('version')} -> {payload.get('decision')} ({shown}); gates: {payload.get('gate_summary')}"
    if short == "shadow.decided":
        return (
            f"{payload.get('candidate')}: {payload.get('verdict')} after {payload.get('n')} rows, loss difference "
            f"[{_fmt(payload.get('lower'), 3)}, {_fmt(payload.get('upper'), 3)}]"
        )
    if short == "model.promoted":
        champion = payload.get("champion") or payload.get("version")
        return f"champion {payload.get('previous')} -> {champion} ({payload.get('reason')})"
    if short == "model.rolled_back":
        return f"champion {payload.get('previous')} -> {payload.get('champion')} (rolled back)"
    if short == "retrain.due":
        return f"{batch}: labels for the retrain waiting since {payload.get('drift_batch_id') or 'a drift'}"
    if short == "scoring.failed":
        return f"{batch}: champion {payload.get('version')} failed ({payload.get('kind')}): {payload.get('error')}"[
            :200
        ]
    return str({k: v for k, v in payload.items() if k not in ("model", "event_id")})[:160]


# --------------------------------------------------------------------------------------------- spec
def demo_spec(base: ModelSpec, name: str, scenario: synth.Scenario) -> tuple[ModelSpec, list[str]]:
    """The example spec with what a minutes-long demo needs instead of days; every change is listed."""
    rows = scenario.rows
    changes = {
        "cooldown.seconds": 0,
        # The scenario's input drift moves two of sixteen features; declare it on a smaller importance share.
        "drift.score_threshold": min(base.drift.score_threshold, 0.1),
        # The concept-drift candidate must be able to replace an input-drift candidate still in shadow.
        "cooldown.supersede_shadow": True,
        "shadow.min_rows": min(base.shadow.min_rows, rows),
        "shadow.planned_rows": max(2 * rows, 100),
        "guard.min_rows": min(base.guard.min_rows, rows),
        # Train on few recent batches and wait for two labelled batches after a drift, so a candidate
        # answering a concept drift learns mostly the new rule.
        "window.last_batches": 3,
        "window.min_rows_since_drift": 2 * rows,
        # A laptop under a demo's load (server, worker, flow runs) is not the serving machine.
        "gates.max_p99_latency_ms": 1000.0,
        "gates.min_throughput_rows_per_s": 100.0,
        "shadow.max_latency_ratio": None,
    }
    data = base.model_dump(mode="json")
    data["name"] = name
    applied = []
    for path, value in changes.items():
        section, key = path.split(".")
        if key not in data.get(section, {}):
            continue
        data[section][key] = value
        applied.append(f"{path}={value}")
    return ModelSpec.model_validate(data), applied


def bootstrap_batches(scenario: synth.Scenario) -> int:
    """Batches that arrive labelled before the stream: enough for a first champion, all before any drift."""
    first_event = min((event.from_batch for event in scenario.events), default=scenario.batches)
    return max(1, min(3, first_event - 1))


def concept_drift_at(scenario: synth.Scenario) -> int:
    return min((e.from_batch for e in scenario.events if isinstance(e, synth.ConceptDrift)), default=scenario.batches)


def describe_scenario(scenario: synth.Scenario) -> str:
    head = f"{scenario.name}: {scenario.batches} batches x {scenario.rows:,} rows"
    parts = [f"{head}, labels {scenario.label_delay} batch(es) late"]
    for event in scenario.events:
        if isinstance(event, synth.CovariateDrift):
            parts.append(f"batch {event.from_batch}: {event.feature} drifts ({event.shift:+g})")
        elif isinstance(event, synth.ConceptDrift):
            parts.append(f"batch {event.from_batch}: concept drift (the features do not show it)")
        else:
            parts.append(f"batch {event.from_batch}: prior drift (logit {event.logit_shift:+g})")
    return "; ".join(parts)


def _free_model_name(store: ObjectStore, wanted: str | None, base: str) -> str:
    if wanted:
        return layout.validate_name(wanted, "model")
    for index in range(1, 1000):
        name = base if index == 1 else f"{base}-{index}"
        if not any(True for _ in store.list(layout.batches_prefix(name))):
            return name
    raise InputError("demo: no free model name; pass --model NAME")


# --------------------------------------------------------------------------------------------- metric
def champion_metric_per_batch(store: ObjectStore, spec: ModelSpec, batch_ids: list[str]) -> list[dict[str, Any]]:
    """The served model's metric on each labelled batch, from the stored predictions and labels."""
    rows = []
    for batch_id in batch_ids:
        served = served_metric(store, spec, batch_id)
        if served is not None and served[1] is not None:
            rows.append({"batch_id": batch_id, "version": served[0], "metric": served[1]})
    return rows


# --------------------------------------------------------------------------------------------- run
def run_demo(options: DemoOptions, console: Console, progress: Callable[[str], None]) -> DemoSummary:
    """Bring the stack up, stream the scenario and report what the automations did."""
    from driftline.cli.stack import LocalStack

    began = time.monotonic()
    if not options.spec_path.is_file():
        raise InputError(f"demo: spec file {options.spec_path} not found (run from the project directory)")
    base = load_spec(options.spec_path)
    stack = LocalStack(load_settings(), progress=progress)
    stack.up()
    settings = local_settings()
    store = open_store(settings)
    api_url = prefect_api.check_server(settings.prefect_api_url)
    sink = PrefectEventSink(store, api_url)

    batches = options.batches or (FAST_BATCHES if options.fast else None)
    scenario = synth.get_scenario(
        "fast" if options.fast else "default", seed=options.seed, batches=batches, rows=options.rows
    )
    name = _free_model_name(store, options.model, base.name)
    spec, changes = demo_spec(base, name, scenario)
    store.put(layout.model_spec(name), spec.to_yaml().encode(), content_type="application/yaml")
    console.print(f"model [bold]{name}[/bold] from {options.spec_path}; demo settings: {', '.join(changes)}")
    console.print(f"scenario: {describe_scenario(scenario)}")
    ui = api_url.removesuffix("/api")
    console.print(f"Prefect UI: {ui}  (runs, automations, artifacts)\n")

    started = datetime.now(UTC)
    timeline = Timeline(api_url, name, console, started)
    # Room to keep streaming the final regime if the shadow test needs more labelled rows than the story.
    stream = scenario.model_copy(update={"batches": scenario.batches + options.extra_batches})
    batch_ids = [synth.batch_id(stream, index) for index in range(stream.batches)]
    frames: dict[int, tuple[pl.DataFrame, pl.DataFrame]] = {}

    def generate(index: int) -> tuple[pl.DataFrame, pl.DataFrame]:
        if index not in frames:
            frames[index] = synth.generate_batch(stream, index)
        return frames[index]

    def ingest(index: int, wait: bool = True) -> None:
        features, _ = generate(index)
        buffer = io.BytesIO()
        features.write_parquet(buffer)
        submit_batch(sink, name, batch_ids[index], buffer.getvalue())
        # Past the story, a batch only feeds the shadow test: once it has decided, nothing waits on the batch.
        extra = index >= scenario.batches
        if wait:
            timeline.wait(
                lambda: _has_batch_event(timeline, batch_ids[index]) or (extra and recovered()),
                WAIT_PROFILED_S,
                f"profile of {batch_ids[index]}",
            )

    def label(index: int) -> None:
        _, labels = generate(index)
        submit_labels(sink, spec, batch_ids[index], labels, f"synth labels of {batch_ids[index]}")

    def recovered() -> bool:
        return recovery_promotion(store, name, timeline) is not None

    # 1. Bootstrap: the first batches arrive with their labels; a manual retrain makes the first champion.
    bootstrap = bootstrap_batches(scenario)
    for index in range(bootstrap):
        ingest(index, wait=False)
        label(index)
    # The first champion must not score its own training batches (their metric would be in-sample).
    timeline.wait(
        lambda: _scored_batches(api_url, name, started) >= set(batch_ids[:bootstrap]),
        WAIT_SCORED_S,
        "score-batch runs of the bootstrap batches",
    )
    console.print("[dim]bootstrap: running retrain/retrain (manual) for the first champion ...[/dim]")
    run = prefect_api.run_deployment_and_wait(api_url, "retrain/retrain", {"model": name, "trigger": "manual"}, 900)
    if not run.ok:
        raise InfrastructureError(f"demo: bootstrap retrain ended {run.state}; see {run.url}")
    timeline.wait(lambda: bool(timeline.named(MODEL_PROMOTED)), IDLE_TIMEOUT_S, "bootstrap champion")

    # 2. The stream: each batch is profiled (drift) and scored by the champion (and by a shadow candidate
    #    when one is in place); its labels arrive `label_delay` batches later, once it has been scored.
    def label_when_scored(index: int) -> None:
        extra = index >= scenario.batches
        timeline.wait(
            lambda: store.exists(layout.scoring_summary(name, batch_ids[index])) or (extra and recovered()),
            WAIT_SCORED_S,
            f"scoring of {batch_ids[index]}",
        )
        if extra and recovered():
            return  # labels of the extra batches only serve the shadow test, which has decided
        label(index)

    sent = bootstrap
    while sent < stream.batches and (sent < scenario.batches or not recovered()):
        if sent == scenario.batches:
            console.print("[dim]the story is told; the same regime goes on until the shadow test decides[/dim]")
        ingest(sent)
        if sent - scenario.label_delay >= bootstrap:
            label_when_scored(sent - scenario.label_delay)
        sent += 1
    for index in range(max(bootstrap, sent - scenario.label_delay), sent):
        label_when_scored(index)

    # 3. Let the automations finish: the promotion of a candidate trained after the concept drift ends the demo.
    try:
        timeline.wait(
            recovered,
            IDLE_TIMEOUT_S,
            "promotion of a candidate trained after the drift",
            limit=options.settle_timeout,
        )
    except InfrastructureError as error:
        console.print(f"[yellow]{error}[/yellow]")
    timeline.poll()
    return _summarise(store, spec, scenario, timeline, batch_ids[:sent], api_url, time.monotonic() - began)


def recovery_promotion(store: ObjectStore, model: str, timeline: Timeline) -> str | None:
    """The version promoted (by the automations) that was registered after the first performance or input
    drift event, i.e. trained to answer it; None while there is none."""
    drifts = timeline.named(PERFORMANCE_DEGRADED) or timeline.named(DRIFT_DETECTED)
    if not drifts:
        return None
    first = datetime.fromisoformat(drifts[0]["occurred"])
    for event in timeline.named(MODEL_PROMOTED):
        payload = event.get("payload") or {}
        version = payload.get("champion") or payload.get("version")
        if not payload.get("previous") or not version:
            continue
        created = registry.read_metadata(store, model, version).get("created_at")
        if created and datetime.fromisoformat(created) > first:
            return version
    return None


def _scored_batches(api_url: str, model: str, since: datetime) -> set[str]:
    """Batches of ``model`` whose score-batch run has ended (with or without a champion to score them)."""
    final = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
    runs = prefect_api.flow_runs_since(api_url, since)
    return {r["batch_id"] for r in runs if r["flow"] == "score-batch" and r["model"] == model and r["state"] in final}


def _has_batch_event(timeline: Timeline, batch_id: str) -> bool:
    return any(
        (e.get("payload") or {}).get("batch_id") == batch_id for e in timeline.named(BATCH_PROFILED, BATCH_REJECTED)
    )


def _summarise(
    store: ObjectStore,
    spec: ModelSpec,
    scenario: synth.Scenario,
    timeline: Timeline,
    batch_ids: list[str],
    api_url: str,
    seconds: float,
) -> DemoSummary:
    described = registry.describe_model(store, spec.name)
    per_batch = champion_metric_per_batch(store, spec, batch_ids)
    recovery = recovery_promotion(store, spec.name, timeline)
    drift_from = concept_drift_at(scenario)
    after_drift = [r for r in per_batch if int(r["batch_id"][1:]) >= drift_from]
    # The promoted model against the champion it replaced, on the same post-drift batches (it scored them
    # in shadow before its promotion, as champion after it).
    same = []
    if recovery is not None:
        for row in after_drift:
            metric, _ = version_metric(store, spec, row["batch_id"], recovery)
            if metric is not None:
                row["promoted_metric"] = metric
                if row["version"] != recovery:
                    same.append((row["metric"], metric))
    counts: dict[str, int] = {}
    for event in timeline.events:
        counts[event["event"]] = counts.get(event["event"], 0) + 1
    verdicts = [
        {k: (e.get("payload") or {}).get(k) for k in ("candidate", "verdict", "n", "estimate", "lower", "upper")}
        for e in timeline.named(SHADOW_DECIDED)
    ]
    ui = api_url.removesuffix("/api")
    runs = [r for r in prefect_api.flow_runs_since(api_url, timeline.started) if r["model"] == spec.name]
    try:
        runs_timed = prefect_api.flow_run_timings(api_url, spec.name, timeline.started)
        timings = run_timing.breakdown(run_timing.with_triggers(runs_timed, timeline.events)).to_dict()
    except InfrastructureError:
        timings = {}  # the summary stands without it; the runs are in the UI
    reasons = []
    if recovery is None:
        reasons.append("no candidate trained after the drift was promoted (see the shadow verdicts and run logs)")
    return DemoSummary(
        model=spec.name,
        promoted=recovery is not None,
        promoted_version=recovery,
        seconds=round(seconds, 1),
        batches=len(batch_ids),
        rows_per_batch=scenario.rows,
        scenario=scenario.model_dump(mode="json"),
        versions=described["versions"],
        verdicts=verdicts,
        champion_metric={
            "before_drift": _mean([r["metric"] for r in per_batch if int(r["batch_id"][1:]) < drift_from]),
            "after_drift_served": _mean([r["metric"] for r in after_drift if r["version"] != recovery]),
            "replaced_champion_same_batches": _mean([old for old, _ in same]),
            "promoted_same_batches": _mean([new for _, new in same]),
        },
        per_batch=per_batch,
        events=counts,
        ui={
            "url": ui,
            "runs": [{k: r[k] for k in ("name", "flow", "state", "url")} for r in runs],
            "artifacts": f"{ui}/artifacts",
        },
        reasons=reasons,
        timings=timings,
    )


def timing_table(timings: dict[str, Any]) -> str:
    """The demo's flow-run time breakdown as text: median seconds per stage and flow, totals and shares."""
    breakdown = run_timing.RunBreakdown(
        flows=[
            run_timing.StageSummary(f["flow"], f["runs"], f["median"], f["total"]) for f in timings.get("flows", [])
        ],
        total=timings.get("total", {}),
        event_to_run_start_median=timings.get("event_to_run_start_median_seconds"),
        event_to_run_start_n=timings.get("event_to_run_start_n", 0),
        runs=timings.get("runs", 0),
    )
    legend = "; ".join(f"{stage}: {meaning}" for stage, meaning in run_timing.STAGE_MEANING.items())
    latency = breakdown.event_to_run_start_median
    head = "where the flow runs' time went (median s per run; " + (
        f"event -> flow code starting: median {latency:.2f} s over {breakdown.event_to_run_start_n} runs)"
        if latency is not None
        else "no triggered run matched its event)"
    )
    return "\n".join([head, *breakdown.lines(), legend])


def _mean(values: list[float]) -> float | None:
    return round(float(np.mean(values)), 4) if values else None


def print_summary(summary: DemoSummary, console: Console) -> None:
    """The end of the demo: versions, verdicts, the champion's metric across the story, where to look."""
    from rich.table import Table

    console.rule(f"driftline demo: {summary.model}")
    table = Table(title="versions", show_lines=False)
    for column in ("version", "status", "trigger", "auc / rmse", "created"):
        table.add_column(column, no_wrap=column in ("version", "created"))
    for version in summary.versions:
        metrics = version.get("metrics") or {}
        metric = metrics.get("auc", metrics.get("rmse"))
        table.add_row(
            version["version"],
            version["status"],
            str(version.get("trigger")),
            f"{metric:.4f}" if isinstance(metric, float) else "-",
            str(version.get("created_at", ""))[11:19],
        )
    console.print(table)
    for verdict in summary.verdicts:
        console.print(
            f"shadow test of {verdict['candidate']}: [bold]{verdict['verdict']}[/bold] after {verdict['n']} rows, "
            f"loss difference {_fmt(verdict['estimate'], 3)} "
            f"in [{_fmt(verdict['lower'], 3)}, {_fmt(verdict['upper'], 3)}]"
        )
    metric = summary.champion_metric
    console.print(
        "served model's AUC (RMSE for regression) on labelled batches: before the drift "
        f"{_fmt(metric['before_drift'])}, after it {_fmt(metric['after_drift_served'])}"
    )
    if summary.promoted_version:
        console.print(
            f"on the same post-drift batches: replaced champion {_fmt(metric['replaced_champion_same_batches'])}, "
            f"promoted {summary.promoted_version} {_fmt(metric['promoted_same_batches'])}"
        )
    counts = ", ".join(f"{name.removeprefix('driftline.')} {n}" for name, n in sorted(summary.events.items()))
    console.print(f"events: {counts}")
    per_flow: dict[str, int] = {}
    for run in summary.ui["runs"]:
        per_flow[run["flow"]] = per_flow.get(run["flow"], 0) + 1
    runs = ", ".join(f"{flow} {n}" for flow, n in sorted(per_flow.items()))
    console.print(f"flow runs of {summary.model} (all started by automations but the bootstrap): {runs}")
    console.print(f"Prefect UI {summary.ui['url']} (runs, events, automations); artifacts {summary.ui['artifacts']}")
    for run in summary.ui["runs"]:
        if run["flow"] == "promote":
            console.print(f"  promote run {run['name']} ({run['state']}): {run['url']}")
    if summary.timings:
        console.print(timing_table(summary.timings))
    for reason in summary.reasons:
        console.print(f"[yellow]{reason}[/yellow]")
    verdict = "[bold green]promotion reached[/bold green]" if summary.promoted else "[bold red]no promotion[/bold red]"
    console.print(f"{verdict} in {summary.seconds:.0f} s; the stack stays up (`make down` stops it)")
