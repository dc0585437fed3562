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
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from functools import cache
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from scipy import special

from driftline.errors import InputError

if TYPE_CHECKING:
    from whylogs.core import DatasetProfileView

Verdict = Literal["none", "possible", "drift"]
NumericStatistic = Literal["ks", "psi", "hellinger", "wasserstein"]
CategoricalStatistic = Literal["hellinger", "psi", "js"]

# Sketch rank error enters as extra noise with this weight. Calibrated on two sketches of the same
# 1M-row distribution: with whylogs' default KLL k=1024 (rank error 0.27%) KS stays <= 0.003 against a
# floor of 0.006; with k=256 (1.05%) KS 0.006-0.010 against a floor of 0.022.
# Profiles merged from partitions (driftline.distributed) need no extra term: a merged KLL sketch keeps k and
# reports the same bound, and measured on 1M rows cut into 4-64 parts its worst CDF error was 0.08-0.12%
# against 0.11-0.15% for one sketch of the same rows (tests/unit/test_dask.py checks both verdicts).
SKETCH_NOISE_WEIGHT = 0.75
_QUANTILE_GRID = np.linspace(0.005, 0.995, 199)
_PLOT_QUANTILES = np.linspace(0.01, 0.99, 41)
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

    @property
    def present(self) -> int:
        return self.n - self.missing

    @property
    def rank_error(self) -> float:
        if self.kll is None or not self.kll.is_estimation_mode():
            return 0.0
        return float(self.kll.normalized_rank_error(False))


def _column(view: DatasetProfileView, name: str) -> _Column | None:
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
    if distribution is not None and not distribution.kll.value.is_empty():
        kll = distribution.kll.value
        stddev = float(distribution.stddev) if distribution.n > 1 else None
    frequencies = None
    uncertain: set[str] = set()
    exact = True
    frequent = column.get_metric("frequent_items")
    if frequent is not None and not frequent.frequent_strings.value.is_empty():
        items = frequent.strings
        frequencies = {str(item.value): float(item.est) for item in items}
        for item in items:
            if item.upper != item.lower:
                exact = False
                if item.upper - item.lower > RELIABLE_COUNT_SPREAD * item.est:
                    uncertain.add(str(item.value))
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
    )


def _rows(view: DatasetProfileView) -> int:
    """Rows a profile saw: the largest ``counts/n`` of its columns (0 for an empty profile)."""
    counts = [column.get_metric("counts") for column in view.get_columns().values()]
    return max((int(metric.n.value) for metric in counts if metric is not None), default=0)


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


def _bin_masses(reference: _Column, current: _Column, bins: int) -> tuple[np.ndarray, np.ndarray]:
    probabilities = np.linspace(0, 1, bins + 1)[1:-1]
    splits = np.unique(np.asarray(reference.kll.get_quantiles(list(probabilities)), dtype=float))
    splits = splits[np.isfinite(splits)]
    ref_cdf = np.concatenate([[0.0], np.asarray(reference.kll.get_cdf(list(splits)))[:-1], [1.0]])
    cur_cdf = np.concatenate([[0.0], np.asarray(current.kll.get_cdf(list(splits)))[:-1], [1.0]])
    return np.diff(ref_cdf), np.diff(cur_cdf)


def _divergences(p: np.ndarray, q: np.ndarray) -> dict[str, float]:
    eps = 1e-6
    p_s = (p + eps) / (p + eps).sum()
    q_s = (q + eps) / (q + eps).sum()
    psi = float(np.sum((q_s - p_s) * np.log(q_s / p_s)))
    hellinger = float(math.sqrt(max(0.0, 1.0 - float(np.sum(np.sqrt(p * q))))))
    m = 0.5 * (p_s + q_s)
    js = float(0.5 * np.sum(p_s * np.log2(p_s / m)) + 0.5 * np.sum(q_s * np.log2(q_s / m)))
    return {"psi": psi, "hellinger": min(hellinger, 1.0), "js": max(js, 0.0)}


@cache
def _critical_values(degrees: int, confidence: float) -> tuple[float, float, float]:
    """KS c_alpha, the chi-square quantile and the two-sided normal quantile (scipy.stats is ~50x slower)."""
    alpha = 1.0 - confidence
    c_alpha = math.sqrt(-math.log(alpha / 2.0) / 2.0)  # asymptotic two-sample KS critical value
    chi2 = float(special.chdtri(max(degrees, 1), alpha))
    z = float(special.ndtri(0.5 + confidence / 2.0))
    return c_alpha, chi2, z


