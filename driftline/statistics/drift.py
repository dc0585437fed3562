"""Drift between two whylogs profiles (never raw rows), decided on effect size above a noise floor.

Why not p-values: at a million rows a KS or chi-square test flags differences far too small to matter
(whylogs' own defaults flag 11 of 19 identical-distribution columns at 1M rows, measured here), and the
sketches add their own error on top. Each feature's statistic is therefore compared with two bounds:

* ``threshold``: the smallest effect worth acting on (a policy, e.g. KS distance 0.05);
* ``floor``: what noise alone can produce at confidence ``noise_confidence``, from both sample sizes
  and both sketches' rank error. The sketch is treated as extra sampling noise:
  ``1/n_eff = 1/n + (kappa * eps)^2`` with ``eps`` the KLL normalised rank error, so small samples
  are limited by n and huge ones by the sketch. Asymptotic null laws give the floor per statistic:
  KS ``c_a * sqrt(1/n_r + 1/n_c)``; PSI ``chi2_{B-1,a} * (1/n_r + 1/n_c)``; Hellinger
  ``sqrt(chi2 * (1/n_r + 1/n_c) / 8)``; Jensen-Shannon (bits) ``chi2 * (1/n_r + 1/n_c) / (8 ln 2)``.

Verdict per feature: ``drift`` when the value clears both bounds, ``possible`` when it clears only one
(a real but small change, or a large one that noise could still explain), ``none`` otherwise. A
change in the missing share beyond its own threshold and floor is drift too. Overall: the share of
importance mass that drifted (``score``) and "any top-k feature drifted", each with reasons.

A monitored model checks every batch against the same reference: ``PreparedReference`` keeps what
depends on the reference alone (column summaries, grid quantiles, bin edges and masses, its sorted
sketches, its sorted categories), and ``compare_profiles`` computes the numeric statistics of all
features at once from the sketches' values (``_SortedSketch``) instead of one sketch query per statistic
and feature, and bins categories with arrays when every count is known. The values are bit for bit those
of ``feature_drift``, the plain per-feature path (tests/unit/test_drift_prepared.py,
tests/unit/test_drift_fast_paths.py for the shortcuts that depend on the data).
"""

from __future__ import annotations

import bisect
import itertools
import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from functools import cache, lru_cache
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from driftline.data.whylogs_compat import whylogs
from driftline.errors import InputError

if TYPE_CHECKING:
    from whylogs.core import DatasetProfileView

Verdict = Literal["none", "possible", "drift"]
NumericStatistic = Literal["ks", "psi", "hellinger", "wasserstein"]
CategoricalStatistic = Literal["hellinger", "psi", "js"]

# Sketch rank error enters as extra noise with this weight. Calibrated on two sketches of the same
# 1M-row distribution: with whylogs' default KLL k=1024 (rank error 0.27%) KS stays <= 0.003 against a
# floor of 0.006; with k=256 (1.05%) KS 0.006-0.010 against a floor of 0.022.
# Profiles merged from partitions (driftline.data.distributed) need no extra term: a merged KLL sketch keeps k and
# reports the same bound, and measured on 1M rows cut into 4-64 parts its worst CDF error was 0.08-0.12%
# against 0.11-0.15% for one sketch of the same rows (tests/unit/test_dask.py checks both verdicts).
SKETCH_NOISE_WEIGHT = 0.75
_QUANTILE_GRID = np.linspace(0.005, 0.995, 199)
_PLOT_QUANTILES = np.linspace(0.01, 0.99, 41)
_PLOT_PROBABILITIES = tuple(round(float(x), 4) for x in _PLOT_QUANTILES)
OTHER = "__other__"
# A category gets its own bin only with this many expected rows per side (the chi-square rule of thumb)
# and a frequent-items count whose bounds are within this fraction of the estimate.
MIN_EXPECTED_COUNT = 5
RELIABLE_COUNT_SPREAD = 0.2


class DriftThresholds(BaseModel):
    """Smallest effect worth acting on, per statistic."""

    model_config = ConfigDict(extra="forbid")

    ks: float = Field(default=0.05, gt=0, le=1, description="KS distance between the two CDFs.")
    psi: float = Field(default=0.1, gt=0, description="Population stability index over the bins.")
    hellinger: float = Field(default=0.05, gt=0, le=1, description="Hellinger distance over the bins.")
    wasserstein: float = Field(
        default=0.1, gt=0, description="Wasserstein-1 distance divided by the reference standard deviation."
    )
    js: float = Field(default=0.02, gt=0, le=1, description="Jensen-Shannon divergence (bits) over the bins.")


class Hysteresis(BaseModel):
    """Drift is declared when ``k`` of the last ``m`` batches drifted (k=m=1: every drifted batch)."""

    model_config = ConfigDict(extra="forbid")

    k: int = Field(default=1, ge=1, description="Drifted batches needed among the last m.")
    m: int = Field(default=1, ge=1, le=100, description="Window of recent batches.")

    def model_post_init(self, _: Any) -> None:
        if self.k > self.m:
            raise ValueError(f"hysteresis k={self.k} cannot exceed m={self.m}")


class DriftPolicy(BaseModel):
    """How drift is measured and decided (the ``drift:`` section of a model spec)."""

    model_config = ConfigDict(extra="forbid")

    numeric_statistic: NumericStatistic = Field(default="ks", description="Statistic deciding numeric features.")
    categorical_statistic: CategoricalStatistic = Field(
        default="hellinger", description="Statistic deciding categorical features."
    )
    thresholds: DriftThresholds = Field(default_factory=DriftThresholds, description="Effect-size thresholds.")
    missing_share_threshold: float = Field(
        default=0.05, gt=0, le=1, description="Absolute change of a feature's missing share that counts as drift."
    )
    noise_confidence: float = Field(
        default=0.999, gt=0.5, lt=1, description="Confidence of the noise floor (higher: fewer false alarms)."
    )
    unseen_share_threshold: float = Field(
        default=0.05,
        gt=0,
        le=1,
        description="Share of current rows in categories the reference never saw that is named.",
    )
    bins: int = Field(default=10, ge=2, le=100, description="Reference-quantile bins for PSI/Hellinger/JS.")
    score_threshold: float = Field(
        default=0.25, gt=0, le=1, description="Share of importance mass that must drift for overall drift."
    )
    top_k: int = Field(
        default=3,
        ge=0,
        description="Overall drift if any of the k most important features drifts (with uniform weights: any).",
    )
    hysteresis: Hysteresis = Field(default_factory=Hysteresis, description="k of the last m batches must drift.")


