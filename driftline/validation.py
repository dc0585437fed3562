"""Validation gates: every gate is evaluated and listed, never first-fail, so a user fixes all at once.

The gates judge a candidate through prediction callables only (``PredictFn``: feature frame -> predictions,
probabilities for binary), so this module knows nothing of how a model is trained or stored. In report
order:

* ``metric_floor <metric>``: holdout AUC/log-loss (binary) or RMSE/MAE (regression) against its floor.
* ``champion_non_inferiority``: candidate minus champion on the same holdout rows, paired bootstrap (the
  same resampled row indices for both models); passes when the interval's lower end is >= -margin.
  Differences are signed so that positive means the candidate is better (AUC_cand - AUC_champ;
  RMSE_champ - RMSE_cand).
* ``slice <column>=<value>``: a slice's metric against the overall one (AUC points for binary, relative
  RMSE for regression).
* ``robustness``: metric drop when Gaussian noise of ``noise_sd`` feature sds is added to numeric features
  (AUC points for binary; RMSE increase in target standard deviations for regression).
* ``latency_p99``, ``throughput``: single-row p99 latency and whole-holdout rows/s of the candidate callable.
* ``model_size``, ``schema``: the serialised size, and the candidate's features against the spec's.

A gate whose limit is not set in the spec, or that cannot be computed (no champion, a slice too small or
with a single class), is listed as skipped with its reason; skipped gates do not fail the report.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import polars as pl

from driftline.errors import InputError
from driftline.spec import ModelSpec

PredictFn = Callable[[pl.DataFrame], np.ndarray]
Task = Literal["binary", "regression"]

CHAMPION_GATE = "champion_non_inferiority"
LOGLOSS_EPS = 1e-7
LATENCY_CALLS = 200
THROUGHPUT_REPEATS = 3
THROUGHPUT_SAMPLE_ROWS = 20_000
BOOTSTRAP_MAX_ROWS = 50_000
NULL_SLICE = "<null>"
# Bootstrap resamples are drawn in chunks of at most this many row indices (~16 MB).
_BOOTSTRAP_CHUNK_ELEMENTS = 2_000_000
# Stream of the seed used for robustness noise (the bootstrap uses Generator(seed) itself).
_NOISE_STREAM = 1


# ---------------------------------------------------------------------------------------------- results


@dataclass(frozen=True)
class GateResult:
    """One gate's verdict. ``detail`` names the value and the limit; ``measurements`` holds the numbers behind it."""

    name: str
    passed: bool
    value: float | None
    limit: float | None
    detail: str
    skipped: bool = False
    measurements: dict[str, float] = field(default_factory=dict)

    @property
    def needs_champion(self) -> bool:
        return self.name == CHAMPION_GATE

    @property
    def verdict(self) -> Literal["pass", "fail", "skipped"]:
        if self.skipped:
            return "skipped"
        return "pass" if self.passed else "fail"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "passed": self.passed,
            "value": self.value,
            "limit": self.limit,
            "detail": self.detail,
            "skipped": self.skipped,
            "measurements": dict(self.measurements),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GateResult:
        return cls(
            name=str(data["name"]),
            passed=bool(data["passed"]),
            value=None if data["value"] is None else float(data["value"]),
            limit=None if data["limit"] is None else float(data["limit"]),
            detail=str(data["detail"]),
            skipped=bool(data.get("skipped", False)),
            measurements={key: float(value) for key, value in data.get("measurements", {}).items()},
        )


