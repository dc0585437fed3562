"""Emit Prefect events from flows and make sure they left the process."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.events import emit_event
from prefect.events.worker import EventsWorker


def emit_now(name: str, resource_id: str, payload: dict[str, Any], timeout: float = 10.0) -> str | None:
    """Emit one event and flush the events worker; return the event id (None if Prefect dropped it)."""
    event = emit_event(event=name, resource={"prefect.resource.id": resource_id}, payload=payload)
    # emit_event queues the event; drain so that it reached the server before the run reports success.
    EventsWorker.drain_all(timeout=timeout)
    return str(event.id) if event is not None else None


@task(retries=2, retry_delay_seconds=[1, 5])
def emit(name: str, resource_id: str, payload: dict[str, Any]) -> str | None:
    """Emit a driftline event."""
    return emit_now(name, resource_id, payload)
