"""profile-batch and watch-batches in-process against the real Prefect and S3 servers."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from driftline.cli import prefect_api
from driftline.data.batches import BatchRejectedError
from driftline.events import prefect_http
from driftline.events.records import (
    BATCH_PROFILED,
    BATCH_REJECTED,
    DRIFT_DETECTED,
    model_resource_id,
    new_event,
    read_outbox,
    write_outbox,
)
from driftline.settings import Settings
from driftline.storage import layout
from driftline.storage.store import ObjectStore, open_store
from flows.profile_batch import profile_batch
from flows.watch_batches import watch_batches
from tests.batches import example_batch, example_spec, parquet_bytes


@pytest.fixture
def store() -> ObjectStore:
    return open_store(Settings())


@pytest.fixture
def model(store: ObjectStore) -> str:
    """A fresh model per test (names are unique, so tests never see each other's objects)."""
    name = f"m-{uuid.uuid4().hex[:8]}"
    store.put(layout.model_spec(name), example_spec(name).to_yaml().encode())
    return name


def _events(api_url: str, model: str, names: list[str], since: datetime) -> list[dict]:
    return prefect_api.find_events(api_url, names, [model_resource_id(model)], since=since)


@pytest.mark.loop
def test_a_shifted_batch_emits_drift_detected_after_the_provisional_reference(
    store: ObjectStore, model: str, prefect_api_url: str
) -> None:
    since = datetime.now(UTC)
    store.create(layout.batch_data(model, "b1"), parquet_bytes(example_batch(1)))
    store.create(layout.batch_data(model, "b2"), parquet_bytes(example_batch(2)))
    store.create(layout.batch_data(model, "b3"), parquet_bytes(example_batch(3, income_shift=0.3)))

    first = profile_batch(model, "b1")
    assert first["status"] == "ok"
    assert store.exists(layout.reference_profile(model, layout.PROVISIONAL_REFERENCE))
    assert profile_batch(model, "b2")["status"] == "ok"
    third = profile_batch(model, "b3")
    assert third["status"] == "drift"
    assert third["drifted_features"] == ["income"]

    report = json.loads(store.get(layout.drift_report(model, "b3")))
    assert report["drift"] is True and report["features"]["income"]["verdict"] == "drift"
    assert store.exists(layout.batch_profile(model, "b3"))

    detected = prefect_api.wait_for_payload(
        prefect_api_url, [DRIFT_DETECTED], model_resource_id(model), "batch_id", "b3", 20, since
    )
    assert detected is not None
    assert detected["payload"]["top_features"] == ["income"]
    assert detected["payload"]["report_key"] == layout.drift_report(model, "b3")
    profiled = _events(prefect_api_url, model, [BATCH_PROFILED], since)
    assert sorted(e["payload"]["batch_id"] for e in profiled) == ["b1", "b2", "b3"]
    assert not [e for e in _events(prefect_api_url, model, [DRIFT_DETECTED], since) if e["payload"]["batch_id"] != "b3"]
    # Every emitted event was written to the outbox first, with the same id.
    outbox_ids = {record.event_id for record in read_outbox(store, model)}
    assert {e["id"] for e in profiled} | {detected["id"]} <= outbox_ids

    query = {"artifacts": {"key": {"any_": [f"drift-{model}"]}}}
    artifacts = httpx.post(f"{prefect_api_url}/artifacts/filter", json=query)
    assert artifacts.status_code == 200 and artifacts.json(), artifacts.text
    assert "income" in artifacts.json()[0]["data"]


@pytest.mark.loop
def test_running_a_batch_twice_emits_its_events_once(store: ObjectStore, model: str, prefect_api_url: str) -> None:
    since = datetime.now(UTC)
    store.create(layout.batch_data(model, "only"), parquet_bytes(example_batch(7)))
    assert profile_batch(model, "only")["status"] == "ok"
    assert profile_batch(model, "only")["status"] == "duplicate"
    first = prefect_api.wait_for_payload(
        prefect_api_url, [BATCH_PROFILED], model_resource_id(model), "batch_id", "only", 20, since
    )
    assert first is not None
    time.sleep(2)  # a second event, if any, would have landed by now
    events = _events(prefect_api_url, model, [BATCH_PROFILED], since)
    assert [e["payload"]["batch_id"] for e in events] == ["only"]


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("missing-column", "missing column(s): 'income'"),
        ("extra-column", "unexpected column(s): 'label'"),
        ("mistyped", "column 'age' is String, the spec says numeric"),
        ("duplicate-ids", "duplicate id(s)"),
        ("empty", "the batch is empty"),
        ("corrupt", "not a readable parquet file"),
    ],
)
def test_a_bad_batch_is_quarantined_announced_and_not_profiled(
    store: ObjectStore, model: str, prefect_api_url: str, case: str, expected: str
) -> None:
    import polars as pl

    frame = example_batch(11, rows=500)
    payload = {
        "missing-column": lambda: parquet_bytes(frame.drop("income")),
        "extra-column": lambda: parquet_bytes(frame.with_columns(pl.lit(1).alias("label"))),
        "mistyped": lambda: parquet_bytes(frame.with_columns(pl.col("age").cast(pl.String))),
        "duplicate-ids": lambda: parquet_bytes(frame.with_columns(pl.lit(5).alias("id"))),
        "empty": lambda: parquet_bytes(frame.head(0)),
        "corrupt": lambda: b"PAR1 this is not a parquet file",
    }[case]()
    since = datetime.now(UTC)
    store.create(layout.batch_data(model, "bad"), payload)
    with pytest.raises(BatchRejectedError, match=__import__("re").escape(expected)):
        profile_batch.with_options(retries=0)(model, "bad")
    record = json.loads(store.get(layout.batch_quarantine(model, "bad")))
    assert any(expected in problem for problem in record["problems"])
    assert not store.exists(layout.batch_profile(model, "bad"))
    rejected = prefect_api.wait_for_payload(
        prefect_api_url, [BATCH_REJECTED], model_resource_id(model), "batch_id", "bad", 20, since
    )
    assert rejected is not None and rejected["payload"]["record"] == layout.batch_quarantine(model, "bad")


