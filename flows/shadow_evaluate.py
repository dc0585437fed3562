"""shadow-evaluate: labels arrived; update the shadow test, the guard and the champion's performance monitor;
announce verdicts and a degraded champion; roll back."""

from __future__ import annotations

from prefect import flow

from driftline.events import MODEL_ROLLED_BACK, PERFORMANCE_DEGRADED, SHADOW_DECIDED
from tasks.batches import load_spec
from tasks.events import publish
from tasks.shadow import evaluate_labelled_batch, publish_performance_artifact, publish_shadow_artifact, roll_back


@flow(name="shadow-evaluate", log_prints=True)
def shadow_evaluate(model: str, batch_id: str) -> dict:
    """Fold labelled batch `batch_id` into the running shadow test and post-promotion guard of `model`."""
    spec = load_spec(model)
    result = evaluate_labelled_batch(spec, batch_id)
    for note in result.notes:
        print(note)
    outcome: dict = {"batch_id": batch_id}
    verdict = result.shadow_verdict
    if verdict is not None:
        publish_shadow_artifact(result)
        state = result.shadow_state
        print(
            f"shadow {state.candidate}: {verdict.verdict} after {verdict.n} rows, "
            f"[{verdict.lower:.5f}, {verdict.upper:.5f}]"
        )
        outcome["shadow"] = verdict.to_dict()
        if verdict.final and state.batch_ids and state.batch_ids[-1] == batch_id:
            publish(
                model,
                SHADOW_DECIDED,
                {"candidate": state.candidate, "champion": state.champion, **verdict.to_dict()},
            )
    guard = result.guard_verdict
    if guard is not None:
        outcome["guard"] = guard.to_dict()
        print(f"guard of {result.guard_state.new_champion}: {guard.verdict} after {guard.n} rows")
        if guard.verdict == "rollback" and result.guard_state.batch_ids[-1] == batch_id:
            switch = roll_back(spec, "; ".join(guard.reasons))
            publish(model, MODEL_ROLLED_BACK, {**switch.to_dict(), "evidence": guard.to_dict()})
            outcome["rolled_back_to"] = switch.champion
    monitored = result.performance
    if monitored is not None:
        publish_performance_artifact(monitored)
        verdict = monitored.verdict
        print(f"performance of {monitored.state.champion}: {verdict.verdict}; {'; '.join(verdict.reasons)}")
        outcome["performance"] = verdict.to_dict()
        if monitored.announce:
            outcome["performance_event"] = publish(model, PERFORMANCE_DEGRADED, monitored.event_payload())
    return outcome
