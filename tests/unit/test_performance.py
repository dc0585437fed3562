"""The champion's performance monitor, on seeded data whose truth is known.

Known truth: rows have three standard-normal features; the champion predicts with the true rule
``sigmoid(x . W - 1)``. A concept change of strength ``c`` scales the third feature's weight by ``1 - 2c``
in the labels only (the features do not change): ``c = 0`` is pure noise around the champion's holdout
loss, ``c = 0.25`` raises its mean log loss by about 19% (0.437 -> 0.521).
"""

from __future__ import annotations

import io
import json
import math
import re
from datetime import UTC, datetime

import numpy as np
import polars as pl
import pytest
import yaml
from pydantic import ValidationError

from driftline.data import profiling
from driftline.errors import InputError
from driftline.events.records import DRIFT_DETECTED, PERFORMANCE_DEGRADED
from driftline.loop import drift_checks, evaluation
from driftline.models.spec import PerformanceSpec
from driftline.statistics import performance
from driftline.statistics.metrics import per_row_loss
from driftline.statistics.performance import (
    PerformanceState,
    baseline_from_metadata,
    baseline_of,
    decide,
    fold_batch,
    mark_alerted,
    start_monitor,
)
from driftline.statistics.sequential import confidence_sequence
from driftline.storage import layout
from driftline.storage.store import MemoryStore
from tests.batches import example_spec
from tests.support import REPO

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
WEIGHTS = np.array([1.0, -0.8, 1.5])
POLICY = PerformanceSpec()
HOLDOUT_ROWS = 2_500


def champion_losses(rng: np.random.Generator, shape: tuple[int, ...], concept: float = 0.0) -> np.ndarray:
    """Per-row log loss of the champion (the concept-0 rule) on rows labelled under ``concept``."""
    x = rng.normal(size=(*shape, 3))
    served = 1 / (1 + np.exp(-(x @ WEIGHTS - 1)))
    truth = WEIGHTS * np.array([1.0, 1.0, 1 - 2 * concept])
    y = (rng.random(shape) < 1 / (1 + np.exp(-(x @ truth - 1)))).astype(np.float64)
    return per_row_loss("binary", y, served)


def monitor_from_holdout(rng: np.random.Generator, rows: int = HOLDOUT_ROWS) -> PerformanceState:
    holdout = champion_losses(rng, (rows,))
    return start_monitor("m", "v1", float(holdout.mean()), rows, NOW, baseline_sd=float(holdout.std(ddof=1)))


def first_alarms(
    tolerances: list[np.ndarray], baseline: np.ndarray, losses_of_batch, batches: int, rows: int
) -> list[np.ndarray]:
    """Batch index of each simulated run's first degraded verdict (-1: never), per tolerance rule.

    Vectorised over runs (one column each) through the same stretch moments, confidence sequences and
    error split that ``decide`` uses; ``decide`` itself is exercised batch by batch in the other tests.
    """
    runs = baseline.size
    means, m2s = np.zeros((batches, runs)), np.zeros((batches, runs))
    sizes = np.full(batches, rows)
    alarms = [np.full(runs, -1) for _ in tolerances]
    for t in range(batches):
        losses = losses_of_batch(t)
        batch_mean = losses.mean(axis=1)
        means[t], m2s[t] = batch_mean - baseline, ((losses - batch_mean[:, None]) ** 2).sum(axis=1)
        n, mean, m2 = performance.segment_moments(sizes[: t + 1], means[: t + 1], m2s[: t + 1])
        lower, _ = performance.segment_bounds(n, mean, m2, alpha=POLICY.alpha, planned_rows=POLICY.planned_rows)
        for alarm, limit in zip(alarms, tolerances, strict=True):
            firing = ((lower > limit[None, :]) & (n[:, None] >= POLICY.min_rows)).any(axis=0)
            alarm[(alarm < 0) & firing] = t
    return alarms


# ----------------------------------------------------------------------------------- the statistics
def test_stretch_moments_equal_the_moments_of_their_rows() -> None:
    rng = np.random.default_rng(3)
    batches = [rng.normal(0.1 * i, 1 + i, size) for i, size in enumerate([5, 0, 40, 1, 17])]
    rows = np.array([b.size for b in batches])
    means = np.array([b.mean() if b.size else 0.0 for b in batches])
    m2s = np.array([((b - b.mean()) ** 2).sum() if b.size else 0.0 for b in batches])
    n, mean, m2 = performance.segment_moments(rows, means, m2s)
    for j in range(len(batches)):
        rest = np.concatenate(batches[j:])
        assert n[j] == rest.size
        assert mean[j] == pytest.approx(rest.mean())
        assert m2[j] == pytest.approx(((rest - rest.mean()) ** 2).sum())


