"""retrain in-process against the real Prefect and S3 servers: bootstrap, shadow, storm control, waiting for labels."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest

from driftline.cli import prefect_api
from driftline.events.records import CANDIDATE_REGISTERED, MODEL_PROMOTED, RETRAIN_DUE, model_resource_id
from driftline.models import registry
from driftline.settings import Settings
from driftline.storage import layout
from driftline.storage.store import ObjectStore, open_store
from flows.retrain import retrain
from flows.shadow_evaluate import shadow_evaluate
from tests.batches import example_batch, example_labels, example_spec, parquet_bytes

RELAXED_GATES = {"max_p99_latency_ms": 1000.0, "min_throughput_rows_per_s": 100.0}


@pytest.fixture
def store() -> ObjectStore:
    return open_store(Settings())


def _model(store: ObjectStore, batches: int = 4, rows: int = 3_000) -> str:
    """A model with labelled batches whose ids sort in time order (as default batch ids do)."""
    name = f"r-{uuid.uuid4().hex[:8]}"
    spec = example_spec(name)
    spec = spec.model_copy(update={"gates": spec.gates.model_copy(update=RELAXED_GATES)})
    store.put(layout.model_spec(name), spec.to_yaml().encode())
    for i in range(1, batches + 1):
        frame = example_batch(i, rows=rows)
        store.create(layout.batch_data(name, f"b{i:03d}"), parquet_bytes(frame))
        store.create(layout.batch_labels(name, f"b{i:03d}"), parquet_bytes(example_labels(frame, i)))
    return name


@pytest.mark.loop
def test_a_manual_retrain_without_champion_bootstraps_one(store: ObjectStore, prefect_api_url: str) -> None:
    since = datetime.now(UTC)
    model = _model(store)
    result = retrain(model)
    assert result["outcome"] == "champion", result
    version = result["version"]
    assert result["metrics"]["auc"] > 0.7

    described = registry.describe_model(store, model)
    assert described["aliases"]["champion"] == version
    assert described["versions"][0]["status"] == "champion"
    metadata = registry.read_metadata(store, model, version)
    lineage = metadata["lineage"]
    assert [b["batch_id"] for b in lineage["training_batches"]] == ["b001", "b002", "b003", "b004"]
    assert all(b["features_etag"] and b["labels_etag"] for b in lineage["training_batches"])
    assert lineage["reference_profile"] == layout.reference_profile(model, version)
    assert store.exists(lineage["reference_profile"])
    assert lineage["spec_hash"] and lineage["package_versions"]["xgboost"]
    assert metadata["gate_report"]["passed"] in (True, False)
    booster, _ = registry.load_model(store, model, version)
    assert len(booster) == metadata["model_bytes"]
    for name in (CANDIDATE_REGISTERED, MODEL_PROMOTED):
        event = prefect_api.wait_for_payload(
            prefect_api_url, [name], model_resource_id(model), "version", version, 20, since
        )
        assert event is not None, name


@pytest.mark.loop
def test_a_drift_retrain_enters_shadow_and_a_repeated_event_is_a_duplicate(store: ObjectStore) -> None:
    model = _model(store)
    champion = retrain(model)["version"]
    frame = example_batch(5, rows=3_000)  # labels arrived since the champion trained: there is news to learn
    store.create(layout.batch_data(model, "b005"), parquet_bytes(frame))
    store.create(layout.batch_labels(model, "b005"), parquet_bytes(example_labels(frame, 5)))
    drift = {
        "trigger": "drift",
        "drift_event_id": str(uuid.uuid4()),
        "drift_batch_id": "b005",
        "reference_version": champion,
    }
    first = retrain(model, **drift)
    assert first["outcome"] == "shadow", first
    assert registry.read_alias(store, model, "shadow").version == first["version"]
    assert registry.read_metadata(store, model, first["version"])["lineage"]["parent_champion"] == champion
    # Prefect delivering the same drift (or another in the same cooldown window) twice builds nothing.
    again = retrain(model, **{**drift, "drift_event_id": str(uuid.uuid4())})
    assert again["outcome"] == "duplicate"
    assert len(registry.list_version_ids(store, model)) == 2


def test_a_drift_retrain_waits_for_labels_since_the_onset_then_runs_when_they_arrive(
    store: ObjectStore, prefect_api_url: str
) -> None:
    since = datetime.now(UTC)
    model = _model(store, batches=3)
    champion = retrain(model)["version"]
    onset = datetime(2026, 1, 4, 12).isoformat()  # batch 3 ends on Jan 4 at 01:00, batch 4 starts on Jan 5
    waiting = retrain(
        model, trigger="drift", drift_event_id=str(uuid.uuid4()), drift_onset=onset, reference_version=champion
    )
    assert waiting["outcome"] == "waiting-for-labels"
    assert json.loads(store.get(layout.retrain_pending(model)))["request"]["drift_onset"] == onset
    assert retrain(model, trigger="labels")["outcome"] == "waiting-for-labels"  # still none
    # Labels of a batch before the onset: shadow-evaluate re-checks and starts no retrain run for it.
    early = shadow_evaluate(model, "b003")
    assert "retrain_due" not in early, early
    assert any("labelled rows since the drift onset" in reason for reason in early["retrain_waiting"]), early
    assert json.loads(store.get(layout.retrain_pending(model)))["request"]["drift_onset"] == onset
    frame = example_batch(4, rows=3_000)
    store.create(layout.batch_data(model, "b004"), parquet_bytes(frame))
    store.create(layout.batch_labels(model, "b004"), parquet_bytes(example_labels(frame, 4)))
    # Labels arrived while the retrain waits: shadow-evaluate says its re-check is due (the labels trigger
    # of the retrain deployment listens for that event, not for every labels.arrived).
    due = shadow_evaluate(model, "b004")
    assert due.get("retrain_due"), due
    event = prefect_api.wait_for_payload(
        prefect_api_url, [RETRAIN_DUE], model_resource_id(model), "batch_id", "b004", 20, since
    )
    assert event is not None and event["payload"]["reference_version"] == champion, event
    served = retrain(model, trigger="labels")
    assert served["outcome"] == "shadow", served
    assert not store.exists(layout.retrain_pending(model))
    assert retrain(model, trigger="labels")["outcome"] == "nothing-pending"
    assert "retrain_due" not in shadow_evaluate(model, "b004")  # nothing waits: no re-check run is started


def test_without_labelled_batches_the_error_says_how_to_add_them(store: ObjectStore) -> None:
    name = f"r-{uuid.uuid4().hex[:8]}"
    store.put(layout.model_spec(name), example_spec(name).to_yaml().encode())
    with pytest.raises(Exception, match="driftline labels"):
        retrain.with_options(retries=0)(name)


def test_a_drift_retrain_without_any_labels_waits_instead_of_failing(store: ObjectStore) -> None:
    name = f"r-{uuid.uuid4().hex[:8]}"
    store.put(layout.model_spec(name), example_spec(name).to_yaml().encode())
    outcome = retrain(name, trigger="drift", drift_event_id=str(uuid.uuid4()))
    assert outcome["outcome"] == "waiting-for-labels"
    assert "no labelled batches" in outcome["reasons"][0]
    assert store.exists(layout.retrain_pending(name))