@dataclass(frozen=True)
class GateReport:
    """Every gate's result, in a fixed order, plus the candidate's (and champion's) holdout metrics."""

    gates: list[GateResult]
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        """All gates that were evaluated passed (skipped gates do not count)."""
        return not self.failures

    @property
    def failures(self) -> list[GateResult]:
        return [gate for gate in self.gates if not gate.skipped and not gate.passed]

    @property
    def skipped(self) -> list[GateResult]:
        return [gate for gate in self.gates if gate.skipped]

    def absolute_passed(self) -> bool:
        """Whether every gate that needs no champion passed: the bar for a first model (bootstrap)."""
        return not [gate for gate in self.failures if not gate.needs_champion]

    def summary(self) -> str:
        """One line: every failure's detail, or the counts when all passed."""
        if self.failures:
            return "gate failed: " + "; ".join(gate.detail for gate in self.failures)
        evaluated = len(self.gates) - len(self.skipped)
        return f"gates passed: {evaluated} passed, {len(self.skipped)} skipped"

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "absolute_passed": self.absolute_passed(),
            "summary": self.summary(),
            "metrics": dict(self.metrics),
            "gates": [gate.to_dict() for gate in self.gates],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GateReport:
        return cls(
            gates=[GateResult.from_dict(gate) for gate in data["gates"]],
            metrics={key: float(value) for key, value in data.get("metrics", {}).items()},
        )

    def to_markdown(self) -> str:
        """A headline and one table row per gate: gate, value, limit, verdict, detail."""
        headline = "passed" if self.passed else "FAILED"
        lines = [
            f"**Gates {headline}**: {len(self.gates) - len(self.failures) - len(self.skipped)} passed, "
            f"{len(self.failures)} failed, {len(self.skipped)} skipped.",
            "",
            "| gate | value | limit | verdict | detail |",
            "|---|---:|---:|---|---|",
        ]
        marks = {"pass": "pass", "fail": "**FAIL**", "skipped": "skipped"}
        for gate in self.gates:
            value = "" if gate.value is None else _number(gate.value)
            limit = "" if gate.limit is None else _number(gate.limit)
            cells = [gate.name, value, limit, marks[gate.verdict], gate.detail]
            lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
        return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------- metrics


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
    from scipy.stats import rankdata  # scipy.stats costs ~1 s to import; see training.auc

    ranks = rankdata(np.asarray(score, dtype=np.float64))
    return float((ranks[y == 1].sum() - n_positive * (n_positive + 1) / 2) / (n_positive * n_negative))


def log_loss(y_true: np.ndarray, probability: np.ndarray) -> float:
    """Mean binary log-loss with probabilities clipped to [1e-7, 1 - 1e-7]."""
    y = np.asarray(y_true, dtype=np.float64)
    p = np.clip(np.asarray(probability, dtype=np.float64), LOGLOSS_EPS, 1 - LOGLOSS_EPS)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log1p(-p)))


def rmse(y_true: np.ndarray, prediction: np.ndarray) -> float:
    error = np.asarray(prediction, dtype=np.float64) - np.asarray(y_true, dtype=np.float64)
    return float(np.sqrt(np.mean(error * error)))


def mae(y_true: np.ndarray, prediction: np.ndarray) -> float:
    return float(np.mean(np.abs(np.asarray(prediction, dtype=np.float64) - np.asarray(y_true, dtype=np.float64))))


def primary_metric(task: Task, y_true: np.ndarray, prediction: np.ndarray) -> float | None:
    """The metric gates compare: AUC (higher is better) for binary, RMSE (lower is better) for regression."""
    return roc_auc(y_true, prediction) if task == "binary" else rmse(y_true, prediction)


class _RankedScores:
    """One model's scores ranked once into tie groups, for AUCs of bootstrap resamples."""

    def __init__(self, y: np.ndarray, score: np.ndarray) -> None:
        _, group = np.unique(score, return_inverse=True)
        self.groups = int(group.max()) + 1
        # Each row's cell: its class, then its tie group, so one bincount counts a resample's cells.
        self.cell = y.astype(np.int64) * self.groups + group.reshape(-1)

    def auc(self, indices: np.ndarray) -> np.ndarray:
        """AUC per row of ``indices`` (resamples x drawn row indices); NaN where a resample lacks a class.

        Mann-Whitney with multiplicities: each drawn positive scores the drawn negatives strictly below
        it plus half of those tied with it, exactly what average ranks give. Integer counts throughout.
        """
        resamples = indices.shape[0]
        cells = self.cell[indices]
        cells += (np.arange(resamples) * 2 * self.groups)[:, None]
        counts = np.bincount(cells.ravel(), minlength=resamples * 2 * self.groups).reshape(resamples, 2, -1)
        negative, positive = counts[:, 0, :], counts[:, 1, :]
        twice_negative_below = np.cumsum(negative, axis=1)  # becomes 2 * (strictly below) + tied
        twice_negative_below -= negative
        twice_negative_below *= 2
        twice_negative_below += negative
        twice_wins = np.einsum("rg,rg->r", positive, twice_negative_below).astype(np.float64)
        pairs = positive.sum(axis=1).astype(np.float64) * negative.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(pairs > 0, twice_wins / (2 * pairs), np.nan)


