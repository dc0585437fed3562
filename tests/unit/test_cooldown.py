"""Storm control decisions and the idempotency claim."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from driftline import cooldown
from driftline.cooldown import RetrainRequest
from driftline.store import MemoryStore


def _request(trigger: str = "drift", reference: str | None = "v1") -> RetrainRequest:
    return RetrainRequest(
        model="m", trigger=trigger, requested_at=datetime.now(UTC).isoformat(), reference_version=reference
    )


def test_events_in_one_cooldown_window_share_a_key_and_the_next_window_does_not() -> None:
    start = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
    keys = {cooldown.idempotency_key("v1", start + timedelta(seconds=s), 3600) for s in (0, 10, 3599)}
    assert len(keys) == 1
    assert cooldown.idempotency_key("v1", start + timedelta(seconds=3600), 3600) not in keys
    assert cooldown.idempotency_key("v2", start, 3600) not in keys


def test_only_the_first_claim_of_a_key_wins() -> None:
    store = MemoryStore()
    assert cooldown.claim(store, _request(), "v1-w1") is True
    assert [cooldown.claim(store, _request(), "v1-w1") for _ in range(4)] == [False] * 4
    assert cooldown.claim(store, _request(), "v1-w2") is True


@pytest.mark.parametrize(
    ("trigger", "claimed", "shadow", "supersede", "outcome"),
    [
        ("drift", True, None, False, "proceed"),
        ("drift", False, None, False, "duplicate"),
        ("drift", True, "v7", False, "shadow-busy"),
        ("drift", True, "v7", True, "proceed"),
        ("manual", None, "v7", False, "proceed"),
        ("manual", None, None, False, "proceed"),
    ],
)
def test_admission(trigger: str, claimed: bool | None, shadow: str | None, supersede: bool, outcome: str) -> None:
    admission = cooldown.admit(
        _request(trigger), claimed=claimed, shadow_version=shadow, supersede_shadow=supersede, key="k"
    )
    assert admission.outcome == outcome
    assert admission.proceed == (outcome == "proceed")
    assert admission.reasons


def test_labels_since_onset() -> None:
    assert cooldown.enough_labels_since_onset(500, 500)[0] is True
    ready, reason = cooldown.enough_labels_since_onset(120, 500)
    assert ready is False and "120" in reason and "500" in reason


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
    kept = cooldown.keep_earliest_onset(later, cooldown.read_pending(store, "m"))
    assert (kept.drift_onset, kept.drift_event_id) == ("2026-01-08T00:00:00", "e1")
    cooldown.record_pending(store, later, "still waiting")
    assert cooldown.read_pending(store, "m").drift_onset == "2026-01-08T00:00:00"
    # An earlier onset, or another reference (a new champion), is taken as it comes.
    earlier = _drift("2026-01-07T00:00:00", event="e0")
    assert cooldown.keep_earliest_onset(earlier, first) == earlier
    other = _drift("2026-01-10T00:00:00", reference="v2")
    assert cooldown.keep_earliest_onset(other, first) == other
    # Numeric event times compare as numbers.
    assert cooldown.keep_earliest_onset(_drift("1000.5"), _drift("900")).drift_onset == "900"


def test_a_waiting_request_is_stale_once_its_champion_was_replaced() -> None:
    pending = _drift("2026-01-08T00:00:00", reference="v1")
    assert cooldown.stale_pending(pending, "v1") is None
    assert cooldown.stale_pending(_drift(None, reference=None), "v2") is None
    reason = cooldown.stale_pending(pending, "v2")
    assert reason is not None and "v1" in reason and "v2 is champion now" in reason


def test_a_drift_is_answered_once_whoever_finds_it_ready() -> None:
    store = MemoryStore()
    waiting = _drift("2026-01-08T00:00:00", event="e1")
    recheck, merged_drift_run = (
        waiting,
        cooldown.keep_earliest_onset(_drift("2026-01-09T00:00:00", event="e2"), waiting),
    )
    assert cooldown.answer_key(recheck) == cooldown.answer_key(merged_drift_run)
    assert cooldown.claim(store, recheck, cooldown.answer_key(recheck)) is True
    assert cooldown.claim(store, merged_drift_run, cooldown.answer_key(merged_drift_run)) is False
    assert cooldown.answer_key(_drift("2026-01-09T00:00:00", event="e2")) != cooldown.answer_key(waiting)
