"""Shadow verdict: a paired, anytime-valid sequential test of a candidate against the champion.

Both models score the same rows; once labels arrive each row gives a paired loss difference
``d = loss_candidate - loss_champion`` (log loss for binary, squared error for regression), so negative
means the candidate is better. The running mean of ``d`` is watched through an asymptotic confidence
sequence (Waudby-Smith et al., see :func:`confidence_sequence`): unlike a fixed-sample interval it is
valid uniformly over time, so the test may be looked at after every batch without inflating errors.
A fixed-sample z-test peeked at after every batch would inflate them (:func:`naive_z_verdict`, kept
for comparison: equal models peeked every 500 rows up to 20,000 at alpha 0.05 are promoted in about
14% of runs by it, in under 1% by this test; tests/unit/test_shadow.py measures both).

Only sufficient statistics are kept (``n``, mean, ``m2``), merged batch by batch with Chan et al.'s
parallel update, so folding batches one at a time equals computing on all rows at once. A batch id
already folded in is ignored, so a retried flow cannot count rows twice::

    state = start_shadow("churn", candidate="v7", champion="v6", now=now)
    d = paired_differences("binary", y, p_candidate, p_champion)
    state = fold_batch(state, d, "2024-05-01", policy=spec.shadow, now=now)
    verdict = decide(state, spec.shadow, now)   # continue | promote | reject | inconclusive
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from statistics import NormalDist
from typing import Any, Literal

import numpy as np

from driftline.errors import InputError
from driftline.spec import ShadowSpec
from driftline.training import Task, per_row_loss

ShadowDecision = Literal["continue", "promote", "reject", "inconclusive"]
FloatOrArray = float | np.ndarray
SECONDS_PER_DAY = 86_400.0


# ------------------------------------------------------------------------------------------- moments
def moments_of(values: np.ndarray) -> tuple[int, float, float]:
    """Count, mean and sum of squared deviations (``m2``) of a 1-D array, in two passes.

    Raises:
        InputError: the values are not a 1-D array of finite numbers.
    """
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise InputError(f"differences must be a 1-D array, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise InputError(f"{int(np.sum(~np.isfinite(array)))} loss difference(s) are NaN or infinite")
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

    Same rules as :func:`decide` on :func:`naive_z_interval` instead of the confidence sequence; used in
    tests to show how peeking at a fixed-sample test inflates false promotions.
    """
    lower, upper = naive_z_interval(n, mean, variance, alpha)
    return bounds_verdict(lower, upper, equivalence_margin)


# --------------------------------------------------------------------------------------------- losses
def per_row_losses(task: Task, y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Per-row loss: log loss (probabilities clipped to [1e-7, 1 - 1e-7]) or squared error.

    Raises:
        InputError: labels and predictions differ in shape.
    """
    return per_row_loss(task, y, p)


def paired_differences(task: Task, y: np.ndarray, candidate: np.ndarray, champion: np.ndarray) -> np.ndarray:
    """``loss_candidate - loss_champion`` on the same rows (negative: candidate better).

    Raises:
        InputError: labels and predictions differ in shape.
    """
    return per_row_losses(task, y, candidate) - per_row_losses(task, y, champion)


# ---------------------------------------------------------------------------------------------- state
def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


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
        "lower": _finite_or_none(lower),
        "upper": _finite_or_none(upper),
    }


def require_aware(now: datetime) -> None:
    """Raise InputError unless ``now`` is timezone-aware (ages of tests are compared across hosts)."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise InputError(f"time {now.isoformat()} must be timezone-aware (e.g. datetime.now(UTC))")


@dataclass(frozen=True)
class ShadowState:
    """A shadow test's running state: sufficient statistics of ``d = loss_candidate - loss_champion``.

    Attributes:
        model: model name.
        candidate: candidate version in shadow.
        champion: champion version it is compared with.
        started_at: ISO time the shadow test started (the ``max_days`` budget counts from here).
        updated_at: ISO time of the last folded batch.
        n: paired labelled rows folded in.
        mean: mean of ``d``.
        m2: sum of squared deviations of ``d`` from its mean.
        batch_ids: batches folded in, in order; a batch id seen again is ignored.
        history: after each batch ``{"batch_id", "at", "n", "estimate", "lower", "upper"}``.
        latency_p99_ms: latest known p99 scoring latency ``{"candidate_ms", "champion_ms"}``; the latest,
            not the running maximum, so one slow batch (a cold start, a noisy neighbour) does not block a
            promotion forever, while a lasting slowdown still does.
        verdict: the decision after the last batch.
        closed: the verdict is final (promote, reject or inconclusive); no more batches are folded in.
    """

    model: str
    candidate: str
    champion: str
    started_at: str
    updated_at: str
    n: int = 0
    mean: float = 0.0
    m2: float = 0.0
    batch_ids: list[str] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)
    latency_p99_ms: dict[str, float | None] = field(default_factory=lambda: {"candidate_ms": None, "champion_ms": None})
    verdict: ShadowDecision = "continue"
    closed: bool = False

    @property
    def variance(self) -> float:
        """Sample variance of ``d`` (NaN below two rows)."""
        return sample_variance(self.n, self.m2)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ShadowState:
        latency = data.get("latency_p99_ms") or {}
        return cls(
            model=str(data["model"]),
            candidate=str(data["candidate"]),
            champion=str(data["champion"]),
            started_at=str(data["started_at"]),
            updated_at=str(data["updated_at"]),
            n=int(data["n"]),
            mean=float(data["mean"]),
            m2=float(data["m2"]),
            batch_ids=[str(b) for b in data["batch_ids"]],
            history=[dict(point) for point in data["history"]],
            latency_p99_ms={
                "candidate_ms": _optional_float(latency.get("candidate_ms")),
                "champion_ms": _optional_float(latency.get("champion_ms")),
            },
            verdict=data["verdict"],
            closed=bool(data["closed"]),
        )


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


