"""retrain: drift (or a person) asks for a new candidate; storm control, train, gates, register, place."""

from __future__ import annotations

from prefect import flow

from driftline.events.records import CANDIDATE_REGISTERED, CANDIDATE_REJECTED, MODEL_PROMOTED
from driftline.loop import rules
from tasks.batches import load_spec
from tasks.events import publish
from tasks.retrain import (
    admit_retrain,
    build_candidate,
    build_request,
    champion_batches,
    place_candidate,
    prepare_window,
    publish_gate_report,
    take_request,
    wait_for_labels,
)


@flow(name="retrain", log_prints=True)
def retrain(
    model: str,
    trigger: str = "manual",
    drift_event_id: str | None = None,
    drift_batch_id: str | None = None,
    drift_onset: str | None = None,
    reference_version: str | None = None,
    drift_kind: str | None = None,
) -> dict:
    """Train and validate a candidate for `model`; trigger is manual, drift (an event) or labels (re-check)."""
    spec = load_spec(model)
    request = build_request(model, trigger, drift_event_id, drift_batch_id, drift_onset, reference_version, drift_kind)
    if request is None:
        print("no retrain is waiting for labels: nothing to do")
        return {"model": model, "outcome": "nothing-pending"}

    admission = admit_retrain(spec, request, rechecking=trigger == "labels")
    for reason in admission.reasons:
        print(reason)
    if not admission.proceed:
        if rules.waits(request, admission):
            # Kept, so the labels re-check retrains once the shadow test has decided.
            wait_for_labels(request, "; ".join(admission.reasons))
        return {"model": model, "outcome": admission.outcome, "reasons": admission.reasons}

    window = prepare_window(spec, request)
    if request.trigger == "drift":
        readiness = rules.readiness(
            request,
            spec,
            window_batches=window.batch_ids,
            rows_since_onset=window.rows_since_onset,
            shortfall=window.shortfall,
            champion_batches=champion_batches(model),
        )
        reason = "; ".join(readiness.reasons)
        print(reason)
        if not readiness.ready:
            wait_for_labels(request, reason)
            return {"model": model, "outcome": "waiting-for-labels", "reasons": readiness.reasons}
        if not take_request(request):
            reason = "another run already builds a candidate for this drift"
            print(reason)
            return {"model": model, "outcome": "duplicate", "reasons": [reason]}

    candidate = build_candidate(spec, request, window)
    publish_gate_report(candidate)
    if candidate.decision == "rejected":
        publish(model, CANDIDATE_REJECTED, candidate.event_payload())
        print(f"{candidate.version} rejected: {'; '.join(candidate.reasons)}")
        again = rules.retry(request, window.rows_since_onset)
        if again is not None:
            wait_for_labels(
                again, f"{candidate.version} rejected; retried once {again.min_rows_since_onset} rows follow"
            )
        return {"model": model, "outcome": "rejected", "version": candidate.version, "reasons": candidate.reasons}

    placement = place_candidate(spec, candidate)
    publish(model, CANDIDATE_REGISTERED, candidate.event_payload())
    if placement.decision == "champion":
        publish(model, MODEL_PROMOTED, {"version": candidate.version, "previous": None, "reason": "bootstrap"})
    print(f"{candidate.version} -> {placement.decision}: {'; '.join(candidate.reasons)}")
    return {
        "model": model,
        "outcome": placement.decision,
        "version": candidate.version,
        "metrics": candidate.metrics,
        "reasons": candidate.reasons,
    }
