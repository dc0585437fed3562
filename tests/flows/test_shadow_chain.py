"""score-batch -> shadow-evaluate -> promote -> guard -> rollback, in-process against the real servers.

Known truth: the label rule flips the role of one feature (a concept change). A champion trained before
the change is worse after it; a candidate trained after it is better; when the old rule returns, the
promoted champion is the worse one and the guard rolls it back.
"""

from __future__ import annotations

import uuid

import pytest

from driftline.loop import evaluation
from driftline.models import registry
from driftline.settings import Settings
from driftline.storage import layout
from driftline.storage.store import ObjectStore, open_store
from flows.promote import promote
from flows.retrain import retrain
from flows.score_batch import score_batch
from flows.shadow_evaluate import shadow_evaluate
from tests.batches import example_batch, example_labels, example_spec, parquet_bytes

# Also run on a Prefect server on PostgreSQL by `make test` (see tests/flows/conftest.py).
pytestmark = pytest.mark.loop

ROWS = 3_000


@pytest.fixture
def store() -> ObjectStore:
    return open_store(Settings())


def _add(store: ObjectStore, model: str, index: int, concept: float, labelled: bool = True) -> str:
    batch_id = f"b{index:03d}"
    frame = example_batch(index, rows=ROWS)
    store.create(layout.batch_data(model, batch_id), parquet_bytes(frame))
    if labelled:
        store.create(layout.batch_labels(model, batch_id), parquet_bytes(example_labels(frame, index, concept)))
    return batch_id


def _label(store: ObjectStore, model: str, index: int, concept: float) -> None:
    frame = example_batch(index, rows=ROWS)
    store.create(layout.batch_labels(model, f"b{index:03d}"), parquet_bytes(example_labels(frame, index, concept)))


@pytest.fixture
def model(store: ObjectStore) -> str:
    name = f"s-{uuid.uuid4().hex[:8]}"
    spec = example_spec(name)
    spec = spec.model_copy(
        update={
            "gates": spec.gates.model_copy(update={"max_p99_latency_ms": 1000.0, "min_throughput_rows_per_s": 100.0}),
            "window": spec.window.model_copy(update={"last_batches": 4}),
            # Latency is not this test's subject (unit-tested); a loaded CI machine must not decide the verdict.
            "shadow": spec.shadow.model_copy(update={"min_rows": 500, "planned_rows": 3000, "max_latency_ratio": None}),
            "guard": spec.guard.model_copy(update={"min_rows": 500}),
        }
    )
    store.put(layout.model_spec(name), spec.to_yaml().encode())
    return name


def test_better_candidate_is_promoted_and_a_worse_champion_is_rolled_back(store: ObjectStore, model: str) -> None:
    for i in range(1, 5):
        _add(store, model, i, concept=0.0)
    old = retrain(model)["version"]
    for i in range(5, 9):
        _add(store, model, i, concept=1.0)
    candidate = retrain(model)
    assert candidate["outcome"] == "shadow", candidate
    new = candidate["version"]

    # A new batch: both models score the same rows; the champion's predictions are the output.
    _add(store, model, 9, concept=1.0, labelled=False)
    scored = score_batch(model, "b009")
    assert set(scored["scored"]) == {"champion", "shadow"}
    assert store.exists(layout.predictions(model, "b009", old)) and store.exists(layout.predictions(model, "b009", new))
    _label(store, model, 9, concept=1.0)
    evaluated = shadow_evaluate(model, "b009")
    assert evaluated["shadow"]["verdict"] == "promote", evaluated
    assert evaluated["shadow"]["upper"] < 0
    state = evaluation.read_shadow_state(store, model, new)
    assert state.n == ROWS and state.batch_ids == ["b009"]
    # The verdict promotes in the same run (promote is its subflow; the spec's promotion is auto).
    assert evaluated["promotion"]["outcome"] == "promoted", evaluated
    assert registry.describe_model(store, model)["aliases"] == {"champion": new, "shadow": None, "previous": old}
    assert evaluation.read_guard_state(store, model, new) is not None
    assert promote(model, new, "promote")["outcome"] == "stale"  # a repeated verdict changes nothing

    # The old rule returns: the promoted champion is now the worse one, and the guard sees it.
    _add(store, model, 10, concept=0.0, labelled=False)
    assert set(score_batch(model, "b010")["scored"]) == {"champion", "previous"}
    _label(store, model, 10, concept=0.0)
    guarded = shadow_evaluate(model, "b010")
    assert guarded["guard"]["verdict"] == "rollback", guarded
    assert guarded["rolled_back_to"] == old
    assert registry.describe_model(store, model)["aliases"]["champion"] == old


def test_a_failing_shadow_model_never_touches_the_champion_output(store: ObjectStore, model: str) -> None:
    for i in range(1, 5):
        _add(store, model, i, concept=0.0)
    champion = retrain(model)["version"]
    for i in range(5, 9):
        _add(store, model, i, concept=1.0)
    shadow_version = retrain(model)["version"]
    # Corrupt the candidate's booster: loading it fails its integrity check.
    store.put(layout.model_booster(model, shadow_version), b"not a booster")
    _add(store, model, 9, concept=1.0, labelled=False)
    result = score_batch(model, "b009")
    assert set(result["scored"]) == {"champion"}
    assert store.exists(layout.predictions(model, "b009", champion))
    assert "shadow" in result["failures"]
    assert store.exists(layout.scoring_failure(model, "b009", shadow_version))
