from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from driftline.errors import IntegrityError, ObjectNotFoundError, StoreUnavailableError
from driftline.events import records
from driftline.storage.store import MemoryStore


def test_ulids_made_in_a_burst_sort_in_creation_order_and_map_to_distinct_uuids() -> None:
    ulids = [records.new_ulid() for _ in range(5000)]
    assert ulids == sorted(ulids) and len(set(ulids)) == len(ulids)
    assert len({records.ulid_to_uuid(u) for u in ulids}) == len(ulids)
    assert all(len(u) == 26 and u == u.lower() for u in ulids[:10])


def test_outbox_write_is_idempotent_and_read_back_by_time() -> None:
    store = MemoryStore()
    old = records.new_event("m", records.DRIFT_DETECTED, {"score": 0.4}, now=datetime.now(UTC) - timedelta(days=2))
    new = records.new_event("m", records.BATCH_PROFILED, {"batch_id": "b1"})
    for record in (old, new, new):
        records.write_outbox(store, record)
    assert records.read_outbox(store, "m") == [old, new]
    assert records.read_outbox(store, "m", since=datetime.now(UTC) - timedelta(days=1)) == [new]
    assert new.payload == {"model": "m", "event_id": new.event_id, "batch_id": "b1"}
    assert new.resource_id == "driftline.model.m"


def test_unknown_event_names_are_refused() -> None:
    with pytest.raises(ValueError, match="driftline.nope"):
        records.new_event("m", "driftline.nope", {})


def test_scoring_failure_payload_names_batch_and_kind_and_never_a_secret() -> None:
    error = IntegrityError(
        "model 'm' version 'v1': booster sha256 ab != metadata cd (http://admin:hunter2@s3:9000/b?X-Amz-Signature=f00d)"
    )
    payload = records.scoring_failed_payload("b-0007", "v1", error)
    assert payload["batch_id"] == "b-0007" and payload["version"] == "v1" and payload["kind"] == "integrity"
    assert payload["error_type"] == "IntegrityError" and "booster sha256 ab != metadata cd" in payload["error"]
    assert "hunter2" not in payload["error"] and "f00d" not in payload["error"]
    record = records.new_event("m", records.SCORING_FAILED, payload)
    assert record.name == "driftline.scoring.failed" and record.payload["batch_id"] == "b-0007"


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (IntegrityError("tampered"), "integrity"),
        (ObjectNotFoundError("no batch"), "missing"),
        (StoreUnavailableError("s3 down"), "infrastructure"),
        (ValueError("bad"), "error"),
    ],
)
def test_failure_kinds(error: Exception, kind: str) -> None:
    assert records.failure_kind(error) == kind


@pytest.mark.parametrize(
    ("message", "secret"),
    [
        ("GET https://user:pa55@host/x failed", "pa55"),
        ("Authorization: Bearer eyJhbGciOi.abc", "eyJhbGciOi"),
        ("hook?token=s3cr3t&x=1 refused", "s3cr3t"),
        ("aws_secret_access_key=AKIAxyz", "AKIAxyz"),
    ],
)
def test_redact_masks_credentials_in_messages(message: str, secret: str) -> None:
    assert secret not in records.redact(message)


def test_redact_cuts_long_messages() -> None:
    assert len(records.redact("x" * 5000)) == records.ERROR_MESSAGE_LIMIT
