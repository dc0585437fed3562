"""Reliability against the real servers: the outbox is re-sent for every model, and a champion that cannot
score announces it (driftline.scoring.failed) and fails the run."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from driftline.cli import prefect_api
from driftline.errors import InfrastructureError
from driftline.events import prefect_http
from driftline.events.records import (
    BATCH_ARRIVED,
    SCORING_FAILED,
    model_resource_id,
    new_event,
    new_ulid,
    read_outbox,
)
from driftline.settings import Settings
from driftline.storage import layout
from driftline.storage.store import ObjectStore, S3Store, open_store
from tests.batches import example_batch, example_labels, example_spec, parquet_bytes
from tests.support import free_port

ROWS = 3_000


@pytest.fixture
def own_bucket(monkeypatch: pytest.MonkeyPatch, s3_endpoint: str) -> ObjectStore:
    """A bucket of this test alone: reconciling "every model" must not touch other tests' outboxes."""
    bucket = f"reliability-{uuid.uuid4().hex[:8]}"
    S3Store(bucket, endpoint_url=s3_endpoint, access_key_id="test", secret_access_key="test").create_bucket()
    monkeypatch.setenv("DRIFTLINE_S3_BUCKET", bucket)
    return open_store(Settings())


def _with_spec(store: ObjectStore, prefix: str) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    store.put(layout.model_spec(name), example_spec(name).to_yaml().encode())
    return name


def test_every_models_outbox_is_re_sent_once_and_a_broken_outbox_stops_no_other(
    own_bucket: ObjectStore, prefect_api_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tasks.events import reconcile_all_outboxes

    store = own_bucket
    first, broken, second, quiet = (_with_spec(store, p) for p in ("first", "broken", "second", "quiet"))
    monkeypatch.setattr(prefect_http, "RETRY_BASE_DELAY", 0.01)  # the down server's retries, quickly
    # `driftline ingest` while the server is down: the event is in the outbox only.
    two_minutes_ago = datetime.now(UTC) - timedelta(minutes=2)
    down = f"http://127.0.0.1:{free_port()}/api"
    lost = {}
    for model in (first, second):
        record = new_event(model, BATCH_ARRIVED, {"batch_id": "b-lost"}, now=two_minutes_ago)
        with pytest.raises(InfrastructureError, match="stays in the outbox"):
            prefect_http.PrefectEventSink(store, down).publish(record)
        assert read_outbox(store, model) == [record]
        lost[model] = record.event_id
    # An outbox object that is not an event: that model's reconcile fails.
    store.put(layout.outbox_event(broken, new_ulid(two_minutes_ago)), b"not an event")
    assert prefect_http.seen_event_ids(prefect_api_url, list(lost.values()), two_minutes_ago) == set()

    assert reconcile_all_outboxes() == {first: 1, second: 1, quiet: 0}
    for model, event_id in lost.items():
        event = prefect_api.wait_for_event(
            prefect_api_url, BATCH_ARRIVED, model_resource_id(model), timeout=30, since=two_minutes_ago
        )
        assert event is not None and event["id"] == event_id and event["payload"]["batch_id"] == "b-lost"

    # A second watch run finds nothing missing and sends nothing again.
    assert reconcile_all_outboxes() == {first: 0, second: 0, quiet: 0}
    for model, event_id in lost.items():
        stored = prefect_api.find_events(
            prefect_api_url, [BATCH_ARRIVED], [model_resource_id(model)], since=two_minutes_ago - timedelta(minutes=1)
        )
        assert [e["id"] for e in stored] == [event_id]


def _add(store: ObjectStore, model: str, index: int, labelled: bool = True) -> str:
    batch_id = f"b{index:03d}"
    frame = example_batch(index, rows=ROWS)
    store.create(layout.batch_data(model, batch_id), parquet_bytes(frame))
    if labelled:
        store.create(layout.batch_labels(model, batch_id), parquet_bytes(example_labels(frame, index)))
    return batch_id


def test_a_tampered_champion_fails_the_run_and_announces_the_batch(
    own_bucket: ObjectStore, prefect_api_url: str, s3_endpoint: str
) -> None:
    import boto3

    from flows.retrain import retrain
    from flows.score_batch import score_batch

    store = own_bucket
    model = _with_spec(store, "tamper")
    spec = example_spec(model)
    spec = spec.model_copy(
        update={
            "gates": spec.gates.model_copy(update={"max_p99_latency_ms": 1000.0, "min_throughput_rows_per_s": 100.0})
        }
    )
    store.put(layout.model_spec(model), spec.to_yaml().encode())
    for index in range(1, 5):
        _add(store, model, index)
    trained = retrain(model)
    champion = trained["version"]
    assert trained["outcome"] == "champion", trained

    # Overwrite the booster behind driftline's back, keeping the sha256 metadata of the original bytes.
    s3 = boto3.client(
        "s3", endpoint_url=s3_endpoint, aws_access_key_id="test", aws_secret_access_key="test", region_name="us-east-1"
    )
    bucket, key = Settings().s3_bucket, layout.model_booster(model, champion)
    metadata = s3.head_object(Bucket=bucket, Key=key)["Metadata"]
    s3.put_object(Bucket=bucket, Key=key, Body=b"not the booster", Metadata=metadata)

    batch_id = _add(store, model, 5, labelled=False)
    since = datetime.now(UTC)
    state = score_batch(model, batch_id, return_state=True)
    assert state.is_failed()
    with pytest.raises(InfrastructureError, match="sha256"):
        state.result()
    assert not store.exists(layout.predictions(model, batch_id, champion))

    event = prefect_api.wait_for_payload(
        prefect_api_url, [SCORING_FAILED], model_resource_id(model), "batch_id", batch_id, 30, since
    )
    assert event is not None
    payload = event["payload"]
    assert payload["kind"] == "integrity" and payload["version"] == champion and payload["role"] == "champion"
    assert "sha256" in payload["error"] and payload["error_type"] == "IntegrityError"
    assert [r.name for r in read_outbox(store, model) if r.name == SCORING_FAILED] == [SCORING_FAILED]