def test_the_first_stretch_is_the_shadow_tests_sequence_at_its_share_of_alpha() -> None:
    lower, upper = performance.segment_bounds(
        np.array([800]), np.array([0.03]), np.array([0.25 * 799]), alpha=0.05, planned_rows=5_000
    )
    assert (lower[0], upper[0]) == pytest.approx(confidence_sequence(800, 0.03, 0.25, 0.05 / 4, 5_000))


def test_stretch_errors_sum_to_half_the_budget() -> None:
    shares = [performance.segment_alpha(0.05, j) for j in range(1, 100_001)]
    assert shares[0] == pytest.approx(0.05 / 4)
    assert sum(shares) == pytest.approx(0.025, rel=1e-4)
    assert all(a > b for a, b in zip(shares, shares[1:], strict=False))


def test_tolerance_covers_the_baselines_standard_error_and_the_margin() -> None:
    policy = PerformanceSpec(alpha=0.05, relative_margin=0.02)
    assert performance.tolerance(0.5, 0.01, policy) == pytest.approx(1.959964 * 0.01 + 0.01, rel=1e-5)


# -------------------------------------------------------------------------------------------- noise
def test_pure_noise_batches_never_announce_a_drop_in_200_batches() -> None:
    rng = np.random.default_rng(11)
    state = monitor_from_holdout(rng)
    verdicts = []
    for i in range(200):
        state = fold_batch(state, champion_losses(rng, (500,)), f"b{i:03d}", POLICY, NOW)
        verdicts.append(state.verdict)
    print(f"noise, one monitor, 200 batches x 500 rows: {verdicts.count('degraded')} degraded verdicts")
    assert "degraded" not in verdicts
    assert state.n == 100_000
    assert verdicts[-1] == "ok"  # 100k rows prove the loss is within tolerance


def test_false_alarms_stay_within_alpha_where_ignoring_the_baselines_error_does_not() -> None:
    """200 healthy champions, each watched over 200 batches of 500 rows (100k rows each)."""
    runs, batches, rows = 200, 200, 500
    rng = np.random.default_rng(5)
    holdout = champion_losses(rng, (runs, HOLDOUT_ROWS))
    baseline = holdout.mean(axis=1)
    standard_error = holdout.std(axis=1, ddof=1) / math.sqrt(HOLDOUT_ROWS)

    ours, naive = first_alarms(
        [performance.tolerance(baseline, standard_error, POLICY), np.zeros(runs)],
        baseline,
        lambda _: champion_losses(rng, (runs, rows)),
        batches,
        rows,
    )
    print(f"false alarms in {runs} runs: {np.sum(ours >= 0)} with the tolerance, {np.sum(naive >= 0)} with 0")
    assert np.sum(ours >= 0) <= POLICY.alpha * runs
    # The baseline is an estimate: treating it as exact, about a quarter of healthy champions are "degraded".
    assert np.sum(naive >= 0) > 4 * POLICY.alpha * runs


# -------------------------------------------------------------------------------------------- drops
def test_a_concept_change_is_found_within_the_rows_the_sequence_needs() -> None:
    rng = np.random.default_rng(21)
    state = monitor_from_holdout(rng)
    for i in range(200):
        state = fold_batch(state, champion_losses(rng, (250,), concept=0.25), f"b{i:03d}", POLICY, NOW)
        if state.verdict == "degraded":
            break
    verdict = decide(state, POLICY)
    print(f"concept change (+19% log loss): degraded after {state.n} labelled rows")
    assert verdict.degraded, verdict.reasons
    assert state.n <= 6_000
    assert verdict.since_batch_id == "b000"
    assert verdict.lower > verdict.tolerance
    assert verdict.lower <= 0.084 <= verdict.upper  # the true rise of the mean loss
    assert "loss rose by" in verdict.reasons[0]


