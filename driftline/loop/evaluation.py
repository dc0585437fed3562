"""When labels arrive: fold the batch into the shadow test, the post-promotion guard and (separately) the
champion's performance monitor.

Each keeps its state in S3 (``shadow/<model>/<candidate>/state.json``, ``guard/<model>/<champion>/
state.json``, ``performance/<model>/<champion>/state.json``), updated by compare-and-swap so two
evaluations of different batches never lose one another's rows, and a repeated batch is ignored by the
state itself.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import polars as pl

from driftline.errors import ConflictError, ObjectNotFoundError
from driftline.models import registry, scoring
from driftline.models.spec import ModelSpec, ShadowSpec, read_spec
from driftline.statistics import guard, metrics, performance, shadow
from driftline.storage import layout
from driftline.storage.store import ObjectStore, update_json


@dataclass(frozen=True)
class PerformanceUpdate:
    """The champion's performance monitor after a labelled batch.

    ``announce`` is True for the evaluation whose compare-and-swap claimed the announcement of a degraded
    champion (one batch per champion), until the announcement's event id is recorded
    (:func:`record_announcement`): a retried run still announces, a later one does not. ``drift_onset``
    is then the earliest event time of the first batch of the stretch that shows the drop.
    """

    batch_id: str
    state: performance.PerformanceState
    verdict: performance.PerformanceVerdict
    announce: bool = False
    drift_onset: str | None = None

    def event_payload(self) -> dict[str, Any]:
        """Payload of ``driftline.performance.degraded`` (the retrain trigger templates batch_id,
        drift_onset and reference_version; every one must be present)."""
        verdict = self.verdict.to_dict()
        return {
            "batch_id": self.batch_id,
            "kind": "performance",
            "drift_onset": self.drift_onset,
            "reference_version": self.state.champion,
            "since_batch_id": self.verdict.since_batch_id,
            "estimate": verdict["estimate"],
            "lower": verdict["lower"],
            "upper": verdict["upper"],
            "tolerance": verdict["tolerance"],
            "n": self.verdict.n,
            "baseline_loss": self.state.baseline_loss,
            "reasons": self.verdict.reasons,
        }


@dataclass(frozen=True)
class Evaluation:
    """What one labelled batch changed."""

    model: str
    batch_id: str
    shadow_state: shadow.ShadowState | None = None
    shadow_verdict: shadow.ShadowVerdict | None = None
    guard_state: guard.GuardState | None = None
    guard_verdict: guard.GuardVerdict | None = None
    notes: tuple[str, ...] = ()


def read_shadow_state(store: ObjectStore, model: str, candidate: str) -> shadow.ShadowState | None:
    try:
        return shadow.ShadowState.from_dict(json.loads(store.get(layout.shadow_state(model, candidate))))
    except ObjectNotFoundError:
        return None


def shadow_status(candidate: str | None, state: shadow.ShadowState | None, policy: ShadowSpec | None) -> dict[str, Any]:
    """The document of ``driftline shadow --json`` (docs/architecture.md section 8); pure.

    Args:
        candidate: the version the ``shadow`` alias names, None when no candidate is in shadow.
        state: the candidate's running test, None before any labelled row was scored by both models.
        policy: the spec's shadow policy; needed only with a ``state``.

    Returns:
        At least ``candidate``, ``n``, ``estimate``, ``lower``, ``upper`` and ``verdict``; with a state also
        the reasons, the champion, when the test started, its history and the candidate's p99 latency.
    """
    document: dict[str, Any] = {
        "candidate": None,
        "n": 0,
        "estimate": None,
        "lower": None,
        "upper": None,
        "verdict": None,
    }
    if candidate is None:
        return document
    document["candidate"] = candidate
    if state is None:
        document.update(verdict="continue", reasons=["no labelled rows scored by both models yet"])
        return document
    if policy is None:
        raise ValueError("a shadow state is decided under the spec's shadow policy: pass it")
    # The test's clock is event time: it stands where the last folded batch left it.
    verdict = shadow.decide(state, policy, datetime.fromisoformat(state.updated_at))
    document.update(verdict.to_dict())
    document.update(
        candidate=state.candidate,
        champion=state.champion,
        started_at=state.started_at,
        history=state.history,
        latency_p99_ms=state.latency_p99_ms,
    )
    return document


def read_shadow_status(store: ObjectStore, model: str) -> dict[str, Any]:
    """``shadow_status`` of the model's candidate in shadow, read from the store (the spec only when a test runs)."""
    alias = registry.read_alias(store, model, "shadow")
    candidate = alias.version if alias is not None else None
    state = read_shadow_state(store, model, candidate) if candidate is not None else None
    policy = read_spec(store, model).shadow if state is not None else None
    return shadow_status(candidate, state, policy)


