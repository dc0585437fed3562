"""watch-batches: profile every stored batch that has neither a profile nor a quarantine record."""

from __future__ import annotations

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from driftline import layout
from driftline.batches import pending_batches
from flows.profile_batch import profile_batch
from tasks.common import store


@task(cache_policy=NO_CACHE)
def find_pending(model: str | None) -> dict[str, list[str]]:
    """Batches waiting for a profile, per model."""
    return pending_batches(store(), model)


@flow(name="watch-batches", log_prints=True)
def watch_batches(model: str | None = None) -> dict[str, dict[str, str]]:
    """Run profile-batch for each unprofiled batch (all models unless `model` is given); idempotent.

    A batch that an event-triggered run is profiling at the same moment is safe: the profile and the
    report are created with conditional writes, so the second run finds them and emits nothing.
    """
    outcomes: dict[str, dict[str, str]] = {}
    for name, batch_ids in find_pending(model).items():
        for batch_id in batch_ids:
            state = profile_batch(name, batch_id, return_state=True)
            outcomes.setdefault(name, {})[batch_id] = state.type.value
            print(f"{layout.batch_data(name, batch_id)}: {state.type.value}")
    if not outcomes:
        print("no pending batches")
    return outcomes
