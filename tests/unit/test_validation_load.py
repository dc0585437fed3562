"""Gates that judge a bounded sample or a busy machine: the same decisions as on the whole holdout, idle.

Seeded synthetic holdouts with known truth (``test_validation``'s: ``label ~ Bernoulli(sigmoid(3 * x0))``,
``t`` a glitchy sensor of ``x0``), CPU burner processes for the load.
"""

from __future__ import annotations

import contextlib
import re
import time

import numpy as np
import polars as pl
import pytest

from driftline.models import validation
from tests.unit.test_validation import GOOD, binary_holdout, binary_spec, booster_model, busy_machine, evaluate, gate

LARGE_ROWS = 120_000  # over ROBUSTNESS_MAX_ROWS, so the robustness gate samples


def sensor_model(frame: pl.DataFrame) -> np.ndarray:
    """Reads x0 through the glitchy sensor ``t``: perfect on clean rows, lost under 0.1 sd of noise."""
    return 1.0 / (1.0 + np.exp(-3 * frame["t"].to_numpy() / 1e-3))


@pytest.fixture(scope="module")
def large_holdout() -> pl.DataFrame:
    return binary_holdout(n=LARGE_ROWS, seed=11)


@pytest.mark.parametrize(("candidate", "passes"), [(GOOD, True), (sensor_model, False)], ids=["robust", "fragile"])
def test_robustness_on_a_seeded_sample_decides_as_on_the_whole_holdout(
    large_holdout: pl.DataFrame, monkeypatch: pytest.MonkeyPatch, candidate, passes: bool
) -> None:
    sample_rows = validation.ROBUSTNESS_MAX_ROWS
    sampled = gate(evaluate(binary_spec(), large_holdout, candidate), "robustness")
    again = gate(evaluate(binary_spec(), large_holdout, candidate), "robustness")
    monkeypatch.setattr(validation, "ROBUSTNESS_MAX_ROWS", LARGE_ROWS)
    whole = gate(evaluate(binary_spec(), large_holdout, candidate), "robustness")

    assert sampled.passed is passes and whole.passed is passes, (sampled.detail, whole.detail)
    assert sampled.value == again.value  # seeded: the same rows and noise every time
    assert f"on a seeded sample of {sample_rows:,} holdout rows" in sampled.detail
    assert "seeded sample" not in whole.detail
    assert sampled.value is not None and whole.value is not None
    assert abs(sampled.value - whole.value) < 0.01  # ~0.001 standard error on 50k paired rows


def test_a_holdout_within_the_sample_size_is_judged_whole(large_holdout: pl.DataFrame) -> None:
    small = large_holdout.head(validation.ROBUSTNESS_MAX_ROWS)
    assert "seeded sample" not in gate(evaluate(binary_spec(), small, GOOD), "robustness").detail


def test_shared_holdout_predictions_give_the_same_report_as_predicting_again(large_holdout: pl.DataFrame) -> None:
    holdout = large_holdout.head(5_000)
    arguments = {
        "spec": binary_spec(max_p99_latency_ms=None, min_throughput_rows_per_s=None),
        "holdout": holdout,
        "candidate": GOOD,
        "champion": None,
        "candidate_features": ["x0", "x1", "t", "region"],
        "model_bytes": 1,
    }
    shared = validation.evaluate_gates(**arguments, candidate_prediction=GOOD(holdout).astype(np.float32))
    fresh = validation.evaluate_gates(**arguments)

    assert [(g.name, g.passed, g.value) for g in shared.gates] == [(g.name, g.passed, g.value) for g in fresh.gates]
    assert shared.metrics == pytest.approx(fresh.metrics)


def test_shared_holdout_predictions_are_checked_like_fresh_ones(large_holdout: pl.DataFrame) -> None:
    holdout = large_holdout.head(100)
    with pytest.raises(validation.InputError, match="candidate returned 99 predictions for 100 rows"):
        validation.evaluate_gates(
            spec=binary_spec(),
            holdout=holdout,
            candidate=GOOD,
            champion=None,
            candidate_features=["x0", "x1", "t", "region"],
            model_bytes=1,
            candidate_prediction=np.full(99, 0.5),
        )


