"""One home for metrics: training, the gates and the sequential tests compute the same numbers.

Known truth: a perfect ranking has AUC 1, a reversed one 0; the two AUCs differ only in what a single
class gives (training's raises, the gates' is None).
"""

from __future__ import annotations

import numpy as np
import pytest

from driftline.errors import InputError
from driftline.statistics import metrics
from driftline.statistics.metrics import auc, evaluate, log_loss, mae, per_row_loss, rmse, roc_auc


def test_both_aucs_agree_on_seeded_scores_with_ties() -> None:
    rng = np.random.default_rng(3)
    y = (rng.random(2_000) < 0.3).astype(np.float64)
    score = np.round(rng.random(2_000) + 0.3 * y, 1)  # rounded: many ties
    assert auc(y, score) == roc_auc(y, score)
    assert 0.5 < auc(y, score) < 1


@pytest.mark.parametrize(("score", "expected"), [([0.1, 0.2, 0.8, 0.9], 1.0), ([0.9, 0.8, 0.2, 0.1], 0.0)])
def test_a_perfect_and_a_reversed_ranking(score: list[float], expected: float) -> None:
    y = np.array([0, 0, 1, 1])
    assert auc(y, np.array(score)) == expected == roc_auc(y, np.array(score))


def test_a_single_class_raises_for_training_and_is_none_for_the_gates() -> None:
    y, score = np.ones(5), np.linspace(0, 1, 5)
    with pytest.raises(InputError, match="AUC needs both classes; got 5 positive and 0 negative"):
        auc(y, score)
    assert roc_auc(y, score) is None
    with pytest.raises(InputError, match="AUC needs both classes"):
        evaluate("binary", y, score)


def test_log_loss_is_the_mean_of_the_per_row_losses_with_the_same_clip() -> None:
    rng = np.random.default_rng(4)
    y = (rng.random(1_000) < 0.5).astype(np.float64)
    p = rng.random(1_000)
    p[:3] = [0.0, 1.0, 1.0]  # clipped, so finite
    assert log_loss(y, p) == pytest.approx(float(per_row_loss("binary", y, p).mean()), rel=1e-15)
    assert evaluate("binary", y, p)["logloss"] == pytest.approx(log_loss(y, p), rel=1e-15)


def test_regression_metrics_agree_between_evaluate_and_the_gates() -> None:
    rng = np.random.default_rng(5)
    y, prediction = rng.normal(size=500), rng.normal(size=500)
    metrics = evaluate("regression", y, prediction)
    assert metrics["rmse"] == pytest.approx(rmse(y, prediction), rel=1e-15)
    assert metrics["mae"] == pytest.approx(mae(y, prediction), rel=1e-15)


@pytest.mark.parametrize("levels", [None, 2, 7, 1000])
def test_average_ranks_are_scipys_rankdata_exactly(levels: int | None) -> None:
    from scipy.stats import rankdata

    rng = np.random.default_rng(levels or 0)
    for size in (1, 2, 5, 1_000, 20_001):
        values = rng.normal(size=size) if levels is None else rng.integers(0, levels, size=size).astype(float)
        values[: size // 10] = np.inf if size > 10 else values[: size // 10]  # ties at infinity rank too
        assert np.array_equal(metrics.average_ranks(values), rankdata(values, method="average")), (levels, size)


def test_average_ranks_of_a_nan_are_all_nan_as_scipys() -> None:
    from scipy.stats import rankdata

    values = np.array([0.3, np.nan, 0.1, 0.3])
    assert np.isnan(metrics.average_ranks(values)).all() and np.isnan(rankdata(values, method="average")).all()


def test_auc_with_ties_is_the_pairwise_count_of_wins_and_half_ties() -> None:
    rng = np.random.default_rng(7)
    y = rng.integers(0, 2, size=400).astype(float)
    score = np.round(rng.normal(size=400) + y, 1)  # coarse scores: many ties across the classes
    positives, negatives = score[y == 1], score[y == 0]
    wins = (positives[:, None] > negatives[None, :]).sum() + 0.5 * (positives[:, None] == negatives[None, :]).sum()
    assert metrics.auc(y, score) == pytest.approx(wins / (positives.size * negatives.size), abs=1e-12)
