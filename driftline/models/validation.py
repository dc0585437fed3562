"""Validation gates: every gate is evaluated and listed, never first-fail, so a user fixes all at once.

The gates judge a candidate through prediction callables only (``PredictFn``: feature frame -> predictions,
probabilities for binary), so this module knows nothing of how a model is trained or stored. In report
order:

* ``metric_floor <metric>``: holdout AUC/log-loss (binary) or RMSE/MAE (regression) against its floor.
* ``champion_non_inferiority``: candidate minus champion on the same holdout rows, paired bootstrap (the
  same resampled row indices for both models); passes when the interval's lower end is >= -margin. Above
  ``BOOTSTRAP_MAX_ROWS`` holdout rows the interval, the point difference and the champion's report metrics
  (``champion_rows`` says on how many rows) come from a seeded sample of that many rows, the only rows the
  champion predicts; when a metric floor or this gate fails, which ``decide_placement`` may waive on those
  figures, the champion predicts the rest too and they come from every holdout row.
  Differences are signed so that positive means the candidate is better (AUC_cand - AUC_champ;
  RMSE_champ - RMSE_cand).
* ``slice <column>=<value>``: a slice's metric against the overall one (AUC points for binary, relative
  RMSE for regression).
* ``robustness``: metric drop when Gaussian noise of ``noise_sd`` feature sds is added to numeric features
  (AUC points for binary; RMSE increase in target standard deviations for regression).
* ``latency_p99``, ``throughput``: single-row latency and batch rows/s, measured on a machine that may be
  busy with other work. Against the champion both are measured interleaved (the same rows, alternating,
  repeated) so load slows both sides alike; the candidate fails only when it is slower than
  ``max_latency_ratio`` / ``max_batch_time_ratio`` times the champion plus ``latency_slack_ms`` beyond the
  noise band. The absolute ``max_p99_latency_ms`` / ``min_throughput_rows_per_s`` pass when met
  uncorrected (load only slows calls); otherwise they are judged load-corrected, against a one-tree
  XGBoost reference booster (single rows: load adds waits) or a fixed numpy workload (batches: load
  divides the CPU) measured beside the candidate, and fail only when the excess is beyond the noise band.
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
from driftline.models.spec import ModelSpec
from driftline.statistics.metrics import Task, log_loss, mae, rmse, roc_auc

PredictFn = Callable[[pl.DataFrame], np.ndarray]

CHAMPION_GATE = "champion_non_inferiority"
# Single-row latency: the same rows, candidate and comparator alternating (which goes first alternates
# too), in rounds spread over time; per row the fastest round counts. Rounds and rows stop at the budget,
# but at least LATENCY_MIN_ROWS rows are measured.
LATENCY_ROWS = 32
LATENCY_MIN_ROWS = 12
LATENCY_MAX_ROUNDS = 5
LATENCY_BUDGET_SECONDS = 1.0
# The load-corrected ceiling repeats every row at least this many rounds against the reference: on a busy
# machine a single round leaves one call per row, any of which may have waited for a time slice, and the
# p99 of a few rows is their slowest, so one wait on the candidate's side and none on the reference's used
# to fail a model that answers in a millisecond. Fewer rows keep the repeats affordable (each call can take
# ~100 ms on a loaded machine); the fastest of three calls per row rarely waited in all three.
LATENCY_CEILING_ROWS = 16
LATENCY_CEILING_MIN_ROUNDS = 3
# Throughput: rounds of candidate and champion on the same sampled batch (with the load probe beside the
# candidate when the floor is judged load-corrected).
THROUGHPUT_ROUNDS = 5
THROUGHPUT_SAMPLE_ROWS = 4_000
# The reference booster (the load-corrected latency ceiling) is fit on at most this many holdout rows.
REFERENCE_FIT_ROWS = 1_000
# The load probe: a fixed numpy workload, timed in short single calls (the machine's unloaded speed: short
# calls mostly run between preemptions) and in a long back-to-back run about as long as the candidate's batch.
PROBE_VALUES = 4_096
PROBE_SHORT_CALLS = 5
PROBE_MIN_CALLS, PROBE_MAX_CALLS = 4, 1_000
BOOTSTRAP_MAX_ROWS = 50_000
# The robustness gate compares the same rows clean and noisy, so its drop is paired: on 50k rows its
# standard error is ~0.001 AUC points (a tenth of a percent of RMSE), far inside any useful max_noise_drop
# (0.05 by default). Larger holdouts are judged on a fixed seeded sample of this many rows: predicting
# 200k noisy rows cost ~0.9 s of a 1M-row retrain for no change in the decision.
ROBUSTNESS_MAX_ROWS = 50_000
NULL_SLICE = "<null>"
# Bootstrap resamples are drawn in chunks of at most this many row indices (~16 MB).
_BOOTSTRAP_CHUNK_ELEMENTS = 2_000_000
# Streams of the seed used for robustness noise and the timing bootstrap (the metric bootstrap uses
# Generator(seed) itself).
_NOISE_STREAM = 1
_TIMING_STREAM = 3
_ROBUSTNESS_SAMPLE_STREAM = 4


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
    notes: list[str] = field(default_factory=list)  # how the rows judged were chosen (e.g. ties broken by id)

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
            "notes": list(self.notes),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GateReport:
        return cls(
            gates=[GateResult.from_dict(gate) for gate in data["gates"]],
            metrics={key: float(value) for key, value in data.get("metrics", {}).items()},
            notes=[str(note) for note in data.get("notes", [])],
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
        lines += ["", *[f"- {note}" for note in self.notes]] if self.notes else []
        return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------- metrics


def primary_metric(task: Task, y_true: np.ndarray, prediction: np.ndarray) -> float | None:
    """The metric gates compare: AUC (higher is better) for binary, RMSE (lower is better) for regression."""
    return roc_auc(y_true, prediction) if task == "binary" else rmse(y_true, prediction)


class _HoldoutAucs:
    """AUCs of whole-holdout prediction arrays, each ranked once per report (an AUC of 200k rows is a sort).

    The metric floor, the champion gate, the slices' overall value and the report's metrics all need the
    same AUCs; arrays are told apart by identity and held, so an id is never reused within the report.
    """

    def __init__(self, y: np.ndarray) -> None:
        self._y = y
        self._known: dict[int, tuple[np.ndarray, float | None]] = {}

    def __call__(self, y: np.ndarray, prediction: np.ndarray) -> float | None:
        if y is not self._y:
            return roc_auc(y, prediction)
        known = self._known.get(id(prediction))
        if known is None:
            known = (prediction, roc_auc(y, prediction))
            self._known[id(prediction)] = known
        return known[1]


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
    candidate_prediction: np.ndarray | None = None,
) -> GateReport:
    """Evaluate every gate of ``spec.gates`` on the holdout and list each result.

    Args:
        spec: the model spec (task, features, slices, target, gates).
        holdout: the spec's feature columns and its target column, labelled rows only.
        candidate: predicts the candidate (probabilities for binary) from a frame of the spec's features.
        champion: the same for the current champion, or None when there is none (first model).
        candidate_features: the features the candidate was trained on, in order.
        model_bytes: size of the candidate's serialised model.
        seed: seeds the bootstrap, the robustness noise and the timing bootstrap (non-negative).
        candidate_prediction: ``candidate(holdout features)`` when already computed (training's holdout
            metrics), checked like a fresh one; None predicts here.

    Returns:
        A GateReport listing every gate, including skipped ones with their reason.

    Raises:
        InputError: the holdout lacks columns, has missing or (binary) non-0/1 targets or no rows, or a
            predict function returns predictions of the wrong length, non-finite or (binary) outside [0, 1].
            Whatever a predict function raises propagates.
    """
    y = _holdout_target(spec, holdout)
    features = holdout.select(spec.features.all)
    if candidate_prediction is None:
        candidate_prediction = _predict(candidate, features, "candidate", spec.task)
    else:
        candidate_prediction = _checked(candidate_prediction, features, "candidate", spec.task)
    aucs = _HoldoutAucs(y)
    floors = _metric_floor_gates(spec, y, candidate_prediction, aucs)
    # The champion is predicted on the rows its interval is bootstrapped on (every row up to
    # BOOTSTRAP_MAX_ROWS, a seeded sample above): on a 200k-row holdout its other 150k predictions cost ~1.7 CPU
    # seconds of a retrain (200 trees) and decided nothing once every gate passed.
    champion_rows = None if champion is None else _bootstrap_rows(y.size, seed)
    champion_prediction = None
    differences = None
    if champion is not None:
        champion_features = features if champion_rows is None else features.select(pl.all().gather(champion_rows))
        champion_prediction = _predict(champion, champion_features, "champion", spec.task)
        differences = _champion_differences(spec, y, candidate_prediction, champion_prediction, champion_rows, seed)
    champion_gate = _champion_gate(spec, y, candidate_prediction, champion_prediction, differences, aucs, champion_rows)
    if champion_rows is not None and any(gate.verdict == "fail" for gate in [*floors, champion_gate]):
        # decide_placement may waive a failed floor or interval on the champion's metrics and the point difference
        # ("on the same latest rows"): those then come from every holdout row, as the candidate's do. Only the
        # rows not yet predicted are; the interval is the sample's either way, so its differences are reused.
        assert champion is not None  # champion_rows are only set with a champion
        rest = np.setdiff1d(np.arange(y.size), champion_rows, assume_unique=True)
        everywhere = np.empty(y.size, dtype=np.float64)
        everywhere[champion_rows] = champion_prediction
        everywhere[rest] = _predict(champion, features.select(pl.all().gather(rest)), "champion", spec.task)
        champion_prediction, champion_rows = everywhere, None
        champion_gate = _champion_gate(spec, y, candidate_prediction, champion_prediction, differences, aucs)

    gates = [
        *floors,
        champion_gate,
        *_slice_gates(spec, holdout, y, candidate_prediction, aucs),
        _robustness_gate(spec, features, y, candidate, candidate_prediction, seed),
        _latency_gate(spec, features, candidate, champion, seed),
        _throughput_gate(spec, features, candidate, champion),
        _model_size_gate(spec, model_bytes),
        _schema_gate(spec, candidate_features),
    ]
    return GateReport(
        gates=gates,
        metrics=_holdout_metrics(spec.task, y, candidate_prediction, champion_prediction, aucs, champion_rows),
    )


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
    return _checked(predict(features), features, who, task)


def _checked(predicted: np.ndarray, features: pl.DataFrame, who: str, task: Task) -> np.ndarray:
    prediction = np.asarray(predicted, dtype=np.float64).reshape(-1)
    if prediction.size != features.height:
        raise InputError(f"{who} returned {prediction.size} predictions for {features.height} rows")
    if not np.isfinite(prediction).all():
        raise InputError(f"{who} returned non-finite predictions")
    if task == "binary" and (prediction.min() < 0 or prediction.max() > 1):
        raise InputError(f"{who} returned probabilities outside [0, 1]")
    return prediction


def _holdout_metrics(
    task: Task,
    y: np.ndarray,
    candidate: np.ndarray,
    champion: np.ndarray | None,
    aucs: Callable = roc_auc,
    champion_rows: np.ndarray | None = None,
) -> dict[str, float]:
    """The candidate's metrics on every holdout row; the champion's on ``champion_rows`` (None: every row),
    the rows ``champion`` predicted, counted in ``champion_rows``."""
    metrics: dict[str, float] = {"rows": float(y.size)}
    for prefix, prediction, rows in [("", candidate, None), ("champion_", champion, champion_rows)]:
        if prediction is None:
            continue
        truth = y if rows is None else y[rows]
        values = (
            {"auc": aucs(truth, prediction), "logloss": log_loss(truth, prediction)}
            if task == "binary"
            else {"rmse": rmse(truth, prediction), "mae": mae(truth, prediction)}
        )
        metrics.update({prefix + name: value for name, value in values.items() if value is not None})
        if prefix:
            metrics["champion_rows"] = float(truth.size)
    return metrics


def _skipped(name: str, reason: str, limit: float | None = None) -> GateResult:
    return GateResult(name=name, passed=True, value=None, limit=limit, detail=f"skipped: {reason}", skipped=True)


def _metric_floor_gates(
    spec: ModelSpec, y: np.ndarray, prediction: np.ndarray, aucs: Callable = roc_auc
) -> list[GateResult]:
    gates = spec.gates
    # (metric, setting, limit, higher is better, value)
    floors: list[tuple[str, str, float | None, bool, Callable[[], float | None]]] = (
        [
            ("auc", "min_auc", gates.min_auc, True, lambda: aucs(y, prediction)),
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


def _bootstrap_rows(rows: int, seed: int) -> np.ndarray | None:
    """The sorted holdout rows the champion gate bootstraps on: a seeded sample above ``BOOTSTRAP_MAX_ROWS``,
    None (every row) up to it.

    Resampling 200k rows 300 times costs seconds; a fixed random subset of 50k rows gives a slightly wider
    (so more cautious) interval at a quarter of the cost.
    """
    if rows <= BOOTSTRAP_MAX_ROWS:
        return None
    return np.sort(np.random.default_rng((seed, 2)).choice(rows, BOOTSTRAP_MAX_ROWS, replace=False))


def _champion_differences(
    spec: ModelSpec,
    y: np.ndarray,
    candidate: np.ndarray,
    champion: np.ndarray,
    rows: np.ndarray | None,
    seed: int,
) -> np.ndarray:
    """Finite paired bootstrap differences on the bootstrap rows (``_bootstrap_rows``).

    ``champion`` holds the champion's predictions on every holdout row (``rows`` None) or on the bootstrap
    rows (``rows``); ``y`` and ``candidate`` are the whole holdout's.
    """
    keep = _bootstrap_rows(y.size, seed)
    if keep is not None:
        y, candidate = y[keep], candidate[keep]
        if rows is None:
            champion = champion[keep]
    differences = paired_bootstrap_differences(spec.task, y, candidate, champion, spec.gates.bootstrap_samples, seed)
    return differences[np.isfinite(differences)]


def _champion_gate(
    spec: ModelSpec,
    y: np.ndarray,
    candidate: np.ndarray,
    champion: np.ndarray | None,
    differences: np.ndarray | None,
    aucs: Callable = roc_auc,
    rows: np.ndarray | None = None,
) -> GateResult:
    """Non-inferiority on the paired bootstrap ``differences`` (``_champion_differences``).

    The point difference and the models' values are on the rows ``champion`` predicted, ``rows`` of the holdout
    (None: every row), paired: the candidate is scored on the same rows.
    """
    gates = spec.gates
    margin = gates.non_inferiority_margin
    if champion is None or differences is None:
        return _skipped(CHAMPION_GATE, "no champion to compare with", -margin)
    if rows is not None:
        y, candidate = y[rows], candidate[rows]
    candidate_value = aucs(y, candidate) if spec.task == "binary" else rmse(y, candidate)
    champion_value = aucs(y, champion) if spec.task == "binary" else rmse(y, champion)
    if candidate_value is None or champion_value is None:
        where = "the holdout holds" if rows is None else f"the seeded sample of {y.size:,} holdout rows holds"
        return _skipped(CHAMPION_GATE, f"auc is undefined: {where} a single class", -margin)
    point = candidate_value - champion_value if spec.task == "binary" else champion_value - candidate_value
    if differences.size == 0:
        return _skipped(CHAMPION_GATE, "every bootstrap resample held a single class", -margin)
    tail = 100 * (1 - gates.confidence) / 2
    lower, upper = (float(v) for v in np.percentile(differences, [tail, 100 - tail]))
    passed = lower >= -margin
    metric, order = ("auc", "candidate - champion") if spec.task == "binary" else ("rmse", "champion - candidate")
    shown_lower, shown_limit = _numbers(lower, -margin)
    where = "" if rows is None else f" on a seeded sample of {y.size:,} holdout rows (the interval's)"
    detail = (
        f"vs champion: {metric} difference {_number(point)} ({order}){where}, {gates.confidence:.0%} interval "
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
        "rows": float(y.size),
    }
    return GateResult(CHAMPION_GATE, passed, lower, -margin, detail, measurements=measurements)


def _slice_gates(
    spec: ModelSpec, holdout: pl.DataFrame, y: np.ndarray, prediction: np.ndarray, aucs: Callable = roc_auc
) -> list[GateResult]:
    gates = spec.gates
    if not spec.slices:
        return [_skipped("slice_gap", "the spec names no slice columns")]
    if gates.max_slice_gap is None:
        return [_skipped("slice_gap", "gates.max_slice_gap is not set")]
    limit = gates.max_slice_gap
    overall = aucs(y, prediction) if spec.task == "binary" else rmse(y, prediction)
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
    sampled = ""
    if y.size > ROBUSTNESS_MAX_ROWS:
        keep = np.sort(
            np.random.default_rng((seed, _ROBUSTNESS_SAMPLE_STREAM)).choice(y.size, ROBUSTNESS_MAX_ROWS, replace=False)
        )
        features, y, clean = features.select(pl.all().gather(keep)), y[keep], clean[keep]
        sampled = f", on a seeded sample of {ROBUSTNESS_MAX_ROWS:,} holdout rows"
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
    noise = f"under noise of {gates.noise_sd:g} sd on {len(noisy_columns)} numeric features{sampled}"
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


# ---------------------------------------------------------------------------------------------- timing


def _call_seconds(predict: PredictFn, frame: pl.DataFrame) -> float:
    started = time.perf_counter()
    predict(frame)
    return time.perf_counter() - started


class _ReferenceBooster:
    """A one-tree XGBoost booster fit on the holdout's features: a load probe, not a model under judgement.

    Each call turns the frame into a float32 matrix and runs ``inplace_predict`` with XGBoost's default
    threads, as a served model does; its own work is negligible, so what its calls take beyond a fraction
    of a millisecond is what a busy machine adds to any call (waiting for a time slice, for a thread to
    wake up).
    """

    def __init__(self, spec: ModelSpec, features: pl.DataFrame) -> None:
        import xgboost  # only the load-corrected latency ceiling needs it

        self._columns = [
            *(pl.col(column).to_physical().cast(pl.Float32, strict=False) for column in spec.features.numeric),
            *(pl.col(column).cast(pl.String).str.len_bytes().cast(pl.Float32) for column in spec.features.categorical),
        ]
        sample = features.head(REFERENCE_FIT_ROWS)
        self._booster = xgboost.train(
            {"max_depth": 3, "objective": "reg:squarederror", "verbosity": 0},
            xgboost.DMatrix(self._matrix(sample), label=np.arange(sample.height) % 2, missing=np.nan),
            num_boost_round=1,
        )

    def _matrix(self, frame: pl.DataFrame) -> np.ndarray:
        return frame.select(self._columns).to_numpy().astype(np.float32, copy=False)

    def __call__(self, frame: pl.DataFrame) -> np.ndarray:
        return np.asarray(self._booster.inplace_predict(self._matrix(frame), missing=np.nan))


class _LoadProbe:
    """A fixed numpy workload that gauges how much the machine's load slows a long computation right now.

    Short single calls mostly run between preemptions, so the fastest of them is the machine's unloaded
    speed; a back-to-back run about as long as the candidate's batch shares the CPU with whatever else
    runs. Their per-call ratio (at least 1) is the slowdown that batch saw.
    """

    def __init__(self) -> None:
        self._values = np.random.default_rng(0).random(PROBE_VALUES)
        self._fastest = self._call()  # also the warm-up
        self._long_per_call: list[float] = []

    def _call(self) -> float:
        started = time.perf_counter()
        np.sort(self._values)
        return time.perf_counter() - started

    def run_beside(self, seconds: float) -> None:
        """A few short calls, then a back-to-back run lasting about ``seconds``."""
        for _ in range(PROBE_SHORT_CALLS):
            self._fastest = min(self._fastest, self._call())
        calls = int(np.clip(seconds / max(self._fastest, 1e-9), PROBE_MIN_CALLS, PROBE_MAX_CALLS))
        started = time.perf_counter()
        for _ in range(calls):
            np.sort(self._values)
        self._long_per_call.append((time.perf_counter() - started) / calls)

    def slowdowns(self) -> np.ndarray:
        """Per run: its per-call time over the fastest short call seen, at least 1."""
        return np.maximum(1.0, np.asarray(self._long_per_call) / max(self._fastest, 1e-12))


@dataclass(frozen=True)
class _Latencies:
    """Per side and measured row, the fastest of the row's single-row calls (ms): shape (sides, rows)."""

    fastest_ms: np.ndarray
    repeats: np.ndarray  # calls per side of each row

    @property
    def setup(self) -> str:
        low, high = int(self.repeats.min()), int(self.repeats.max())
        rounds = f"{low}" if low == high else f"{low}-{high}"
        return f"{self.repeats.size} rows x {rounds} rounds"


