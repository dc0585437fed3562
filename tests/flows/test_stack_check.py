from __future__ import annotations

import uuid

import pytest

from driftline.cli import prefect_api
from driftline.events.records import STACK_CHECKED, stack_check_resource_id
from driftline.settings import Settings
from driftline.storage.store import open_store
from flows.stack_check import stack_check


def test_stack_check_round_trips_s3_and_its_event_reaches_the_server(prefect_api_url: str) -> None:
    nonce = f"t-{uuid.uuid4().hex[:10]}"
    result = stack_check(nonce)
    assert result["nonce"] == nonce
    assert f"_stack-check/{nonce}.json" in result["object"]
    # The probe is cleaned up after being read back.
    assert not open_store(Settings()).exists(f"_stack-check/{nonce}.json")
    event = prefect_api.wait_for_event(prefect_api_url, STACK_CHECKED, stack_check_resource_id(nonce), timeout=20)
    assert event is not None
    assert event["payload"]["nonce"] == nonce
    assert event["id"] == result["event_id"]


def test_stack_check_fails_when_s3_is_unreachable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRIFTLINE_S3_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("DRIFTLINE_S3_MAX_ATTEMPTS", "1")
    from driftline.errors import StoreUnavailableError

    with pytest.raises(StoreUnavailableError, match="127.0.0.1:9"):
        stack_check.with_options(retries=0)(f"t-{uuid.uuid4().hex[:10]}")
