"""shadow-evaluate: labels arrived; update the shadow test, the guard and the champion's performance monitor;
announce verdicts and a degraded champion; roll back; say when a retrain waiting for labels is due."""

from __future__ import annotations

from prefect import flow

from driftline.events.records import MODEL_ROLLED_BACK, PERFORMANCE_DEGRADED, RETRAIN_DUE, SHADOW_DECIDED
from driftline.loop import rules
from flows.promote import promote
from tasks.batches import load_spec
from tasks.events import publish
from tasks.shadow import (
    evaluate_labelled_batch,
    fold_champion_performance,
    publish_performance_artifact,
    publish_shadow_artifact,
    recheck_waiting_retrain,
    record_performance_announcement,
    retire_candidate,
    roll_back,
)


def _promote(model: str, candidate: str, verdict: str) -> dict:
    """promote as a subflow: what it returned, or why it failed."""
    # Here rather than in a run that shadow.decided would start: a flow-run process costs ~3 s of CPU before
    # any work. Its own state, so a failed switchover fails the promote subflow, never the verdict announced.
    promoted = promote(model, candidate, verdict, return_state=True)
    if promoted.is_completed():
        return promoted.result()
    return {
        "model": model,
        "outcome": "failed",
        "candidate": candidate,
        "reason": str(promoted.message or promoted.name),
    }


@flow(name="shadow-evaluate", log_prints=True)
def shadow_evaluate(model: str, batch_id: str) -> dict:
    """Fold labelled batch `batch_id` into the shadow test, the post-promotion guard and the champion's
    performance monitor of `model`; announce what they decide."""
    spec = load_spec(model)
    result = evaluate_labelled_batch(spec, batch_id)
    for note in result.notes:
        print(note)
    outcome: dict = {"batch_id": batch_id}
    promote_now = False
    verdict = result.shadow_verdict
    if verdict is not None:
        state = result.shadow_state
        print(
            f"shadow {state.candidate}: {verdict.verdict} after {verdict.n} rows, "
            f"[{verdict.lower:.5f}, {verdict.upper:.5f}]"
        )
        outcome["shadow"] = verdict.to_dict()
        outcome["shadow_candidate"] = state.candidate
        # Final on this very batch: announced once, however often the batch is evaluated again.
        outcome["shadow_final"] = verdict.final and bool(state.batch_ids) and state.batch_ids[-1] == batch_id
        if outcome["shadow_final"]:
            action = rules.shadow_action(verdict.verdict)
            if action == "retire":
                retire_candidate(model, state.candidate, f"shadow {verdict.verdict}: {verdict.reasons[0]}")
            publish(
                model,
                SHADOW_DECIDED,
                {"candidate": state.candidate, "champion": state.champion, **verdict.to_dict()},
            )
            promote_now = action == "promote"
    guard = result.guard_verdict
    if guard is not None:
        outcome["guard"] = guard.to_dict()
        print(f"guard of {result.guard_state.new_champion}: {guard.verdict} after {guard.n} rows")
        if guard.verdict == "rollback" and result.guard_state.batch_ids[-1] == batch_id:
            switch = roll_back(spec, "; ".join(guard.reasons))
            publish(model, MODEL_ROLLED_BACK, {**switch.to_dict(), "evidence": guard.to_dict()})
            outcome["rolled_back_to"] = switch.champion

    monitored, note = fold_champion_performance(spec, batch_id)
    if note:
        print(note)
    if monitored is not None:
        health = monitored.verdict
        print(f"performance of {monitored.state.champion}: {health.verdict}; {'; '.join(health.reasons)}")
        outcome["performance"] = health.to_dict()
        if monitored.announce:
            payload = monitored.event_payload()
            event_id = publish(model, PERFORMANCE_DEGRADED, payload)
            record_performance_announcement(model, monitored.state.champion, event_id)
            outcome["performance_event"] = event_id
            outcome["announcement"] = {**payload, "event_id": event_id}

    # After the champion's monitor took this batch: it was labelled while the champion served it.
    if promote_now:
        outcome["promotion"] = _promote(model, result.shadow_state.candidate, verdict.verdict)
    # Last, so the re-check sees this batch's shadow verdict (a retired or promoted candidate no longer holds
    # it back). Asked here: a retrain run that would only find it still waiting costs a process start.
    waiting = recheck_waiting_retrain(spec)
    for reason in waiting.reasons:
        print(f"waiting retrain: {reason}")
    if waiting.due:
        outcome["retrain_due"] = publish(model, RETRAIN_DUE, {"batch_id": batch_id, **waiting.identity()})
    elif waiting.request is not None:
        outcome["retrain_waiting"] = waiting.reasons
    # The UI's tables and figures after every event: drawing (~1-5 s on a busy machine) never delays a
    # promotion, rollback or retrain.
    if verdict is not None:
        publish_shadow_artifact(result)
    if monitored is not None:
        publish_performance_artifact(monitored)
    return outcome
