"""The champion's performance monitor: is the model in service doing worse than on its own holdout?

When labels arrive, each labelled row gives the champion's per-row loss (log loss or squared error, as in
the shadow test) and ``d = loss - baseline_loss``, its excess over the champion's mean loss on the holdout
it was validated on. A drop in performance is a positive mean of ``d``, watched through the shadow test's
anytime-valid confidence sequence (:func:`driftline.statistics.sequential.confidence_sequence`), so the monitor may be
looked at after every batch without inflating its error.

Two things a plain "confidence sequence of the running mean lies above 0" would get wrong:

* **The baseline is an estimate** from ``baseline_rows`` holdout rows. Had the holdout happened to be
  easy, rows from the very same distribution would look worse than it forever, and with enough rows any
  confidence sequence proves it: about half of all healthy champions would eventually be announced
  degraded. So the drop must exceed a tolerance that covers the baseline's own standard error,
  ``z_{1 - alpha/2} * baseline_sd / sqrt(baseline_rows)``, plus a margin of ``relative_margin`` times the
  baseline loss (:func:`tolerance`).
* **A late drop is diluted.** A champion that served well for months, then meets a concept change: the
  running mean since its start mixes the drop with every good row before it, and a cumulative test needs
  about as many rows again to notice. So every batch also starts a confidence sequence of its own (the
  rows since batch ``j``); the one started at the ``j``-th batch gets error ``alpha / 2 / (j (j + 1))``,
  which sum to ``alpha / 2`` (:func:`segment_alpha`). A drop that starts at batch ``j`` is then found from
  the rows after it, at the price of a boundary about ``sqrt(log j)`` wider. The stretch whose lower
  bound is highest names the onset.

Error budget: a champion whose loss has not risen above the baseline by more than the margin is announced
degraded, ever, with probability at most ``alpha``: ``alpha / 2`` for the baseline's sampling error (one
side), at most ``alpha / 2`` for all the sequences together (union bound).

Only sufficient statistics are kept: the running ``n``, mean and ``m2`` of ``d`` and, in ``history``,
each batch's own moments, from which the moments of every stretch are merged exactly (Chan et al.)::

    state = start_monitor("churn", champion="v6", baseline_loss=0.41, baseline_rows=4_000, now=now,
                          baseline_sd=0.52)
    state = fold_batch(state, per_row_loss("binary", y, p), "2024-05-01", spec.performance, now)
    verdict = decide(state, spec.performance)   # continue | ok | degraded
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from typing import Any, Literal

import numpy as np

from driftline.errors import InputError
from driftline.models.spec import PerformanceSpec
from driftline.statistics.metrics import Task, per_row_loss
from driftline.statistics.sequential import (
    MomentsState,
    cs_radius,
    finite_or_none,
    format_interval,
    merge_moments,
    moments_fields,
    moments_of,
    normal_quantile,
    require_aware,
    sample_variance,
)

PerformanceDecision = Literal["continue", "ok", "degraded"]
LOSS_KINDS: dict[str, str] = {"binary": "logloss", "regression": "squared_error"}


# ------------------------------------------------------------------------------------------- baseline
@dataclass(frozen=True)
class Baseline:
    """What a version's holdout says about its per-row loss (kept in its metadata as ``baseline``).

    Attributes:
        loss: mean per-row loss on the holdout.
        loss_sd: standard deviation of the per-row loss there.
        rows: holdout rows.
        loss_kind: ``logloss`` (binary) or ``squared_error`` (regression).
        prediction_profile: key of the whylogs profile of the holdout predictions, when stored.
    """

    loss: float
    loss_sd: float
    rows: int
    loss_kind: str
    prediction_profile: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Baseline:
        return cls(
            loss=float(data["loss"]),
            loss_sd=float(data["loss_sd"]),
            rows=int(data["rows"]),
            loss_kind=str(data["loss_kind"]),
            prediction_profile=data.get("prediction_profile"),
        )


def baseline_of(task: Task, y: np.ndarray, predictions: np.ndarray, prediction_profile: str | None = None) -> Baseline:
    """The holdout's per-row loss facts of a model.

    Raises:
        InputError: fewer than two rows, mismatched lengths, or losses that are not finite.
    """
    losses = per_row_loss(task, y, predictions)
    if losses.size < 2:
        raise InputError(f"a loss baseline needs at least 2 holdout rows, got {losses.size}")
    if not np.all(np.isfinite(losses)):
        raise InputError("holdout losses are NaN or infinite (labels or predictions hold NaN)")
    return Baseline(
        loss=float(losses.mean()),
        loss_sd=float(losses.std(ddof=1)),
        rows=int(losses.size),
        loss_kind=LOSS_KINDS[task],
        prediction_profile=prediction_profile,
    )


def baseline_from_metadata(metadata: Mapping[str, Any]) -> Baseline | None:
    """A version's baseline from its metadata; None for versions registered before baselines were kept."""
    data = metadata.get("baseline")
    return Baseline.from_dict(data) if data else None


