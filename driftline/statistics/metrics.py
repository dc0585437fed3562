"""Metrics of predictions against labels: per-row losses, AUC, log loss, RMSE, MAE.

One home for what training (holdout metrics), the gates (:mod:`driftline.models.validation`), the shadow test,
the guard and the performance monitor (per-row losses) compute, so they agree on every number: the same
clip of probabilities in log loss, the same ranks in AUC. Two AUCs differ only in what a single class
gives: :func:`auc` raises (training's metrics need both classes), :func:`roc_auc` returns None (a gate
reports it as not judged).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from driftline.errors import InputError

Task = Literal["binary", "regression"]

# Log loss of a probability of exactly 0 or 1 is infinite; clipped, one confident miss costs -log(1e-7) ~ 16.
PROBABILITY_CLIP = 1e-7


def _log_likelihoods(truth: np.ndarray, probability: np.ndarray) -> np.ndarray:
    p = np.clip(probability, PROBABILITY_CLIP, 1 - PROBABILITY_CLIP)
    return truth * np.log(p) + (1 - truth) * np.log1p(-p)


def per_row_loss(task: Task, y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """Loss of each row: log loss (probabilities clipped to [1e-7, 1-1e-7]) for binary, squared error for
    regression. The shadow test compares these, row by row, between two models.

    Raises:
        InputError: labels and predictions differ in shape.
    """
    truth = np.asarray(y_true, dtype=np.float64)
    predicted = np.asarray(y_pred, dtype=np.float64)
    if truth.shape != predicted.shape:
        raise InputError(f"{truth.shape[0]} labels but {predicted.shape[0]} predictions")
    if task == "binary":
        return -_log_likelihoods(truth, predicted)
    return (truth - predicted) ** 2


def average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks of ``values``, ties sharing their average rank: ``scipy.stats.rankdata(values, "average")``,
    the same doubles (every rank is a whole or half number), all NaN when a value is NaN as there.

    Here rather than scipy's: importing scipy.stats costs ~1 s of CPU, paid by every flow run that computes an
    AUC (the monitor figure of each shadow-evaluate run, every retrain).
    """
    if np.isnan(values).any():
        return np.full(values.size, np.nan)
    order = values.argsort(kind="mergesort")
    ordered = values[order]
    starts = np.flatnonzero(np.concatenate([[True], ordered[1:] != ordered[:-1]]))
    ends = np.append(starts[1:], values.size)
    ranks = np.empty(values.size, dtype=np.float64)
    ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)
    return ranks


def _rank_auc(truth: np.ndarray, score: np.ndarray, positives: int, negatives: int) -> float:
    ranks = average_ranks(np.asarray(score, dtype=np.float64))
    return float((ranks[truth == 1].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def auc(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """Area under the ROC curve from ranks (ties share their average rank).

    Raises:
        InputError: only one class is present.
    """
    truth = np.asarray(y_true, dtype=np.float64)
    positives = int(np.sum(truth == 1))
    negatives = int(np.sum(truth == 0))
    if positives == 0 or negatives == 0:
        raise InputError(f"AUC needs both classes; got {positives} positive and {negatives} negative row(s)")
    return _rank_auc(truth, y_score, positives, negatives)


def roc_auc(y_true: np.ndarray, score: np.ndarray) -> float | None:
    """Area under the ROC curve from average ranks (ties count one half).

    Args:
        y_true: 0/1 labels.
        score: predictions; only their order matters.

    Returns:
        The AUC, or None when the labels hold a single class.
    """
    y = np.asarray(y_true, dtype=np.float64)
    n_positive = int(y.sum())
    n_negative = y.size - n_positive
    if n_positive == 0 or n_negative == 0:
        return None
    return _rank_auc(y, score, n_positive, n_negative)


def log_loss(y_true: np.ndarray, probability: np.ndarray) -> float:
    """Mean binary log-loss with probabilities clipped to [1e-7, 1 - 1e-7]."""
    y = np.asarray(y_true, dtype=np.float64)
    return float(-np.mean(_log_likelihoods(y, np.asarray(probability, dtype=np.float64))))


def rmse(y_true: np.ndarray, prediction: np.ndarray) -> float:
    error = np.asarray(prediction, dtype=np.float64) - np.asarray(y_true, dtype=np.float64)
    return float(np.sqrt(np.mean(error * error)))


def mae(y_true: np.ndarray, prediction: np.ndarray) -> float:
    return float(np.mean(np.abs(np.asarray(prediction, dtype=np.float64) - np.asarray(y_true, dtype=np.float64))))


def evaluate(task: Task, y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """Metrics of predictions: binary ``auc`` and ``logloss``; regression ``rmse`` and ``mae``.

    Raises:
        InputError: no rows, mismatched lengths, or (binary) a single class.
    """
    truth = np.asarray(y_true, dtype=np.float64)
    predicted = np.asarray(y_pred, dtype=np.float64)
    if truth.size == 0:
        raise InputError("no rows to evaluate")
    losses = per_row_loss(task, truth, predicted)
    if task == "binary":
        return {"auc": auc(truth, predicted), "logloss": float(losses.mean())}
    return {"rmse": float(np.sqrt(losses.mean())), "mae": float(np.abs(truth - predicted).mean())}
