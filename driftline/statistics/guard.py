"""Post-promotion guard: the previous champion keeps scoring beside the new one; roll back on evidence.

The same paired, anytime-valid test as the shadow verdict (:mod:`driftline.statistics.shadow`, both on the kit of
:mod:`driftline.statistics.sequential`), on
``d = loss_new - loss_previous``: the new champion is rolled back as soon as the confidence sequence
proves it worse (``lower > 0``), checked after every batch; the guard ends, keeping the new champion,
after ``max_rows`` rows. Only proven harm triggers a rollback, so an equal or better new champion is
rolled back with probability at most about ``alpha / 2`` (one side of the two-sided sequence).

The confidence sequence is tuned to be tightest at the geometric mean of ``min_rows`` and ``max_rows``
(``GuardSpec`` has no ``planned_rows``): the middle of the guard's range on a log scale, early enough
to catch a clear regression soon and still tight by the end.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from typing import Any, Literal

import numpy as np

from driftline.errors import InputError
from driftline.models.spec import GuardSpec
from driftline.statistics.sequential import (
    PairedState,
    confidence_sequence,
    finite_or_none,
    fold_paired,
    format_interval,
    paired_fields,
    require_aware,
)

GuardDecision = Literal["watch", "rollback", "keep"]


def guard_planned_rows(policy: GuardSpec) -> int:
    """Rows at which the guard's confidence sequence is tightest: ``sqrt(min_rows * max_rows)``."""
    return max(1, round(math.sqrt(policy.min_rows * policy.max_rows)))


@dataclass(frozen=True)
class GuardState(PairedState):
    """A guard's running state: sufficient statistics of ``d = loss_new - loss_previous``.

    Attributes:
        model: model name.
        new_champion: the version just promoted.
        previous: the champion it replaced, still scoring in shadow.
        started_at: ISO time of the promotion.
        updated_at: ISO time of the last folded batch.
        n: paired labelled rows folded in.
        mean: mean of ``d``.
        m2: sum of squared deviations of ``d`` from its mean.
        batch_ids: batches folded in; a batch id seen again is ignored.
        history: after each batch ``{"batch_id", "at", "n", "estimate", "lower", "upper"}``.
        verdict: the decision after the last batch.
        closed: the guard ended (rollback or keep); no more batches are folded in.
    """

    model: str
    new_champion: str
    previous: str
    started_at: str
    updated_at: str
    n: int = 0
    mean: float = 0.0
    m2: float = 0.0
    batch_ids: list[str] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)
    verdict: GuardDecision = "watch"
    closed: bool = False

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GuardState:
        return cls(**paired_fields(data), new_champion=str(data["new_champion"]), previous=str(data["previous"]))


@dataclass(frozen=True)
class GuardVerdict:
    """The guard's decision, with the confidence sequence of the mean of ``loss_new - loss_previous``."""

    verdict: GuardDecision
    n: int
    estimate: float
    lower: float
    upper: float
    reasons: list[str]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("estimate", "lower", "upper"):
            data[key] = finite_or_none(data[key])
        return data


def start_guard(model: str, new_champion: str, previous: str, *, now: datetime) -> GuardState:
    """A new guard with no rows yet.

    Raises:
        InputError: ``now`` is not timezone-aware, or both versions are the same.
    """
    require_aware(now)
    if new_champion == previous:
        raise InputError(f"{model}: new and previous champion are both {new_champion!r}")
    stamp = now.isoformat()
    return GuardState(model=model, new_champion=new_champion, previous=previous, started_at=stamp, updated_at=stamp)


def fold_batch(
    state: GuardState, differences: np.ndarray, batch_id: str, *, policy: GuardSpec, now: datetime
) -> GuardState:
    """Fold a batch of ``loss_new - loss_previous`` into the guard and decide again.

    Returns:
        The new state; ``state`` itself when the batch was seen or the guard is closed.

    Raises:
        InputError: differences not 1-D and finite, or ``now`` not timezone-aware.
    """
    folded = fold_paired(
        state, differences, batch_id, alpha=policy.alpha, planned_rows=guard_planned_rows(policy), now=now
    )
    if folded is state:
        return state
    verdict = decide_rollback(folded, policy).verdict
    return replace(folded, verdict=verdict, closed=verdict != "watch")


def decide_rollback(state: GuardState, policy: GuardSpec) -> GuardVerdict:
    """Whether to roll back the new champion (pure; checking after every batch is valid).

    * guard disabled: keep;
    * ``min_rows`` reached and ``lower > 0`` (new champion worse with confidence): rollback;
    * ``n >= max_rows``: keep, the guard ends;
    * otherwise: watch.
    """
    lower, upper = confidence_sequence(state.n, state.mean, state.variance, policy.alpha, guard_planned_rows(policy))
    estimate = state.mean if state.n else math.nan

    def verdict(decision: GuardDecision, reason: str) -> GuardVerdict:
        return GuardVerdict(decision, state.n, estimate, lower, upper, [reason])

    if not policy.enabled:
        return verdict("keep", "guard disabled")
    where = (
        f"mean loss difference {state.mean:+.4g} ({state.new_champion} - {state.previous}), "
        f"{100 * (1 - policy.alpha):g}% CS {format_interval(lower, upper)}"
    )
    if state.n >= policy.min_rows and lower > 0:
        return verdict("rollback", f"{state.new_champion} worse than {state.previous} at n={state.n}: {where} above 0")
    if state.n >= policy.max_rows:
        return verdict("keep", f"guard ended: {state.n} >= max_rows {policy.max_rows} without harm proven; {where}")
    if state.n < policy.min_rows:
        return verdict("watch", f"{state.n} of min_rows {policy.min_rows} labelled rows")
    return verdict("watch", f"no harm proven at n={state.n}: {where}")