def start_shadow(model: str, candidate: str, champion: str, *, now: datetime) -> ShadowState:
    """A new shadow test with no rows yet.

    Raises:
        InputError: ``now`` is not timezone-aware, or candidate and champion are the same version.
    """
    require_aware(now)
    if candidate == champion:
        raise InputError(f"{model}: candidate and champion are both {candidate!r}")
    stamp = now.isoformat()
    return ShadowState(model=model, candidate=candidate, champion=champion, started_at=stamp, updated_at=stamp)


def fold_batch(
    state: ShadowState,
    differences: np.ndarray,
    batch_id: str,
    *,
    policy: ShadowSpec,
    now: datetime,
    candidate_p99_ms: float | None = None,
    champion_p99_ms: float | None = None,
) -> ShadowState:
    """Fold a batch of paired loss differences into the test and decide again.

    Args:
        state: the current state (not modified).
        differences: ``loss_candidate - loss_champion`` per labelled row of the batch.
        batch_id: the batch's id; a batch already folded in returns ``state`` unchanged.
        policy: the model's shadow policy.
        now: timezone-aware current time.
        candidate_p99_ms: candidate's p99 scoring latency on this batch, if measured.
        champion_p99_ms: champion's p99 scoring latency on this batch, if measured.

    Returns:
        The new state; ``state`` itself when the batch was seen or the test is closed.

    Raises:
        InputError: differences not 1-D and finite, or ``now`` not timezone-aware.
    """
    require_aware(now)
    if state.closed or batch_id in state.batch_ids:
        return state
    n, mean, m2 = fold_moments(state.n, state.mean, state.m2, differences)
    latency = dict(state.latency_p99_ms)
    if candidate_p99_ms is not None:
        latency["candidate_ms"] = float(candidate_p99_ms)
    if champion_p99_ms is not None:
        latency["champion_ms"] = float(champion_p99_ms)
    point = history_point(batch_id, n, mean, m2, alpha=policy.alpha, planned_rows=policy.planned_rows, now=now)
    folded = replace(
        state,
        updated_at=now.isoformat(),
        n=n,
        mean=mean,
        m2=m2,
        batch_ids=[*state.batch_ids, batch_id],
        history=[*state.history, point],
        latency_p99_ms=latency,
    )
    verdict = decide(folded, policy, now).verdict
    return replace(folded, verdict=verdict, closed=verdict != "continue")


# -------------------------------------------------------------------------------------------- verdict
@dataclass(frozen=True)
class ShadowVerdict:
    """The shadow test's decision, with the numbers behind it.

    ``lower``/``upper`` bound the mean loss difference (candidate minus champion) by the
    ``1 - alpha`` confidence sequence; infinite below two rows.
    """

    verdict: ShadowDecision
    n: int
    estimate: float
    lower: float
    upper: float
    reasons: list[str]
    latency_ok: bool | None = None

    @property
    def final(self) -> bool:
        """Whether the test ends here (anything but continue)."""
        return self.verdict != "continue"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("estimate", "lower", "upper"):
            data[key] = _finite_or_none(data[key])
        return data


def latency_check(
    candidate_ms: float | None, champion_ms: float | None, max_ratio: float | None, slack_ms: float = 0.0
) -> tuple[bool | None, str | None]:
    """Whether the candidate's p99 latency is within ``max_ratio`` times the champion's plus ``slack_ms``.

    The slack keeps sub-millisecond timings (where one scheduler hiccup doubles a p99) from rejecting
    a better model.

    Returns:
        ``(ok, reason)``: ``ok`` is None when either latency or the ratio is unknown.
    """
    if max_ratio is None or candidate_ms is None or champion_ms is None:
        return None, None
    limit = max_ratio * champion_ms + slack_ms
    if candidate_ms > limit:
        return False, (
            f"candidate p99 latency {candidate_ms:.2f} ms > {max_ratio:g} x champion p99 {champion_ms:.2f} ms "
            f"+ {slack_ms:g} ms slack = {limit:.2f} ms"
        )
    return True, None


