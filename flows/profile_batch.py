"""profile-batch: validate a new batch, profile it, compare with the reference, announce drift."""

from __future__ import annotations

from prefect import flow

from driftline.data.batches import BatchRejectedError
from driftline.events.records import BATCH_PROFILED, BATCH_REJECTED, DRIFT_DETECTED
from flows.score_batch import score_batch
from tasks.batches import (
    check_drift,
    load_spec,
    profile_batch_object,
    publish_drift_artifacts,
    publish_drift_picture,
    quarantine_batch,
)
from tasks.events import publish, reconcile_outbox
from tasks.scoring import is_scored


def _score(model: str, batch_id: str) -> dict:
    """score-batch as a subflow: what it returned, or why it failed."""
    # Scored here rather than in a run that batch.profiled would start: a flow-run process costs ~3 s of CPU
    # before any work, and the batch's labels can follow as soon as it is profiled. Its own state, so a
    # champion that cannot score fails the score-batch subflow, never the profile already stored.
    scored = score_batch(model, batch_id, return_state=True)
    if scored.is_completed():
        return scored.result()
    return {"batch_id": batch_id, "failed": str(scored.message or scored.name)}


@flow(name="profile-batch", log_prints=True)
def profile_batch(model: str, batch_id: str) -> dict:
    """Profile `datasets/<model>/batches/<batch_id>.parquet`, check it for drift, then score it (score-batch as
    a subflow)."""
    spec = load_spec(model)
    profiled = profile_batch_object(spec, batch_id)
    if profiled.adopted:
        print(f"{profiled.check.source} was written without a sha256 by another tool: verified and adopted")
    if not profiled.check.ok:
        key = quarantine_batch(model, batch_id, profiled.check)
        publish(model, BATCH_REJECTED, {"batch_id": batch_id, "problems": profiled.check.problems, "record": key})
        raise BatchRejectedError(profiled.check.message())

    check = check_drift(spec, batch_id)
    if check.duplicate:
        # A run that stopped between its drift check and its scoring leaves the batch to this one to score.
        scoring = None if is_scored(model, batch_id) else _score(model, batch_id)
        print(f"batch {batch_id} was already checked by another run" + ("" if scoring else ": nothing to do"))
        return {"batch_id": batch_id, "status": "duplicate", "report_key": check.report_key, "scoring": scoring}

    publish_drift_artifacts(check)
    publish(
        model,
        BATCH_PROFILED,
        {
            "batch_id": batch_id,
            "rows": profiled.rows,
            "profile_key": profiled.profile_key,
            "report_key": check.report_key,
            "drift": check.report.drift,
            "score": round(check.report.score, 6),
            "event_time_max": profiled.event_time_max,
        },
    )
    announcement = None
    if check.triggered:
        announcement = {**check.event_payload(), "drift_onset": profiled.event_time_min}
        announcement["event_id"] = publish(model, DRIFT_DETECTED, announcement)
    scoring = _score(model, batch_id)
    reconcile_outbox(model)
    publish_drift_picture(check)  # after the events: drawing (~0.5-2 s) never delays what the loop waits for
    for reason in check.reasons:
        print(reason)
    return {
        "batch_id": batch_id,
        "status": "drift" if check.triggered else ("drift-continues" if check.declared else "ok"),
        "announcement": announcement,
        "score": check.report.score,
        "drifted_features": check.report.drifted_features,
        "report_key": check.report_key,
        "scoring": scoring,
    }
