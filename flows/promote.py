"""promote: a shadow verdict said promote (auto mode), or a person did; switch the champion over."""

from __future__ import annotations

from prefect import flow

from driftline.events.records import MODEL_PROMOTED
from tasks.batches import load_spec
from tasks.events import publish
from tasks.shadow import current_shadow, promote_version


@flow(name="promote", log_prints=True)
def promote(model: str, candidate: str, verdict: str = "promote", manual: bool = False) -> dict:
    """Promote `candidate` if the verdict says so and the spec's promotion is auto (or `manual` is set)."""
    spec = load_spec(model)
    if verdict != "promote":
        print(f"verdict {verdict}: nothing to promote")
        return {"model": model, "outcome": "no-op", "verdict": verdict}
    if spec.promotion != "auto" and not manual:
        print(f"promotion is manual for {model}: run `driftline promote {model} {candidate}`")
        return {"model": model, "outcome": "awaiting-manual"}
    if not manual and current_shadow(model) != candidate:
        print(f"{candidate} is no longer in shadow: nothing to promote")
        return {"model": model, "outcome": "stale"}
    switch = promote_version(spec, candidate, "shadow test: candidate better" if not manual else "manual")
    publish(model, MODEL_PROMOTED, switch.to_dict())
    print(f"{model}: champion {switch.previous} -> {switch.champion}")
    return {"model": model, "outcome": "promoted", **switch.to_dict()}
