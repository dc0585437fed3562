"""score-batch: the champion's predictions are the output; shadow and guarded models score the same rows."""

from __future__ import annotations

from prefect import flow

from driftline.events import DRIFT_DETECTED
from tasks.batches import load_spec
from tasks.events import publish
from tasks.scoring import (
    check_prediction_drift,
    load_batch,
    publish_scoring_artifact,
    record_scoring_failure,
    score_version,
    scoring_roles,
    write_scoring_summary,
)


@flow(name="score-batch", log_prints=True)
def score_batch(model: str, batch_id: str) -> dict:
    """Score `batch_id` with the champion and, beside it, the shadow candidate and the guarded previous champion;
    check the champion's predictions for drift."""
    spec = load_spec(model)
    roles = scoring_roles(model)
    if "champion" not in roles:
        print(f"{model} has no champion yet: nothing scores batch {batch_id}")
        return {"batch_id": batch_id, "scored": {}}
    batch = load_batch(spec, batch_id)
    champion = score_version(spec, batch, batch_id, roles["champion"], "champion")
    results = [champion]
    failures = {}
    failed: dict[str, tuple[str, str]] = {}
    for role in ("shadow", "previous"):
        if role not in roles or roles[role] == roles["champion"]:
            continue
        # A side model's failure must never touch the champion's output: run it as its own state.
        state = score_version(spec, batch, batch_id, roles[role], role, return_state=True)
        if state.is_completed():
            results.append(state.result())
        else:
            message = str(state.message or state.name)
            failures[role] = record_scoring_failure(model, batch_id, roles[role], role, message)
            failed[roles[role]] = (role, failures[role])
            print(f"{role} {roles[role]} failed to score {batch_id}: {message} (champion output unaffected)")
    write_scoring_summary(model, batch_id, results, failed)
    for result in results:
        print(
            f"{result.role} {result.version}: {result.rows} rows in {result.seconds} s, "
            f"latency p50/p95/p99 {result.p50_ms}/{result.p95_ms}/{result.p99_ms} ms"
        )

    prediction = check_prediction_drift(spec, batch, batch_id, roles["champion"])
    publish_scoring_artifact(model, batch_id, results, failed, prediction)
    for note in prediction.notes:
        print(note)
    if prediction.checked:
        print(f"predictions of {roles['champion']}: {'; '.join(prediction.section['reasons'])}")
    if prediction.triggered:
        publish(model, DRIFT_DETECTED, prediction.event_payload())
    return {
        "batch_id": batch_id,
        "scored": {r.role: r.to_dict() for r in results},
        "failures": failures,
        "prediction_drift": {
            "checked": prediction.checked,
            "drift": prediction.drift,
            "triggered": prediction.triggered,
            "key": prediction.stored_key,
        },
    }