def test_a_late_drop_is_found_from_the_rows_after_it_not_diluted_by_the_good_ones() -> None:
    """100 good batches (25k rows), then the concept change: a cumulative mean would need ~20k more rows."""
    rng = np.random.default_rng(31)
    state = monitor_from_holdout(rng)
    for i in range(100):
        state = fold_batch(state, champion_losses(rng, (250,)), f"b{i:03d}", POLICY, NOW)
    assert state.verdict != "degraded"
    for i in range(100, 300):
        state = fold_batch(state, champion_losses(rng, (250,), concept=0.25), f"b{i:03d}", POLICY, NOW)
        if state.verdict == "degraded":
            break
    verdict = decide(state, POLICY)
    rows_after = state.n - 25_000
    print(f"late concept change: degraded after {rows_after} labelled rows since the change")
    assert verdict.degraded
    assert rows_after <= 10_000
    onset = int(verdict.since_batch_id.removeprefix("b"))
    assert 95 <= onset <= 110  # the stretch that shows the drop starts near the change
    assert verdict.n == state.n - 250 * onset


def test_a_better_champion_is_never_degraded() -> None:
    rng = np.random.default_rng(41)
    holdout = champion_losses(rng, (HOLDOUT_ROWS,), concept=0.25)  # its holdout was harder than service
    state = start_monitor("m", "v1", float(holdout.mean()), HOLDOUT_ROWS, NOW, float(holdout.std(ddof=1)))
    for i in range(40):
        state = fold_batch(state, champion_losses(rng, (500,)), f"b{i:03d}", POLICY, NOW)
    assert state.verdict == "ok"
    assert decide(state, POLICY).upper < 0


# -------------------------------------------------------------------------------- state and rules
def test_nothing_is_decided_below_min_rows() -> None:
    rng = np.random.default_rng(51)
    state = monitor_from_holdout(rng)
    state = fold_batch(state, champion_losses(rng, (100,), concept=1.0), "b1", POLICY, NOW)
    verdict = decide(state, POLICY)
    assert verdict.verdict == "continue"
    assert verdict.reasons == [f"100 of min_rows {POLICY.min_rows} labelled rows"]
    assert verdict.to_dict()["lower"] is None


def test_a_repeated_batch_is_ignored() -> None:
    rng = np.random.default_rng(61)
    state = fold_batch(monitor_from_holdout(rng), champion_losses(rng, (600,)), "b1", POLICY, NOW)
    again = fold_batch(state, champion_losses(rng, (600,), concept=1.0), "b1", POLICY, NOW)
    assert again is state
    assert again.n == 600 and again.batch_ids == ["b1"]


def test_folding_batch_by_batch_equals_one_batch_of_all_rows() -> None:
    rng = np.random.default_rng(71)
    losses = champion_losses(rng, (1_200,), concept=0.5)
    start = monitor_from_holdout(rng)
    one = fold_batch(start, losses, "all", POLICY, NOW)
    many = start
    for i, part in enumerate(np.array_split(losses, 7)):
        many = fold_batch(many, part, f"p{i}", POLICY, NOW)
    assert many.n == one.n == 1_200
    assert many.mean == pytest.approx(one.mean)
    assert many.variance == pytest.approx(one.variance)
    assert many.mean == pytest.approx(losses.mean() - start.baseline_loss)


def test_state_survives_a_json_round_trip() -> None:
    rng = np.random.default_rng(81)
    state = monitor_from_holdout(rng)
    for i in range(3):
        state = fold_batch(state, champion_losses(rng, (400,), concept=1.0), f"b{i}", POLICY, NOW)
    state, announced = mark_alerted(state, decide(state, POLICY), "b2", NOW)
    state = performance.record_announcement(state, "e1")
    assert announced
    restored = PerformanceState.from_dict(json.loads(json.dumps(state.to_dict(), allow_nan=False)))
    assert restored == state
    assert restored.history[-1]["verdict"] == "degraded" and restored.history[-1]["since"] == "b0"
    assert set(restored.history[-1]) >= {"batch_id", "n", "estimate", "lower", "upper", "loss", "rows"}
    assert state.to_dict()["variance"] == pytest.approx(state.variance)


