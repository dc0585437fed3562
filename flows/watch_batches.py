"""watch-batches: profile every stored batch that has neither a profile nor a quarantine record."""

from __future__ import annotations

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from driftline.data.batches import ANNOUNCED_GRACE, BatchScan, leave_announced, scan_batches
from driftline.storage import layout
from flows.profile_batch import profile_batch
from tasks.batches import quarantine_misnamed_batch
from tasks.common import store
from tasks.events import reconcile_all_outboxes


@task(cache_policy=NO_CACHE)
def find_pending(model: str | None) -> BatchScan:
    """Batches waiting for a profile and misnamed batch objects waiting for a quarantine record, per model."""
    return scan_batches(store(), model)


@task(cache_policy=NO_CACHE)
def split_announced(model: str, batch_ids: list[str]) -> tuple[list[str], list[str]]:
    """(batches to profile now, batches just announced by an event whose own run profiles them)."""
    return leave_announced(store(), model, batch_ids)


@flow(name="watch-batches", log_prints=True)
def watch_batches(model: str | None = None) -> dict[str, dict[str, str]]:
    """Re-send every model's outbox events the server never stored, then run profile-batch for each
    unprofiled batch (all models unless `model` is given); idempotent.

    A batch object whose name is not a valid batch id is quarantined instead (keyed by its original key
    in the outcomes), once, so it neither fails the watch nor is looked at again.

    A batch announced by `driftline ingest` less than ``ANNOUNCED_GRACE`` ago is left to the run its event
    starts. One that an event-triggered run profiles at the same moment anyway is safe: the profile and the
    report are created with conditional writes, so the second run finds them and emits nothing.
    """
    # The automatic re-send of the S3 outbox: an event published while the Prefect server was away (an
    # ingest during an outage) reaches it here within a minute of its return.
    reconcile_all_outboxes()
    outcomes: dict[str, dict[str, str]] = {}
    scan = find_pending(model)
    for name, keys in scan.misnamed.items():
        for key in keys:
            # One by one, each with its own state: a failure here must not stop the other batches or models.
            state = quarantine_misnamed_batch(name, key, return_state=True)
            if state.is_completed():
                outcomes.setdefault(name, {})[key] = "QUARANTINED"
                print(f"{key}: not a valid batch id; quarantined ({state.result()})")
            else:
                outcomes.setdefault(name, {})[key] = state.type.value
                print(f"{key}: not a valid batch id; recording its quarantine failed ({state.type.value})")
    for name, pending in scan.pending.items():
        batch_ids, announced = split_announced(name, pending)
        for batch_id in announced:
            outcomes.setdefault(name, {})[batch_id] = "ANNOUNCED"
            print(
                f"{layout.batch_data(name, batch_id)}: announced less than {ANNOUNCED_GRACE.total_seconds():.0f} s "
                "ago; left to the profile-batch run its event starts"
            )
        for batch_id in batch_ids:
            state = profile_batch(name, batch_id, return_state=True)
            outcomes.setdefault(name, {})[batch_id] = state.type.value
            print(f"{layout.batch_data(name, batch_id)}: {state.type.value}")
    if not outcomes:
        print("no pending batches")
    return outcomes