@dataclass(frozen=True)
class FeatureDrift:
    """Drift of one feature, with every statistic computed and the reasons for its verdict."""

    name: str
    kind: Literal["numeric", "categorical"]
    statistic: str
    value: float
    threshold: float
    floor: float
    verdict: Verdict
    reasons: list[str]
    n_reference: int
    n_current: int
    statistics: dict[str, float] = field(default_factory=dict)
    quantiles: dict[str, list[float]] | None = None

    @property
    def severity(self) -> float:
        """Value over the bound it must clear (>= 1 means drift on the statistic)."""
        bound = max(self.threshold, self.floor)
        return self.value / bound if bound > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class DriftReport:
    """Drift of a current profile against a reference profile."""

    drift: bool
    score: float
    score_threshold: float
    features: dict[str, FeatureDrift]
    weights: dict[str, float]
    weight_source: Literal["uniform", "importance"]
    top_features: list[str]
    reasons: list[str]
    n_reference: int
    n_current: int
    # What makes the verdict say little, e.g. a 0-row profile; also the first reasons.
    warnings: list[str] = field(default_factory=list)

    @property
    def drifted_features(self) -> list[str]:
        """Features with verdict drift, most severe first."""
        drifted = [f for f in self.features.values() if f.verdict == "drift"]
        return [f.name for f in sorted(drifted, key=lambda f: (-f.severity, f.name))]

    def to_dict(self) -> dict[str, Any]:
        return {
            "drift": self.drift,
            "score": self.score,
            "score_threshold": self.score_threshold,
            "drifted_features": self.drifted_features,
            "top_features": self.top_features,
            "weight_source": self.weight_source,
            "weights": self.weights,
            "reasons": self.reasons,
            "n_reference": self.n_reference,
            "n_current": self.n_current,
            "warnings": self.warnings,
            "features": {name: feature.to_dict() for name, feature in self.features.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DriftReport:
        return cls(
            drift=bool(data["drift"]),
            score=float(data["score"]),
            score_threshold=float(data["score_threshold"]),
            features={name: FeatureDrift(**feature) for name, feature in data["features"].items()},
            weights=dict(data["weights"]),
            weight_source=data["weight_source"],
            top_features=list(data["top_features"]),
            reasons=list(data["reasons"]),
            n_reference=int(data["n_reference"]),
            n_current=int(data["n_current"]),
            warnings=list(data.get("warnings", [])),  # reports stored before warnings existed have none
        )


# --------------------------------------------------------------------------------------------- sketches
@dataclass(frozen=True)
class _Column:
    n: int  # all rows
    missing: int  # nulls, NaN and +-inf
    kll: Any | None  # kll_doubles_sketch of the numeric values
    frequencies: dict[str, float] | None  # category -> count (frequent items), non-missing only
    stddev: float | None
    uncertain: frozenset[str] = frozenset()  # categories whose count the sketch only bounds loosely
    exact_categories: bool = True  # the frequent-items sketch kept every category exactly
    rank_error: float = 0.0  # the KLL sketch's normalised rank error, 0 while it holds every value

    @property
    def present(self) -> int:
        return self.n - self.missing


@cache
def _no_false_positives() -> Any:
    """The frequent-items error type whylogs' ``FrequentItemsMetric.strings`` reads with (its default)."""
    whylogs()
    import whylogs_sketching

    return whylogs_sketching.frequent_items_error_type.NO_FALSE_POSITIVES


def _column(view: DatasetProfileView, name: str, spread: bool = True) -> _Column | None:
    """The column's summary; without ``spread`` no standard deviation (only the reference's is used)."""
    column = view.get_column(name)
    if column is None:
        return None
    counts = column.get_metric("counts")
    n = int(counts.n.value) if counts is not None else 0
    # counts/null holds nulls and NaN (whylogs' convention); +-inf is kept out of the sketches too, so it
    # is missing as well: otherwise 30% +inf, or a column of nothing but +inf, would look like no change.
    missing = int(counts.null.value) + int(counts.inf.value) if counts is not None else 0
    distribution = column.get_metric("distribution")
    kll = None
    stddev = None
    rank_error = 0.0
    if distribution is not None and not distribution.kll.value.is_empty():
        kll = distribution.kll.value
        if spread:
            stddev = float(distribution.stddev) if distribution.n > 1 else None
        if kll.is_estimation_mode():
            rank_error = float(kll.normalized_rank_error(False))
    frequencies = None
    uncertain: set[str] = set()
    exact = True
    frequent = column.get_metric("frequent_items")
    if frequent is not None and not frequent.frequent_strings.value.is_empty():
        # The sketch's own (value, estimate, lower, upper) tuples: ``frequent.strings`` reads the same ones
        # but wraps each in a dataclass, a third of a categorical column's check time.
        items = frequent.frequent_strings.value.get_frequent_items(_no_false_positives())
        frequencies = {str(value): float(estimate) for value, estimate, _, _ in items}
        loose = [(value, estimate, upper - lower) for value, estimate, lower, upper in items if upper != lower]
        if loose:
            exact = False
            uncertain.update(
                str(value) for value, estimate, spread in loose if spread > RELIABLE_COUNT_SPREAD * estimate
            )
    elif frequent is None:
        types = column.get_metric("types")
        if types is not None and types.boolean.value > 0:
            true = int(counts.true.value) if counts is not None else 0
            frequencies = {"True": float(true), "False": float(types.boolean.value - true)}
    return _Column(
        n=n,
        missing=missing,
        kll=kll,
        frequencies=frequencies,
        stddev=stddev,
        uncertain=frozenset(uncertain),
        exact_categories=exact,
        rank_error=rank_error,
    )


def _rows(view: DatasetProfileView) -> int:
    """Rows a profile saw: the largest ``counts/n`` of its columns (0 for an empty profile)."""
    counts = [column.get_metric("counts") for column in view.get_columns().values()]
    return max((int(metric.n.value) for metric in counts if metric is not None), default=0)


def _has_rows(view: DatasetProfileView) -> bool:
    """``_rows(view) > 0``, stopping at the first column that saw a row (a check only asks whether any did)."""
    for column in view.get_columns().values():
        counts = column.get_metric("counts")
        if counts is not None and int(counts.n.value) > 0:
            return True
    return False


def infer_kind(view: DatasetProfileView, name: str) -> Literal["numeric", "categorical"]:
    """Numeric when the column's values are mostly numbers, else categorical."""
    column = view.get_column(name)
    types = column.get_metric("types") if column is not None else None
    if types is None:
        return "categorical"
    numbers = types.integral.value + types.fractional.value
    others = types.string.value + types.boolean.value + types.object.value
    return "numeric" if numbers > others else "categorical"


# --------------------------------------------------------------------------------------------- statistics
def _effective_inverse_n(column: _Column) -> float:
    """1/n_eff: sampling noise plus the sketch's rank error treated as extra noise."""
    present = max(column.present, 1)
    return 1.0 / present + (SKETCH_NOISE_WEIGHT * column.rank_error) ** 2


def _bin_probabilities(bins: int) -> list[float]:
    return list(np.linspace(0, 1, bins + 1)[1:-1])


def _bin_splits(kll: Any, bins: int) -> np.ndarray:
    splits = np.unique(np.asarray(kll.get_quantiles(_bin_probabilities(bins)), dtype=float))
    return splits[np.isfinite(splits)]


def _masses(cdf_at_splits: list[float]) -> np.ndarray:
    return np.diff(np.concatenate([[0.0], np.asarray(cdf_at_splits)[:-1], [1.0]]))


def _bin_masses(reference: _Column, current: _Column, bins: int) -> tuple[np.ndarray, np.ndarray]:
    splits = _bin_splits(reference.kll, bins)
    return _masses(reference.kll.get_cdf(list(splits))), _masses(current.kll.get_cdf(list(splits)))


def _divergences(p: np.ndarray, q: np.ndarray) -> dict[str, float]:
    eps = 1e-6
    p_s = (p + eps) / (p + eps).sum()
    q_s = (q + eps) / (q + eps).sum()
    psi = float(np.sum((q_s - p_s) * np.log(q_s / p_s)))
    hellinger = float(math.sqrt(max(0.0, 1.0 - float(np.sum(np.sqrt(p * q))))))
    m = 0.5 * (p_s + q_s)
    js = float(0.5 * np.sum(p_s * np.log2(p_s / m)) + 0.5 * np.sum(q_s * np.log2(q_s / m)))
    return {"psi": psi, "hellinger": min(hellinger, 1.0), "js": max(js, 0.0)}


def _divergences_by_row(p: np.ndarray, q: np.ndarray) -> list[dict[str, float]]:
    """``_divergences`` of each row pair of two (features x bins) arrays, bit for bit the same values.

    Only the element-wise work and the row sums run on the whole array (a row sum of a C-ordered array
    adds in the same order as the sum of that row alone); the scalar tail stays Python's, as there.
    """
    eps = 1e-6
    p_s = (p + eps) / (p + eps).sum(axis=1, keepdims=True)
    q_s = (q + eps) / (q + eps).sum(axis=1, keepdims=True)
    psi = np.sum((q_s - p_s) * np.log(q_s / p_s), axis=1).tolist()
    overlap = np.sum(np.sqrt(p * q), axis=1).tolist()
    m = 0.5 * (p_s + q_s)
    js_p = np.sum(p_s * np.log2(p_s / m), axis=1).tolist()
    js_q = np.sum(q_s * np.log2(q_s / m), axis=1).tolist()
    rows = []
    for psi_row, overlap_row, js_p_row, js_q_row in zip(psi, overlap, js_p, js_q, strict=True):
        hellinger = math.sqrt(max(0.0, 1.0 - overlap_row))
        js = 0.5 * js_p_row + 0.5 * js_q_row
        rows.append({"psi": psi_row, "hellinger": min(hellinger, 1.0), "js": max(js, 0.0)})
    return rows


@cache
def _critical_values(degrees: int, confidence: float) -> tuple[float, float, float]:
    """KS c_alpha, the chi-square quantile and the two-sided normal quantile (scipy.stats is ~50x slower)."""
    # Imported here: every flow run imports this module (the spec holds its policy), few check drift.
    from scipy import special

    alpha = 1.0 - confidence
    c_alpha = math.sqrt(-math.log(alpha / 2.0) / 2.0)  # asymptotic two-sample KS critical value
    chi2 = float(special.chdtri(max(degrees, 1), alpha))
    z = float(special.ndtri(0.5 + confidence / 2.0))
    return c_alpha, chi2, z


def _floor(statistic: str, inverse_n: float, degrees: int, confidence: float) -> float:
    """The noise floor of ``statistic`` (see the module docstring)."""
    c_alpha, chi2, _ = _critical_values(degrees, confidence)
    if statistic in ("ks", "wasserstein"):
        return c_alpha * math.sqrt(inverse_n)
    if statistic == "psi":
        return chi2 * inverse_n
    if statistic == "hellinger":
        return math.sqrt(chi2 * inverse_n / 8.0)
    if statistic == "js":
        return chi2 * inverse_n / (8.0 * math.log(2.0))
    raise ValueError(f"no noise floor for statistic {statistic!r}")


def _wasserstein_scale(column: _Column, iqr_quantiles: Sequence[float] | None = None) -> float:
    """The reference spread Wasserstein is divided by: its sd, else IQR/1.349, else 1."""
    scale = column.stddev
    if not scale or not math.isfinite(scale) or scale <= 0:
        q75, q25 = iqr_quantiles if iqr_quantiles is not None else column.kll.get_quantiles([0.75, 0.25])
        iqr = float(np.subtract(q75, q25))
        scale = iqr / 1.349 if iqr > 0 else 1.0
    return scale


def _numeric_statistics(reference: _Column, current: _Column, bins: int) -> tuple[dict[str, float], int, dict]:
    ref_q = np.asarray(reference.kll.get_quantiles(list(_QUANTILE_GRID)), dtype=float)
    cur_q = np.asarray(current.kll.get_quantiles(list(_QUANTILE_GRID)), dtype=float)
    points = np.unique(np.concatenate([ref_q, cur_q]))
    points = points[np.isfinite(points)]
    # CDFs are P(X < x); also evaluate just above each point so point masses (ints, ties) count.
    points = np.unique(np.concatenate([points, np.nextafter(points, np.inf)]))
    ref_cdf = np.asarray(reference.kll.get_cdf(list(points)))[:-1]
    cur_cdf = np.asarray(current.kll.get_cdf(list(points)))[:-1]
    ks = float(np.max(np.abs(ref_cdf - cur_cdf))) if len(points) else 0.0
    wasserstein = float(np.mean(np.abs(ref_q - cur_q)) / _wasserstein_scale(reference))
    p, q = _bin_masses(reference, current, bins)
    result = {"ks": ks, "wasserstein": wasserstein, **_divergences(p, q)}
    plot = {
        "probabilities": list(_PLOT_PROBABILITIES),
        "reference": [float(x) for x in reference.kll.get_quantiles(list(_PLOT_QUANTILES))],
        "current": [float(x) for x in current.kll.get_quantiles(list(_PLOT_QUANTILES))],
    }
    return result, len(p) - 1, plot


def _binned_frequencies(reference: _Column, current: _Column) -> tuple[dict[str, float], dict[str, float]]:
    """Category counts of both sides, with every category that cannot be compared reliably pooled.

    A category keeps its own bin only when its expected count is large enough for the chi-square
    approximation behind the floors (>= MIN_EXPECTED_COUNT per side on average) and each side knows
    its count: listed with tight sketch bounds, or absent from a sketch that kept every category.
    Everything else (long tails of zip codes or ids, sketch-evicted values) shares one "other" bin.
    """
    ref_raw, cur_raw = reference.frequencies or {}, current.frequencies or {}
    ref_uncertain, cur_uncertain = reference.uncertain, current.uncertain
    ref_freq: dict[str, float] = {}
    cur_freq: dict[str, float] = {}
    if reference.exact_categories and current.exact_categories and not ref_uncertain and not cur_uncertain:
        # Every count known on both sides (the usual case): the loop below without its branches.
        ref_get, cur_get = ref_raw.get, cur_raw.get
        for category in ref_raw.keys() | cur_raw.keys():
            ref_count, cur_count = ref_get(category, 0.0), cur_get(category, 0.0)
            if ref_count + cur_count >= 2 * MIN_EXPECTED_COUNT:
                ref_freq[category] = ref_count
                cur_freq[category] = cur_count
        ref_freq[OTHER] = max(reference.present - sum(ref_freq.values()), 0.0)
        cur_freq[OTHER] = max(current.present - sum(cur_freq.values()), 0.0)
        return ref_freq, cur_freq
    for category in set(ref_raw) | set(cur_raw):
        ref_count = ref_raw.get(category)
        if ref_count is None:
            if not reference.exact_categories:
                continue
            ref_count = 0.0
        elif category in ref_uncertain:
            continue
        cur_count = cur_raw.get(category)
        if cur_count is None:
            if not current.exact_categories:
                continue
            cur_count = 0.0
        elif category in cur_uncertain:
            continue
        if ref_count + cur_count >= 2 * MIN_EXPECTED_COUNT:
            ref_freq[category] = ref_count
            cur_freq[category] = cur_count
    # Counts are whole numbers, so these sums do not depend on the order of the categories.
    ref_freq[OTHER] = max(reference.present - sum(ref_freq.values()), 0.0)
    cur_freq[OTHER] = max(current.present - sum(cur_freq.values()), 0.0)
    return ref_freq, cur_freq


def _categorical_statistics(reference: _Column, current: _Column) -> tuple[dict[str, float], int]:
    ref_freq, cur_freq = _binned_frequencies(reference, current)
    ref_total, cur_total = max(reference.present, 1), max(current.present, 1)
    categories = sorted(ref_freq)  # both sides have the same bins
    p = np.fromiter(map(ref_freq.__getitem__, categories), float, len(categories)) / ref_total
    q = np.fromiter(map(cur_freq.__getitem__, categories), float, len(categories)) / cur_total
    cur_listed = current.frequencies or {}
    # Whole-number counts: their sum does not depend on the order the set difference gives.
    unseen = sum(map(cur_listed.__getitem__, cur_listed.keys() - (reference.frequencies or {}).keys())) / cur_total
    return _categorical_result(p, q, unseen)


def _categorical_result(p: np.ndarray, q: np.ndarray, unseen: float) -> tuple[dict[str, float], int]:
    """The statistics of both sides' bin shares (``p``, ``q``: counts over rows, bins in sorted order)."""
    p, q = p / max(p.sum(), 1e-12), q / max(q.sum(), 1e-12)
    result = _divergences(p, q)
    result["unseen_share"] = float(unseen)
    result["tvd"] = float(0.5 * np.abs(p - q).sum())
    used_bins = int(np.count_nonzero((p > 0) | (q > 0)))
    return result, max(used_bins - 1, 1)


@dataclass(frozen=True)
class _ReferenceCategories:
    """A reference column's listed categories in sorted order, their counts and where each sits; None
    from ``_reference_categories`` when ``_categorical_statistics_exact`` cannot use them."""

    names: list[str]
    counts: np.ndarray
    index: dict[str, int]
    other_at: int  # where OTHER sorts among ``names``


def _reference_categories(column: _Column) -> _ReferenceCategories | None:
    frequencies = column.frequencies
    if not frequencies or not column.exact_categories or column.uncertain or OTHER in frequencies:
        return None  # none listed (e.g. a sketch that kept no item for sure): the plain path
    names = sorted(frequencies)
    counts = np.array([frequencies[name] for name in names], dtype=float)
    if not _whole(counts):
        return None
    return _ReferenceCategories(names, counts, {name: i for i, name in enumerate(names)}, bisect.bisect(names, OTHER))


def _whole(counts: np.ndarray) -> bool:
    """Non-negative whole numbers whose sum (so every partial sum) is exact as a double: sums of them then
    do not depend on the order."""
    return (
        bool(counts.size) and bool((counts == np.trunc(counts)).all()) and counts.min() >= 0 and counts.sum() < 2.0**53
    )


def _categorical_statistics_exact(
    reference: _Column, current: _Column, prepared: _ReferenceCategories | None
) -> tuple[dict[str, float], int]:
    """``_categorical_statistics`` with the reference's side sorted and indexed once (``prepared``), bit for
    bit the same values: the bins in the same order, so the same arrays reach ``_divergences``.

    Only for the usual case of ``_binned_frequencies``, every count known on both sides as whole numbers
    (so sums do not depend on the order) and no real category named OTHER; anything else goes the plain way.
    """
    listed = current.frequencies
    if (
        prepared is None
        or listed is None
        or not current.exact_categories
        or current.uncertain
        or OTHER in listed
        or not listed
    ):
        return _categorical_statistics(reference, current)
    cur_counts = np.fromiter(listed.values(), float, len(listed))
    if not _whole(cur_counts):
        return _categorical_statistics(reference, current)
    unseen_at = len(prepared.names)  # a slot past the reference's categories for the ones it never saw
    at = np.fromiter(map(prepared.index.get, listed, itertools.repeat(unseen_at)), np.intp, len(listed))
    aligned = np.zeros(unseen_at + 1)
    aligned[at] = cur_counts
    aligned = aligned[:unseen_at]
    unseen = []
    if (at == unseen_at).any():
        unseen = [(name, count) for name, count in listed.items() if name not in prepared.index]
    kept = prepared.counts + aligned >= 2 * MIN_EXPECTED_COUNT
    ref_kept, cur_kept = prepared.counts[kept], aligned[kept]
    new_kept = [(name, count) for name, count in unseen if 0.0 + count >= 2 * MIN_EXPECTED_COUNT]
    ref_other = max(reference.present - float(ref_kept.sum()), 0.0)
    cur_other = max(current.present - (float(cur_kept.sum()) + sum(count for _, count in new_kept)), 0.0)
    if new_kept:
        names = [prepared.names[i] for i in np.flatnonzero(kept).tolist()]
        names += [name for name, _ in new_kept] + [OTHER]
        ref_bins = [*ref_kept.tolist(), *(0.0 for _ in new_kept), ref_other]
        cur_bins = [*cur_kept.tolist(), *(count for _, count in new_kept), cur_other]
        order = sorted(range(len(names)), key=names.__getitem__)
        ref_freq = np.array([ref_bins[i] for i in order])
        cur_freq = np.array([cur_bins[i] for i in order])
    else:
        # OTHER's bin in its sorted place (np.insert costs more than the whole of the rest).
        other_at = int(np.count_nonzero(kept[: prepared.other_at]))
        ref_freq = np.concatenate((ref_kept[:other_at], (ref_other,), ref_kept[other_at:]))
        cur_freq = np.concatenate((cur_kept[:other_at], (cur_other,), cur_kept[other_at:]))
    ref_total, cur_total = max(reference.present, 1), max(current.present, 1)
    unseen_count = sum(count for _, count in unseen)
    return _categorical_result(ref_freq / ref_total, cur_freq / cur_total, unseen_count / cur_total)


def _verdict(value: float, threshold: float, floor: float) -> Verdict:
    above_threshold, above_floor = value >= threshold, value > floor
    if above_threshold and above_floor:
        return "drift"
    if above_threshold or above_floor:
        return "possible"
    return "none"


# ------------------------------------------------------------------------------------ sorted sketches
_GRID_SIZE, _PLOT_SIZE = len(_QUANTILE_GRID), len(_PLOT_QUANTILES)
# All of a side's quantiles in one query: a KLL query sorts the sketch first (~16 of the ~20 us a
# 199-point query costs), and no fraction's answer depends on the others asked with it.
_CURRENT_FRACTIONS = [*(float(x) for x in _QUANTILE_GRID), *(float(x) for x in _PLOT_QUANTILES)]
_CURRENT_FRACTION_ARRAY = np.array(_CURRENT_FRACTIONS)
_REFERENCE_FRACTIONS = [*_CURRENT_FRACTIONS, 0.75, 0.25]
_KLL_FAMILY = 15
_KLL_EMPTY, _KLL_SINGLE_ITEM = 1, 4
_LEVEL_WEIGHTS = np.left_shift(1, np.arange(61, dtype=np.int64))  # a level-h value stands for 2**h inputs


@dataclass(frozen=True)
class _SortedSketch:
    """A KLL sketch's retained values in ascending order with the weight below each.

    The sketch's own queries answer from the same whole-number weights: ``get_cdf`` gives P(X < x) as
    (weight of values < x) / n, ``get_quantiles`` (exclusive ranks) the first value whose weight below
    reaches floor(fraction * n), the stored min and max at 0 and 1. Computed here with numpy they are
    the same doubles, without turning every point and answer into a Python float and without the
    sketch sorting itself again for every query (together most of a numeric feature's check time
    through the Python binding). tests/unit/test_drift_prepared.py checks both against the sketch.
    """

    values: np.ndarray
    below: np.ndarray  # int64, below[i]: total weight of values[:i] (len(values) + 1 entries)
    n: int
    # Strictly ascending (no value twice, no NaN): then a value found by rank is its own first
    # occurrence, and its CDF is ``below`` at that index (``_numeric_statistics_batch``).
    distinct: bool = False

    def cdf(self, points: np.ndarray) -> np.ndarray:
        """P(X < x) at each point, as ``kll.get_cdf(points)[:-1]``."""
        return self.below.take(self.values.searchsorted(points, side="left")) / float(self.n)

    def quantiles(self, fractions: np.ndarray) -> np.ndarray:
        """As ``kll.get_quantiles(fractions)`` (``inclusive=False``) for fractions strictly between 0 and 1
        (the sketch answers 0 and 1 with its stored min and max instead)."""
        return self.at_ranks(_ranks(fractions, float(self.n)))

    def at_ranks(self, ranks: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """The first value whose weight below reaches each of ``ranks`` (``_ranks``), the last beyond all."""
        return self.values.take(self.below[:-1].searchsorted(ranks, side="left"), mode="clip", out=out)


def _ranks(fractions: np.ndarray, n: float | np.ndarray) -> np.ndarray:
    """floor(fraction * n) as int64, the weight a quantile's value must reach: whole numbers, compared
    with the integer weights exactly as the doubles would be (both far below 2**53)."""
    return np.floor(fractions * n).astype(np.int64)


def _sketch_levels(kll: Any) -> tuple[np.ndarray, tuple[int, ...], int] | None:
    """A ``kll_doubles_sketch``'s retained values as serialised, the number of values per level and n;
    None if not readable.

    Layout (datasketches-cpp 3.x, as whylogs_sketching writes it): ``preamble_ints`` (byte 0), family
    (byte 2), flags (byte 3), n (uint64 at 8), number of levels (byte 18), then from ``4 * preamble_ints``
    the levels' start offsets (uint32 each), min and max (doubles) and the retained values, level by
    level; a value of level ``h`` stands for ``2**h`` inputs. A single-item sketch stores just the value.
    Anything unexpected (another family, counts that do not add up to ``get_n``) gives None: the caller
    then asks the sketch itself.
    """
    data = kll.serialize()
    if len(data) < 8 or data[2] != _KLL_FAMILY or data[3] & _KLL_EMPTY:
        return None
    retained = int(kll.get_num_retained())
    n = int(kll.get_n())
    if data[3] & _KLL_SINGLE_ITEM:
        if retained != 1 or n != 1 or len(data) < 16:
            return None
        return np.frombuffer(data, "<f8", 1, 8), (1,), 1
    layout = _level_layout(data[: 4 * data[0] + 4 * data[18]], len(data), retained, n)
    if layout is None:
        return None
    start, sizes = layout
    return np.frombuffer(data, "<f8", retained, start), sizes, n


@lru_cache(maxsize=256)
def _level_layout(header: bytes, size: int, retained: int, n: int) -> tuple[int, tuple[int, ...]] | None:
    """Where a serialised sketch's values start and how many each level holds, from the bytes before its
    min and max (``_sketch_levels``); None if they do not add up. The columns of one profile share their
    layout as a rule (same rows, same k), so this is one lookup per sketch."""
    preamble, levels = 4 * header[0], header[18]
    start = preamble + 4 * levels + 16
    if not 0 < levels <= len(_LEVEL_WEIGHTS) or size != start + 8 * retained or len(header) != preamble + 4 * levels:
        return None
    if preamble < 16:  # n is not where datasketches-cpp 3.x puts it: the sketch answers itself
        return None
    if struct.unpack_from("<Q", header, 8)[0] != n:
        return None
    # Python ints for the few per-level numbers: a numpy call costs more than the work on 10 levels.
    offsets = [
        *struct.unpack_from(f"<{levels}I", header, preamble),
        struct.unpack_from("<I", header, preamble)[0] + retained,
    ]
    sizes = tuple(end - begin for begin, end in itertools.pairwise(offsets))
    if min(sizes) < 0 or sum(size << level for level, size in enumerate(sizes)) != n:
        return None
    return start, sizes


def _mixed_zeros(values: np.ndarray) -> bool:
    """Whether sorted ``values`` hold zeros of both signs (the sketch may return either for a quantile
    among them, so its own answer is used)."""
    first_zero = int(np.searchsorted(values, 0.0))
    if first_zero < len(values) and values[first_zero] == 0.0:
        zeros = np.signbit(values[first_zero : int(np.searchsorted(values, 0.0, side="right"))])
        return bool(zeros.any() and not zeros.all())
    return False


def _cumulative_weights(weights: np.ndarray) -> np.ndarray:
    """0 and the running sums of whole-number int64 ``weights``, as int64.

    Summed as integers (a quarter of the time of a float cumsum, which numpy does not vectorise) and
    exact: every partial sum is a count of inputs, far below 2**53, so as doubles they are the same
    numbers the sketch adds up.
    """
    below = np.empty(len(weights) + 1, dtype=np.int64)
    below[0] = 0
    weights.cumsum(out=below[1:])
    return below


def _sorted_sketch(kll: Any) -> _SortedSketch | None:
    """The values and weights of a ``kll_doubles_sketch`` (see ``_sketch_levels``), None if not readable
    or if its values hold zeros of both signs."""
    levels = _sketch_levels(kll)
    if levels is None:
        return None
    raw, sizes, n = levels
    # Array methods, not the np.* functions: those add a Python wrapper call each (~0.5 us, 200 per check).
    order = raw.argsort(kind="stable")  # levels are sorted runs: a stable sort merges them
    values = raw.take(order)  # take: a third of the time of values[order]
    # -0.0 == 0.0, so strictly ascending values cannot hold zeros of both signs: one check for both.
    distinct = bool((values[1:] > values[:-1]).all())
    if not distinct and values[0] <= 0.0 <= values[-1] and _mixed_zeros(values):
        return None
    weights = _level_weights(sizes).take(order)
    return _SortedSketch(values, _cumulative_weights(weights), n, distinct)


@lru_cache(maxsize=256)
def _level_weights(sizes: tuple[int, ...]) -> np.ndarray:
    """Each retained value's weight, level by level: sketches of as many rows with the same k have the
    same level sizes (all the columns of one profile, as a rule), so this is one lookup per sketch."""
    weights = np.repeat(_LEVEL_WEIGHTS[: len(sizes)], sizes)
    weights.flags.writeable = False  # shared by every caller
    return weights


def _quantiles(kll: Any, sorted_sketch: _SortedSketch | None) -> np.ndarray:
    """The current side's grid and plot quantiles."""
    if sorted_sketch is not None:
        return sorted_sketch.quantiles(_CURRENT_FRACTION_ARRAY)
    return np.asarray(kll.get_quantiles(_CURRENT_FRACTIONS), dtype=float)


def _cdf(kll: Any, sorted_sketch: _SortedSketch | None, points: np.ndarray) -> np.ndarray:
    if sorted_sketch is not None:
        return sorted_sketch.cdf(points)
    return np.asarray(kll.get_cdf(points.tolist()), dtype=float)[:-1]


# ------------------------------------------------------------------------------------ prepared reference


@dataclass(frozen=True)
class _NumericReference:
    quantiles: np.ndarray  # on _QUANTILE_GRID
    plot: list[float]  # on _PLOT_QUANTILES
    scale: float  # Wasserstein's divisor


@dataclass(frozen=True)
class _ReferenceKs:
    """The reference's half of the KS point set: its grid quantiles, the next double above each, and its
    CDF at them (a non-finite quantile is no point: ``finite`` False there and at its neighbour)."""

    points: np.ndarray
    cdf: np.ndarray
    finite: np.ndarray


@dataclass(frozen=True)
class _ReferenceRows:
    """What a check stacks of the reference, once per set of features: their grid quantiles and scales
    (every feature), KS points' CDF, where those are none and lookups (``fast``, each with a readable
    sorted sketch on both sides), and features grouped by their number of bins with their masses."""

    quantiles: np.ndarray
    scales: np.ndarray
    ks_cdf: np.ndarray
    ks_infinite: np.ndarray
    lookups: np.ndarray
    by_width: list[tuple[int, list[int], np.ndarray]]


# Feature sets whose stacked reference rows a PreparedReference keeps (a model checks one, as a rule).
_ROW_SETS = 8


@dataclass(frozen=True)
class _ReferenceBins:
    splits: np.ndarray
    masses: np.ndarray
    # Where a check needs the current CDF: the KS points, then the splits padded with +inf to bins - 1
    # (one lookup per feature, the same width for all); None without a readable sorted sketch.
    lookup: np.ndarray | None = None


class PreparedReference:
    """A reference profile read once for every check against it: its columns, kinds, grids and bins.

    What only depends on the reference (its column summaries, quantiles on the KS/Wasserstein grid and
    the plot grid, the Wasserstein scale, its KS points and CDF there, bin edges and bin masses per bin
    count, its categories sorted with their counts) is computed on first use and kept, so a check of a
    new batch only queries the batch's sketches. Safe to share between threads: a value two threads
    compute at once is the same value either way.

    Args:
        view: the reference profile; it must not be changed (merged into) while prepared.
    """

    def __init__(self, view: DatasetProfileView) -> None:
        self.view = view
        self.rows = _rows(view)
        self.names = frozenset(view.get_columns())
        self._columns: dict[str, _Column | None] = {}
        self._kinds: dict[str, Literal["numeric", "categorical"]] = {}
        self._numeric: dict[str, _NumericReference] = {}
        self._bins: dict[tuple[str, int], _ReferenceBins] = {}
        self._sorted: dict[str, _SortedSketch | None] = {}
        self._ks: dict[str, _ReferenceKs | None] = {}
        self._stacked: dict[tuple[tuple[str, ...], tuple[int, ...], int], _ReferenceRows] = {}
        self._categories: dict[str, _ReferenceCategories | None] = {}

    def column(self, name: str) -> _Column | None:
        if name not in self._columns:
            self._columns[name] = _column(self.view, name)
        return self._columns[name]

    def kind(self, name: str) -> Literal["numeric", "categorical"]:
        if name not in self._kinds:
            self._kinds[name] = infer_kind(self.view, name)
        return self._kinds[name]

    def categories(self, name: str) -> _ReferenceCategories | None:
        if name not in self._categories:
            column = self.column(name)
            assert column is not None
            self._categories[name] = _reference_categories(column)
        return self._categories[name]

    def numeric(self, name: str) -> _NumericReference:
        prepared = self._numeric.get(name)
        if prepared is None:
            column = self.column(name)
            assert column is not None and column.kll is not None
            answers = column.kll.get_quantiles(_REFERENCE_FRACTIONS)
            plot_end = _GRID_SIZE + _PLOT_SIZE
            prepared = _NumericReference(
                quantiles=np.asarray(answers[:_GRID_SIZE], dtype=float),
                plot=answers[_GRID_SIZE:plot_end],
                scale=_wasserstein_scale(column, answers[plot_end:]),
            )
            self._numeric[name] = prepared
        return prepared

    def sorted_sketch(self, name: str) -> _SortedSketch | None:
        if name not in self._sorted:
            column = self.column(name)
            assert column is not None and column.kll is not None
            self._sorted[name] = _sorted_sketch(column.kll)
        return self._sorted[name]

    def ks(self, name: str) -> _ReferenceKs | None:
        """None without a readable sorted sketch."""
        if name not in self._ks:
            ordered = self.sorted_sketch(name)
            prepared = None
            if ordered is not None:
                quantiles = self.numeric(name).quantiles
                finite = np.isfinite(quantiles)
                base = np.where(finite, quantiles, 0.0)
                # Interleaved (each quantile, then the next double up) the points ascend: searching a sketch
                # for ascending keys is ~a quarter faster than for two ascending halves (numpy reuses the
                # last key's position), and the KS maximum does not depend on the order.
                points = np.stack([base, np.nextafter(base, np.inf)], axis=1).ravel()
                prepared = _ReferenceKs(points=points, cdf=ordered.cdf(points), finite=np.repeat(finite, 2))
            self._ks[name] = prepared
        return self._ks[name]

    def stacked(self, names: tuple[str, ...], fast: tuple[int, ...], bins: int) -> _ReferenceRows:
        """These features' prepared values stacked (``fast``: the indices in ``names`` with a sorted sketch
        on both sides)."""
        key = (names, fast, bins)
        prepared = self._stacked.get(key)
        if prepared is None:
            kept = [self.ks(names[i]) for i in fast]
            assert all(k is not None for k in kept)
            edges = [self.bins(name, bins) for name in names]
            by_width: dict[int, list[int]] = {}
            for index, edge in enumerate(edges):
                by_width.setdefault(len(edge.splits), []).append(index)
            empty = np.empty((0, 2 * _GRID_SIZE))
            prepared = _ReferenceRows(
                quantiles=np.stack([self.numeric(name).quantiles for name in names]),
                scales=np.array([self.numeric(name).scale for name in names]),
                ks_cdf=np.stack([k.cdf for k in kept]) if kept else empty,
                ks_infinite=~np.stack([k.finite for k in kept]) if kept else empty.astype(bool),
                lookups=np.stack([edges[i].lookup for i in fast]) if fast else empty,
                by_width=[
                    (width, group, np.stack([edges[i].masses for i in group])) for width, group in by_width.items()
                ],
            )
            if len(self._stacked) >= _ROW_SETS:
                self._stacked.clear()  # feature sets that change from batch to batch: keep memory bounded
            self._stacked[key] = prepared
        return prepared

    def bins(self, name: str, bins: int) -> _ReferenceBins:
        prepared = self._bins.get((name, bins))
        if prepared is None:
            column = self.column(name)
            assert column is not None and column.kll is not None
            splits = _bin_splits(column.kll, bins)
            ks = self.ks(name)
            lookup = None
            if ks is not None:
                lookup = np.concatenate([ks.points, splits, np.full(bins - 1 - len(splits), np.inf)])
            masses = _masses(column.kll.get_cdf(splits.tolist()))
            prepared = _ReferenceBins(splits=splits, masses=masses, lookup=lookup)
            self._bins[(name, bins)] = prepared
        return prepared


def _ks_distance(
    ref_q: np.ndarray,
    cur_q: np.ndarray,
    reference: tuple[Any, _SortedSketch | None],
    current: tuple[Any, _SortedSketch | None],
) -> float:
    """KS distance over the distinct finite grid quantiles of both sides and the next double above each
    (CDFs are P(X < x), so point masses count); 0 without points."""
    points = np.concatenate([ref_q, cur_q])
    points = points[np.isfinite(points)]
    points = np.unique(np.concatenate([points, np.nextafter(points, np.inf)]))
    if not len(points):
        return 0.0
    return float(np.max(np.abs(_cdf(*reference, points) - _cdf(*current, points))))


def _numeric_statistics_batch(
    reference: PreparedReference, columns: Mapping[str, tuple[_Column, _Column]], bins: int
) -> dict[str, tuple[dict[str, float], int, dict]]:
    """``_numeric_statistics`` of every feature in ``columns`` (name -> reference and current column,
    both sketched) at once, bit for bit the same values.

    Per feature the current sketch is read once (``_sorted_sketch``) and searched twice: for its grid and
    plot quantiles, then for its CDF at every point needed (the reference's KS points and bin splits, and
    its own KS points unless it holds no value twice: then their CDF is where the first search stopped);
    the reference's sorted sketch once, at the current's KS points. KS is the largest
    gap over the same point set as ``_numeric_statistics`` but undeduplicated, in two fixed-width halves
    (a maximum does not depend on repeats or order), the reference's CDF at its own half kept. Arrays
    stay per feature or (features x points): with all sketches' values end to end in one array (~1 MB
    for 40 features, new memory every check) each whole-array step cost ~0.3 ms against ~20 us on reused
    memory, more than the per-feature numpy calls it saved.
    """
    if not columns:
        return {}
    names = list(columns)
    prepared = [reference.numeric(name) for name in names]
    edges = [reference.bins(name, bins) for name in names]
    reference_kll = [ref_column.kll for ref_column, _ in columns.values()]
    current_kll = [cur_column.kll for _, cur_column in columns.values()]
    reference_sorted = [reference.sorted_sketch(name) for name in names]
    current_sorted = [_sorted_sketch(kll) for kll in current_kll]
    answers = np.empty((len(names), len(_CURRENT_FRACTIONS)))
    readable = [i for i, ordered in enumerate(current_sorted) if ordered is not None]
    found = np.empty((len(names), _GRID_SIZE), dtype=np.intp)  # where each grid quantile was found
    if readable:
        ranks = _ranks(_CURRENT_FRACTION_ARRAY, np.array([[float(current_sorted[i].n)] for i in readable]))
        for row, i in enumerate(readable):
            ordered = current_sorted[i]
            at = ordered.below[:-1].searchsorted(ranks[row], side="left")
            ordered.values.take(at, mode="clip", out=answers[i])
            found[i] = at[:_GRID_SIZE]
    for i, ordered in enumerate(current_sorted):
        if ordered is None:
            answers[i] = _quantiles(current_kll[i], None)
    fast = [i for i in readable if edges[i].lookup is not None]
    stacked = reference.stacked(tuple(names), tuple(fast), bins)
    ks = [0.0] * len(names)
    cur_split_cdf: dict[int, np.ndarray] = {}
    if fast:
        rows = np.array(fast, dtype=np.intp)
        cur_q = answers[rows, :_GRID_SIZE]
        # Interleaved as the reference's points (``PreparedReference.ks``): ascending keys search faster.
        cur_points = np.stack([cur_q, np.nextafter(cur_q, np.inf)], axis=2).reshape(len(fast), 2 * _GRID_SIZE)
        width = 2 * _GRID_SIZE
        lookups = stacked.lookups
        own = lookups.shape[1]  # the current's own KS points start here
        # A strictly ascending sketch finds its own quantiles by rank: the CDF at each is ``below`` where the
        # rank search stopped (clipped as ``at_ranks``), and just above it one further, so a third of the
        # keys need no search.
        own_at = np.minimum(found[rows], np.array([[len(current_sorted[i].values) - 1] for i in fast]))
        own_at = np.stack([own_at, own_at + 1], axis=2).reshape(len(fast), width)
        current_at = np.empty((len(fast), own + width), dtype=np.int64)  # weights below, then CDFs
        reference_at = np.empty(cur_points.shape, dtype=np.int64)
        # mode="clip" (indices are in range either way): with ``out`` the default mode buffers the result.
        for row, i in enumerate(fast):
            ordered, out = current_sorted[i], current_at[row]
            ordered.below.take(ordered.values.searchsorted(lookups[row], side="left"), out=out[:own], mode="clip")
            if ordered.distinct:
                ordered.below.take(own_at[row], out=out[own:], mode="clip")
            else:
                ordered.below.take(ordered.values.searchsorted(cur_points[row]), out=out[own:], mode="clip")
            ordered = reference_sorted[i]
            ordered.below.take(ordered.values.searchsorted(cur_points[row]), out=reference_at[row], mode="clip")
        current_at = current_at / np.array([[float(current_sorted[i].n)] for i in fast])
        reference_at = reference_at / np.array([[float(reference_sorted[i].n)] for i in fast])
        at_reference = np.abs(stacked.ks_cdf - current_at[:, :width])
        np.copyto(at_reference, 0.0, where=stacked.ks_infinite)  # as boolean indexing, a fifth of the time
        at_current = np.abs(reference_at - current_at[:, own:])
        np.copyto(at_current, 0.0, where=~np.isfinite(cur_q).repeat(2, axis=1))
        distances = np.maximum(at_reference.max(axis=1), at_current.max(axis=1)).tolist()
        for row, (i, distance) in enumerate(zip(fast, distances, strict=True)):
            ks[i] = distance
            cur_split_cdf[i] = current_at[row, width : width + len(edges[i].splits)]
    for i in sorted(set(range(len(names))) - set(fast)):
        reference_side = (reference_kll[i], reference_sorted[i])
        current_side = (current_kll[i], current_sorted[i])
        ks[i] = _ks_distance(prepared[i].quantiles, answers[i, :_GRID_SIZE], reference_side, current_side)
        cur_split_cdf[i] = _cdf(*current_side, edges[i].splits)

    current_plots = answers[:, _GRID_SIZE:].tolist()
    wasserstein = (np.mean(np.abs(stacked.quantiles - answers[:, :_GRID_SIZE]), axis=1) / stacked.scales).tolist()

    # Bin masses: rows grouped by their number of bins (ties in the reference can merge edges).
    divergences: list[dict[str, float]] = [{} for _ in names]
    for bin_width, group, p in stacked.by_width:
        cdf = np.zeros((len(group), bin_width + 2))
        cdf[:, -1] = 1.0
        for row, i in enumerate(group):
            cdf[row, 1:-1] = cur_split_cdf[i]
        for i, row_divergences in zip(group, _divergences_by_row(p, np.diff(cdf, axis=1)), strict=True):
            divergences[i] = row_divergences

    results = {}
    for i, name in enumerate(names):
        plot = {
            "probabilities": list(_PLOT_PROBABILITIES),
            "reference": list(prepared[i].plot),
            "current": current_plots[i],
        }
        statistics = {"ks": ks[i], "wasserstein": wasserstein[i], **divergences[i]}
        results[name] = (statistics, len(edges[i].masses) - 1, plot)
    return results


# --------------------------------------------------------------------------------------------- decisions
def _absent(
    name: str,
    kind: Literal["numeric", "categorical"],
    statistic: str,
    threshold: float,
    reference: _Column | None,
    current: _Column | None,
) -> FeatureDrift:
    where = "reference" if reference is None else "current"
    return FeatureDrift(
        name=name,
        kind=kind,
        statistic=statistic,
        value=0.0,
        threshold=threshold,
        floor=0.0,
        verdict="drift" if current is None else "none",
        reasons=[f"{name}: column absent from the {where} profile"],
        n_reference=reference.n if reference else 0,
        n_current=current.n if current else 0,
    )


def _comparable(kind: str, reference: _Column, current: _Column) -> bool:
    if kind == "numeric":
        return reference.kll is not None and current.kll is not None
    return reference.present > 0 and current.present > 0


def _decide(
    name: str,
    kind: Literal["numeric", "categorical"],
    reference: _Column,
    current: _Column,
    policy: DriftPolicy,
    computed: tuple | None,
) -> FeatureDrift:
    """The feature's verdict and reasons from its statistics (``computed``; None: not comparable)."""
    statistic = policy.numeric_statistic if kind == "numeric" else policy.categorical_statistic
    threshold = getattr(policy.thresholds, statistic)
    reasons: list[str] = []
    statistics_: dict[str, float] = {}
    quantiles = None
    degrees = policy.bins - 1
    comparable = computed is not None
    if computed is not None and kind == "numeric":
        statistics_, degrees, quantiles = computed
    elif computed is not None:
        statistics_, degrees = computed
    inverse_n = _effective_inverse_n(reference) + _effective_inverse_n(current)
    floor = _floor(statistic, inverse_n, degrees, policy.noise_confidence)
    value = statistics_.get(statistic, 0.0)
    verdict: Verdict = _verdict(value, threshold, floor) if comparable else "none"
    if not comparable:
        reasons.append(f"{name}: no values to compare (reference {reference.present}, current {current.present})")
    elif verdict == "drift":
        reasons.append(f"{name}: {statistic} {value:.3f} >= threshold {threshold:.3f} and > noise floor {floor:.3f}")
    elif verdict == "possible":
        if value >= threshold:
            reasons.append(f"{name}: {statistic} {value:.3f} >= threshold {threshold:.3f} but within noise {floor:.3f}")
        else:
            reasons.append(f"{name}: {statistic} {value:.3f} above noise {floor:.3f}, below threshold {threshold:.3f}")
    if kind == "categorical" and statistics_.get("unseen_share", 0.0) >= policy.unseen_share_threshold:
        reasons.append(f"{name}: {statistics_['unseen_share']:.1%} of current values are unseen categories")

    # Missing share: a two-proportion noise floor against its own threshold.
    ref_share = reference.missing / reference.n if reference.n else 0.0
    cur_share = current.missing / current.n if current.n else 0.0
    pooled = (reference.missing + current.missing) / max(reference.n + current.n, 1)
    c_alpha = _critical_values(1, policy.noise_confidence)[2]
    missing_floor = c_alpha * math.sqrt(
        max(pooled * (1 - pooled), 1e-12) * (1 / max(reference.n, 1) + 1 / max(current.n, 1))
    )
    missing_change = abs(cur_share - ref_share)
    statistics_.update({"missing_reference": ref_share, "missing_current": cur_share})
    if missing_change >= policy.missing_share_threshold and missing_change > missing_floor:
        reasons.append(f"{name}: missing share {ref_share:.1%} -> {cur_share:.1%}")
        verdict = "drift"
    return FeatureDrift(
        name=name,
        kind=kind,
        statistic=statistic,
        value=value,
        threshold=threshold,
        floor=floor,
        verdict=verdict,
        reasons=reasons,
        n_reference=reference.n,
        n_current=current.n,
        statistics=statistics_,
        quantiles=quantiles,
    )


def feature_drift(
    name: str,
    reference_view: DatasetProfileView,
    current_view: DatasetProfileView,
    kind: Literal["numeric", "categorical"],
    policy: DriftPolicy,
) -> FeatureDrift:
    """Drift of one feature between two profiles (see the module docstring for the decision).

    The plain path, one sketch query per use: ``compare_profiles`` computes the same values for all
    features at once against a ``PreparedReference`` and is tested to agree with this bit for bit.
    """
    reference = _column(reference_view, name)
    current = _column(current_view, name)
    if reference is None or current is None:
        statistic = policy.numeric_statistic if kind == "numeric" else policy.categorical_statistic
        return _absent(name, kind, statistic, getattr(policy.thresholds, statistic), reference, current)
    computed: tuple | None = None
    if _comparable(kind, reference, current):
        computed = (
            _numeric_statistics(reference, current, policy.bins)
            if kind == "numeric"
            else _categorical_statistics(reference, current)
        )
    return _decide(name, kind, reference, current, policy, computed)


def _features(
    reference: PreparedReference,
    current_view: DatasetProfileView,
    kinds: Mapping[str, Literal["numeric", "categorical"]],
    policy: DriftPolicy,
) -> dict[str, FeatureDrift]:
    """``feature_drift`` of every feature, the numeric statistics computed for all features at once."""
    columns = {name: (reference.column(name), _column(current_view, name, spread=False)) for name in kinds}
    comparable_numeric: dict[str, tuple[_Column, _Column]] = {}
    for name, kind in kinds.items():
        ref_column, cur_column = columns[name]
        if (
            kind == "numeric"
            and ref_column is not None
            and cur_column is not None
            and _comparable(kind, ref_column, cur_column)
        ):
            comparable_numeric[name] = (ref_column, cur_column)
    numeric_statistics = _numeric_statistics_batch(reference, comparable_numeric, policy.bins)
    features = {}
    for name, kind in kinds.items():
        ref_column, cur_column = columns[name]
        if ref_column is None or cur_column is None:
            statistic = policy.numeric_statistic if kind == "numeric" else policy.categorical_statistic
            features[name] = _absent(
                name, kind, statistic, getattr(policy.thresholds, statistic), ref_column, cur_column
            )
            continue
        computed: tuple | None = None
        if kind == "numeric":
            computed = numeric_statistics.get(name)
        elif _comparable(kind, ref_column, cur_column):
            computed = _categorical_statistics_exact(ref_column, cur_column, reference.categories(name))
        features[name] = _decide(name, kind, ref_column, cur_column, policy, computed)
    return features


def compare_profiles(
    reference: DatasetProfileView | PreparedReference,
    current: DatasetProfileView,
    *,
    numeric: Sequence[str] | None = None,
    categorical: Sequence[str] | None = None,
    weights: Mapping[str, float] | None = None,
    policy: DriftPolicy | None = None,
) -> DriftReport:
    """Drift of ``current`` against ``reference``, per feature and overall.

    Args:
        reference: the reference profile (e.g. the champion's training data), or a ``PreparedReference``
            of it to reuse what depends on the reference alone across checks (same report either way).
        current: the profile of the batch to check.
        numeric / categorical: feature names by kind; both None means every column the two profiles
            share, with the kind inferred from its values.
        weights: feature importances (e.g. the champion's gain); missing or None means uniform.
        policy: thresholds and decision rules; defaults documented on ``DriftPolicy``.

    Returns:
        A ``DriftReport`` listing every feature's statistics, verdict and reasons.

    Raises:
        InputError: no features to compare.
    """
    policy = policy or DriftPolicy()
    prepared = reference if isinstance(reference, PreparedReference) else PreparedReference(reference)
    if numeric is None and categorical is None:
        shared = sorted(prepared.names & set(current.get_columns()))
        kinds = {name: prepared.kind(name) for name in shared}
    else:
        kinds = {name: "numeric" for name in numeric or []}
        kinds.update({name: "categorical" for name in categorical or []})
    if not kinds:
        raise InputError("no features to compare: the profiles share no columns")
    features = _features(prepared, current, kinds, policy)

    raw = {name: max(float((weights or {}).get(name, 0.0)), 0.0) for name in features}
    total = sum(raw.values())
    weight_source: Literal["uniform", "importance"] = "importance" if weights and total > 0 else "uniform"
    if weight_source == "uniform":
        normalised = {name: 1.0 / len(features) for name in features}
        top = sorted(features)
    else:
        normalised = {name: value / total for name, value in raw.items()}
        top = sorted(features, key=lambda name: (-normalised[name], name))[: policy.top_k]
    score = float(sum(normalised[name] for name, f in features.items() if f.verdict == "drift"))

    # An empty side makes every statistic 0: "no drift" would be a silent pass, so say so first. An
    # empty batch is no evidence that the distribution moved, hence no drift (and no retrain) from it.
    warnings: list[str] = []
    for side, seen in (("current", _has_rows(current)), ("reference", prepared.rows > 0)):
        if not seen:
            warnings.append(f"the {side} profile has 0 rows: nothing to compare, drift not checked")
    reasons: list[str] = list(warnings)
    drifted_top = [name for name in top if features[name].verdict == "drift"] if policy.top_k > 0 else []
    if score >= policy.score_threshold:
        reasons.append(f"drift score {score:.2f} >= {policy.score_threshold:.2f} ({weight_source} weights)")
    if drifted_top:
        which = "a feature" if weight_source == "uniform" else f"a top-{policy.top_k} feature"
        reasons.append(f"{which} drifted: {', '.join(drifted_top)}")
    drift = len(reasons) > len(warnings)
    if not drift and not warnings:
        reasons.append(f"no drift: score {score:.2f} < {policy.score_threshold:.2f} and no top feature drifted")
    for name in sorted(features, key=lambda n: (-features[n].severity, n)):
        if features[name].verdict != "none":
            reasons.extend(features[name].reasons)
    n_reference = max((f.n_reference for f in features.values()), default=0)
    n_current = max((f.n_current for f in features.values()), default=0)
    return DriftReport(
        drift=drift,
        score=score,
        score_threshold=policy.score_threshold,
        features=features,
        weights=normalised,
        weight_source=weight_source,
        top_features=top,
        reasons=reasons,
        n_reference=n_reference,
        n_current=n_current,
        warnings=warnings,
    )


def hysteresis_met(recent: Sequence[bool], k: int, m: int) -> bool:
    """Whether at least ``k`` of the last ``m`` batch verdicts (oldest first) are drift."""
    if k < 1 or m < k:
        raise InputError(f"hysteresis needs 1 <= k <= m, got k={k}, m={m}")
    return sum(bool(x) for x in list(recent)[-m:]) >= k
