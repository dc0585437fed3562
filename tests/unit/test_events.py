from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from driftline import events
from driftline.store import MemoryStore


def test_ulids_made_in_a_burst_sort_in_creation_order_and_map_to_distinct_uuids() -> None:
    ulids = [events.new_ulid() for _ in range(5000)]
    assert ulids == sorted(ulids) and len(set(ulids)) == len(ulids)
    assert len({events.ulid_to_uuid(u) for u in ulids}) == len(ulids)
    assert all(len(u) == 26 and u == u.lower() for u in ulids[:10])


def test_outbox_write_is_idempotent_and_read_back_by_time() -> None:
    store = MemoryStore()
    old = events.new_event("m", events.DRIFT_DETECTED, {"score": 0.4}, now=datetime.now(UTC) - timedelta(days=2))
    new = events.new_event("m", events.BATCH_PROFILED, {"batch_id": "b1"})
    for record in (old, new, new):
        events.write_outbox(store, record)
    assert events.read_outbox(store, "m") == [old, new]
    assert events.read_outbox(store, "m", since=datetime.now(UTC) - timedelta(days=1)) == [new]
    assert new.payload == {"model": "m", "event_id": new.event_id, "batch_id": "b1"}
    assert new.resource_id == "driftline.model.m"


def test_unknown_event_names_are_refused() -> None:
    with pytest.raises(ValueError, match="driftline.nope"):
        events.new_event("m", "driftline.nope", {})
