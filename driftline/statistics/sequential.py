"""The sequential-statistics kit: running moments and anytime-valid confidence sequences of a mean.

The shadow test (:mod:`driftline.statistics.shadow`), the post-promotion guard
(:mod:`driftline.statistics.guard`) and the champion's performance monitor
(:mod:`driftline.statistics.performance`) all watch the mean of a per-row loss difference ``d`` batch by batch
and decide after every batch. What they share lives here:

* sufficient statistics (``n``, mean, ``m2``) merged with Chan et al.'s parallel update, so folding batches
  one at a time equals computing on all rows at once (:func:`merge_moments`, :func:`fold_moments`);
* the asymptotic confidence sequence of Waudby-Smith et al. (:func:`confidence_sequence`), valid
  uniformly over time, so checking after every batch does not inflate errors; a fixed-sample z-test
  peeked at as often would (:func:`naive_z_verdict`, kept for comparison in the tests);
* the state they keep on S3 (:class:`MomentsState`, :class:`PairedState`) and the batch fold of the
  paired tests (:func:`fold_paired`); each state class declares its own fields, in its own order, which is
  the key order of its JSON.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, replace
from datetime import datetime
from statistics import NormalDist
from typing import Any, TypeVar

import numpy as np

from driftline.errors import InputError

FloatOrArray = float | np.ndarray


# ------------------------------------------------------------------------------------------- moments
def moments_of(
    values: np.ndarray, what: str = "differences", each: str = "loss difference(s)"
) -> tuple[int, float, float]:
    """Count, mean and sum of squared deviations (``m2``) of a 1-D array, in two passes.

    Args:
        what: the values as errors name them (``losses of batch b7``).
        each: one value as errors count them (``loss(es) of batch b7``).

    Raises:
        InputError: the values are not a 1-D array of finite numbers.
    """
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise InputError(f"{what} must be a 1-D array, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise InputError(f"{int(np.sum(~np.isfinite(array)))} {each} are NaN or infinite")
    if array.size == 0:
        return 0, 0.0, 0.0
    mean = float(array.mean())
    return int(array.size), mean, float(np.sum((array - mean) ** 2))


def merge_moments(
    n_a: int, mean_a: FloatOrArray, m2_a: FloatOrArray, n_b: int, mean_b: FloatOrArray, m2_b: FloatOrArray
) -> tuple[int, FloatOrArray, FloatOrArray]:
    """Combine the moments of two disjoint samples (Chan, Golub and LeVeque's parallel update).

    ``mean = mean_a + delta * n_b / n`` and ``m2 = m2_a + m2_b + delta^2 * n_a * n_b / n`` with
    ``delta = mean_b - mean_a``: exact up to rounding, so any batching gives the one-shot result.
    Means and ``m2`` may be arrays (one entry per simulated run) sharing the counts.

    Returns:
        ``(n, mean, m2)`` of the union.
    """
    n = n_a + n_b
    if n == 0:
        return 0, 0.0, 0.0
    if n_a == 0:
        return n_b, mean_b, m2_b
    if n_b == 0:
        return n_a, mean_a, m2_a
    delta = mean_b - mean_a
    return n, mean_a + delta * (n_b / n), m2_a + m2_b + delta**2 * (n_a * n_b / n)


def fold_moments(n: int, mean: float, m2: float, differences: np.ndarray) -> tuple[int, float, float]:
    """Moments after adding a batch of differences to ``(n, mean, m2)``.

    Raises:
        InputError: the differences are not a 1-D array of finite numbers.
    """
    batch_n, batch_mean, batch_m2 = moments_of(differences)
    merged_n, merged_mean, merged_m2 = merge_moments(n, mean, m2, batch_n, batch_mean, batch_m2)
    return merged_n, float(merged_mean), float(merged_m2)


def sample_variance(n: int, m2: float) -> float:
    """Unbiased variance ``m2 / (n - 1)``; NaN below two rows."""
    return m2 / (n - 1) if n >= 2 else math.nan


# --------------------------------------------------------------------------------- confidence sequence
_STANDARD_NORMAL = NormalDist()


def normal_quantile(p: float) -> float:
    """The standard normal's ``p`` quantile (scipy's ``ndtri``; the stdlib's, so a flow run that only folds
    labels does not pay for importing scipy)."""
    return _STANDARD_NORMAL.inv_cdf(p)


def lambert_w_lower(x: float) -> float:
    """``W_{-1}(x)``, the lower real branch of Lambert's W, for ``-1/e <= x < 0`` (Halley's iteration).

    Raises:
        InputError: ``x`` outside ``[-1/e, 0)``.
    """
    if not -1.0 / math.e <= x < 0:
        raise InputError(f"W_-1 is real on [-1/e, 0) only, got {x}")
    # Start near the branch point from the series in sqrt(2 (1 + e x)), towards 0- from the asymptote.
    near_branch = x < -0.25
    w = -1.0 - math.sqrt(max(0.0, 2.0 * (1.0 + math.e * x))) if near_branch else math.log(-x) - math.log(-math.log(-x))
    for _ in range(64):
        ew = math.exp(w)
        f = w * ew - x
        if w == -1.0 or f == 0.0:
            break
        step = f / (ew * (w + 1.0) - (w + 2.0) * f / (2.0 * w + 2.0))
        w -= step
        if abs(step) <= 1e-15 * abs(w):
            break
    return w


def optimal_rho2(alpha: float, planned_rows: int) -> float:
    """Mixture parameter ``rho^2`` (for unit variance) making the boundary tightest at ``planned_rows``.

    Minimising the boundary of :func:`confidence_sequence` at ``t*`` over ``rho^2`` gives
    ``rho^2 = (-W_{-1}(-alpha^2 / e) - 1) / t*`` with ``W_{-1}`` the lower branch of Lambert's W
    (approximately ``(-2 log alpha + log(1 - 2 log alpha)) / t*``, the paper's closed form).

    Raises:
        InputError: alpha not in (0, 1) or planned_rows < 1.
    """
    if not 0 < alpha < 1:
        raise InputError(f"alpha must be in (0, 1), got {alpha}")
    if planned_rows < 1:
        raise InputError(f"planned_rows must be >= 1, got {planned_rows}")
    return float(-lambert_w_lower(-(alpha**2) / math.e) - 1.0) / planned_rows


def cs_radius(n: FloatOrArray, variance: FloatOrArray, alpha: float, planned_rows: int) -> FloatOrArray:
    """Half-width of the asymptotic confidence sequence (see :func:`confidence_sequence`), elementwise.

    Infinite below two rows or where the variance is unknown (NaN).
    """
    rho2 = optimal_rho2(alpha, planned_rows)
    t = np.asarray(n, dtype=np.float64)
    var = np.asarray(variance, dtype=np.float64)
    known = (t >= 2) & np.isfinite(var)
    t_safe = np.where(known, t, 2.0)
    grown = t_safe * rho2 + 1.0
    unit = np.sqrt(2.0 * grown / (t_safe**2 * rho2) * np.log(np.sqrt(grown) / alpha))
    radius = np.where(known, np.sqrt(np.maximum(np.where(known, var, 0.0), 0.0)) * unit, np.inf)
    return float(radius) if radius.ndim == 0 else radius


def confidence_sequence(n: int, mean: float, variance: float, alpha: float, planned_rows: int) -> tuple[float, float]:
    """Two-sided asymptotic confidence sequence for the mean (Gaussian-mixture boundary).

    Waudby-Smith, Arbour, Sinha, Kennedy and Ramdas, "Time-uniform central limit theory and asymptotic
    confidence sequences", Annals of Statistics 2024 (arXiv:2103.06476), Theorem 2.2::

        mean_t +- sigma_t * sqrt( 2 (t rho^2 + 1) / (t^2 rho^2) * log( sqrt(t rho^2 + 1) / alpha ) )

    with ``sigma_t`` the sample standard deviation after ``t`` rows. This is the paper's boundary
    written for the standardised sum (their ``rho`` times ``sigma_t`` is the ``rho`` here, as in the
    authors' reference code), with ``rho^2`` from :func:`optimal_rho2`: tightest at ``planned_rows``
    (about 1.55 times the fixed-sample 95% interval there), valid at every ``t``. It is Robbins'
    normal-mixture boundary, from Ville's inequality on the mixture martingale, applied through a strong
    Gaussian approximation, so its coverage ``P(mean in CS_t for all t) >= 1 - alpha`` holds
    asymptotically for any distribution with finite variance.

    Args:
        n: rows seen.
        mean: their mean.
        variance: their sample variance (NaN when unknown).
        alpha: miscoverage over the whole sequence (two-sided).
        planned_rows: where the boundary is tightest.

    Returns:
        ``(lower, upper)``; ``(-inf, inf)`` below two rows. Zero variance gives ``(mean, mean)``.

    Raises:
        InputError: alpha not in (0, 1) or planned_rows < 1.
    """
    radius = float(cs_radius(n, variance, alpha, planned_rows))
    if not math.isfinite(radius):
        return -math.inf, math.inf
    return mean - radius, mean + radius


def naive_z_interval(
    n: FloatOrArray, mean: FloatOrArray, variance: FloatOrArray, alpha: float
) -> tuple[FloatOrArray, FloatOrArray]:
    """Fixed-sample two-sided z interval ``mean +- z_{1-alpha/2} sqrt(variance / n)``, elementwise.

    Valid at one pre-planned sample size only; for comparison with :func:`confidence_sequence`.
    """
    radius = normal_quantile(1 - alpha / 2) * np.sqrt(np.asarray(variance, dtype=np.float64) / np.asarray(n))
    return mean - radius, mean + radius


def bounds_verdict(lower: FloatOrArray, upper: FloatOrArray, equivalence_margin: float | None) -> np.ndarray:
    """What an interval says, elementwise: ``promote``, ``reject`` or ``continue``.

    ``promote`` when ``upper < 0`` (candidate better) or, with a margin, ``-margin < lower`` and
    ``upper < margin`` (equivalent); ``reject`` when ``lower > margin`` (0 without one).
    """
    low = np.asarray(lower, dtype=np.float64)
    high = np.asarray(upper, dtype=np.float64)
    margin = equivalence_margin or 0.0
    promote = high < 0
    if equivalence_margin is not None:
        promote |= (low > -margin) & (high < margin)
    return np.where(promote, "promote", np.where(low > margin, "reject", "continue"))


def naive_z_verdict(
    n: FloatOrArray,
    mean: FloatOrArray,
    variance: FloatOrArray,
    alpha: float,
    equivalence_margin: float | None = None,
) -> np.ndarray:
    """The verdict of a fixed-sample z-test, as if it were peeked at after every batch (do not use).

    Same rules as :func:`driftline.statistics.shadow.decide` on :func:`naive_z_interval` instead of the confidence
    sequence; used in tests to show how peeking at a fixed-sample test inflates false promotions.
    """
    lower, upper = naive_z_interval(n, mean, variance, alpha)
    return bounds_verdict(lower, upper, equivalence_margin)


# ------------------------------------------------------------------------------------------- plain values
def finite_or_none(value: float | None) -> float | None:
    """``value`` as a float, None when it is None, NaN or infinite (stored JSON holds no NaN)."""
    return float(value) if value is not None and math.isfinite(value) else None


def optional_float(value: Any) -> float | None:
    """``float(value)``, None for None (an optional number read back from JSON)."""
    return None if value is None else float(value)


def format_interval(lower: float, upper: float) -> str:
    """``[lower, upper]`` with signs and four significant digits, as the verdicts' reasons print them."""
    return f"[{lower:+.4g}, {upper:+.4g}]"


# ---------------------------------------------------------------------------------------------- state
def history_point(
    batch_id: str, n: int, mean: float, m2: float, *, alpha: float, planned_rows: int, now: datetime
) -> dict[str, Any]:
    """One point of a test's history (for plots): the estimate and its CS after a batch.

    Bounds are ``None`` while infinite (below two rows), so the point is plain JSON.
    """
    lower, upper = confidence_sequence(n, mean, sample_variance(n, m2), alpha, planned_rows)
    return {
        "batch_id": batch_id,
        "at": now.isoformat(),
        "n": n,
        "estimate": mean if n else None,
        "lower": finite_or_none(lower),
        "upper": finite_or_none(upper),
    }


def require_aware(now: datetime) -> None:
    """Raise InputError unless ``now`` is timezone-aware (ages of tests are compared across hosts)."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise InputError(f"time {now.isoformat()} must be timezone-aware (e.g. datetime.now(UTC))")


class MomentsState:
    """What every sequential state keeps: the running moments of ``d`` and the batches folded in.

    A base of frozen dataclasses that declare these fields themselves (a plain class, so it adds no
    dataclass fields and each state keeps its own field order, the key order of its stored JSON).

    Attributes:
        model: model name.
        started_at: ISO time the test started.
        updated_at: ISO time of the last folded batch.
        n: rows folded in.
        mean: mean of ``d``.
        m2: sum of squared deviations of ``d`` from its mean.
        batch_ids: batches folded in, in order; a batch id seen again is ignored.
        history: one point per folded batch.
        verdict: the decision after the last batch.
    """

    model: str
    started_at: str
    updated_at: str
    n: int
    mean: float
    m2: float
    batch_ids: list[str]
    history: list[dict[str, Any]]
    verdict: str

    @property
    def variance(self) -> float:
        """Sample variance of ``d`` (NaN below two rows)."""
        return sample_variance(self.n, self.m2)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # every subclass is a dataclass


def moments_fields(data: Mapping[str, Any]) -> dict[str, Any]:
    """The :class:`MomentsState` fields of a stored state, typed (the rest is the subclass's to read)."""
    return {
        "model": str(data["model"]),
        "started_at": str(data["started_at"]),
        "updated_at": str(data["updated_at"]),
        "n": int(data["n"]),
        "mean": float(data["mean"]),
        "m2": float(data["m2"]),
        "batch_ids": [str(b) for b in data["batch_ids"]],
        "history": [dict(point) for point in data["history"]],
        "verdict": data["verdict"],
    }


class PairedState(MomentsState):
    """The state of a paired test (shadow, guard) of ``d = loss_a - loss_b`` on the same rows.

    Attributes:
        closed: the verdict is final; no more batches are folded in.
    """

    closed: bool


def paired_fields(data: Mapping[str, Any]) -> dict[str, Any]:
    """The :class:`PairedState` fields of a stored state, typed."""
    return {**moments_fields(data), "closed": bool(data["closed"])}


PairedT = TypeVar("PairedT", bound=PairedState)


def fold_paired(
    state: PairedT, differences: np.ndarray, batch_id: str, *, alpha: float, planned_rows: int, now: datetime
) -> PairedT:
    """A paired test's state with a batch of differences folded in, before it decides again.

    Returns:
        The new state, its history one point longer; ``state`` itself when the batch was seen or the test
        is closed.

    Raises:
        InputError: differences not 1-D and finite, or ``now`` not timezone-aware.
    """
    require_aware(now)
    if state.closed or batch_id in state.batch_ids:
        return state
    n, mean, m2 = fold_moments(state.n, state.mean, state.m2, differences)
    point = history_point(batch_id, n, mean, m2, alpha=alpha, planned_rows=planned_rows, now=now)
    return replace(
        state,
        updated_at=now.isoformat(),
        n=n,
        mean=mean,
        m2=m2,
        batch_ids=[*state.batch_ids, batch_id],
        history=[*state.history, point],
    )
