"""Retrain storm control: idempotency keys, the shadow slot, and waiting for labels after a drift onset.

Prefect's trigger (`within` + `for_each` per model) and the deployment's `concurrency_limit` are the
first line. The line that holds when Prefect delivers the same event twice, or two automations race, is
the domain key created here with a conditional write: one retrain per (model, reference version, drift
window), where the window is the cooldown period the drift event falls in.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from driftline import layout
from driftline.errors import ConflictError, ObjectNotFoundError
from driftline.store import ObjectStore, update_json

Trigger = Literal["manual", "drift", "labels"]


@dataclass(frozen=True)
class RetrainRequest:
    """Why a retrain was asked for."""

    model: str
    trigger: Trigger
    requested_at: str
    drift_event_id: str | None = None
    drift_batch_id: str | None = None
    drift_onset: str | None = None  # earliest event time of the drifted batch (ISO) when known
    reference_version: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RetrainRequest:
        return cls(**data)

    @property
    def lineage_trigger(self) -> str:
        """`manual` or `drift:<event id>` as `driftline models` shows it."""
        if self.trigger == "manual" or not self.drift_event_id:
            return "manual"
        return f"drift:{self.drift_event_id}"


@dataclass(frozen=True)
class Admission:
    """Whether a retrain may start, and every reason."""

    proceed: bool
    outcome: Literal["proceed", "duplicate", "shadow-busy", "waiting-for-labels", "nothing-pending"]
    reasons: list[str] = field(default_factory=list)
    key: str | None = None


def idempotency_key(reference_version: str | None, occurred: datetime, cooldown_seconds: int) -> str:
    """One key per (reference version, cooldown window the drift event falls in)."""
    window = int(occurred.timestamp() // max(cooldown_seconds, 1))
    return f"{reference_version or 'provisional'}-w{window}"


def claim(store: ObjectStore, request: RetrainRequest, key: str) -> bool:
    """Create the idempotency claim; False when another retrain already holds it."""
    try:
        store.create(
            layout.retrain_claim(request.model, key),
            json.dumps({"key": key, **request.to_dict()}).encode(),
            content_type="application/json",
        )
    except ConflictError:
        return False
    return True


def answer_key(request: RetrainRequest) -> str:
    """One key per drift (event and onset) a retrain answers: a labels re-check and a drift run that both
    find the same waiting drift ready must not both build a candidate."""
    identity = f"{request.drift_event_id or request.requested_at}|{request.drift_onset or ''}"
    return f"answer-{hashlib.sha256(identity.encode()).hexdigest()[:20]}"


def is_claimed(store: ObjectStore, model: str, key: str) -> bool:
    """Whether a retrain already holds the claim ``key`` (a hint; ``claim`` is the atomic test)."""
    return store.exists(layout.retrain_claim(model, key))


def admit(
    request: RetrainRequest,
    *,
    claimed: bool | None,
    shadow_version: str | None,
    supersede_shadow: bool,
    key: str | None = None,
) -> Admission:
    """Decide whether the retrain runs (pure).

    Args:
        claimed: result of ``claim`` for drift-triggered requests, None for manual ones.
        shadow_version: the candidate currently in shadow, if any.
        supersede_shadow: the spec's ``cooldown.supersede_shadow``.
    """
    if claimed is False:
        return Admission(
            False, "duplicate", [f"a retrain for drift window {key} of {request.model} already ran or runs"], key
        )
    if shadow_version is not None and not supersede_shadow and request.trigger != "manual":
        return Admission(
            False,
            "shadow-busy",
            [f"candidate {shadow_version} is still in shadow and cooldown.supersede_shadow is false"],
            key,
        )
    reasons = [f"{request.trigger} retrain of {request.model}"]
    if shadow_version is not None:
        reasons.append(f"supersedes shadow candidate {shadow_version}")
    return Admission(True, "proceed", reasons, key)


def enough_labels_since_onset(rows_since_onset: int, minimum: int) -> tuple[bool, str]:
    """Whether a drift-triggered retrain has the labelled rows it needs from the drift onset on (pure)."""
    if rows_since_onset >= minimum:
        return True, f"{rows_since_onset} labelled rows since the drift onset (>= {minimum})"
    return False, f"only {rows_since_onset} labelled rows since the drift onset, {minimum} needed; waiting for labels"


def _onset_value(onset: str) -> float:
    """An onset as a number to compare: ISO times (naive = UTC) or numeric event times."""
    try:
        moment = datetime.fromisoformat(onset)
    except ValueError:
        return float(onset)
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def keep_earliest_onset(request: RetrainRequest, pending: RetrainRequest | None) -> RetrainRequest:
    """The request with the earliest drift onset known for the same reference (pure).

    Under lasting drift every cooldown window brings a new drift event with a later onset; if each replaced
    the waiting one, the labelled rows "since the onset" would restart each time and a retrain that waits
    for them would never run. The drift began at the first onset, so that one is kept.
    """
    if pending is None or pending.reference_version != request.reference_version:
        return request
    if not pending.drift_onset:
        return request
    if request.drift_onset and _onset_value(request.drift_onset) <= _onset_value(pending.drift_onset):
        return request
    return RetrainRequest(
        model=request.model,
        trigger=request.trigger,
        requested_at=request.requested_at,
        drift_event_id=pending.drift_event_id,
        drift_batch_id=pending.drift_batch_id,
        drift_onset=pending.drift_onset,
        reference_version=request.reference_version,
    )


def stale_pending(pending: RetrainRequest, champion: str | None) -> str | None:
    """Why a waiting request no longer applies (pure): its reference champion was replaced; None if it does."""
    if pending.reference_version is not None and champion is not None and pending.reference_version != champion:
        return f"the retrain waiting since drift on {pending.reference_version} is stale: {champion} is champion now"
    return None


def record_pending(store: ObjectStore, request: RetrainRequest, reason: str) -> str:
    """Remember a drift-triggered retrain that waits (for labels, or for the shadow slot).

    A newer request for the same reference keeps the earliest onset (``keep_earliest_onset``).
    """
    key = layout.retrain_pending(request.model)

    def merged(current: dict[str, Any] | None) -> dict[str, Any]:
        pending = RetrainRequest.from_dict(current["request"]) if current else None
        kept = keep_earliest_onset(request, pending)
        return {"request": kept.to_dict(), "reason": reason, "recorded_at": datetime.now(UTC).isoformat()}

    update_json(store, key, lambda: None, merged)
    return key


def read_pending(store: ObjectStore, model: str) -> RetrainRequest | None:
    try:
        return RetrainRequest.from_dict(json.loads(store.get(layout.retrain_pending(model)))["request"])
    except ObjectNotFoundError:
        return None


def clear_pending(store: ObjectStore, model: str) -> None:
    store.delete(layout.retrain_pending(model))
