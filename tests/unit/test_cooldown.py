"""Storm control decisions and the idempotency claim."""

from __future__ import annotations

from datetime import UTC, datetime

from driftline.loop import cooldown, rules
from driftline.loop.cooldown import RetrainRequest
from driftline.models import registry
from driftline.storage.store import MemoryStore
from tests.batches import example_spec


def _request(trigger: str = "drift", reference: str | None = "v1") -> RetrainRequest:
    return RetrainRequest(
        model="m", trigger=trigger, requested_at=datetime.now(UTC).isoformat(), reference_version=reference
    )


def test_only_the_first_claim_of_a_key_wins() -> None:
    store = MemoryStore()
    assert cooldown.claim(store, _request(), "v1-w1") is True
    assert [cooldown.claim(store, _request(), "v1-w1") for _ in range(4)] == [False] * 4
    assert cooldown.claim(store, _request(), "v1-w2") is True


def test_a_pending_request_is_kept_until_cleared() -> None:
    store = MemoryStore()
    assert cooldown.read_pending(store, "m") is None
    request = _request()
    cooldown.record_pending(store, request, "waiting")
    assert cooldown.read_pending(store, "m") == request
    cooldown.clear_pending(store, "m")
    assert cooldown.read_pending(store, "m") is None


def _drift(onset: str | None, reference: str | None = "v1", event: str = "e") -> RetrainRequest:
    return RetrainRequest(
        model="m",
        trigger="drift",
        requested_at=datetime.now(UTC).isoformat(),
        drift_event_id=event,
        drift_onset=onset,
        reference_version=reference,
    )


def test_lasting_drift_keeps_the_first_onset_so_a_waiting_retrain_can_ever_run() -> None:
    store = MemoryStore()
    first = _drift("2026-01-08T00:00:00", event="e1")
    cooldown.record_pending(store, first, "waiting")
    later = _drift("2026-01-10T00:00:00+00:00", event="e2")  # the next cooldown window, same drift
    kept = rules.keep_earliest_onset(later, cooldown.read_pending(store, "m"))
    assert (kept.drift_onset, kept.drift_event_id) == ("2026-01-08T00:00:00", "e1")
    cooldown.record_pending(store, later, "still waiting")
    assert cooldown.read_pending(store, "m").drift_onset == "2026-01-08T00:00:00"
    # An earlier onset, or another reference (a new champion), is taken as it comes.
    earlier = _drift("2026-01-07T00:00:00", event="e0")
    assert rules.keep_earliest_onset(earlier, first) == earlier
    other = _drift("2026-01-10T00:00:00", reference="v2")
    assert rules.keep_earliest_onset(other, first) == other
    # Numeric event times compare as numbers.
    assert rules.keep_earliest_onset(_drift("1000.5"), _drift("900")).drift_onset == "900"


def test_a_drift_is_answered_once_whoever_finds_it_ready() -> None:
    store = MemoryStore()
    waiting = _drift("2026-01-08T00:00:00", event="e1")
    recheck, merged_drift_run = (
        waiting,
        rules.keep_earliest_onset(_drift("2026-01-09T00:00:00", event="e2"), waiting),
    )
    assert cooldown.answer_key(recheck) == cooldown.answer_key(merged_drift_run)
    assert cooldown.claim(store, recheck, cooldown.answer_key(recheck)) is True
    assert cooldown.claim(store, merged_drift_run, cooldown.answer_key(merged_drift_run)) is False
    assert cooldown.answer_key(_drift("2026-01-09T00:00:00", event="e2")) != cooldown.answer_key(waiting)


# ------------------------------------------------------------------------- admission against the store
def _champion(store: MemoryStore, version: str, alias: str = "champion") -> None:
    registry.register_version(store, "m", version, f"booster {version}".encode(), {"decision": "champion"})
    registry.move_alias(store, "m", alias, version, expected=registry.read_alias(store, "m", alias), reason="test")


def _announced(batch: str = "b7", reference: str | None = "v1") -> RetrainRequest:
    return RetrainRequest(
        model="m",
        trigger="drift",
        requested_at=datetime.now(UTC).isoformat(),
        drift_event_id="e",
        drift_batch_id=batch,
        reference_version=reference,
    )


def test_the_same_drift_delivered_twice_is_admitted_once_and_its_claim_is_stored() -> None:
    store, spec = MemoryStore(), example_spec("m")
    _champion(store, "v1")
    first = cooldown.admit_and_claim(store, spec, _announced(), rechecking=False)
    again = cooldown.admit_and_claim(store, spec, _announced(), rechecking=False)
    assert (first.proceed, first.outcome) == (True, "proceed")
    assert cooldown.is_claimed(store, "m", first.key)
    assert (again.proceed, again.outcome, again.key) == (False, "duplicate", first.key)


def test_a_claim_taken_by_a_racing_run_makes_the_admission_a_duplicate() -> None:
    store, spec = MemoryStore(), example_spec("m")
    _champion(store, "v1")
    key = rules.request_key(_announced(), spec)

    class RacedStore(MemoryStore):
        """The other run's claim lands between our existence check and our create."""

        def exists(self, key_: str) -> bool:
            found = super().exists(key_)
            if not found and key_.endswith(f"{key}.json"):
                cooldown.claim(self, _announced(), key)
            return found

    raced = RacedStore()
    _champion(raced, "v1")
    admission = cooldown.admit_and_claim(raced, spec, _announced(), rechecking=False)
    assert (admission.proceed, admission.outcome) == (False, "duplicate")
    assert cooldown.admit_and_claim(store, spec, _announced(), rechecking=False).proceed


def test_a_drift_retrain_waits_for_the_shadow_slot_without_using_up_its_claim() -> None:
    store, spec = MemoryStore(), example_spec("m")
    _champion(store, "v1")
    _champion(store, "v2", alias="shadow")
    busy = cooldown.admit_and_claim(store, spec, _announced(), rechecking=False)
    assert (busy.proceed, busy.outcome) == (False, "shadow-busy")
    assert not cooldown.is_claimed(store, "m", busy.key)


def test_a_request_about_a_replaced_champion_is_stale_and_claims_nothing() -> None:
    store, spec = MemoryStore(), example_spec("m")
    _champion(store, "v2")
    stale = cooldown.admit_and_claim(store, spec, _announced(reference="v1"), rechecking=False)
    assert (stale.proceed, stale.outcome) == (False, "stale")
    assert not cooldown.is_claimed(store, "m", stale.key)


def test_a_labels_recheck_answers_the_waiting_request_and_drops_a_stale_one() -> None:
    store = MemoryStore()
    assert cooldown.waiting_request(store, "m") == (None, None)
    _champion(store, "v1")
    waiting = _announced(reference="v1")
    cooldown.record_pending(store, waiting, "waiting for labels")
    assert cooldown.waiting_request(store, "m") == (waiting, None)
    _champion(store, "v2")  # promoted meanwhile: the drift on v1 no longer applies
    pending, note = cooldown.waiting_request(store, "m")
    assert pending is None and "stale" in note and "v2" in note
    assert cooldown.read_pending(store, "m") is None
