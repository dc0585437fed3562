"""Post-promotion guard: roll back a new champion proven worse than the one it replaced.

Simulated guards (vectorised across runs with the module's own merge, radius and planned rows) are
checked after every batch, as the flow does; ``pytest -s`` prints the measured rates.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import numpy as np
import pytest

from driftline.models.spec import GuardSpec
from driftline.statistics.guard import (
    GuardState,
    decide_rollback,
    fold_batch,
    guard_planned_rows,
    start_guard,
)
from driftline.statistics.sequential import cs_radius, merge_moments

T0 = datetime(2024, 6, 1, tzinfo=UTC)
RUNS = 2_000
BATCH_ROWS = 500
SD = 0.5
POLICY = GuardSpec(alpha=0.05, min_rows=1_000, max_rows=20_000)


def simulate_rollbacks(mean_difference: float, policy: GuardSpec = POLICY, *, seed: int) -> np.ndarray:
    """Rows at which each run rolled back (-1: kept at max_rows), peeking after every batch."""
    rng = np.random.default_rng(seed)
    n, mean, m2 = 0, np.zeros(RUNS), np.zeros(RUNS)
    rolled_back_at = np.full(RUNS, -1)
    while n < policy.max_rows:
        batch = rng.normal(mean_difference, SD, size=(RUNS, BATCH_ROWS))
        batch_mean = batch.mean(axis=1)
        n, mean, m2 = merge_moments(n, mean, m2, BATCH_ROWS, batch_mean, np.sum((batch - batch_mean[:, None]) ** 2, 1))
        if n < policy.min_rows:
            continue
        lower = mean - cs_radius(n, m2 / (n - 1), policy.alpha, guard_planned_rows(policy))
        rolled_back_at[(rolled_back_at < 0) & (lower > 0)] = n
    return rolled_back_at


def _guard_with(values: np.ndarray, policy: GuardSpec = POLICY) -> GuardState:
    return fold_batch(start_guard("m", "v2", "v1", now=T0), values, "b1", policy=policy, now=T0)


def test_equal_new_champion_is_not_rolled_back_in_at_least_1_minus_alpha_of_runs() -> None:
    rolled_back = np.mean(simulate_rollbacks(0.0, seed=21) >= 0)
    print(f"\n[guard] equal N(0, 0.5^2), {RUNS} runs peeked every {BATCH_ROWS} rows: rollback rate {rolled_back:.4f}")
    assert rolled_back <= POLICY.alpha


def test_worse_new_champion_is_rolled_back_with_power_growing_with_rows() -> None:
    rolled_back_at = simulate_rollbacks(0.03, seed=22)
    table = {rows: float(np.mean((rolled_back_at >= 0) & (rolled_back_at <= rows))) for rows in (2_000, 5_000, 20_000)}
    print(
        "\n[guard] worse N(+0.03, 0.5^2), rolled back by rows: "
        + ", ".join(f"{rows}: {share:.3f}" for rows, share in table.items())
    )
    assert table[20_000] >= 0.95


def test_worse_new_champion_is_rolled_back_with_evidence() -> None:
    rng = np.random.default_rng(23)
    state = start_guard("m", "v2", "v1", now=T0)
    for index in range(40):
        state = fold_batch(state, rng.normal(0.1, SD, BATCH_ROWS), f"b{index}", policy=POLICY, now=T0)
        if state.closed:
            break
    verdict = decide_rollback(state, POLICY)
    assert state.verdict == verdict.verdict == "rollback"
    assert verdict.lower > 0 and verdict.n >= POLICY.min_rows
    assert verdict.reasons[0].startswith(f"v2 worse than v1 at n={verdict.n}: mean loss difference +0.")
    assert "95% CS [" in verdict.reasons[0]


def test_guard_keeps_the_new_champion_at_max_rows() -> None:
    policy = GuardSpec(min_rows=1_000, max_rows=5_000)
    state = _guard_with(np.random.default_rng(24).normal(0.0, SD, 4_999), policy)
    assert decide_rollback(state, policy).verdict == "watch" and not state.closed
    state = fold_batch(state, np.array([0.0]), "b2", policy=policy, now=T0)
    verdict = decide_rollback(state, policy)
    assert state.verdict == verdict.verdict == "keep" and state.closed
    assert verdict.reasons[0].startswith("guard ended: 5000 >= max_rows 5000 without harm proven")


def test_no_rollback_below_min_rows_and_none_when_disabled() -> None:
    much_worse = np.random.default_rng(25).normal(1.0, 0.1, 999)
    verdict = decide_rollback(_guard_with(much_worse), POLICY)
    assert verdict.verdict == "watch" and verdict.reasons == ["999 of min_rows 1000 labelled rows"]
    disabled = POLICY.model_copy(update={"enabled": False})
    assert decide_rollback(_guard_with(np.full(2_000, 1.0), disabled), disabled).verdict == "keep"


def test_better_new_champion_is_never_rolled_back() -> None:
    state = _guard_with(np.random.default_rng(26).normal(-0.1, SD, 10_000))
    assert decide_rollback(state, POLICY).verdict == "watch"


def test_repeated_batch_id_and_closed_guard_are_ignored() -> None:
    rng = np.random.default_rng(27)
    state = _guard_with(rng.normal(0.0, SD, 100))
    assert fold_batch(state, rng.normal(0.0, SD, 100), "b1", policy=POLICY, now=T0) is state
    closed = _guard_with(np.full(2_000, 1.0))
    assert closed.closed and closed.verdict == "rollback"
    assert fold_batch(closed, np.zeros(10), "b2", policy=POLICY, now=T0) is closed


def test_guard_state_and_verdict_round_trip_through_strict_json() -> None:
    state = fold_batch(start_guard("m", "v2", "v1", now=T0), np.array([0.2]), "b1", policy=POLICY, now=T0)
    state = fold_batch(state, np.random.default_rng(28).normal(0.0, SD, 1_500), "b2", policy=POLICY, now=T0)
    assert GuardState.from_dict(json.loads(json.dumps(state.to_dict(), allow_nan=False))) == state
    empty = decide_rollback(start_guard("m", "v2", "v1", now=T0), POLICY)
    json.dumps(empty.to_dict(), allow_nan=False)


def test_planned_rows_is_the_geometric_mean_of_the_row_range() -> None:
    assert guard_planned_rows(GuardSpec(min_rows=1_000, max_rows=100_000)) == 10_000
    with pytest.raises(ValueError):
        GuardSpec(min_rows=10)