def _bootstrap_indices(rng: np.random.Generator, n: int, samples: int) -> Iterator[np.ndarray]:
    """Row indices drawn with replacement, ``samples`` resamples of ``n``, yielded in chunks of resamples."""
    chunk = max(1, _BOOTSTRAP_CHUNK_ELEMENTS // n)
    done = 0
    while done < samples:
        size = min(chunk, samples - done)
        yield rng.integers(0, n, size=(size, n))
        done += size


def paired_bootstrap_differences(
    task: Task,
    y_true: np.ndarray,
    candidate: np.ndarray,
    champion: np.ndarray,
    samples: int,
    seed: int,
) -> np.ndarray:
    """Metric difference per paired bootstrap resample, positive when the candidate is better.

    Both models are scored on the same resampled row indices (``Generator(seed)``). Binary:
    AUC_candidate - AUC_champion; regression: RMSE_champion - RMSE_candidate. Resamples drawing a
    single class (binary) are NaN.
    """
    y = np.asarray(y_true, dtype=np.float64)
    rng = np.random.default_rng(seed)
    differences = []
    if task == "binary":
        ranked_candidate, ranked_champion = _RankedScores(y, candidate), _RankedScores(y, champion)
        for indices in _bootstrap_indices(rng, y.size, samples):
            differences.append(ranked_candidate.auc(indices) - ranked_champion.auc(indices))
    else:
        squared_candidate, squared_champion = (candidate - y) ** 2, (champion - y) ** 2
        for indices in _bootstrap_indices(rng, y.size, samples):
            rmse_candidate = np.sqrt(squared_candidate[indices].mean(axis=1))
            rmse_champion = np.sqrt(squared_champion[indices].mean(axis=1))
            differences.append(rmse_champion - rmse_candidate)
    return np.concatenate(differences)


# ---------------------------------------------------------------------------------------------- gates


def evaluate_gates(
    *,
    spec: ModelSpec,
    holdout: pl.DataFrame,
    candidate: PredictFn,
    champion: PredictFn | None,
    candidate_features: list[str],
    model_bytes: int,
    seed: int = 0,
) -> GateReport:
    """Evaluate every gate of ``spec.gates`` on the holdout and list each result.

    Args:
        spec: the model spec (task, features, slices, target, gates).
        holdout: the spec's feature columns and its target column, labelled rows only.
        candidate: predicts the candidate (probabilities for binary) from a frame of the spec's features.
        champion: the same for the current champion, or None when there is none (first model).
        candidate_features: the features the candidate was trained on, in order.
        model_bytes: size of the candidate's serialised model.
        seed: seeds the bootstrap and the robustness noise (non-negative).

    Returns:
        A GateReport listing every gate, including skipped ones with their reason.

    Raises:
        InputError: the holdout lacks columns, has missing or (binary) non-0/1 targets or no rows, or a
            predict function returns predictions of the wrong length, non-finite or (binary) outside [0, 1].
            Whatever a predict function raises propagates.
    """
    y = _holdout_target(spec, holdout)
    features = holdout.select(spec.features.all)
    started = time.perf_counter()
    candidate_prediction = _predict(candidate, features, "candidate", spec.task)
    first_elapsed = time.perf_counter() - started
    champion_prediction = None if champion is None else _predict(champion, features, "champion", spec.task)

    gates = [
        *_metric_floor_gates(spec, y, candidate_prediction),
        _champion_gate(spec, y, candidate_prediction, champion_prediction, seed),
        *_slice_gates(spec, holdout, y, candidate_prediction),
        _robustness_gate(spec, features, y, candidate, candidate_prediction, seed),
        _latency_gate(spec, features, candidate),
        _throughput_gate(spec, features, candidate, first_elapsed),
        _model_size_gate(spec, model_bytes),
        _schema_gate(spec, candidate_features),
    ]
    return GateReport(gates=gates, metrics=_holdout_metrics(spec.task, y, candidate_prediction, champion_prediction))


def _holdout_target(spec: ModelSpec, holdout: pl.DataFrame) -> np.ndarray:
    problems = []
    missing = [column for column in [*spec.features.all, spec.target] if column not in holdout.columns]
    if missing:
        problems.append(f"missing columns {missing}")
    if holdout.height == 0:
        problems.append("no rows")
    y = None
    if spec.target in holdout.columns:
        target = holdout[spec.target]
        if target.null_count():
            problems.append(f"target {spec.target!r} has {target.null_count()} missing values")
        else:
            y = target.cast(pl.Float64).to_numpy()
            if not np.isfinite(y).all():
                problems.append(f"target {spec.target!r} has non-finite values")
            elif spec.task == "binary" and not np.isin(y, (0.0, 1.0)).all():
                problems.append(f"binary target {spec.target!r} has values other than 0 and 1")
    if problems or y is None:
        raise InputError("holdout: " + "; ".join(problems))
    return y


def _predict(predict: PredictFn, features: pl.DataFrame, who: str, task: Task) -> np.ndarray:
    prediction = np.asarray(predict(features), dtype=np.float64).reshape(-1)
    if prediction.size != features.height:
        raise InputError(f"{who} returned {prediction.size} predictions for {features.height} rows")
    if not np.isfinite(prediction).all():
        raise InputError(f"{who} returned non-finite predictions")
    if task == "binary" and (prediction.min() < 0 or prediction.max() > 1):
        raise InputError(f"{who} returned probabilities outside [0, 1]")
    return prediction


def _holdout_metrics(task: Task, y: np.ndarray, candidate: np.ndarray, champion: np.ndarray | None) -> dict[str, float]:
    metrics: dict[str, float] = {"rows": float(y.size)}
    for prefix, prediction in [("", candidate), ("champion_", champion)]:
        if prediction is None:
            continue
        values = (
            {"auc": roc_auc(y, prediction), "logloss": log_loss(y, prediction)}
            if task == "binary"
            else {"rmse": rmse(y, prediction), "mae": mae(y, prediction)}
        )
        metrics.update({prefix + name: value for name, value in values.items() if value is not None})
    return metrics


def _skipped(name: str, reason: str, limit: float | None = None) -> GateResult:
    return GateResult(name=name, passed=True, value=None, limit=limit, detail=f"skipped: {reason}", skipped=True)


def _metric_floor_gates(spec: ModelSpec, y: np.ndarray, prediction: np.ndarray) -> list[GateResult]:
    gates = spec.gates
    # (metric, setting, limit, higher is better, value)
    floors: list[tuple[str, str, float | None, bool, Callable[[], float | None]]] = (
        [
            ("auc", "min_auc", gates.min_auc, True, lambda: roc_auc(y, prediction)),
            ("logloss", "max_logloss", gates.max_logloss, False, lambda: log_loss(y, prediction)),
        ]
        if spec.task == "binary"
        else [
            ("rmse", "max_rmse", gates.max_rmse, False, lambda: rmse(y, prediction)),
            ("mae", "max_mae", gates.max_mae, False, lambda: mae(y, prediction)),
        ]
    )
    results = []
    for metric, setting, limit, higher_is_better, compute in floors:
        name = f"metric_floor {metric}"
        if limit is None:
            results.append(_skipped(name, f"gates.{setting} is not set"))
            continue
        value = compute()
        if value is None:
            results.append(_skipped(name, f"{metric} is undefined: the holdout holds a single class", limit))
            continue
        passed = value >= limit if higher_is_better else value <= limit
        sign = (">=" if passed else "<") if higher_is_better else ("<=" if passed else ">")
        shown_value, shown_limit = _numbers(value, limit)
        results.append(GateResult(name, passed, value, limit, f"{metric} {shown_value} {sign} {shown_limit}"))
    return results


def _champion_gate(
    spec: ModelSpec, y: np.ndarray, candidate: np.ndarray, champion: np.ndarray | None, seed: int
) -> GateResult:
    gates = spec.gates
    margin = gates.non_inferiority_margin
    if champion is None:
        return _skipped(CHAMPION_GATE, "no champion to compare with", -margin)
    candidate_value = primary_metric(spec.task, y, candidate)
    champion_value = primary_metric(spec.task, y, champion)
    if candidate_value is None or champion_value is None:
        return _skipped(CHAMPION_GATE, "auc is undefined: the holdout holds a single class", -margin)
    point = candidate_value - champion_value if spec.task == "binary" else champion_value - candidate_value
    if y.size > BOOTSTRAP_MAX_ROWS:
        # Resampling 200k rows 300 times costs seconds; a fixed random subset of 50k rows gives a slightly
        # wider (so more cautious) interval at a quarter of the cost.
        keep = np.sort(np.random.default_rng((seed, 2)).choice(y.size, BOOTSTRAP_MAX_ROWS, replace=False))
        y, candidate, champion = y[keep], candidate[keep], champion[keep]
    differences = paired_bootstrap_differences(spec.task, y, candidate, champion, gates.bootstrap_samples, seed)
    differences = differences[np.isfinite(differences)]
    if differences.size == 0:
        return _skipped(CHAMPION_GATE, "every bootstrap resample held a single class", -margin)
    tail = 100 * (1 - gates.confidence) / 2
    lower, upper = (float(v) for v in np.percentile(differences, [tail, 100 - tail]))
    passed = lower >= -margin
    metric, order = ("auc", "candidate - champion") if spec.task == "binary" else ("rmse", "champion - candidate")
    shown_lower, shown_limit = _numbers(lower, -margin)
    detail = (
        f"vs champion: {metric} difference {_number(point)} ({order}), {gates.confidence:.0%} interval "
        f"[{_number(lower)}, {_number(upper)}]; lower end {shown_lower} {'>=' if passed else '<'} {shown_limit} "
        f"(margin {_number(margin)})"
    )
    measurements = {
        "difference": point,
        "lower": lower,
        "upper": upper,
        "margin": margin,
        "candidate": candidate_value,
        "champion": champion_value,
        "resamples": float(differences.size),
    }
    return GateResult(CHAMPION_GATE, passed, lower, -margin, detail, measurements=measurements)


def _slice_gates(spec: ModelSpec, holdout: pl.DataFrame, y: np.ndarray, prediction: np.ndarray) -> list[GateResult]:
    gates = spec.gates
    if not spec.slices:
        return [_skipped("slice_gap", "the spec names no slice columns")]
    if gates.max_slice_gap is None:
        return [_skipped("slice_gap", "gates.max_slice_gap is not set")]
    limit = gates.max_slice_gap
    overall = primary_metric(spec.task, y, prediction)
    results = []
    for column in spec.slices:
        groups = (
            holdout.select(pl.col(column).cast(pl.String).alias("value"))
            .with_row_index("row")
            .group_by("value")
            .agg(pl.col("row"))
            .sort("value", nulls_last=True)
        )
        for value, rows in groups.iter_rows():
            name = f"slice {column}={NULL_SLICE if value is None else value}"
            rows = np.asarray(rows, dtype=np.int64)
            results.append(
                _slice_gate(spec.task, name, y[rows], prediction[rows], overall, limit, gates.min_slice_rows)
            )
    return results


def _slice_gate(
    task: Task, name: str, y: np.ndarray, prediction: np.ndarray, overall: float | None, limit: float, min_rows: int
) -> GateResult:
    if y.size < min_rows:
        return _skipped(name, f"{y.size} rows < {min_rows} minimum", limit)
    if overall is None:
        return _skipped(name, "auc is undefined: the holdout holds a single class", limit)
    value = primary_metric(task, y, prediction)
    if value is None:
        return _skipped(name, f"a single class in {y.size} rows", limit)
    measurements = {"rows": float(y.size), "slice": value, "overall": overall}
    if task == "binary":
        gap: float | None = overall - value
        what, metric = "gap", "auc"
    else:
        gap = _relative_increase(value, overall)
        what, metric = "relative rmse gap", "rmse"
    context = f"({metric} {_number(value)} vs {_number(overall)} overall, {y.size} rows)"
    if gap is None:  # regression, perfect overall fit: any slice error is an infinite relative gap
        return GateResult(
            name, False, None, limit, f"{name} {metric} {_number(value)} > 0 overall", False, measurements
        )
    passed = gap <= limit
    shown_gap, shown_limit = _numbers(gap, limit)
    detail = f"{name} {what} {shown_gap} {'<=' if passed else '>'} {shown_limit} {context}"
    return GateResult(name, passed, gap, limit, detail, measurements=measurements)


def _relative_increase(new: float, base: float) -> float | None:
    if base > 0:
        return (new - base) / base
    return 0.0 if new <= base else None


def _robustness_gate(
    spec: ModelSpec, features: pl.DataFrame, y: np.ndarray, candidate: PredictFn, clean: np.ndarray, seed: int
) -> GateResult:
    gates = spec.gates
    name = "robustness"
    limit = gates.max_noise_drop
    if limit is None:
        return _skipped(name, "gates.max_noise_drop is not set")
    clean_value = primary_metric(spec.task, y, clean)
    if clean_value is None:
        return _skipped(name, "auc is undefined: the holdout holds a single class", limit)
    rng = np.random.default_rng((seed, _NOISE_STREAM))
    noisy_columns = []
    for column in spec.features.numeric:
        values = features[column].cast(pl.Float64)
        finite = values.to_numpy()
        finite = finite[np.isfinite(finite)]
        sd = float(finite.std(ddof=1)) if finite.size > 1 else 0.0
        if sd > 0:
            noise = pl.Series(column, rng.normal(0.0, gates.noise_sd * sd, features.height))
            noisy_columns.append((values + noise).alias(column))  # null + noise stays null
    if not noisy_columns:
        return _skipped(name, "no numeric feature varies on the holdout", limit)
    noisy_value = primary_metric(
        spec.task, y, _predict(candidate, features.with_columns(noisy_columns), "candidate", spec.task)
    )
    assert noisy_value is not None  # same labels as clean_value
    measurements = {"clean": clean_value, "noisy": noisy_value, "perturbed_features": float(len(noisy_columns))}
    noise = f"under noise of {gates.noise_sd:g} sd on {len(noisy_columns)} numeric features"
    if spec.task == "binary":
        drop: float | None = clean_value - noisy_value
        what, change = "auc drop", f"auc {_number(clean_value)} -> {_number(noisy_value)}"
    else:
        # In target sds, not relative to the clean RMSE: relative increases punish the best fits most
        # (y = 2x + N(0, 0.5) with the true model rose by 7.7% under 0.1 sd of noise).
        target_sd = float(np.std(y, ddof=1)) if y.size > 1 else 0.0
        if target_sd > 0:
            drop = (noisy_value - clean_value) / target_sd
        else:
            drop = _relative_increase(noisy_value, clean_value)
        what, change = "rmse increase in target sds", f"rmse {_number(clean_value)} -> {_number(noisy_value)}"
    if drop is None:
        return GateResult(name, False, None, limit, f"{change} {noise} from a perfect fit", False, measurements)
    passed = drop <= limit
    shown_drop, shown_limit = _numbers(drop, limit)
    detail = f"{what} {shown_drop} {'<=' if passed else '>'} {shown_limit} {noise} ({change})"
    return GateResult(name, passed, drop, limit, detail, measurements=measurements)


def _latency_gate(spec: ModelSpec, features: pl.DataFrame, candidate: PredictFn) -> GateResult:
    name = "latency_p99"
    limit = spec.gates.max_p99_latency_ms
    if limit is None:
        return _skipped(name, "gates.max_p99_latency_ms is not set")
    frames = [features.slice(i % features.height, 1) for i in range(LATENCY_CALLS)]
    candidate(frames[0])  # warm-up (lazy initialisation) is not a prediction's latency
    elapsed_ms = np.empty(LATENCY_CALLS)
    for i, frame in enumerate(frames):
        started = time.perf_counter()
        candidate(frame)
        elapsed_ms[i] = (time.perf_counter() - started) * 1000
    p99 = float(np.percentile(elapsed_ms, 99))
    passed = p99 <= limit
    shown_p99, shown_limit = _numbers(p99, limit)
    detail = f"latency p99 {shown_p99} ms {'<=' if passed else '>'} {shown_limit} ms ({LATENCY_CALLS} single-row calls)"
    measurements = {"p50_ms": float(np.percentile(elapsed_ms, 50)), "max_ms": float(elapsed_ms.max())}
    return GateResult(name, passed, p99, limit, detail, measurements=measurements)


def _throughput_gate(spec: ModelSpec, features: pl.DataFrame, candidate: PredictFn, first_elapsed: float) -> GateResult:
    name = "throughput"
    limit = spec.gates.min_throughput_rows_per_s
    if limit is None:
        return _skipped(name, "gates.min_throughput_rows_per_s is not set")
    # The holdout prediction the metrics use is the first timed call; the repeats run on a sample so a
    # large holdout does not cost the gate several full predictions (rows/s is what is judged).
    best = features.height / max(first_elapsed, 1e-9)
    sample = features.head(min(features.height, THROUGHPUT_SAMPLE_ROWS))
    for _ in range(THROUGHPUT_REPEATS - 1):
        started = time.perf_counter()
        candidate(sample)
        best = max(best, sample.height / max(time.perf_counter() - started, 1e-9))
    rows_per_s = best
    best = features.height / rows_per_s
    passed = rows_per_s >= limit
    shown_value, shown_limit = _numbers(rows_per_s, limit)
    detail = (
        f"throughput {shown_value} rows/s {'>=' if passed else '<'} {shown_limit} rows/s "
        f"(best of the {features.height}-row holdout and {THROUGHPUT_REPEATS - 1} runs on {sample.height} rows)"
    )
    return GateResult(name, passed, rows_per_s, limit, detail, measurements={"seconds": best})


def _model_size_gate(spec: ModelSpec, model_bytes: int) -> GateResult:
    name = "model_size"
    limit = spec.gates.max_model_bytes
    if limit is None:
        return _skipped(name, "gates.max_model_bytes is not set")
    passed = model_bytes <= limit
    detail = f"model size {model_bytes:,} bytes {'<=' if passed else '>'} {limit:,} bytes"
    return GateResult(name, passed, float(model_bytes), float(limit), detail)


def _schema_gate(spec: ModelSpec, candidate_features: list[str]) -> GateResult:
    name = "schema"
    expected = spec.features.all
    if list(candidate_features) == expected:
        return GateResult(name, True, None, None, f"the candidate's {len(expected)} features match the spec in order")
    missing = [feature for feature in expected if feature not in candidate_features]
    extra = [feature for feature in candidate_features if feature not in expected]
    problems = []
    if missing:
        problems.append(f"missing {missing}")
    if extra:
        problems.append(f"extra {extra}")
    duplicated = sorted({feature for feature in candidate_features if candidate_features.count(feature) > 1})
    if duplicated:
        problems.append(f"duplicated {duplicated}")
    if not problems:
        problems.append("order differs")
    detail = f"schema mismatch: {', '.join(problems)} (spec {expected}, candidate {list(candidate_features)})"
    measurements = {"missing": float(len(missing)), "extra": float(len(extra))}
    return GateResult(name, False, None, None, detail, measurements=measurements)


# ---------------------------------------------------------------------------------------------- formatting


def _number(value: float, decimals: int = 3) -> str:
    if abs(value) >= 1000:
        return f"{value:,.{decimals - 3}f}"
    fixed = f"{value:.{decimals}f}"
    if value != 0 and float(fixed) == 0:  # too small for fixed decimals
        return f"{value:.{decimals - 1}e}"
    return fixed


def _numbers(value: float, limit: float) -> tuple[str, str]:
    """Value and limit with enough decimals that a value on the wrong side never prints equal to the limit."""
    for decimals in range(3, 10):
        shown_value, shown_limit = _number(value, decimals), _number(limit, decimals)
        if shown_value != shown_limit or math.isclose(value, limit):
            break
    return shown_value, shown_limit
