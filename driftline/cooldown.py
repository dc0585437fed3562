"""Retrain storm control: idempotency keys, the shadow slot, and waiting for labels after a drift onset.

Prefect's trigger (`within` + `for_each` per model) and the deployment's `concurrency_limit` are the
first line. The line that holds when Prefect delivers the same event twice, or two automations race, is
the domain key created here with a conditional write: one retrain per (model, reference version, drift
window), where the window is the cooldown period the drift event falls in.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from driftline import layout
from driftline.errors import ConflictError, ObjectNotFoundError
from driftline.store import ObjectStore

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


def record_pending(store: ObjectStore, request: RetrainRequest, reason: str) -> str:
    """Remember a drift-triggered retrain that waits for labels (the latest request wins)."""
    key = layout.retrain_pending(request.model)
    body = {"request": request.to_dict(), "reason": reason, "recorded_at": datetime.now(UTC).isoformat()}
    store.put(key, json.dumps(body).encode(), content_type="application/json")
    return key


def read_pending(store: ObjectStore, model: str) -> RetrainRequest | None:
    try:
        return RetrainRequest.from_dict(json.loads(store.get(layout.retrain_pending(model)))["request"])
    except ObjectNotFoundError:
        return None


def clear_pending(store: ObjectStore, model: str) -> None:
    store.delete(layout.retrain_pending(model))
