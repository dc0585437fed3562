"""stack-check: the smallest flow that crosses every part of the stack (worker, S3, events)."""

from __future__ import annotations

from prefect import flow

from driftline.events.records import STACK_CHECKED, stack_check_resource_id
from tasks.events import emit
from tasks.stack_probe import read_probe, telemetry_settings, write_probe


@flow(name="stack-check", log_prints=True)
def stack_check(nonce: str) -> dict:
    """Write and read back an S3 object, then emit `driftline.stack.checked` with the nonce and the
    telemetry switches the run saw (so a deep status proves flow runs are telemetry-free)."""
    sha256 = write_probe(nonce)
    location = read_probe(nonce, sha256)
    telemetry = telemetry_settings()
    payload = {"nonce": nonce, "object": location, "telemetry": telemetry}
    event_id = emit(STACK_CHECKED, stack_check_resource_id(nonce), payload)
    print(f"stack-check {nonce}: S3 round trip via {location}, event {event_id}")
    return {"nonce": nonce, "object": location, "event_id": event_id, "telemetry": telemetry}
