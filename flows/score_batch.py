"""score-batch: the champion's predictions are the output; shadow and guarded models score the same rows."""

from __future__ import annotations

from prefect import flow

from tasks.batches import load_spec
from tasks.scoring import load_batch, record_scoring_failure, score_version, scoring_roles, write_scoring_summary


@flow(name="score-batch", log_prints=True)
def score_batch(model: str, batch_id: str) -> dict:
    """Score `batch_id` with the champion and, beside it, the shadow candidate and the guarded previous champion."""
    spec = load_spec(model)
    roles = scoring_roles(model)
    if "champion" not in roles:
        print(f"{model} has no champion yet: nothing scores batch {batch_id}")
        return {"batch_id": batch_id, "scored": {}}
    batch = load_batch(spec, batch_id)
    champion = score_version(spec, batch, batch_id, roles["champion"], "champion")
    results = [champion]
    failures = {}
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
            print(f"{role} {roles[role]} failed to score {batch_id}: {message} (champion output unaffected)")
    write_scoring_summary(model, batch_id, results)
    for result in results:
        print(f"{result.role} {result.version}: {result.rows} rows in {result.seconds} s, p99 {result.p99_ms} ms")
    return {"batch_id": batch_id, "scored": {r.role: r.to_dict() for r in results}, "failures": failures}
