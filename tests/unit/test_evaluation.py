"""When labels arrive: a batch folded into the shadow test and the guard, their state kept on the store.

Known truth: ``x`` is standard normal and ``y ~ Bernoulli(sigmoid(2 x))``. The "true" model predicts
``sigmoid(2 x)``, the "coin" model 0.5 everywhere; the true model's per-row log loss is lower on average,
so the paired difference (true minus coin) has a negative mean, which the stored states must hold exactly
as computed from the rows. (The performance monitor's store I/O is tested in tests/unit/test_performance.py.)
"""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from driftline.errors import ObjectNotFoundError
from driftline.loop import evaluation
from driftline.models import registry
from driftline.models.spec import GuardSpec, ModelSpec, PerformanceSpec, ShadowSpec, parse_spec
from driftline.statistics import guard
from driftline.statistics.metrics import per_row_loss
from driftline.storage import layout
from driftline.storage.store import MemoryStore

MODEL = "m"
SPEC = parse_spec(
    """
name: m
task: binary
target: y
id_column: id
time_column: ts
features: {numeric: [x]}
"""
)
NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
BATCH_START = datetime(2026, 3, 1)
ROWS = 600


def _parquet(frame: pl.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.write_parquet(buffer)
    return buffer.getvalue()


def _version(store: MemoryStore, alias: str, version: str) -> None:
    if not store.exists(layout.model_metadata(MODEL, version)):
        registry.register_version(store, MODEL, version, f"booster {version}".encode(), {})
    current = registry.read_alias(store, MODEL, alias)
    registry.move_alias(store, MODEL, alias, version, expected=current, reason="test")


def _batch(store: MemoryStore, batch_id: str, seed: int, rows: int = ROWS) -> dict[str, np.ndarray]:
    """Features, labels and the two models' predictions of a batch (stored by the caller)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=rows)
    truth = 1 / (1 + np.exp(-2 * x))
    ids = np.arange(seed * 10_000, seed * 10_000 + rows, dtype=np.int64)
    times = [BATCH_START + timedelta(minutes=i) for i in range(rows)]
    store.put(layout.batch_data(MODEL, batch_id), _parquet(pl.DataFrame({"id": ids, "ts": times, "x": x})))
    return {"ids": ids, "y": (rng.random(rows) < truth).astype(np.float64), "true": truth, "coin": np.full(rows, 0.5)}


def _served(store: MemoryStore, batch_id: str, version: str, ids: np.ndarray, p: np.ndarray) -> None:
    frame = pl.DataFrame({"id": ids, "prediction": p})
    store.put(layout.predictions(MODEL, batch_id, version), _parquet(frame))


def _labelled(store: MemoryStore, batch_id: str, ids: np.ndarray, y: np.ndarray) -> None:
    store.put(layout.batch_labels(MODEL, batch_id), _parquet(pl.DataFrame({"id": ids, "y": y.astype(np.int8)})))


def _in_shadow(store: MemoryStore, batch_id: str = "b1", seed: int = 1) -> dict[str, np.ndarray]:
    """Champion v1 (coin), candidate v2 in shadow (true), both scored on a labelled batch."""
    _version(store, "champion", "v1")
    _version(store, "shadow", "v2")
    rows = _batch(store, batch_id, seed)
    _served(store, batch_id, "v1", rows["ids"], rows["coin"])
    _served(store, batch_id, "v2", rows["ids"], rows["true"])
    _labelled(store, batch_id, rows["ids"], rows["y"])
    return rows


def _difference(rows: dict[str, np.ndarray], first: str, second: str) -> np.ndarray:
    return per_row_loss("binary", rows["y"], rows[first]) - per_row_loss("binary", rows["y"], rows[second])


def test_a_batch_without_labels_changes_nothing_and_says_so() -> None:
    store = MemoryStore()
    _version(store, "champion", "v1")
    _version(store, "shadow", "v2")
    result = evaluation.evaluate_batch(store, SPEC, "b1", NOW)
    assert result.notes == ("no labels for batch b1",)
    assert result.shadow_state is None and result.guard_state is None
    assert evaluation.read_shadow_state(store, MODEL, "v2") is None


def test_a_labelled_batch_is_folded_into_the_stored_shadow_test_once() -> None:
    store = MemoryStore()
    rows = _in_shadow(store)
    first = evaluation.evaluate_batch(store, SPEC, "b1", NOW)
    d = _difference(rows, "true", "coin")
    assert first.notes == ()
    assert (first.shadow_state.candidate, first.shadow_state.champion) == ("v2", "v1")
    assert first.shadow_state.n == ROWS and first.shadow_state.batch_ids == ["b1"]
    assert first.shadow_state.mean == pytest.approx(float(d.mean()), rel=1e-12)
    assert first.shadow_state.mean < 0  # the true model is better
    assert first.shadow_verdict.n == ROWS
    assert evaluation.read_shadow_state(store, MODEL, "v2") == first.shadow_state
    again = evaluation.evaluate_batch(store, SPEC, "b1", NOW)  # a retried flow run
    assert again.shadow_state == first.shadow_state


def test_a_second_batch_adds_its_rows_to_the_shadow_test() -> None:
    store = MemoryStore()
    one = _in_shadow(store, "b1", seed=1)
    two = _in_shadow(store, "b2", seed=2)
    waiting = SPEC.model_copy(update={"shadow": ShadowSpec(min_rows=5_000)})  # no verdict after one batch
    assert not evaluation.evaluate_batch(store, waiting, "b1", NOW).shadow_state.closed
    state = evaluation.evaluate_batch(store, waiting, "b2", NOW).shadow_state
    both = np.concatenate([_difference(one, "true", "coin"), _difference(two, "true", "coin")])
    assert state.n == 2 * ROWS and state.batch_ids == ["b1", "b2"]
    assert state.mean == pytest.approx(float(both.mean()), rel=1e-12)
    assert state.m2 == pytest.approx(float(((both - both.mean()) ** 2).sum()), rel=1e-9)


def test_the_shadow_test_keeps_the_latencies_score_batch_recorded() -> None:
    store = MemoryStore()
    _in_shadow(store)
    summary = {"v1": {"role": "champion", "p99_ms": 1.25}, "v2": {"role": "shadow", "p99_ms": 2.5}}
    store.put(layout.scoring_summary(MODEL, "b1"), json.dumps(summary).encode())
    state = evaluation.evaluate_batch(store, SPEC, "b1", NOW).shadow_state
    assert state.latency_p99_ms == {"candidate_ms": 2.5, "champion_ms": 1.25}


def test_missing_candidate_predictions_are_noted_and_nothing_is_folded() -> None:
    store = MemoryStore()
    _in_shadow(store)
    store.delete(layout.predictions(MODEL, "b1", "v2"))
    result = evaluation.evaluate_batch(store, SPEC, "b1", NOW)
    assert result.shadow_state is None
    assert result.notes == ("no predictions of v2 for batch b1 (scored before it was in place?)",)
    assert not store.exists(layout.shadow_state(MODEL, "v2"))


def test_labels_that_share_no_ids_with_the_predictions_are_noted() -> None:
    store = MemoryStore()
    rows = _in_shadow(store)
    _labelled(store, "b1", rows["ids"] + 1_000_000, rows["y"])
    result = evaluation.evaluate_batch(store, SPEC, "b1", NOW)
    assert result.notes == ("labels of batch b1 share no ids with the predictions",)
    assert result.shadow_state is None


def test_a_time_budget_counts_the_batchs_event_time_not_the_clock() -> None:
    store = MemoryStore()
    _in_shadow(store)
    spec = SPEC.model_copy(update={"shadow": ShadowSpec(max_days=30)})
    state = evaluation.evaluate_batch(store, spec, "b1", NOW).shadow_state
    latest = (BATCH_START + timedelta(minutes=ROWS - 1)).replace(tzinfo=UTC)
    assert state.started_at == latest.isoformat()
    # Without a time budget the batch is not read for its times: the evaluation's clock stands.
    other = MemoryStore()
    _in_shadow(other)
    assert evaluation.evaluate_batch(other, SPEC, "b1", NOW).shadow_state.started_at == NOW.isoformat()


def test_a_guard_opens_once_for_a_new_champion_with_a_previous_one() -> None:
    store = MemoryStore()
    assert evaluation.start_guard(store, SPEC, "v2", "v1", NOW)
    stored = evaluation.read_guard_state(store, MODEL, "v2")
    assert (stored.new_champion, stored.previous, stored.n, stored.closed) == ("v2", "v1", 0, False)
    assert not evaluation.start_guard(store, SPEC, "v2", "v1", NOW)  # already open: kept as it is
    assert not evaluation.start_guard(store, SPEC, "v3", None, NOW)
    disabled = SPEC.model_copy(update={"guard": GuardSpec(enabled=False)})
    assert not evaluation.start_guard(store, disabled, "v4", "v3", NOW)
    assert evaluation.read_guard_state(store, MODEL, "v3") is None
    assert evaluation.read_guard_state(store, MODEL, "v4") is None


def test_the_guard_folds_the_new_champion_against_the_previous_one() -> None:
    store = MemoryStore()
    _version(store, "champion", "v1")
    _version(store, "champion", "v2")  # promoted: v1 keeps scoring under guard
    evaluation.start_guard(store, SPEC, "v2", "v1", NOW)
    rows = _batch(store, "b1", seed=3)
    _served(store, "b1", "v2", rows["ids"], rows["coin"])  # the new champion is the worse one
    _served(store, "b1", "v1", rows["ids"], rows["true"])
    _labelled(store, "b1", rows["ids"], rows["y"])
    result = evaluation.evaluate_batch(store, SPEC, "b1", NOW)
    d = _difference(rows, "coin", "true")
    assert result.shadow_state is None  # no candidate in shadow
    assert result.guard_state.n == ROWS and result.guard_state.mean == pytest.approx(float(d.mean()), rel=1e-12)
    assert result.guard_state.mean > 0
    assert result.guard_verdict.verdict == "watch"  # fewer rows than the guard's min_rows
    assert evaluation.read_guard_state(store, MODEL, "v2") == result.guard_state


def test_missing_predictions_of_the_previous_champion_are_noted_by_the_guard() -> None:
    store = MemoryStore()
    _version(store, "champion", "v1")
    _version(store, "champion", "v2")
    evaluation.start_guard(store, SPEC, "v2", "v1", NOW)
    rows = _batch(store, "b1", seed=4)
    _served(store, "b1", "v2", rows["ids"], rows["true"])
    _labelled(store, "b1", rows["ids"], rows["y"])
    result = evaluation.evaluate_batch(store, SPEC, "b1", NOW)
    assert result.notes == ("guard: no predictions of v1 for batch b1 (scored before it was in place?)",)
    assert evaluation.read_guard_state(store, MODEL, "v2").n == 0


def test_a_closed_guard_is_not_folded_again() -> None:
    store = MemoryStore()
    _version(store, "champion", "v1")
    _version(store, "champion", "v2")
    closed = guard.start_guard(MODEL, "v2", "v1", now=NOW)
    closed = guard.GuardState.from_dict({**closed.to_dict(), "verdict": "keep", "closed": True})
    store.put(layout.guard_state(MODEL, "v2"), json.dumps(closed.to_dict()).encode())
    rows = _batch(store, "b1", seed=5)
    _served(store, "b1", "v2", rows["ids"], rows["true"])
    _served(store, "b1", "v1", rows["ids"], rows["coin"])
    _labelled(store, "b1", rows["ids"], rows["y"])
    result = evaluation.evaluate_batch(store, SPEC, "b1", NOW)
    assert result.guard_state is None and result.guard_verdict is None
    assert evaluation.read_guard_state(store, MODEL, "v2") == closed


@pytest.mark.parametrize(
    ("spec", "champion", "labelled", "expected"),
    [
        (SPEC.model_copy(update={"performance": PerformanceSpec(enabled=False)}), True, True, None),
        (SPEC, False, True, "performance: m has no champion"),
        (SPEC, True, False, "performance: no labels for batch b1"),
    ],
    ids=["monitoring off", "no champion", "no labels"],
)
def test_the_champion_monitor_skips_with_a_note_when_there_is_nothing_to_watch(
    spec: ModelSpec, champion: bool, labelled: bool, expected: str | None
) -> None:
    store = MemoryStore()
    if champion:
        _version(store, "champion", "v1")
    rows = _batch(store, "b1", seed=6)
    if labelled:
        _labelled(store, "b1", rows["ids"], rows["y"])
    assert evaluation.fold_champion_performance(store, spec, "b1", NOW) == (None, expected)
    assert not store.exists(layout.performance_state(MODEL, "v1"))


def test_recording_an_announcement_of_a_monitor_that_vanished_is_an_error() -> None:
    with pytest.raises(ObjectNotFoundError, match="performance monitor vanished"):
        evaluation.record_announcement(MemoryStore(), MODEL, "v1", "event-1")


def test_states_that_were_never_started_read_as_none() -> None:
    store = MemoryStore()
    assert evaluation.read_shadow_state(store, MODEL, "v1") is None
    assert evaluation.read_guard_state(store, MODEL, "v1") is None
    assert evaluation.read_performance_state(store, MODEL, "v1") is None