def test_a_degradation_is_announced_once_per_champion() -> None:
    rng = np.random.default_rng(91)
    state = fold_batch(monitor_from_holdout(rng), champion_losses(rng, (2_000,), concept=1.0), "b1", POLICY, NOW)
    verdict = decide(state, POLICY)
    assert verdict.degraded
    state, first = mark_alerted(state, verdict, "b1", NOW)
    state, second = mark_alerted(state, verdict, "b1", NOW)
    assert (first, second) == (True, False)
    assert state.alerted and state.alerted_batch_id == "b1"
    assert performance.should_announce(state, "b1") and not performance.should_announce(state, "b2")
    sent = performance.record_announcement(state, "e1")
    assert not performance.should_announce(sent, "b1")
    assert performance.record_announcement(sent, "e2").alert_event_id == "e1"
    healthy = fold_batch(monitor_from_holdout(rng), champion_losses(rng, (2_000,)), "b1", POLICY, NOW)
    assert mark_alerted(healthy, decide(healthy, POLICY), "b1", NOW) == (healthy, False)


def test_an_unknown_holdout_sd_is_estimated_from_the_served_rows() -> None:
    rng = np.random.default_rng(101)
    holdout = champion_losses(rng, (HOLDOUT_ROWS,))
    known = start_monitor("m", "v1", float(holdout.mean()), HOLDOUT_ROWS, NOW, float(holdout.std(ddof=1)))
    unknown = start_monitor("m", "v1", float(holdout.mean()), HOLDOUT_ROWS, NOW)
    assert math.isnan(unknown.baseline_se)
    served = champion_losses(rng, (5_000,))
    known, unknown = (fold_batch(s, served, "b1", POLICY, NOW) for s in (known, unknown))
    assert unknown.baseline_se == pytest.approx(known.baseline_se, rel=0.05)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"baseline_loss": math.nan}, "baseline loss must be a finite loss"),
        ({"baseline_loss": -0.1}, "baseline loss must be a finite loss"),
        ({"baseline_rows": 1}, "at least 2 holdout rows"),
        ({"baseline_sd": -1.0}, "baseline sd must be finite"),
        ({"now": datetime(2026, 1, 1)}, "timezone-aware"),
    ],
)
def test_a_bad_baseline_is_refused_naming_the_champion(arguments: dict, message: str) -> None:
    values = {"baseline_loss": 0.5, "baseline_rows": 100, "now": NOW, **arguments}
    with pytest.raises(InputError, match=message) as raised:
        start_monitor("m", "v7", **values)
    if "now" not in arguments:
        assert "v7" in str(raised.value)


def test_bad_losses_are_refused_naming_the_batch() -> None:
    state = start_monitor("m", "v1", 0.5, 100, NOW)
    with pytest.raises(InputError, match="1 loss.* of batch b9 are NaN"):
        fold_batch(state, np.array([0.1, np.nan]), "b9", POLICY, NOW)
    with pytest.raises(InputError, match="batch b9 must be a 1-D array"):
        fold_batch(state, np.zeros((2, 2)), "b9", POLICY, NOW)


# -------------------------------------------------------------------------------------- baselines
def test_the_baseline_holds_the_holdouts_loss_facts() -> None:
    y = np.array([1.0, 0.0, 1.0, 0.0])
    p = np.array([0.9, 0.2, 0.6, 0.4])
    baseline = baseline_of("binary", y, p, prediction_profile="models/m/versions/v1/holdout_predictions.bin")
    losses = per_row_loss("binary", y, p)
    assert baseline.loss == pytest.approx(losses.mean())
    assert baseline.loss_sd == pytest.approx(losses.std(ddof=1))
    assert (baseline.rows, baseline.loss_kind) == (4, "logloss")
    assert baseline_from_metadata({"baseline": baseline.to_dict()}) == baseline
    assert baseline_of("regression", y, p).loss_kind == "squared_error"


def test_a_version_registered_before_baselines_has_none() -> None:
    assert baseline_from_metadata({"metrics": {"auc": 0.8}}) is None
    with pytest.raises(InputError, match="at least 2 holdout rows"):
        baseline_of("binary", np.array([1.0]), np.array([0.5]))


def test_the_spec_section_has_documented_defaults_and_refuses_unknown_keys() -> None:
    policy = PerformanceSpec()
    assert (policy.enabled, policy.alpha, policy.min_rows, policy.planned_rows) == (True, 0.05, 500, 5_000)
    assert policy.relative_margin == 0.02
    assert (policy.prediction_drift.enabled, policy.prediction_drift.trigger_retrain) == (True, False)
    assert all(f.description for f in PerformanceSpec.model_fields.values())
    with pytest.raises(ValidationError, match="margin"):
        PerformanceSpec.model_validate({"margin": 0.1})
    with pytest.raises(ValidationError):
        PerformanceSpec.model_validate({"alpha": 0.7})


