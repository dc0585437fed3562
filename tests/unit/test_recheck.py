"""The labels re-check asked where labels arrive: due only when the retrain flow would build a candidate."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from driftline.loop import cooldown, recheck
from driftline.loop.cooldown import RetrainRequest
from driftline.models import registry
from driftline.storage import layout
from driftline.storage.store import MemoryStore
from tests.batches import example_batch, example_labels, example_spec, parquet_bytes

ROWS = 1_500  # per batch, one second apart from 2026-01-01 + the batch number in days


def _store_batches(store: MemoryStore, numbers: range) -> None:
    for i in numbers:
        frame = example_batch(i, rows=ROWS)
        store.create(layout.batch_data("m", f"b{i:03d}"), parquet_bytes(frame))
        store.create(layout.batch_labels("m", f"b{i:03d}"), parquet_bytes(example_labels(frame, i)))


def _alias(store: MemoryStore, version: str, alias: str = "champion", batches: list[str] | None = None) -> None:
    lineage = {"training_batches": [{"batch_id": b} for b in batches or []]}
    registry.register_version(store, "m", version, f"booster {version}".encode(), {"lineage": lineage})
    registry.move_alias(store, "m", alias, version, expected=registry.read_alias(store, "m", alias), reason="test")


def _waiting(store: MemoryStore, onset: datetime, reference: str = "v1") -> RetrainRequest:
    request = RetrainRequest(
        model="m",
        trigger="drift",
        requested_at=datetime.now(UTC).isoformat(),
        drift_event_id="e1",
        drift_batch_id="b003",
        drift_onset=onset.isoformat(),
        reference_version=reference,
    )
    cooldown.record_pending(store, request, "waiting for labels")
    return request


def _reason(store: MemoryStore) -> str:
    return json.loads(store.get(layout.retrain_pending("m")))["reason"]


def test_nothing_waits_nothing_is_due() -> None:
    check = recheck.recheck_waiting(MemoryStore(), example_spec("m"))
    assert (check.due, check.request, check.reasons, check.identity()) == (False, None, [], {})


def test_a_retrain_waiting_for_rows_since_the_onset_is_due_once_they_are_labelled() -> None:
    store, spec = MemoryStore(), example_spec("m")
    _store_batches(store, range(1, 4))
    _alias(store, "v1", batches=["b001", "b002"])
    onset = datetime(2026, 1, 4, 12)  # batch 3 ends on Jan 4 at 00:25, so no labelled row follows the onset yet
    request = _waiting(store, onset)
    waiting = recheck.recheck_waiting(store, spec)
    assert not waiting.due and waiting.request == request
    assert "labelled rows since the drift onset" in waiting.reasons[0], waiting.reasons
    assert _reason(store) == waiting.reasons[0]  # the record says why it still waits, as the retrain run would
    assert cooldown.read_pending(store, "m") == request  # and it is not used up

    minimum = spec.window.min_rows_since_drift
    _store_batches(store, range(5, 5 + -(-minimum // ROWS)))  # Jan 5 on: at least the rows the spec asks for
    due = recheck.recheck_waiting(store, spec)
    assert due.due, due.reasons
    assert due.identity() == {"drift_event_id": "e1", "drift_batch_id": "b003", "reference_version": "v1"}
    assert cooldown.read_pending(store, "m") == request  # the retrain run takes it, not the re-check


def test_a_waiting_retrain_is_not_due_while_a_candidate_holds_the_shadow_slot() -> None:
    store, spec = MemoryStore(), example_spec("m")
    _store_batches(store, range(1, 8))
    _alias(store, "v1", batches=["b001"])
    _alias(store, "v2", alias="shadow")
    _waiting(store, datetime(2026, 1, 2))
    busy = recheck.recheck_waiting(store, spec)
    assert not busy.due and "still in shadow" in busy.reasons[0], busy.reasons
    assert _reason(store) == busy.reasons[0]
    registry.clear_alias_if(store, "m", "shadow", "v2", reason="retired")
    assert recheck.recheck_waiting(store, spec).due


def test_a_waiting_retrain_on_exactly_the_champions_batches_is_not_due() -> None:
    store, spec = MemoryStore(), example_spec("m")
    _store_batches(store, range(1, 8))
    _alias(store, "v1", batches=[f"b{i:03d}" for i in range(1, 8)])
    _waiting(store, datetime(2026, 1, 2))
    same = recheck.recheck_waiting(store, spec)
    assert not same.due and "no labelled batch arrived since the champion" in same.reasons[0], same.reasons


def test_a_waiting_retrain_about_a_replaced_champion_is_cleared_not_due() -> None:
    store, spec = MemoryStore(), example_spec("m")
    _store_batches(store, range(1, 8))
    _alias(store, "v2")
    _waiting(store, datetime(2026, 1, 2), reference="v1")
    stale = recheck.recheck_waiting(store, spec)
    assert (stale.due, stale.request) == (False, None)
    assert "stale" in stale.reasons[0] and "v2" in stale.reasons[0]
    assert cooldown.read_pending(store, "m") is None


def test_without_reading_the_window_an_admitted_retrain_is_due() -> None:
    store, spec = MemoryStore(), example_spec("m")
    _store_batches(store, range(1, 3))
    _alias(store, "v1", batches=["b001"])
    _waiting(store, datetime(2026, 1, 9))  # no labelled row after this onset: the window would say wait
    assert not recheck.recheck_waiting(store, spec).due
    assert recheck.recheck_waiting(store, spec, read_window=False).due  # the retrain run checks readiness


def test_a_waiting_retrain_a_run_has_already_taken_is_not_due_and_not_recorded_again(monkeypatch) -> None:
    # Two labelled batches in a row each re-check the waiting drift; a retrain run started by the first takes
    # the request (claims its answer, clears the wait) while the second re-check reads the window.
    store, spec = MemoryStore(), example_spec("m")
    _store_batches(store, range(1, 4))
    _alias(store, "v1", batches=["b001", "b002"])
    request = _waiting(store, datetime(2026, 1, 1, 12))
    _store_batches(store, range(5, 5 + -(-spec.window.min_rows_since_drift // ROWS)))
    assert recheck.recheck_waiting(store, spec).due  # ready: without a run answering it, it is due

    window = recheck.retraining.prepare_window

    def a_run_takes_it_meanwhile(*args, **kwargs):
        assert cooldown.claim(store, request, cooldown.answer_key(request))
        cooldown.clear_pending(store, "m")
        return window(*args, **kwargs)

    monkeypatch.setattr(recheck.retraining, "prepare_window", a_run_takes_it_meanwhile)
    taken = recheck.recheck_waiting(store, spec)
    assert (taken.due, taken.request, taken.reasons) == (False, request, [recheck.ANSWERED])
    assert cooldown.read_pending(store, "m") is None  # the wait the run cleared stays cleared