def _floors(inverse_n: float, degrees: int, confidence: float) -> dict[str, float]:
    c_alpha, chi2, _ = _critical_values(degrees, confidence)
    return {
        "ks": c_alpha * math.sqrt(inverse_n),
        "wasserstein": c_alpha * math.sqrt(inverse_n),
        "psi": chi2 * inverse_n,
        "hellinger": math.sqrt(chi2 * inverse_n / 8.0),
        "js": chi2 * inverse_n / (8.0 * math.log(2.0)),
    }


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
    scale = reference.stddev
    if not scale or not math.isfinite(scale) or scale <= 0:
        iqr = float(np.subtract(*reference.kll.get_quantiles([0.75, 0.25])))
        scale = iqr / 1.349 if iqr > 0 else 1.0
    wasserstein = float(np.mean(np.abs(ref_q - cur_q)) / scale)
    p, q = _bin_masses(reference, current, bins)
    result = {"ks": ks, "wasserstein": wasserstein, **_divergences(p, q)}
    plot = {
        "probabilities": [round(float(x), 4) for x in _PLOT_QUANTILES],
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
    ref_raw, cur_raw = dict(reference.frequencies or {}), dict(current.frequencies or {})

    def known(side: _Column, counts: dict[str, float], category: str) -> bool:
        if category in counts:
            return category not in side.uncertain
        return side.exact_categories

    ref_freq: dict[str, float] = {}
    cur_freq: dict[str, float] = {}
    for category in set(ref_raw) | set(cur_raw):
        pooled = ref_raw.get(category, 0.0) + cur_raw.get(category, 0.0)
        if (
            pooled >= 2 * MIN_EXPECTED_COUNT
            and known(reference, ref_raw, category)
            and known(current, cur_raw, category)
        ):
            ref_freq[category] = ref_raw.get(category, 0.0)
            cur_freq[category] = cur_raw.get(category, 0.0)
    ref_freq[OTHER] = max(reference.present - sum(ref_freq.values()), 0.0)
    cur_freq[OTHER] = max(current.present - sum(cur_freq.values()), 0.0)
    return ref_freq, cur_freq


def _categorical_statistics(reference: _Column, current: _Column) -> tuple[dict[str, float], int]:
    ref_freq, cur_freq = _binned_frequencies(reference, current)
    ref_total, cur_total = max(reference.present, 1), max(current.present, 1)
    categories = sorted(set(ref_freq) | set(cur_freq))
    p = np.array([ref_freq.get(c, 0.0) for c in categories]) / ref_total
    q = np.array([cur_freq.get(c, 0.0) for c in categories]) / cur_total
    p, q = p / max(p.sum(), 1e-12), q / max(q.sum(), 1e-12)
    ref_listed = set(reference.frequencies or {})
    unseen = sum(v for c, v in (current.frequencies or {}).items() if c not in ref_listed) / cur_total
    result = _divergences(p, q)
    result["unseen_share"] = float(unseen)
    result["tvd"] = float(0.5 * np.abs(p - q).sum())
    used_bins = int(np.count_nonzero((p > 0) | (q > 0)))
    return result, max(used_bins - 1, 1)


def _verdict(value: float, threshold: float, floor: float) -> Verdict:
    above_threshold, above_floor = value >= threshold, value > floor
    if above_threshold and above_floor:
        return "drift"
    if above_threshold or above_floor:
        return "possible"
    return "none"


def feature_drift(
    name: str,
    reference_view: DatasetProfileView,
    current_view: DatasetProfileView,
    kind: Literal["numeric", "categorical"],
    policy: DriftPolicy,
) -> FeatureDrift:
    """Drift of one feature between two profiles (see the module docstring for the decision)."""
    reference = _column(reference_view, name)
    current = _column(current_view, name)
    statistic = policy.numeric_statistic if kind == "numeric" else policy.categorical_statistic
    threshold = getattr(policy.thresholds, statistic)
    if reference is None or current is None:
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
    reasons: list[str] = []
    statistics_: dict[str, float] = {}
    quantiles = None
    degrees = policy.bins - 1
    comparable = (
        reference.kll is not None and current.kll is not None
        if kind == "numeric"
        else reference.present > 0 and current.present > 0
    )
    if comparable and kind == "numeric":
        statistics_, degrees, quantiles = _numeric_statistics(reference, current, policy.bins)
    elif comparable:
        statistics_, degrees = _categorical_statistics(reference, current)
    inverse_n = _effective_inverse_n(reference) + _effective_inverse_n(current)
    floors = _floors(inverse_n, degrees, policy.noise_confidence)
    floor = floors[statistic]
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


def compare_profiles(
    reference: DatasetProfileView,
    current: DatasetProfileView,
    *,
    numeric: Sequence[str] | None = None,
    categorical: Sequence[str] | None = None,
    weights: Mapping[str, float] | None = None,
    policy: DriftPolicy | None = None,
) -> DriftReport:
    """Drift of ``current`` against ``reference``, per feature and overall.

    Args:
        reference: the reference profile (e.g. the champion's training data).
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
    if numeric is None and categorical is None:
        shared = sorted(set(reference.get_columns()) & set(current.get_columns()))
        kinds = {name: infer_kind(reference, name) for name in shared}
    else:
        kinds = {name: "numeric" for name in numeric or []}
        kinds.update({name: "categorical" for name in categorical or []})
    if not kinds:
        raise InputError("no features to compare: the profiles share no columns")
    features = {name: feature_drift(name, reference, current, kind, policy) for name, kind in kinds.items()}

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
    for side, view in (("current", current), ("reference", reference)):
        if _rows(view) == 0:
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
