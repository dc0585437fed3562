"""Storm control decisions and the idempotency claim."""

from __future__ import annotations

from datetime import UTC, datetime

from driftline.loop import cooldown, rules
from driftline.loop.cooldown import RetrainRequest
from driftline.storage.store import MemoryStore


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