def sleeping(milliseconds: float, then=GOOD):
    def predict(frame: pl.DataFrame) -> np.ndarray:
        time.sleep(milliseconds / 1000)
        return then(frame)

    return predict


@pytest.mark.parametrize("busy", [pytest.param(False, id="idle"), pytest.param(True, id="busy")])
def test_the_load_corrected_latency_ceiling_decides_alike_on_an_idle_and_a_busy_machine(
    busy: bool, large_holdout: pl.DataFrame
) -> None:
    """The corrected path itself (entered as when the uncorrected p99 was over the ceiling): a two-threaded
    XGBoost booster answering in about a millisecond stays within 20 ms; the same booster after 40 ms of its
    own (waiting on the load like it, and 40 ms slower) is over."""
    features = large_holdout.head(4_000).select("x0", "x1", "t", "region")
    spec = binary_spec(max_p99_latency_ms=20.0)
    fast = booster_model(large_holdout.head(4_000), seed=1)
    with busy_machine() if busy else contextlib.nullcontext():
        verdicts = {}
        for name, candidate in [("fast", fast), ("slow", sleeping(40.0, then=fast))]:
            rng = np.random.default_rng((0, 3))
            over, detail, measurements = validation._latency_ceiling(spec, features, candidate, np.inf, rng)
            verdicts[name] = (over, detail, measurements)

    over, detail, measurements = verdicts["fast"]
    assert not over, detail
    assert re.search(r"interleaved on 16 rows x [3-5](-[3-5])? rounds", detail), detail
    over, detail, measurements = verdicts["slow"]
    assert over and measurements["corrected_p99_lower_ms"] > 20.0, detail


def test_the_load_corrected_ceiling_repeats_every_row(large_holdout: pl.DataFrame) -> None:
    features = large_holdout.head(1_000).select("x0", "x1", "t", "region")
    measured = validation._single_row_latencies(
        features,
        [sleeping(30.0), GOOD],
        max_rows=validation.LATENCY_CEILING_ROWS,
        min_rounds=validation.LATENCY_CEILING_MIN_ROUNDS,
    )
    # 30 ms per call uses the 1 s budget within the first round: the repeats still happen.
    assert measured.repeats.size == validation.LATENCY_CEILING_ROWS
    assert measured.repeats.min() >= validation.LATENCY_CEILING_MIN_ROUNDS


def _rounds(detail: str) -> int:
    """The most rounds any row was measured in, from a latency detail's ``on N rows x R(-R) rounds``."""
    match = re.search(r"on 32 rows x (?:\d+-)?(\d+) rounds", detail)
    assert match, detail
    return int(match.group(1))


def test_the_latency_gate_stops_once_further_rounds_cannot_change_its_verdict(large_holdout: pl.DataFrame) -> None:
    holdout = large_holdout.head(2_000)
    spec = binary_spec(max_p99_latency_ms=50.0)
    settled = gate(evaluate(spec, holdout, GOOD, champion=GOOD), "latency_p99")
    # Every call of a sub-millisecond model within the 1 ms slack and the p99 within the ceiling: a pass
    # whatever later rounds measure, so one round of every row is enough (two if load stretched a call).
    assert settled.passed and _rounds(settled.detail) <= 2, settled.detail
    # A 3 ms candidate could still turn out beyond 2.5x a champion whose calls later rounds make faster.
    unsettled = gate(evaluate(spec, holdout, sleeping(3.0), champion=GOOD), "latency_p99")
    assert not unsettled.passed and "beyond 2.5x + 1 ms slack" in unsettled.detail, unsettled.detail
    assert _rounds(unsettled.detail) > _rounds(settled.detail), (settled.detail, unsettled.detail)
