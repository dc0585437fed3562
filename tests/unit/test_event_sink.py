"""The event sink: publishing goes through the S3 outbox, reconcile re-sends what the receiver missed, and the
doctor's rule tells stuck events from the backlog on its way (``driftline.events.sink``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from driftline.errors import InfrastructureError
from driftline.events.records import BATCH_ARRIVED, DRIFT_DETECTED, new_event, read_outbox
from driftline.events.sink import (
    RECONCILE_GRACE,
    STUCK_AFTER,
    UNCHECKED_LOOKBACK,
    MemoryEventSink,
    outbox_health,
)
from driftline.storage.store import MemoryStore

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
RELATED = [{"prefect.resource.id": "prefect.flow-run.1", "prefect.resource.role": "flow-run"}]


def _event(minutes_ago: float, batch_id: str = "b1", name: str = BATCH_ARRIVED):
    return new_event("m", name, {"batch_id": batch_id}, now=NOW - timedelta(minutes=minutes_ago))


def test_a_published_event_is_in_the_outbox_and_sent_once_with_its_relations() -> None:
    store = MemoryStore()
    sink = MemoryEventSink(store)
    record = _event(0)
    assert sink.publish(record, RELATED) == record.event_id
    assert read_outbox(store, "m") == [record]
    assert sink.sent == [(record, RELATED)]
    sink.publish(record)  # a retried publish: the outbox keeps one copy, the receiver one event
    assert read_outbox(store, "m") == [record] and sink.records == [record]


def test_a_receiver_that_is_down_fails_the_publish_and_the_event_waits_in_the_outbox() -> None:
    store = MemoryStore()
    sink = MemoryEventSink(store, reachable=False)
    record = _event(5)
    with pytest.raises(InfrastructureError, match="stays in the outbox"):
        sink.publish(record)
    assert read_outbox(store, "m") == [record] and sink.records == []
    with pytest.raises(InfrastructureError):
        sink.reconcile("m", timedelta(hours=1), now=NOW)
    sink.reachable = True
    assert sink.reconcile("m", timedelta(hours=1), now=NOW) == [record.event_id]
    assert sink.records == [record]


def test_reconcile_resends_only_settled_missing_events_and_nothing_the_second_time() -> None:
    store = MemoryStore()
    sink = MemoryEventSink(store)
    delivered = _event(10, "delivered")
    sink.publish(delivered)
    lost = _event(10, "lost")
    fresh = _event(RECONCILE_GRACE.total_seconds() / 120, "fresh")  # half the grace: may still be in flight
    old = _event(60 * 25, "old")  # before the lookback
    for record in (lost, fresh, old):
        sink.keep(record)
    assert sink.reconcile("m", timedelta(hours=24), now=NOW) == [lost.event_id]
    assert sink.records == [delivered, lost]
    assert sink.reconcile("m", timedelta(hours=24), now=NOW) == []
    assert sink.reconcile("m", timedelta(hours=24), now=NOW + RECONCILE_GRACE) == [fresh.event_id]


class _CountingStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.gets: list[str] = []

    def get(self, key: str) -> bytes:
        self.gets.append(key)
        return super().get(key)


def test_reconcile_lists_the_outbox_and_reads_only_the_records_it_resends() -> None:
    """watch-batches reconciles every minute over a day of events: one read per event made it the loop's
    costliest no-op run."""
    store = _CountingStore()
    sink = MemoryEventSink(store)
    delivered = [_event(10 + i, f"d{i}") for i in range(30)]
    for record in delivered:
        sink.publish(record)
    lost = _event(5, "lost")
    sink.keep(lost)
    store.gets.clear()
    assert sink.reconcile("m", timedelta(hours=24), now=NOW) == [lost.event_id]
    assert sink.records == [*delivered, lost]
    assert store.gets == ["events/m/" + lost.ulid + ".json"]
    store.gets.clear()
    assert sink.reconcile("m", timedelta(hours=24), now=NOW) == [] and store.gets == []


def test_an_empty_outbox_reconciles_to_nothing() -> None:
    assert MemoryEventSink(MemoryStore()).reconcile("m", timedelta(hours=24), now=NOW) == []


# --------------------------------------------------------------------------------------------- doctor
def test_a_missing_event_older_than_the_resend_window_is_stuck_and_a_younger_one_is_only_unconfirmed() -> None:
    stuck = _event(STUCK_AFTER.total_seconds() / 60 + 1, "stuck")
    young = _event(STUCK_AFTER.total_seconds() / 60 - 1, "young", DRIFT_DETECTED)
    seen = _event(30, "seen")
    health = outbox_health([stuck, young, seen], NOW, seen={seen.event_id})
    assert health.stuck == [f"{BATCH_ARRIVED} {stuck.event_id}"]
    assert health.unconfirmed == [f"{DRIFT_DETECTED} {young.event_id}"]
    assert not health.healthy
    assert health.problems == [
        "1 outbox event(s) never reached the Prefect server; watch-batches re-sends them every minute: is it "
        "scheduled and the worker running (`driftline status`)?"
    ]
    assert health.warnings == [
        "1 outbox event(s) not yet on the Prefect server; watch-batches re-sends them every minute once the "
        "server answers"
    ]
    assert health.to_dict() == {
        "events_last_7_days": 3,
        "not_on_server": health.stuck,
        "not_confirmed": health.unconfirmed,
    }


def test_every_event_on_the_server_is_healthy() -> None:
    records = [_event(60 * 24 * 3, "b1"), _event(1, "b2")]
    health = outbox_health(records, NOW, seen={r.event_id for r in records})
    assert health.healthy and health.warnings == [] and health.to_dict()["not_on_server"] == []


def test_a_server_that_cannot_be_asked_leaves_the_last_day_unconfirmed_and_says_why() -> None:
    recent = _event(UNCHECKED_LOOKBACK.total_seconds() / 60 - 1, "recent")
    older = _event(UNCHECKED_LOOKBACK.total_seconds() / 60 + 1, "older")
    health = outbox_health([older, recent], NOW, check_error="Prefect API http://x/api is unreachable")
    assert health.healthy and health.stuck == []
    assert health.unconfirmed == [f"{BATCH_ARRIVED} {recent.event_id}"]
    assert health.warnings[0] == "outbox not checked against the server: Prefect API http://x/api is unreachable"
    assert health.warnings[1].startswith("1 outbox event(s) not yet on the Prefect server")


def test_without_a_server_to_ask_the_outbox_is_only_counted() -> None:
    health = outbox_health([_event(60 * 24)], NOW)
    assert health.healthy and health.events == 1 and health.stuck == health.unconfirmed == health.warnings == []


def test_a_watch_leaves_a_just_announced_batch_to_its_run_and_profiles_the_rest() -> None:
    from driftline.data.batches import ANNOUNCED_GRACE, leave_announced
    from driftline.events.records import LABELS_ARRIVED, write_outbox

    store, now = MemoryStore(), datetime.now(UTC)
    write_outbox(store, new_event("m", BATCH_ARRIVED, {"batch_id": "fresh"}, now=now - timedelta(seconds=5)))
    write_outbox(store, new_event("m", BATCH_ARRIVED, {"batch_id": "old"}, now=now - 2 * ANNOUNCED_GRACE))
    write_outbox(store, new_event("m", LABELS_ARRIVED, {"batch_id": "labelled"}, now=now - timedelta(seconds=1)))
    write_outbox(store, new_event("other", BATCH_ARRIVED, {"batch_id": "dropped"}, now=now))
    # "old": its run had its chance (crashed, or the event never arrived); "dropped": written straight to S3
    # for this model (announced only for another); "labelled": labels are no announcement of the features.
    profile, left = leave_announced(store, "m", ["dropped", "fresh", "labelled", "old"], now=now)
    assert (profile, left) == (["dropped", "labelled", "old"], ["fresh"])
    assert leave_announced(store, "m", [], now=now) == ([], [])
