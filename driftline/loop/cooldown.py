"""Retrain storm control on the store: idempotency claims and the request waiting for labels.

Prefect's trigger (`within` + `for_each` per model) and the deployment's `concurrency_limit` are the
first line. The line that holds when Prefect delivers the same event twice, or two automations race, is
the domain key created here with a conditional write (``driftline.loop.rules.request_key``: one retrain per
reference and drift announcement). The rules (admission, earliest onset, staleness, readiness) are pure
and live in ``driftline.loop.rules``; this module only stores what they decide.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from driftline.errors import ConflictError, ObjectNotFoundError
from driftline.loop import rules
from driftline.models import registry
from driftline.storage import layout
from driftline.storage.store import ObjectStore, update_json

if TYPE_CHECKING:
    from driftline.models.spec import ModelSpec

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
    drift_kind: str | None = None  # input | performance | prediction: what the drift event measured
    min_rows_since_onset: int | None = None  # a retry after a rejected answer waits for this many (loop.retry)

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


def waiting_request(store: ObjectStore, model: str) -> tuple[RetrainRequest | None, str | None]:
    """The drift request a labels re-check answers: the pending one, unless its champion was replaced meanwhile
    (``rules.stale_pending``), in which case it is cleared and the note says why."""
    pending = read_pending(store, model)
    if pending is None:
        return None, None
    champion = registry.read_alias(store, model, "champion")
    stale = rules.stale_pending(pending, champion.version if champion else None)
    if stale:
        clear_pending(store, model)
        return None, stale
    return pending, None


def admit_and_claim(
    store: ObjectStore, spec: ModelSpec, request: RetrainRequest, *, rechecking: bool
) -> rules.Admission:
    """Admit ``request`` by ``rules.admit`` (stale, duplicate, shadow slot) on the aliases and claims in the store,
    then create its claim; a claim lost to a concurrent run makes it a duplicate (``rules.lost_claim``).

    A labels re-check (``rechecking``) answers a drift that already waited: it has no claim of its own.
    """
    shadow = registry.read_alias(store, spec.name, "shadow")
    key = None if rechecking else rules.request_key(request, spec)
    claimed_before = key is not None and is_claimed(store, request.model, key)
    champion = registry.read_alias(store, spec.name, "champion")
    admission = rules.admit(
        request,
        spec,
        shadow_version=shadow.version if shadow else None,
        champion=champion.version if champion else None,
        already_claimed=claimed_before,
        rechecking=rechecking,
    )
    if admission.proceed and admission.key is not None and not claim(store, request, admission.key):
        return rules.lost_claim(request, admission.key)
    return admission


def is_claimed(store: ObjectStore, model: str, key: str) -> bool:
    """Whether a retrain already holds the claim ``key`` (a hint; ``claim`` is the atomic test)."""
    return store.exists(layout.retrain_claim(model, key))


def answer_key(request: RetrainRequest) -> str:
    """One key per drift (event and onset) a retrain answers: a labels re-check and a drift run that both
    find the same waiting drift ready must not both build a candidate."""
    identity = f"{request.drift_event_id or request.requested_at}|{request.drift_onset or ''}"
    if request.min_rows_since_onset:  # a retry answers the same drift again, with more rows
        identity += f"|{request.min_rows_since_onset}"
    return f"answer-{hashlib.sha256(identity.encode()).hexdigest()[:20]}"


def record_pending(store: ObjectStore, request: RetrainRequest, reason: str) -> str:
    """Remember a drift-triggered retrain that waits (for labels, or for the shadow slot).

    A newer request for the same reference keeps the earliest onset (``rules.keep_earliest_onset``).
    """
    key = layout.retrain_pending(request.model)

    def merged(current: dict[str, Any] | None) -> dict[str, Any]:
        pending = RetrainRequest.from_dict(current["request"]) if current else None
        kept = rules.keep_earliest_onset(request, pending)
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
