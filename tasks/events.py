"""Publish driftline events (S3 outbox first, then Prefect) and reconcile what the server missed."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event
from prefect.events.worker import EventsWorker
from prefect.runtime import flow_run
from prefect.settings import PREFECT_API_URL

from driftline.events.prefect_http import PrefectEventSink
from driftline.events.records import new_event
from driftline.events.sink import EventSink
from driftline.storage import layout
from tasks.common import store


def event_sink() -> EventSink:
    """Model events of the tasks: outbox on the store, then the Prefect server the run talks to."""
    return PrefectEventSink(store(), PREFECT_API_URL.value())


def emit_now(name: str, resource_id: str, payload: dict[str, Any], timeout: float = 10.0) -> str | None:
    """Emit one event that belongs to no model (e.g. the stack check) and flush it."""
    event = emit_event(event=name, resource={"prefect.resource.id": resource_id}, payload=payload)
    EventsWorker.drain_all(timeout=timeout)
    return str(event.id) if event is not None else None


@task(retries=2, retry_delay_seconds=[1, 5], cache_policy=NO_CACHE)
def emit(name: str, resource_id: str, payload: dict[str, Any]) -> str | None:
    """Emit an event that belongs to no model."""
    return emit_now(name, resource_id, payload)


@task(retries=2, retry_delay_seconds=[1, 5], cache_policy=NO_CACHE)
def publish(model: str, name: str, payload: dict[str, Any]) -> str:
    """Write a model event to the outbox, then send it, related to this flow run; return its id."""
    related = []
    if (run_id := flow_run.get_id()) is not None:
        related.append({"prefect.resource.id": f"prefect.flow-run.{run_id}", "prefect.resource.role": "flow-run"})
    return event_sink().publish(new_event(model, name, payload), related)


@task(retries=1, retry_delay_seconds=[5], cache_policy=NO_CACHE)
def reconcile_outbox(model: str, lookback_hours: float = 24.0) -> list[str]:
    """Re-emit the model's outbox events of the last hours that the Prefect server has not stored."""
    return event_sink().reconcile(model, timedelta(hours=lookback_hours))


def models_with_spec() -> list[str]:
    """Every model whose spec is stored (``models/<model>/spec.yaml``), sorted."""
    keys = store().list(layout.models_prefix())
    return sorted({model for model in map(layout.model_from_spec_key, keys) if model})


@task(cache_policy=NO_CACHE)
def reconcile_all_outboxes(lookback_hours: float = 24.0) -> dict[str, int]:
    """Re-emit what the Prefect server missed from every model's outbox; model -> events re-sent.

    A model whose reconcile fails is logged and left out of the result; the others still run.
    """
    logger = get_run_logger()
    sink = event_sink()
    resent: dict[str, int] = {}
    for model in models_with_spec():
        try:
            ids = sink.reconcile(model, timedelta(hours=lookback_hours))
        except Exception as error:  # one model's broken outbox or a server hiccup must not stop the others
            logger.warning("outbox of %s not reconciled: %s: %s", model, type(error).__name__, error)
            continue
        resent[model] = len(ids)
        if ids:
            logger.info("re-sent %s outbox event(s) of %s the server never stored", len(ids), model)
    return resent
