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
