"""One batch's drift check against the model's reference, stored and folded into the drift watch.

Known truth: batches of ``tests.batches.example_batch`` share one distribution unless ``income_shift``
moves log-income (0.3 is a clear drift of that one feature). The example spec declares drift on one
drifted batch (hysteresis 1 of 1). The reference cache is tested in tests/unit/test_drift_cache.py,
prediction drift in tests/unit/test_performance.py.
"""

from __future__ import annotations

import json

import pytest

from driftline.data import profiling
from driftline.data.references import ReferenceCache
from driftline.loop import drift_checks
from driftline.models.spec import PerformanceSpec
from driftline.storage import layout
from driftline.storage.store import MemoryStore
from tests.batches import example_batch, example_spec

SPEC = example_spec("m")
MODEL = SPEC.name
ROWS = 3_000


def _profile(seed: int, income_shift: float = 0.0) -> bytes:
    return profiling.serialize(profiling.profile_frame(example_batch(seed, rows=ROWS, income_shift=income_shift)))


def _batch(store: MemoryStore, batch_id: str, seed: int, income_shift: float = 0.0) -> None:
    store.put(layout.batch_profile(MODEL, batch_id), _profile(seed, income_shift))


def _champion(store: MemoryStore, version: str, seed: int, income_shift: float = 0.0) -> None:
    store.put(layout.reference_profile(MODEL, version), _profile(seed, income_shift))
    store.put(layout.alias(MODEL, "champion"), json.dumps({"version": version}).encode())


def _check(store: MemoryStore, batch_id: str) -> drift_checks.DriftCheck:
    return drift_checks.check_batch_drift(store, SPEC, batch_id, cache=ReferenceCache())


def test_the_first_batch_of_a_model_without_champion_becomes_its_provisional_reference() -> None:
    store = MemoryStore()
    _batch(store, "b1", seed=1)
    check = _check(store, "b1")
    assert check.reference.provisional and check.reference.established_by == "b1"
    assert "no champion yet: batch b1 is the provisional reference" in check.reasons
    assert not check.report.drift and not check.triggered and not check.declared
    provisional = layout.reference_profile(MODEL, layout.PROVISIONAL_REFERENCE)
    assert store.get(provisional) == store.get(layout.batch_profile(MODEL, "b1"))
    assert store.exists(layout.drift_report(MODEL, "b1"))


def test_later_batches_are_compared_with_the_provisional_reference() -> None:
    store = MemoryStore()
    _batch(store, "b1", seed=1)
    _batch(store, "b2", seed=2, income_shift=0.3)
    _check(store, "b1")
    check = _check(store, "b2")
    assert check.reference.provisional and check.reference.established_by is None
    assert not any("provisional reference" in reason for reason in check.reasons)
    assert check.report.drift and "income" in check.report.drifted_features


def test_a_drifted_batch_against_the_champion_is_declared_and_announced_with_its_payload() -> None:
    store = MemoryStore()
    _champion(store, "v1", seed=1)
    _batch(store, "b1", seed=2, income_shift=0.3)
    check = _check(store, "b1")
    assert check.declared and check.triggered and not check.duplicate
    assert check.report.drifted_features[0] == "income"
    payload = check.event_payload()
    assert payload["reference_version"] == "v1" and payload["kind"] == "input"
    assert payload["reference_key"] == layout.reference_profile(MODEL, "v1")
    assert payload["report_key"] == layout.drift_report(MODEL, "b1")
    assert payload["top_features"][0] == "income" and payload["drift_onset"] is None
    stored = json.loads(store.get(layout.drift_report(MODEL, "b1")))
    assert stored["drift"] is True


def test_a_batch_like_the_reference_does_not_drift() -> None:
    store = MemoryStore()
    _champion(store, "v1", seed=1)
    _batch(store, "b1", seed=2)
    check = _check(store, "b1")
    assert not check.report.drift and not check.declared and not check.triggered