def read_guard_state(store: ObjectStore, model: str, champion: str) -> guard.GuardState | None:
    try:
        return guard.GuardState.from_dict(json.loads(store.get(layout.guard_state(model, champion))))
    except ObjectNotFoundError:
        return None


def start_guard(store: ObjectStore, spec: ModelSpec, champion: str, previous: str | None, now: datetime) -> bool:
    """Open the guard of a new champion against the one it replaced (no-op when disabled or none)."""
    if not spec.guard.enabled or previous is None:
        return False
    state = guard.start_guard(spec.name, champion, previous, now=now)
    try:
        store.create(layout.guard_state(spec.name, champion), json.dumps(state.to_dict()).encode())
    except ConflictError:
        return False
    return True


def _pair(store: ObjectStore, spec: ModelSpec, batch_id: str, labels, first: str, second: str):
    a = scoring.read_predictions(store, spec, batch_id, first)
    b = scoring.read_predictions(store, spec, batch_id, second)
    if a is None or b is None:
        missing = first if a is None else second
        return None, f"no predictions of {missing} for batch {batch_id} (scored before it was in place?)"
    y, p_first, p_second = scoring.paired_outcomes(labels, a, b, spec)
    if y.size == 0:
        return None, f"labels of batch {batch_id} share no ids with the predictions"
    return (y, p_first, p_second), None


def evaluate_batch(store: ObjectStore, spec: ModelSpec, batch_id: str, now: datetime) -> Evaluation:
    """Fold a labelled batch into the shadow test and the guard that are running for the model."""
    model = spec.name
    labels = scoring.read_labels(store, spec, batch_id)
    if labels is None:
        return Evaluation(model, batch_id, notes=(f"no labels for batch {batch_id}",))
    aliases = {a: (s.version if (s := registry.read_alias(store, model, a)) else None) for a in layout.ALIASES}
    champion, candidate = aliases["champion"], aliases["shadow"]
    # A time budget (only when the spec sets one) counts event time, the batch's latest, never the clock of
    # arrival; reading it costs a download of the batch, so it is read only then.
    event_now = (spec.shadow.max_days is not None and scoring.stored_event_time_max(store, spec, batch_id)) or now
    notes: list[str] = []
    shadow_state = shadow_verdict = guard_state = guard_verdict = None

    if champion and candidate:
        paired, note = _pair(store, spec, batch_id, labels, candidate, champion)
        if note:
            notes.append(note)
        else:
            y, p_candidate, p_champion = paired
            differences = shadow.paired_differences(spec.task, y, p_candidate, p_champion)
            latency = _latencies(store, spec, batch_id, candidate, champion)
            key = layout.shadow_state(model, candidate)

            def fold(current: dict[str, Any]) -> dict[str, Any]:
                state = shadow.ShadowState.from_dict(current)
                return shadow.fold_batch(
                    state, differences, batch_id, policy=spec.shadow, now=event_now, **latency
                ).to_dict()

            stored = update_json(
                store, key, lambda: shadow.start_shadow(model, candidate, champion, now=event_now).to_dict(), fold
            )
            shadow_state = shadow.ShadowState.from_dict(stored)
            shadow_verdict = shadow.decide(shadow_state, spec.shadow, event_now)

    guarded = read_guard_state(store, model, champion) if champion else None
    if guarded is not None and not guarded.closed:
        paired, note = _pair(store, spec, batch_id, labels, guarded.new_champion, guarded.previous)
        if note:
            notes.append(f"guard: {note}")
        else:
            y, p_new, p_previous = paired
            differences = shadow.paired_differences(spec.task, y, p_new, p_previous)

            def fold_guard(current: dict[str, Any]) -> dict[str, Any]:
                state = guard.GuardState.from_dict(current)
                return guard.fold_batch(state, differences, batch_id, policy=spec.guard, now=now).to_dict()

            stored = update_json(store, layout.guard_state(model, champion), lambda: guarded.to_dict(), fold_guard)
            guard_state = guard.GuardState.from_dict(stored)
            guard_verdict = guard.decide_rollback(guard_state, spec.guard)

    return Evaluation(model, batch_id, shadow_state, shadow_verdict, guard_state, guard_verdict, tuple(notes))


