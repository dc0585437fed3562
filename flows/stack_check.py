"""stack-check: the smallest flow that crosses every part of the stack (worker, S3, events)."""

from __future__ import annotations

from prefect import flow

from driftline.events import STACK_CHECKED, stack_check_resource_id
from tasks.events import emit
from tasks.stack_probe import read_probe, write_probe


@flow(name="stack-check", log_prints=True)
def stack_check(nonce: str) -> dict[str, str | None]:
    """Write and read back an S3 object, then emit `driftline.stack.checked` with the nonce."""
    sha256 = write_probe(nonce)
    location = read_probe(nonce, sha256)
    event_id = emit(STACK_CHECKED, stack_check_resource_id(nonce), {"nonce": nonce, "object": location})
    print(f"stack-check {nonce}: S3 round trip via {location}, event {event_id}")
    return {"nonce": nonce, "object": location, "event_id": event_id}