def test_watch_batches_profiles_what_is_pending_and_skips_the_rest(store: ObjectStore, model: str) -> None:
    store.create(layout.batch_data(model, "w1"), parquet_bytes(example_batch(21, rows=2_000)))
    store.create(layout.batch_data(model, "w2"), parquet_bytes(example_batch(22, rows=2_000)))
    store.create(layout.batch_data(model, "w3"), b"garbage")
    first = watch_batches(model)
    assert first == {model: {"w1": "COMPLETED", "w2": "COMPLETED", "w3": "FAILED"}}
    assert store.exists(layout.batch_profile(model, "w2"))
    assert store.exists(layout.batch_quarantine(model, "w3"))
    assert watch_batches(model) == {}


def test_reconcile_re_emits_outbox_events_the_server_never_saw(
    store: ObjectStore, model: str, prefect_api_url: str
) -> None:
    from tasks.events import reconcile_outbox

    # As if the emit had been lost (server down): written to the outbox, never emitted.
    five_minutes_ago = datetime.now(UTC) - timedelta(minutes=5)
    lost = new_event(model, DRIFT_DETECTED, {"batch_id": "lost", "score": 0.5}, now=five_minutes_ago)
    fresh = new_event(model, DRIFT_DETECTED, {"batch_id": "fresh", "score": 0.5})  # may still be in flight
    write_outbox(store, fresh)
    write_outbox(store, lost)
    assert prefect_http.seen_event_ids(prefect_api_url, [lost.event_id], five_minutes_ago) == set()
    assert reconcile_outbox.fn(model) == [lost.event_id]
    event = prefect_api.wait_for_payload(
        prefect_api_url,
        [DRIFT_DETECTED],
        model_resource_id(model),
        "batch_id",
        "lost",
        20,
        five_minutes_ago,
    )
    assert event is not None and event["id"] == lost.event_id
    assert reconcile_outbox.fn(model) == []
