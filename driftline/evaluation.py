"""When labels arrive: fold the batch into the running shadow test and the post-promotion guard.

Both keep their state in S3 (``shadow/<model>/<candidate>/state.json``, ``guard/<model>/<champion>/
state.json``), updated by compare-and-swap so two evaluations of different batches never lose one
another's rows, and a repeated batch is ignored by the state itself.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from driftline import guard, layout, registry, scoring, shadow
from driftline.errors import ConflictError, ObjectNotFoundError
from driftline.spec import ModelSpec
from driftline.store import ObjectStore, update_json


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
                return shadow.fold_batch(state, differences, batch_id, policy=spec.shadow, now=now, **latency).to_dict()

            stored = update_json(
                store, key, lambda: shadow.start_shadow(model, candidate, champion, now=now).to_dict(), fold
            )
            shadow_state = shadow.ShadowState.from_dict(stored)
            shadow_verdict = shadow.decide(shadow_state, spec.shadow, now)

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
