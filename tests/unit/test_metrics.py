"""One home for metrics: training, the gates and the sequential tests compute the same numbers.

Known truth: a perfect ranking has AUC 1, a reversed one 0; the two AUCs differ only in what a single
class gives (training's raises, the gates' is None).
"""

from __future__ import annotations

import numpy as np
import pytest

from driftline.errors import InputError
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