def _interval(lower: float, upper: float) -> str:
    return f"[{lower:+.4g}, {upper:+.4g}]"


def decide(state: ShadowState, policy: ShadowSpec, now: datetime) -> ShadowVerdict:
    """Decide the shadow test from its state (pure; checking after every batch is valid).

    Rules, on the ``1 - alpha`` confidence sequence ``[lower, upper]`` of the mean of
    ``d = loss_candidate - loss_champion``:

    * fewer than ``min_rows`` rows: no verdict from the data (continue, or inconclusive once the day
      budget is spent, so a model whose labels trickle in does not stay in shadow forever);
    * ``upper < 0``: promote, the candidate is better; with ``equivalence_margin`` m, also
      ``-m < lower`` and ``upper < m``: promote, equivalent within the margin;
    * ``lower > m`` (0 without a margin): reject, the candidate is worse beyond the margin;
    * ``n >= max_rows``, ``max_batches`` batches compared, or (when set) ``max_days`` of event time since the
      start: inconclusive;
    * otherwise continue.

    A promote verdict becomes reject when the candidate's p99 latency exceeds ``max_latency_ratio``
    times the champion's plus ``latency_slack_ms`` (when both are known and the ratio is set).

    Raises:
        InputError: ``now`` is not timezone-aware.
    """
    require_aware(now)
    lower, upper = confidence_sequence(state.n, state.mean, state.variance, policy.alpha, policy.planned_rows)
    level = f"{100 * (1 - policy.alpha):g}% CS"
    margin = policy.equivalence_margin
    latency_ok, latency_reason = latency_check(
        state.latency_p99_ms.get("candidate_ms"),
        state.latency_p99_ms.get("champion_ms"),
        policy.max_latency_ratio,
        policy.latency_slack_ms,
    )
    days = (now - datetime.fromisoformat(state.started_at)).total_seconds() / SECONDS_PER_DAY
    batches = len(state.batch_ids)
    out_of_rows = state.n >= policy.max_rows
    out_of_batches = policy.max_batches is not None and batches >= policy.max_batches
    out_of_days = policy.max_days is not None and days >= policy.max_days

    def verdict(decision: ShadowDecision, reasons: list[str]) -> ShadowVerdict:
        estimate = state.mean if state.n else math.nan
        return ShadowVerdict(decision, state.n, estimate, lower, upper, reasons, latency_ok)

    budget_reasons = []
    if out_of_rows:
        budget_reasons.append(f"row budget spent: {state.n} >= max_rows {policy.max_rows}")
    if out_of_batches:
        budget_reasons.append(f"batch budget spent: {batches} >= max_batches {policy.max_batches}")
    if out_of_days:
        budget_reasons.append(f"time budget spent: {days:.2f} days >= max_days {policy.max_days:g}")
        if state.n < policy.min_rows:
            per_batch = days / max(batches, 1)
            budget_reasons.append(
                f"at this cadence ({batches} labelled batch(es), {per_batch:.2f} days each) shadow.max_days cannot "
                f"hold min_rows {policy.min_rows}: raise it, or unset it to budget in rows and batches only"
            )

    if state.n < policy.min_rows:
        waiting = f"{state.n} of min_rows {policy.min_rows} labelled rows"
        if budget_reasons:
            return verdict("inconclusive", [*budget_reasons, f"only {waiting}"])
        return verdict("continue", [waiting])

    where = f"mean loss difference {state.mean:+.4g} (candidate - champion), {level} {_interval(lower, upper)}"
    evidence = bounds_verdict(lower, upper, margin).item()
    if evidence == "promote":
        if upper < 0:
            reasons = [f"candidate better at n={state.n}: {where} entirely below 0"]
        else:
            reasons = [f"candidate equivalent within margin {margin:g} at n={state.n}: {where} inside +-{margin:g}"]
        if latency_ok is False:
            return verdict("reject", [*reasons, f"but {latency_reason}"])
        return verdict("promote", reasons)
    if evidence == "reject":
        return verdict("reject", [f"candidate worse at n={state.n}: {where} entirely above {margin or 0:g}"])
    needed = "upper < 0 or lower > 0" if margin is None else f"upper < 0, inside +-{margin:g}, or lower > {margin:g}"
    undecided = f"undecided at n={state.n}: {where} (needs {needed})"
    if budget_reasons:
        return verdict("inconclusive", [*budget_reasons, undecided])
    return verdict("continue", [undecided])