def _single_row_latencies(
    features: pl.DataFrame,
    sides: list[PredictFn],
    max_rows: int = LATENCY_ROWS,
    min_rounds: int = 1,
    settled: Callable[[np.ndarray], bool] | None = None,
) -> _Latencies:
    """The sides alternate on the same single rows (who goes first alternates too), round after round.

    Each round visits the rows in turn; rounds are spread over time, so a burst of load that stretches one
    call of a row rarely stretches all of them. Up to ``max_rows`` rows and ``LATENCY_MAX_ROUNDS`` rounds
    within ``LATENCY_BUDGET_SECONDS``, but always ``LATENCY_MIN_ROWS`` rows once, or every row
    ``min_rounds`` times when that is more (on a machine so busy that every call waits for a time slice,
    that bounds the cost); only measured rows are returned. ``settled`` is asked after each complete round
    (once the minimum is measured) with the fastest calls so far (sides x rows, ms): True stops there, for a
    verdict that further rounds, which only ever lower the fastest calls, can no longer change.
    """
    rows = min(max_rows, features.height)
    frames = [features.slice(i * features.height // rows, 1) for i in range(rows)]
    for predict in sides:
        predict(frames[0])  # warm-up (lazy initialisation) is not a prediction's latency
    fastest = np.full((len(sides), rows), np.inf)
    repeats = np.zeros(rows, dtype=np.int64)
    order = list(range(len(sides)))
    required = max(min(LATENCY_MIN_ROWS, rows), min_rounds * rows)
    started = time.perf_counter()
    for visit in range(LATENCY_MAX_ROUNDS * rows):
        round_, row = divmod(visit, rows)
        if time.perf_counter() - started > LATENCY_BUDGET_SECONDS and visit >= required:
            break
        for side in order if (row + round_) % 2 == 0 else order[::-1]:
            fastest[side, row] = min(fastest[side, row], 1000 * _call_seconds(sides[side], frames[row]))
        repeats[row] += 1
        if settled is not None and row == rows - 1 and visit + 1 >= required and settled(fastest):
            break
    measured = repeats > 0
    return _Latencies(fastest_ms=fastest[:, measured], repeats=repeats[measured])


def _latency_gate(
    spec: ModelSpec, features: pl.DataFrame, candidate: PredictFn, champion: PredictFn | None, seed: int
) -> GateResult:
    """Single-row latency: interleaved against the champion, and against the ceiling once load-corrected.

    Noise bands are bootstraps over the measured rows (the same resampled rows for both sides). Against the
    champion the candidate fails when its median or p99 exceeds ``max_latency_ratio`` times the champion's
    plus ``latency_slack_ms`` across the whole band. The ceiling passes when the uncorrected p99 is within it
    (load only slows calls); otherwise ``_latency_ceiling`` judges it against the load measured beside it.
    """
    gates = spec.gates
    name = "latency_p99"
    ceiling = gates.max_p99_latency_ms
    ratio_limit = None if champion is None else gates.max_latency_ratio
    if ceiling is None and ratio_limit is None:
        unset = "is" if champion is None else "and gates.max_latency_ratio are"
        return _skipped(name, f"gates.max_p99_latency_ms {unset} not set")
    slack = gates.latency_slack_ms

    def settled(fastest_ms: np.ndarray) -> bool:
        # More rounds only lower the fastest calls: a p99 within the ceiling stays within it, and a candidate
        # whose every row answered within the slack can never be slower than ratio x champion + slack, since
        # the champion's calls take no less than 0 ms. Either way the verdict is already the full loop's.
        ours = fastest_ms[0]
        if ceiling is not None and float(np.percentile(ours, 99)) > ceiling:
            return False
        return ratio_limit is None or champion is None or float(ours.max()) <= slack

    measured = _single_row_latencies(
        features, [candidate] if champion is None or ratio_limit is None else [candidate, champion], settled=settled
    )
    rng = np.random.default_rng((seed, _TIMING_STREAM))
    ours = measured.fastest_ms[0]
    p50, p99 = float(np.median(ours)), float(np.percentile(ours, 99))
    measurements = {"p50_ms": p50, "fastest_ms": float(ours.min()), "rows": float(ours.size)}
    passed = True
    if champion is not None and ratio_limit is not None:
        theirs = measured.fastest_ms[1]
        their_p50, their_p99 = max(float(np.median(theirs)), 1e-9), max(float(np.percentile(theirs, 99)), 1e-9)
        resampled = _resampled_rows(rng, gates.bootstrap_samples, ours.size)
        ours_resampled, theirs_resampled = ours[resampled], theirs[resampled]
        p50s, their_p50s = np.median(ours_resampled, axis=1), np.median(theirs_resampled, axis=1)
        p99s, their_p99s = np.percentile(ours_resampled, 99, axis=1), np.percentile(theirs_resampled, 99, axis=1)
        tail = 100 * (1 - gates.confidence) / 2
        # Excess over the allowed latency per resample: slower only when even the band's favourable end is.
        slower = any(
            float(np.percentile(values - (ratio_limit * their_values + slack), tail)) > 0
            for values, their_values in [(p50s, their_p50s), (p99s, their_p99s)]
        )
        low, high = np.percentile(p99s / np.maximum(their_p99s, 1e-9), [tail, 100 - tail])
        parts = [
            f"latency p99 {_number(p99)} ms vs champion {_number(their_p99)} ms interleaved on {measured.setup} "
            f"(fastest round per row): ratio {p99 / their_p99:.2f} ({gates.confidence:.0%} bootstrap band over the "
            f"rows [{low:.2f}, {high:.2f}]), median ratio {p50 / their_p50:.2f}, "
            f"{'beyond' if slower else 'within'} {ratio_limit:g}x + {slack:g} ms slack"
        ]
        measurements.update(
            champion_p50_ms=their_p50, champion_p99_ms=their_p99, ratio_p99=p99 / their_p99, ratio_p50=p50 / their_p50
        )
        passed = not slower
    else:
        why = "no champion to compare with" if champion is None else "gates.max_latency_ratio is not set"
        parts = [f"latency p99 {_number(p99)} ms on {measured.setup} (fastest round per row; {why})"]
    if ceiling is not None:
        over, text, ceiling_measurements = _latency_ceiling(spec, features, candidate, p99, rng)
        parts.append(text)
        measurements.update(ceiling_measurements)
        passed = passed and not over
    return GateResult(name, passed, p99, ceiling, "; ".join(parts), measurements=measurements)


def _resampled_rows(rng: np.random.Generator, samples: int, rows: int) -> np.ndarray:
    return rng.integers(0, rows, size=(samples, rows))


def _latency_ceiling(
    spec: ModelSpec, features: pl.DataFrame, candidate: PredictFn, p99: float, rng: np.random.Generator
) -> tuple[bool, str, dict[str, float]]:
    """Whether the p99 is over the ceiling beyond what the machine's load explains, with the detail.

    Within the ceiling uncorrected, it passes. Otherwise the candidate is measured again interleaved with
    the reference booster (every row at least ``LATENCY_CEILING_MIN_ROUNDS`` times), whose calls are all
    overhead and waits: what it takes on a row at the same moments is what the load adds to any call, so the
    load-corrected latency of a row is the candidate's fastest call minus the reference's, and the corrected
    p99 is the p99 of those. Over the ceiling only when the whole bootstrap band (over rows) lies above.
    """
    gates = spec.gates
    ceiling = gates.max_p99_latency_ms
    assert ceiling is not None
    if p99 <= ceiling:
        shown_p99, shown_ceiling = _numbers(p99, ceiling)
        return False, f"absolute ceiling: {shown_p99} <= {shown_ceiling} ms uncorrected (load only slows calls)", {}
    measured = _single_row_latencies(
        features,
        [candidate, _ReferenceBooster(spec, features)],
        max_rows=LATENCY_CEILING_ROWS,
        min_rounds=LATENCY_CEILING_MIN_ROUNDS,
    )
    ours, reference = measured.fastest_ms
    p99_again, reference_p99 = float(np.percentile(ours, 99)), float(np.percentile(reference, 99))
    # Paired per row (the two sides' fastest calls on the same row, interleaved): a wait that stretched one
    # side's calls of a row cancels row by row instead of deciding the slowest row of a few.
    excess = ours - reference
    resampled = _resampled_rows(rng, gates.bootstrap_samples, excess.size)
    corrected_resamples = np.percentile(excess[resampled], 99, axis=1)
    corrected = max(0.0, float(np.percentile(excess, 99)))
    lower = max(0.0, float(np.percentile(corrected_resamples, 100 * (1 - gates.confidence) / 2)))
    over = lower > ceiling
    shown_lower, shown_ceiling = _numbers(lower, ceiling)
    detail = (
        f"absolute {_number(ceiling)} ms ceiling judged on load-corrected p99 {_number(corrected)} ms: per row the "
        f"fastest call minus that of a one-tree XGBoost booster on the same row (p99 {_number(p99_again)} ms vs the "
        f"{_number(reference_p99)} ms p99 of a one-tree XGBoost booster interleaved on {measured.setup}: what the "
        f"load adds to any call), {gates.confidence:.0%} bootstrap band from {shown_lower} ms "
        f"{'>' if over else '<='} {shown_ceiling} ms"
    )
    measurements = {"corrected_p99_ms": corrected, "corrected_p99_lower_ms": lower, "reference_p99_ms": reference_p99}
    return over, detail, measurements


def _batch_seconds(batch: pl.DataFrame, sides: list[PredictFn], probe: _LoadProbe | None = None) -> np.ndarray:
    """Seconds per side (rows) and round (columns): the sides alternate on the same batch, who goes first too.

    With a probe, its short calls and long run follow the candidate's batch in every round.
    """
    seconds = np.empty((len(sides), THROUGHPUT_ROUNDS))
    order = list(range(len(sides)))
    for round_ in range(THROUGHPUT_ROUNDS):
        for side in order if round_ % 2 == 0 else order[::-1]:
            seconds[side, round_] = max(_call_seconds(sides[side], batch), 1e-9)
        if probe is not None:
            probe.run_beside(float(seconds[0, round_]))
    return seconds


def _throughput_gate(
    spec: ModelSpec, features: pl.DataFrame, candidate: PredictFn, champion: PredictFn | None
) -> GateResult:
    """Batch rows/s interleaved with the champion on the same sampled batch, and a load-corrected floor.

    Against the champion the candidate fails when its batch time exceeds ``max_batch_time_ratio`` times the
    champion's plus ``latency_slack_ms`` both between the fastest runs and in the median round (rounds pair
    the two sides in time, so one disturbed round does not decide). The floor passes when the fastest
    round's rate reaches it (load only slows batches); otherwise the candidate runs again beside the load
    probe and fails only when every round's rate times the slowdown the probe showed is below the floor.
    """
    gates = spec.gates
    name = "throughput"
    floor = gates.min_throughput_rows_per_s
    ratio_limit = None if champion is None else gates.max_batch_time_ratio
    if floor is None and ratio_limit is None:
        unset = "gates.min_throughput_rows_per_s is" if champion is None else "both throughput limits are"
        return _skipped(name, f"{unset} not set")
    batch = features.head(min(features.height, THROUGHPUT_SAMPLE_ROWS))
    sides = [candidate] if champion is None or ratio_limit is None else [candidate, champion]
    seconds = _batch_seconds(batch, sides)
    ours = seconds[0]
    rate = batch.height / float(ours.min())
    measurements = {"seconds": float(ours.min()), "rows": float(batch.height)}
    setup = f"{THROUGHPUT_ROUNDS} rounds of {batch.height} rows, fastest round"
    passed = True
    if champion is None or ratio_limit is None:
        why = "no champion to compare with" if champion is None else "gates.max_batch_time_ratio is not set"
        parts = [f"throughput {_number(rate)} rows/s ({setup}; {why})"]
    else:
        theirs = seconds[1]
        slack = gates.latency_slack_ms / 1000
        best_excess = ours.min() - (ratio_limit * theirs.min() + slack)
        median_excess = float(np.median(ours - (ratio_limit * theirs + slack)))
        slower = best_excess > 0 and median_excess > 0
        ratio, per_round = float(ours.min() / theirs.min()), ours / theirs
        parts = [
            f"throughput {_number(rate)} rows/s vs champion {_number(batch.height / float(theirs.min()))} rows/s "
            f"interleaved ({setup}): batch time ratio {ratio:.2f} (median round {float(np.median(per_round)):.2f}), "
            f"{'beyond' if slower else 'within'} {ratio_limit:g}x + {gates.latency_slack_ms:g} ms slack "
            "(beyond only when the fastest runs and the median round both are)"
        ]
        measurements.update(ratio=ratio, champion_seconds=float(theirs.min()))
        passed = not slower
    if floor is not None:
        shown_rate, shown_floor = _numbers(rate, floor)
        if rate >= floor:
            parts.append(f"absolute floor: {shown_rate} >= {shown_floor} rows/s uncorrected (load only slows batches)")
        else:
            probe = _LoadProbe()
            again = _batch_seconds(batch, [candidate], probe)[0]
            slowdowns = probe.slowdowns()
            corrected = float((batch.height / again * slowdowns).max())
            below = corrected < floor
            shown_corrected, shown_floor = _numbers(corrected, floor)
            parts.append(
                f"absolute {_number(floor)} rows/s floor judged on load-corrected {shown_corrected} rows/s "
                f"{'<' if below else '>='} {shown_floor} rows/s ({THROUGHPUT_ROUNDS} more rounds, each round's rate x "
                f"the slowdown a fixed numpy workload showed beside it, x{slowdowns.min():.2f}-x{slowdowns.max():.2f}; "
                "below only when every round is)"
            )
            measurements.update(corrected_rows_per_s=corrected, load_factor=float(np.median(slowdowns)))
            passed = passed and not below
    return GateResult(name, passed, rate, floor, "; ".join(parts), measurements=measurements)


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