def test_a_batch_checked_again_returns_the_stored_report_and_announces_nothing() -> None:
    store = MemoryStore()
    _champion(store, "v1", seed=1)
    _batch(store, "b1", seed=2, income_shift=0.3)
    first = _check(store, "b1")
    watch = store.get(layout.drift_history(MODEL))
    again = _check(store, "b1")
    assert again.duplicate and not again.triggered and again.reasons == ["report already stored"]
    assert again.report.to_dict() == first.report.to_dict()
    assert store.get(layout.drift_history(MODEL)) == watch  # the watch saw the batch once


def test_a_lasting_drift_is_announced_once_per_reference() -> None:
    store = MemoryStore()
    _champion(store, "v1", seed=1)
    _batch(store, "b1", seed=2, income_shift=0.3)
    _batch(store, "b2", seed=3, income_shift=0.3)
    _batch(store, "b3", seed=4, income_shift=0.3)
    assert _check(store, "b1").triggered
    lasting = _check(store, "b2")
    assert lasting.declared and not lasting.triggered
    _champion(store, "v2", seed=5)  # a new champion trained before the shift: a new story
    assert _check(store, "b3").triggered


@pytest.mark.parametrize(
    ("metadata", "expected"),
    [
        ({"importances": {"income": 3, "age": 1.5}}, {"income": 3.0, "age": 1.5}),
        ({"metrics": {"importances": {"income": 2.0}}}, {"income": 2.0}),
        ({"importances": {}}, None),
        ({"metrics": {"auc": 0.8}}, None),
    ],
    ids=["top level", "under metrics", "empty", "none kept"],
)
def test_champion_importances_come_from_its_metadata(metadata: dict, expected: dict | None) -> None:
    store = MemoryStore()
    store.put(layout.model_metadata(MODEL, "v1"), json.dumps(metadata).encode())
    assert drift_checks.champion_importances(store, MODEL, "v1") == expected


def test_without_a_champion_or_its_metadata_importances_are_unknown() -> None:
    assert drift_checks.champion_importances(MemoryStore(), MODEL, None) is None
    assert drift_checks.champion_importances(MemoryStore(), MODEL, "v9") is None


def test_prediction_drift_switched_off_or_without_predictions_is_skipped_with_a_note() -> None:
    store = MemoryStore()
    off = SPEC.model_copy(update={"performance": PerformanceSpec(prediction_drift={"enabled": False})})
    check = drift_checks.check_prediction_drift(store, off, "b1", "v1")
    assert not check.checked and check.notes == (
        "prediction drift is off (performance.prediction_drift.enabled: false)",
    )
    baseline = {"loss": 0.4, "loss_sd": 0.5, "rows": 100, "loss_kind": "logloss", "prediction_profile": "p.bin"}
    store.put(layout.model_metadata(MODEL, "v1"), json.dumps({"baseline": baseline}).encode())
    check = drift_checks.check_prediction_drift(store, SPEC, "b1", "v1")
    assert not check.checked
    assert check.notes == ("no predictions of v1 for batch b1: prediction drift not checked",)


def test_prediction_drift_reads_back_from_the_report_else_the_stand_alone_object() -> None:
    store = MemoryStore()
    assert drift_checks.read_prediction_drift(store, MODEL, "b1") is None
    store.put(layout.prediction_drift(MODEL, "b1"), json.dumps({"version": "v1", "drift": True}).encode())
    assert drift_checks.read_prediction_drift(store, MODEL, "b1") == {"version": "v1", "drift": True}
    store.put(layout.drift_report(MODEL, "b1"), json.dumps({"prediction": {"version": "v2"}}).encode())
    assert drift_checks.read_prediction_drift(store, MODEL, "b1") == {"version": "v2"}
    # A report without its prediction section yet: the stand-alone object still answers.
    store.put(layout.drift_report(MODEL, "b1"), json.dumps({"drift": False}).encode())
    assert drift_checks.read_prediction_drift(store, MODEL, "b1") == {"version": "v1", "drift": True}