def read_performance_state(store: ObjectStore, model: str, champion: str) -> performance.PerformanceState | None:
    try:
        return performance.PerformanceState.from_dict(json.loads(store.get(layout.performance_state(model, champion))))
    except ObjectNotFoundError:
        return None


def fold_champion_performance(
    store: ObjectStore, spec: ModelSpec, batch_id: str, now: datetime
) -> tuple[PerformanceUpdate | None, str | None]:
    """Fold a labelled batch into the performance monitor of the model's current champion.

    Kept apart from :func:`evaluate_batch`, so a problem here never holds up a shadow verdict or a rollback.

    Returns:
        See :func:`fold_performance`; ``(None, note)`` also without labels or a champion.
    """
    if not spec.performance.enabled:
        return None, None
    champion = registry.read_alias(store, spec.name, "champion")
    if champion is None or champion.version is None:
        return None, f"performance: {spec.name} has no champion"
    labels = scoring.read_labels(store, spec, batch_id)
    if labels is None:
        return None, f"performance: no labels for batch {batch_id}"
    return fold_performance(store, spec, batch_id, champion.version, labels, now)


def fold_performance(
    store: ObjectStore, spec: ModelSpec, batch_id: str, champion: str, labels: pl.DataFrame, now: datetime
) -> tuple[PerformanceUpdate | None, str | None]:
    """Fold the champion's per-row losses on a labelled batch into its performance monitor.

    The monitor lives at ``performance/<model>/<champion>/state.json`` (a new champion starts afresh),
    created from the baseline in the champion's metadata and updated by compare-and-swap; the same swap
    sets ``alerted`` on the first degraded verdict, so concurrent evaluations announce it once.

    Returns:
        ``(update, None)``, or ``(None, note)`` when there is nothing to monitor: monitoring is off, the
        champion predates holdout baselines, or it did not score this batch.
    """
    model = spec.name
    if not spec.performance.enabled:
        return None, None
    baseline = performance.baseline_from_metadata(registry.read_metadata(store, model, champion))
    if baseline is None:
        return None, (
            f"champion {champion} has no holdout loss baseline (registered before performance monitoring): "
            "its performance is not monitored"
        )
    predictions = scoring.read_predictions(store, spec, batch_id, champion)
    if predictions is None:
        return None, f"performance: no predictions of champion {champion} for batch {batch_id}"
    y, p = scoring.labelled_predictions(labels, predictions, spec)
    if y.size == 0:
        return None, f"performance: labels of batch {batch_id} share no ids with the champion's predictions"
    losses = metrics.per_row_loss(spec.task, y, p)

    def start() -> dict[str, Any]:
        state = performance.start_monitor(model, champion, baseline.loss, baseline.rows, now, baseline.loss_sd)
        return state.to_dict()

    def fold(current: dict[str, Any]) -> dict[str, Any]:
        state = performance.fold_batch(
            performance.PerformanceState.from_dict(current), losses, batch_id, spec.performance, now
        )
        state, _ = performance.mark_alerted(state, performance.decide(state, spec.performance), batch_id, now)
        return state.to_dict()

    state = performance.PerformanceState.from_dict(
        update_json(store, layout.performance_state(model, champion), start, fold)
    )
    verdict = performance.decide(state, spec.performance)
    announce = performance.should_announce(state, batch_id)
    onset = None
    if announce and verdict.since_batch_id is not None:
        onset = scoring.stored_event_time_min(store, spec, verdict.since_batch_id)
    return PerformanceUpdate(batch_id, state, verdict, announce, onset), None


def _latencies(store: ObjectStore, spec: ModelSpec, batch_id: str, candidate: str, champion: str) -> dict:
    """p99 single-row latencies recorded by score-batch next to the predictions, when present."""
    try:
        summary = json.loads(store.get(layout.scoring_summary(spec.name, batch_id)))
    except ObjectNotFoundError:
        return {}
    return {
        "candidate_p99_ms": summary.get(candidate, {}).get("p99_ms"),
        "champion_p99_ms": summary.get(champion, {}).get("p99_ms"),
    }


def record_announcement(store: ObjectStore, model: str, champion: str, event_id: str) -> None:
    """Keep the id of the sent ``driftline.performance.degraded`` in the monitor: no run announces again."""

    def record(current: dict[str, Any]) -> dict[str, Any]:
        state = performance.PerformanceState.from_dict(current)
        return performance.record_announcement(state, event_id).to_dict()

    update_json(store, layout.performance_state(model, champion), _monitor_missing, record)


def _monitor_missing() -> dict[str, Any]:
    raise ObjectNotFoundError("the performance monitor vanished before its announcement was recorded")
