"""profile-batch: validate a new batch, profile it, compare with the reference, announce drift."""

from __future__ import annotations

from prefect import flow

from driftline.data.batches import BatchRejectedError
from driftline.events.records import BATCH_PROFILED, BATCH_REJECTED, DRIFT_DETECTED
from tasks.batches import (
    check_drift,
    load_spec,
    profile_batch_object,
    publish_drift_artifacts,
    publish_drift_picture,
    quarantine_batch,
)
from tasks.events import publish, reconcile_outbox


@flow(name="profile-batch", log_prints=True)
def profile_batch(model: str, batch_id: str) -> dict:
    """Profile `datasets/<model>/batches/<batch_id>.parquet` and check it for drift."""
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
        print(f"batch {batch_id} was already checked by another run: nothing to do")
        return {"batch_id": batch_id, "status": "duplicate", "report_key": check.report_key}

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
    }
