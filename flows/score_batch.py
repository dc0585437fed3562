"""score-batch: the champion's predictions are the output; shadow and guarded models score the same rows."""

from __future__ import annotations

from typing import Any, NoReturn

from prefect import flow
from prefect.client.schemas.objects import State

from driftline.events.records import DRIFT_DETECTED, SCORING_FAILED, scoring_failed_payload
from tasks.batches import load_spec
from tasks.events import publish
from tasks.scoring import (
    check_prediction_drift,
    failure_of,
    load_batch,
    publish_scoring_artifact,
    record_scoring_failure,
    score_version,
    scoring_roles,
    write_scoring_summary,
)


def fail_scoring(model: str, batch_id: str, version: str, state: State[Any]) -> NoReturn:
    """Announce that the champion could not score the batch (driftline.scoring.failed), then fail the run."""
    error = failure_of(state)
    print(f"champion {version} could not score {batch_id}: {type(error).__name__}: {error}")
    # Best effort: the event is in the outbox either way, and the run must fail with the scoring error.
    publish(model, SCORING_FAILED, scoring_failed_payload(batch_id, version, error), return_state=True)
    raise error


@flow(name="score-batch", log_prints=True)
def score_batch(model: str, batch_id: str) -> dict:
    """Score `batch_id` with the champion and, beside it, the shadow candidate and the guarded previous champion;
    check the champion's predictions for drift."""
    spec = load_spec(model)
    roles = scoring_roles(model)
    if "champion" not in roles:
        print(f"{model} has no champion yet: nothing scores batch {batch_id}")
        return {"batch_id": batch_id, "scored": {}}
    loaded = load_batch(spec, batch_id, return_state=True)
    if not loaded.is_completed():
        fail_scoring(model, batch_id, roles["champion"], loaded)
    batch = loaded.result()
    scored = score_version(spec, batch, batch_id, roles["champion"], "champion", return_state=True)
    if not scored.is_completed():
        fail_scoring(model, batch_id, roles["champion"], scored)
    champion = scored.result()
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
