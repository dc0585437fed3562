"""Monitoring beyond input drift, in-process against the real servers: prediction drift in score-batch,
the champion's performance monitor in shadow-evaluate, and a retrain from its event.

Known truth: the label rule flips the role of one feature (a concept change) while the features keep
their distribution. The champion, trained before the change, sees no input drift and no prediction
drift, yet its loss on the labelled batches rises far above its holdout loss.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import httpx
import pytest

from driftline.cli import prefect_api
from driftline.events.records import PERFORMANCE_DEGRADED, model_resource_id
from driftline.loop import drift_checks, evaluation
from driftline.models import registry
from driftline.settings import Settings
from driftline.storage import layout
from driftline.storage.store import ObjectStore, open_store
from flows.profile_batch import profile_batch
from flows.retrain import retrain
from flows.score_batch import score_batch
from flows.shadow_evaluate import shadow_evaluate
from tests.batches import example_batch, example_labels, example_spec, parquet_bytes
from tests.unit.test_performance import templated_keys

ROWS = 3_000


@pytest.fixture
def store() -> ObjectStore:
    return open_store(Settings())


@pytest.fixture
def model(store: ObjectStore) -> str:
    name = f"p-{uuid.uuid4().hex[:8]}"
    spec = example_spec(name)
    spec = spec.model_copy(
        update={
            "gates": spec.gates.model_copy(update={"max_p99_latency_ms": 1000.0, "min_throughput_rows_per_s": 100.0}),
            "window": spec.window.model_copy(update={"last_batches": 4}),
            "shadow": spec.shadow.model_copy(update={"max_latency_ratio": None}),
        }
    )
    store.put(layout.model_spec(name), spec.to_yaml().encode())
    return name


def _add(store: ObjectStore, model: str, index: int, concept: float | None) -> str:
    """Store batch ``index`` and, unless ``concept`` is None, its labels under that concept."""
    batch_id = f"b{index:03d}"
    frame = example_batch(index, rows=ROWS)
    store.create(layout.batch_data(model, batch_id), parquet_bytes(frame))
    if concept is not None:
        _label(store, model, index, concept)
    return batch_id


def _label(store: ObjectStore, model: str, index: int, concept: float) -> None:
    labels = example_labels(example_batch(index, rows=ROWS), index, concept)
    store.create(layout.batch_labels(model, f"b{index:03d}"), parquet_bytes(labels))


def test_a_concept_change_without_input_drift_degrades_the_champion_and_retrains(
    store: ObjectStore, model: str, prefect_api_url: str
) -> None:
    assert templated_keys(PERFORMANCE_DEGRADED) >= {"model", "event_id", "batch_id", "drift_onset", "reference_version"}
    since = datetime.now(UTC)
    for i in range(1, 5):
        _add(store, model, i, concept=0.0)
    champion = retrain(model)["version"]
    metadata = registry.read_metadata(store, model, champion)
    baseline = metadata["baseline"]
    assert baseline["rows"] > 2_000 and baseline["loss_kind"] == "logloss"
    assert baseline["loss"] == pytest.approx(metadata["metrics"]["logloss"])
    assert baseline["prediction_profile"] == layout.holdout_prediction_profile(model, champion)
    assert store.exists(baseline["prediction_profile"])

    # The concept changes; the features do not: no input drift, no prediction drift.
    batch_id = _add(store, model, 5, concept=None)
    profiled = profile_batch(model, batch_id)
    assert profiled["status"] == "ok" and profiled["drifted_features"] == [], profiled
    scored = profiled["scoring"]  # profile-batch scores the batch (score-batch as its subflow)
    assert scored["prediction_drift"] == {
        "checked": True,
        "drift": False,
        "triggered": False,
        "key": layout.drift_report(model, batch_id),
    }
    report = json.loads(store.get(layout.drift_report(model, batch_id)))
    assert report["drift"] is False
    assert report["prediction"]["version"] == champion and report["prediction"]["drift"] is False
    assert drift_checks.read_prediction_drift(store, model, batch_id) == report["prediction"]
    summary = json.loads(store.get(layout.scoring_summary(model, batch_id)))[champion]
    assert summary["rows"] == ROWS and summary["status"] == "scored"
    assert 0 < summary["p50_ms"] <= summary["p95_ms"] <= summary["p99_ms"]

    # Labels arrive: the champion's loss is far above its holdout loss.
    _label(store, model, 5, concept=1.0)
    evaluated = shadow_evaluate(model, batch_id)
    assert evaluated["performance"]["verdict"] == "degraded", evaluated
    assert evaluated["performance"]["n"] == ROWS
    assert evaluated["performance"]["lower"] > evaluated["performance"]["tolerance"]
    event_id = evaluated["performance_event"]
    assert shadow_evaluate(model, batch_id).get("performance_event") is None  # announced once per champion
    state = evaluation.read_performance_state(store, model, champion)
    assert state.alerted and state.alert_event_id == event_id and state.batch_ids == [batch_id] and state.n == ROWS

    # The next labelled batch counts too, and is not announced again.
    later = _add(store, model, 6, concept=None)
    score_batch(model, later)
    _label(store, model, 6, concept=1.0)
    assert shadow_evaluate(model, later).get("performance_event") is None
    assert evaluation.read_performance_state(store, model, champion).n == 2 * ROWS
    # ... and that run's monitor figure reached the UI beside the performance artifacts (issue #15).
    assert store.get(layout.monitor_plot(model, later)).startswith(b"\x89PNG")
    monitor = httpx.post(
        f"{prefect_api_url}/artifacts/filter", json={"artifacts": {"key": {"any_": [f"monitor-{model}"]}}}
    )
    assert any("data:image/png;base64," in artifact["data"] for artifact in monitor.json()), monitor.text[:300]

    event = prefect_api.wait_for_payload(
        prefect_api_url, [PERFORMANCE_DEGRADED], model_resource_id(model), "batch_id", batch_id, 30, since
    )
    assert event is not None and event["id"] == event_id
    payload = event["payload"]
    assert set(payload) >= templated_keys(PERFORMANCE_DEGRADED)
    assert payload["kind"] == "performance"
    assert payload["reference_version"] == champion
    assert payload["drift_onset"] == example_batch(5, rows=ROWS)["ts"].min().isoformat()
    assert payload["n"] == ROWS and payload["lower"] > payload["tolerance"]
    degraded = prefect_api.find_events(prefect_api_url, [PERFORMANCE_DEGRADED], [model_resource_id(model)], since)
    assert len(degraded) == 1

    # The retrain trigger's parameters, templated from the event, build a candidate that enters shadow
    # (the window of the last 4 labelled batches is all of the new concept by then).
    for i in (7, 8):
        _add(store, model, i, concept=1.0)
    candidate = retrain(
        payload["model"],
        trigger="drift",
        drift_event_id=payload["event_id"],
        drift_batch_id=payload["batch_id"],
        drift_onset=payload["drift_onset"],
        reference_version=payload["reference_version"],
    )
    assert candidate["outcome"] == "shadow", candidate
    lineage = registry.read_metadata(store, model, candidate["version"])
    assert lineage["trigger"] == f"drift:{event_id}"
    assert lineage["lineage"]["parent_champion"] == champion