# ------------------------------------------------------------------------------------ the statistics
def segment_alpha(alpha: float, index: int) -> float:
    """Error of the confidence sequence started at the ``index``-th batch (1-based).

    ``alpha / 2 / (index (index + 1))``: summed over every batch this is ``alpha / 2``, the half of the
    budget the sequences get (the other half covers the baseline's sampling error).
    """
    if index < 1:
        raise InputError(f"segment index is 1-based, got {index}")
    return alpha / 2 / (index * (index + 1))


def baseline_z(alpha: float) -> float:
    """How many baseline standard errors the tolerance allows: one side of ``alpha / 2``."""
    return normal_quantile(1 - alpha / 2)


def tolerance(baseline_loss: float, baseline_se: float, policy: PerformanceSpec) -> float:
    """Rise of the mean loss over the baseline that is not a degradation.

    ``z_{1 - alpha/2} * baseline_se + relative_margin * baseline_loss``: the baseline's own sampling error
    (a holdout that happened to be easy must not make healthy rows look worse) plus the policy's margin.
    """
    return baseline_z(policy.alpha) * baseline_se + policy.relative_margin * baseline_loss


def segment_moments(rows: np.ndarray, means: np.ndarray, m2s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Moments of every stretch "from batch j to the last", from the batches' own moments.

    Args:
        rows: rows per batch, shape ``(B,)``.
        means, m2s: each batch's mean and ``m2``, shape ``(B,)`` or ``(B, runs)`` (simulations).

    Returns:
        ``(n, mean, m2)`` of the stretches, indexed by their first batch; merged exactly (Chan et al.).
    """
    count = len(rows)
    n_out = np.zeros(count, dtype=np.int64)
    mean_out = np.zeros(np.shape(means), dtype=np.float64)
    m2_out = np.zeros(np.shape(m2s), dtype=np.float64)
    n, mean, m2 = 0, np.zeros(np.shape(means)[1:]), np.zeros(np.shape(means)[1:])
    for j in range(count - 1, -1, -1):
        n, mean, m2 = merge_moments(int(rows[j]), means[j], m2s[j], n, mean, m2)
        n_out[j], mean_out[j], m2_out[j] = n, mean, m2
    return n_out, mean_out, m2_out


def segment_bounds(
    n: np.ndarray, mean: np.ndarray, m2: np.ndarray, *, alpha: float, planned_rows: int
) -> tuple[np.ndarray, np.ndarray]:
    """Confidence sequences of the stretches of :func:`segment_moments`, each at its :func:`segment_alpha`.

    Returns:
        ``(lower, upper)``, shaped like ``mean``; infinite where a stretch has fewer than two rows.
    """
    lower = np.full(np.shape(mean), -np.inf)
    upper = np.full(np.shape(mean), np.inf)
    for j in range(len(n)):
        radius = cs_radius(n[j], sample_variance(int(n[j]), m2[j]), segment_alpha(alpha, j + 1), planned_rows)
        lower[j], upper[j] = mean[j] - radius, mean[j] + radius
    return lower, upper


# ---------------------------------------------------------------------------------------------- state
@dataclass(frozen=True)
class PerformanceState(MomentsState):
    """The monitor of one champion: sufficient statistics of ``d = row loss - baseline_loss``.

    Attributes:
        model: model name.
        champion: the champion version watched; a new champion starts a new monitor.
        baseline_loss: the champion's mean per-row loss on its holdout.
        baseline_rows: holdout rows behind ``baseline_loss``.
        started_at: ISO time the monitor started.
        updated_at: ISO time of the last folded batch.
        baseline_sd: sd of the holdout's per-row loss; None when unknown (the served rows' sd stands in).
        n: labelled rows folded in.
        mean: mean of ``d``.
        m2: sum of squared deviations of ``d`` from its mean (``variance`` = ``m2 / (n - 1)``).
        batch_ids: batches folded in, in order; a batch id seen again is ignored.
        history: after each batch ``{"batch_id", "at", "rows", "loss", "batch_mean", "batch_m2", "n",
            "estimate", "lower", "upper", "tolerance", "verdict", "since"}``: the batch's own rows, mean
            loss and moments of ``d``, then the rows so far and the verdict's estimate and bounds.
        verdict: the decision after the last batch.
        alerted: the champion was found degraded and one evaluation claimed its announcement (set once, by
            compare-and-swap, so concurrent evaluations of different batches do not both announce).
        alerted_at / alerted_batch_id: when, and the batch whose evaluation claimed it; only a run of that
            batch announces, so a retried run still can.
        alert_event_id: the announcement's event id once it was sent; no run announces after that.
    """

    model: str
    champion: str
    baseline_loss: float
    baseline_rows: int
    started_at: str
    updated_at: str
    baseline_sd: float | None = None
    n: int = 0
    mean: float = 0.0
    m2: float = 0.0
    batch_ids: list[str] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)
    verdict: PerformanceDecision = "continue"
    alerted: bool = False
    alerted_at: str | None = None
    alerted_batch_id: str | None = None
    alert_event_id: str | None = None

    @property
    def baseline_se(self) -> float:
        """Standard error of ``baseline_loss``; from the served rows' sd when the holdout's is unknown."""
        if self.baseline_sd is not None:
            return self.baseline_sd / math.sqrt(self.baseline_rows)
        return math.sqrt(self.variance / self.baseline_rows) if self.n >= 2 else math.nan

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "variance": finite_or_none(self.variance)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PerformanceState:
        sd = data.get("baseline_sd")
        return cls(
            **moments_fields(data),
            champion=str(data["champion"]),
            baseline_loss=float(data["baseline_loss"]),
            baseline_rows=int(data["baseline_rows"]),
            baseline_sd=None if sd is None else float(sd),
            alerted=bool(data["alerted"]),
            alerted_at=data.get("alerted_at"),
            alerted_batch_id=data.get("alerted_batch_id"),
            alert_event_id=data.get("alert_event_id"),
        )


def start_monitor(
    model: str,
    champion: str,
    baseline_loss: float,
    baseline_rows: int,
    now: datetime,
    baseline_sd: float | None = None,
) -> PerformanceState:
    """A new monitor of ``champion`` with no labelled rows yet.

    Args:
        baseline_loss: the champion's mean per-row loss on its holdout.
        baseline_rows: holdout rows behind it (its standard error shrinks with them).
        now: timezone-aware current time.
        baseline_sd: sd of the holdout's per-row loss; None: estimated from the served rows.

    Raises:
        InputError: a baseline that is not a finite loss, fewer than two baseline rows, a negative sd,
            or ``now`` without a timezone.
    """
    require_aware(now)
    if not math.isfinite(baseline_loss) or baseline_loss < 0:
        raise InputError(f"{model} {champion}: baseline loss must be a finite loss >= 0, got {baseline_loss}")
    if baseline_rows < 2:
        raise InputError(f"{model} {champion}: the baseline needs at least 2 holdout rows, got {baseline_rows}")
    if baseline_sd is not None and not (math.isfinite(baseline_sd) and baseline_sd >= 0):
        raise InputError(f"{model} {champion}: baseline sd must be finite and >= 0, got {baseline_sd}")
    stamp = now.isoformat()
    return PerformanceState(
        model=model,
        champion=champion,
        baseline_loss=float(baseline_loss),
        baseline_rows=int(baseline_rows),
        started_at=stamp,
        updated_at=stamp,
        baseline_sd=None if baseline_sd is None else float(baseline_sd),
    )


def fold_batch(
    state: PerformanceState, losses: np.ndarray, batch_id: str, policy: PerformanceSpec, now: datetime
) -> PerformanceState:
    """Fold a labelled batch's per-row losses of the champion into the monitor and decide again.

    Args:
        state: the current state (not modified).
        losses: the champion's per-row loss on the batch's labelled rows (not yet minus the baseline).
        batch_id: the batch's id; a batch already folded in returns ``state`` unchanged.
        policy: the model's performance policy.
        now: timezone-aware current time.

    Raises:
        InputError: losses not 1-D and finite, or ``now`` not timezone-aware.
    """
    require_aware(now)
    if batch_id in state.batch_ids:
        return state
    rows, batch_loss, batch_m2 = moments_of(losses, f"losses of batch {batch_id}", f"loss(es) of batch {batch_id}")
    batch_mean = batch_loss - state.baseline_loss if rows else 0.0
    n, mean, m2 = merge_moments(state.n, state.mean, state.m2, rows, batch_mean, batch_m2)
    point: dict[str, Any] = {
        "batch_id": batch_id,
        "at": now.isoformat(),
        "rows": rows,
        "loss": batch_loss if rows else None,
        "batch_mean": batch_mean,
        "batch_m2": batch_m2,
    }
    folded = replace(
        state,
        updated_at=now.isoformat(),
        n=int(n),
        mean=float(mean),
        m2=float(m2),
        batch_ids=[*state.batch_ids, batch_id],
        history=[*state.history, point],
    )
    verdict = decide(folded, policy)
    point = {
        **point,
        "n": folded.n,
        "estimate": finite_or_none(verdict.estimate),
        "lower": finite_or_none(verdict.lower),
        "upper": finite_or_none(verdict.upper),
        "tolerance": finite_or_none(verdict.tolerance),
        "verdict": verdict.verdict,
        "since": verdict.since_batch_id,
    }
    return replace(folded, history=[*state.history, point], verdict=verdict.verdict)


def mark_alerted(
    state: PerformanceState, verdict: PerformanceVerdict, batch_id: str, now: datetime
) -> tuple[PerformanceState, bool]:
    """Claim the announcement of a degraded champion for ``batch_id``; True only for the call that claims it.

    Applied inside a compare-and-swap, so of two runs that both see the champion degraded, one announces.
    """
    if state.alerted or verdict.verdict != "degraded":
        return state, False
    return replace(state, alerted=True, alerted_at=now.isoformat(), alerted_batch_id=batch_id), True


def should_announce(state: PerformanceState, batch_id: str) -> bool:
    """Whether the evaluation of ``batch_id`` is to send the announcement: it claimed it, and it is not sent.

    A run that claimed it and failed before sending is retried with the same batch and sends it then.
    """
    return state.alerted and state.alerted_batch_id == batch_id and state.alert_event_id is None


def record_announcement(state: PerformanceState, event_id: str) -> PerformanceState:
    """The state once the announcement was sent (idempotent)."""
    if state.alert_event_id is not None:
        return state
    return replace(state, alert_event_id=event_id)


# -------------------------------------------------------------------------------------------- verdict
@dataclass(frozen=True)
class PerformanceVerdict:
    """What the monitor says, with the numbers behind it.

    ``estimate``, ``lower`` and ``upper`` are the mean of ``d = row loss - baseline_loss`` and its
    confidence sequence over ``n`` rows: of the stretch since ``since_batch_id`` that shows the drop when
    degraded, else of every row since the champion's monitor started. ``degraded``: ``lower > tolerance``.
    """

    verdict: PerformanceDecision
    n: int
    estimate: float
    lower: float
    upper: float
    tolerance: float
    baseline_loss: float
    reasons: list[str]
    since_batch_id: str | None = None
    segment_alpha: float | None = None

    @property
    def degraded(self) -> bool:
        return self.verdict == "degraded"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("estimate", "lower", "upper", "tolerance"):
            data[key] = finite_or_none(data[key])
        return data


def decide(state: PerformanceState, policy: PerformanceSpec) -> PerformanceVerdict:
    """Decide from the state (pure; valid when checked after every batch).

    Rules, for every stretch of batches "since batch j" with at least ``min_rows`` rows, on its confidence
    sequence ``[lower, upper]`` of the mean of ``d`` (error :func:`segment_alpha`):

    * some stretch has ``lower > tolerance``: ``degraded``; the stretch with the highest lower bound is
      reported, its first batch is the onset;
    * otherwise, every row since the start has ``upper < tolerance``: ``ok`` (proven within tolerance);
    * otherwise (or below ``min_rows`` rows): ``continue``.
    """
    z = baseline_z(policy.alpha)
    limit = tolerance(state.baseline_loss, state.baseline_se, policy)
    how = (
        f"tolerance {limit:.4g} = {z:.2f} x the baseline's standard error {state.baseline_se:.4g} "
        f"({state.baseline_rows:,} holdout rows) + {policy.relative_margin:.1%} of the baseline loss "
        f"{state.baseline_loss:.4g}"
    )

    def verdict(decision: PerformanceDecision, reasons: list[str], j: int | None = None) -> PerformanceVerdict:
        if j is None:
            estimate = state.mean if state.n else math.nan
            return PerformanceVerdict(
                decision, state.n, estimate, -math.inf, math.inf, limit, state.baseline_loss, reasons
            )
        return PerformanceVerdict(
            decision,
            int(n[j]),
            float(mean[j]),
            float(lower[j]),
            float(upper[j]),
            limit,
            state.baseline_loss,
            reasons,
            state.batch_ids[j],
            segment_alpha(policy.alpha, j + 1),
        )

    if state.n < policy.min_rows:
        return verdict("continue", [f"{state.n} of min_rows {policy.min_rows} labelled rows"])
    rows = np.array([point["rows"] for point in state.history], dtype=np.int64)
    n, mean, m2 = segment_moments(
        rows,
        np.array([point["batch_mean"] for point in state.history], dtype=np.float64),
        np.array([point["batch_m2"] for point in state.history], dtype=np.float64),
    )
    lower, upper = segment_bounds(n, mean, m2, alpha=policy.alpha, planned_rows=policy.planned_rows)
    eligible = n >= policy.min_rows
    firing = eligible & (lower > limit)
    if firing.any():
        j = int(np.argmax(np.where(firing, lower, -np.inf)))
        batches = len(state.batch_ids) - j
        return verdict(
            "degraded",
            [
                f"loss rose by {mean[j]:+.4g} over the holdout baseline {state.baseline_loss:.4g} on the "
                f"{n[j]:,} rows of the {batches} batch(es) since {state.batch_ids[j]}: anytime-valid interval "
                f"{format_interval(lower[j], upper[j])} lies above the {how}"
            ],
            j,
        )
    where = (
        f"mean loss {state.baseline_loss + mean[0]:.4g} vs holdout {state.baseline_loss:.4g}, "
        f"excess {mean[0]:+.4g} over {n[0]:,} rows, anytime-valid interval {format_interval(lower[0], upper[0])}"
    )
    if upper[0] < limit:
        return verdict("ok", [f"within tolerance since the champion's monitor started: {where}; {how}"], 0)
    return verdict("continue", [f"no drop shown: {where}; no stretch of batches lies above the {how}"], 0)
