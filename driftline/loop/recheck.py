"""Whether a drift retrain that waits for labels would build a candidate now: the labels re-check, asked where
the labels arrive (shadow-evaluate) before a retrain run is started for it.

A retrain run costs a process start (~3 s of CPU before any work) and an automation hop; most re-checks end at
once ("only 2,000 labelled rows since the drift onset, 4,000 needed", "a candidate is still in shadow"). The
questions are the retrain flow's own, in its order, on the same store: its admission (stale, shadow slot),
then ``rules.readiness`` on the window ``retraining.prepare_window`` assembles. The retrain run asks them again
when it starts (the store may have moved on meanwhile), so this only decides whether a run is worth starting.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from driftline.loop import cooldown, retraining, rules
from driftline.loop.cooldown import RetrainRequest
from driftline.models import registry
from driftline.models.spec import ModelSpec
from driftline.storage.store import ObjectStore


@dataclass(frozen=True)
class Recheck:
    """The waiting request (None when none waits) and whether a retrain run would build for it now."""

    due: bool
    request: RetrainRequest | None
    reasons: list[str] = field(default_factory=list)

    def identity(self) -> dict[str, str | None]:
        """What names the waiting request in ``driftline.retrain.due``."""
        if self.request is None:
            return {}
        return {
            "drift_event_id": self.request.drift_event_id,
            "drift_batch_id": self.request.drift_batch_id,
            "reference_version": self.request.reference_version,
        }


def champion_batches(store: ObjectStore, model: str) -> list[str] | None:
    """The current champion's training batches (None without a champion): a retrain on exactly those waits."""
    champion = registry.read_alias(store, model, "champion")
    if champion is None or champion.version is None:
        return None
    lineage = registry.read_metadata(store, model, champion.version).get("lineage") or {}
    return [batch["batch_id"] for batch in lineage.get("training_batches", [])]


def recheck_waiting(store: ObjectStore, spec: ModelSpec, *, read_window: bool = True) -> Recheck:
    """The labels re-check of ``spec``'s waiting drift retrain, without claiming or building anything.

    A request that still waits keeps its record, with the reason of this check (as the retrain run would
    record it). A stale one (its champion was replaced) is cleared, as ``cooldown.waiting_request`` does.

    Args:
        read_window: False when the window must not be read here (it is assembled on a Dask cluster): the
            request is then due once admitted, and the retrain run checks its readiness.
    """
    pending, stale = cooldown.waiting_request(store, spec.name)
    if pending is None:
        return Recheck(False, None, [stale] if stale else [])
    admission = cooldown.admit_and_claim(store, spec, pending, rechecking=True)  # a re-check claims nothing
    if not admission.proceed:
        if rules.waits(pending, admission) and not _answered(store, pending):
            cooldown.record_pending(store, pending, "; ".join(admission.reasons))
        return Recheck(False, pending, admission.reasons)
    if pending.trigger != "drift" or not read_window:
        return Recheck(True, pending, admission.reasons)
    window = retraining.prepare_window(store, spec, pending)
    readiness = rules.readiness(
        pending,
        spec,
        window_batches=window.batch_ids,
        rows_since_onset=window.rows_since_onset,
        shortfall=window.shortfall,
        champion_batches=champion_batches(store, spec.name),
    )
    # Asked last: reading the window takes a while, and a retrain run may have taken the request meanwhile
    # (two labelled batches in a row each re-check it). Then this check neither starts a run that would end
    # at once as a duplicate nor records again a wait that run has just cleared.
    if _answered(store, pending):
        return Recheck(False, pending, [ANSWERED])
    if not readiness.ready:
        cooldown.record_pending(store, pending, "; ".join(readiness.reasons))
    return Recheck(readiness.ready, pending, readiness.reasons)


ANSWERED = "a retrain run has already taken this drift and builds its candidate"


def _answered(store: ObjectStore, request: RetrainRequest) -> bool:
    """Whether a retrain run holds the claim of the drift ``request`` answers (``cooldown.answer_key``, taken by
    the run's ``take_request``); a hint, as the run's own claim is the atomic test."""
    return request.trigger == "drift" and cooldown.is_claimed(store, request.model, cooldown.answer_key(request))