# ------------------------------------------------------------------------------- in the store (memory)
def templated_keys(event: str) -> set[str]:
    """Payload keys that prefect.yaml's triggers on ``event`` template into run parameters (a missing one
    silently breaks the automation)."""
    keys: set[str] = set()
    for deployment in yaml.safe_load((REPO / "prefect.yaml").read_text())["deployments"]:
        for trigger in deployment.get("triggers", []):
            if event in trigger.get("expect", []):
                for value in trigger.get("parameters", {}).values():
                    keys.update(re.findall(r"event\.payload\.(\w+)", str(value)))
    return keys


SPEC = example_spec("m")


def _parquet(frame: pl.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.write_parquet(buffer)
    return buffer.getvalue()


def _served(store: MemoryStore, version: str, batch_id: str, p: np.ndarray, y: np.ndarray | None = None) -> None:
    """Predictions of ``version`` for a batch (and its labels); the batch itself, for its event times."""
    ids = np.arange(p.size, dtype=np.int64)
    times = [datetime(2026, 3, 1, 0, 0, i % 60) for i in range(p.size)]
    store.put(layout.batch_data("m", batch_id), _parquet(pl.DataFrame({"id": ids, "ts": times})))
    store.put(layout.predictions("m", batch_id, version), _parquet(pl.DataFrame({"id": ids, "prediction": p})))
    if y is not None:
        store.put(layout.batch_labels("m", batch_id), _parquet(pl.DataFrame({"id": ids, "default": y.astype(np.int8)})))


def _champion(store: MemoryStore, version: str, holdout_p: np.ndarray, holdout_y: np.ndarray, baseline=True) -> None:
    metadata: dict = {"model_sha256": "x", "metrics": {}}
    if baseline:
        key = layout.holdout_prediction_profile("m", version)
        store.put(key, profiling.serialize(profiling.profile_frame(pl.DataFrame({"prediction": holdout_p}))))
        metadata["baseline"] = baseline_of("binary", holdout_y, holdout_p, prediction_profile=key).to_dict()
    store.put(layout.model_metadata("m", version), json.dumps(metadata).encode())


def _scores(rng: np.random.Generator, rows: int, concept: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    x = rng.normal(size=(rows, 3))
    p = 1 / (1 + np.exp(-(x @ WEIGHTS - 1)))
    truth = WEIGHTS * np.array([1.0, 1.0, 1 - 2 * concept])
    return p, (rng.random(rows) < 1 / (1 + np.exp(-(x @ truth - 1)))).astype(np.float64)


def _labels(store: MemoryStore, batch_id: str) -> pl.DataFrame:
    return pl.read_parquet(io.BytesIO(store.get(layout.batch_labels("m", batch_id))))


def test_the_monitor_in_the_store_announces_a_degraded_champion_once_with_a_complete_payload() -> None:
    """Only the evaluation that claimed the announcement sends it, until its event id is recorded."""
    rng = np.random.default_rng(7)
    store = MemoryStore()
    _champion(store, "v1", *_scores(rng, 2_000))
    _served(store, "v1", "b1", *_scores(rng, 2_000, concept=1.0))
    update, note = evaluation.fold_performance(store, SPEC, "b1", "v1", _labels(store, "b1"), NOW)
    assert note is None and update.announce and update.verdict.degraded
    # A retry before the announcement went out announces (at least once); a repeated batch counts once.
    retried, _ = evaluation.fold_performance(store, SPEC, "b1", "v1", _labels(store, "b1"), NOW)
    assert retried.announce and retried.state.n == 2_000
    evaluation.record_announcement(store, "m", "v1", "event-1")
    again, _ = evaluation.fold_performance(store, SPEC, "b1", "v1", _labels(store, "b1"), NOW)
    assert not again.announce and again.state.alert_event_id == "event-1"
    # Another degraded batch, even evaluated at the same time as the first, never announces.
    _served(store, "v1", "b2", *_scores(rng, 2_000, concept=1.0))
    later, _ = evaluation.fold_performance(store, SPEC, "b2", "v1", _labels(store, "b2"), NOW)
    assert later.verdict.degraded and not later.announce and later.state.n == 4_000
    payload = update.event_payload()
    assert set(payload) | {"model", "event_id"} >= templated_keys(PERFORMANCE_DEGRADED)
    assert payload["drift_onset"] == "2026-03-01T00:00:00"
    assert payload["reference_version"] == "v1" and payload["kind"] == "performance"
    assert json.loads(json.dumps(payload, allow_nan=False)) == payload
    stored = evaluation.read_performance_state(store, "m", "v1")
    assert stored.alerted and stored.alerted_batch_id == "b1"


def test_a_champion_registered_before_baselines_is_skipped_with_a_note() -> None:
    rng = np.random.default_rng(8)
    store = MemoryStore()
    _champion(store, "v0", *_scores(rng, 100), baseline=False)
    _served(store, "v0", "b1", *_scores(rng, 500))
    update, note = evaluation.fold_performance(store, SPEC, "b1", "v0", _labels(store, "b1"), NOW)
    assert update is None
    assert "champion v0 has no holdout loss baseline" in note
    assert not store.exists(layout.performance_state("m", "v0"))
    check = drift_checks.check_prediction_drift(store, SPEC, "b1", "v0")
    assert not check.checked and "v0 has no holdout prediction profile" in check.notes[0]


def test_monitoring_off_in_the_spec_does_nothing() -> None:
    spec = SPEC.model_copy(update={"performance": PerformanceSpec(enabled=False)})
    store = MemoryStore()
    rng = np.random.default_rng(9)
    _champion(store, "v1", *_scores(rng, 500))
    _served(store, "v1", "b1", *_scores(rng, 500))
    assert evaluation.fold_performance(store, spec, "b1", "v1", _labels(store, "b1"), NOW) == (None, None)


def test_prediction_drift_joins_the_drift_report_and_triggers_only_when_the_spec_says_so() -> None:
    rng = np.random.default_rng(10)
    store = MemoryStore()
    holdout_p, holdout_y = _scores(rng, 5_000)
    _champion(store, "v1", holdout_p, holdout_y)
    _served(store, "v1", "same", _scores(rng, 5_000)[0])
    _served(store, "v1", "shifted", np.clip(_scores(rng, 5_000)[0] + 0.15, 0, 1))
    store.put(layout.drift_report("m", "same"), json.dumps({"drift": False, "features": {}}).encode())

    same = drift_checks.check_prediction_drift(store, SPEC, "same", "v1", drift_onset="2026-03-01T00:00:00")
    assert same.checked and not same.drift and not same.triggered
    assert same.stored_key == layout.drift_report("m", "same")
    report = json.loads(store.get(layout.drift_report("m", "same")))
    assert report["drift"] is False and report["prediction"]["version"] == "v1"
    assert report["prediction"]["statistic"] == "ks" and report["prediction"]["score"] < 0.05

    # No drift report yet (scored before profiling): a stand-alone object; off by default, no trigger.
    shifted = drift_checks.check_prediction_drift(store, SPEC, "shifted", "v1")
    assert shifted.drift and not shifted.triggered
    assert shifted.stored_key == layout.prediction_drift("m", "shifted")
    assert drift_checks.read_prediction_drift(store, "m", "shifted")["drift"] is True

    triggering = SPEC.model_copy(update={"performance": PerformanceSpec(prediction_drift={"trigger_retrain": True})})
    store.delete(layout.prediction_drift("m", "shifted"))
    first = drift_checks.check_prediction_drift(store, triggering, "shifted", "v1", drift_onset="2026-03-01T00:00:00")
    assert first.triggered
    payload = first.event_payload()
    assert set(payload) | {"model", "event_id"} >= templated_keys(DRIFT_DETECTED)
    assert (payload["kind"], payload["reference_version"], payload["drift_onset"]) == (
        "prediction",
        "v1",
        "2026-03-01T00:00:00",
    )
    second = drift_checks.check_prediction_drift(store, triggering, "shifted", "v1")
    assert second.duplicate and not second.triggered


def test_rows_without_a_label_are_left_out_of_the_monitor() -> None:
    rng = np.random.default_rng(12)
    store = MemoryStore()
    _champion(store, "v1", *_scores(rng, 500))
    _served(store, "v1", "b1", *_scores(rng, 600))
    labels = _labels(store, "b1").with_columns(
        pl.when(pl.col("id") < 10).then(None).otherwise(pl.col("default")).alias("default")
    )
    update, note = evaluation.fold_performance(store, SPEC, "b1", "v1", labels, NOW)
    assert note is None and update.state.n == 590
