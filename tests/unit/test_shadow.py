"""Shadow verdict: the anytime-valid paired test, on seeded simulations whose truth is known.

The statistical tests run 2,000 shadow runs at once (vectorised across runs with the module's own
moment merge, confidence-sequence radius and verdict rule; a smaller simulation checks that this equals
folding every batch through ``fold_batch`` and ``decide``). Each run is checked after every batch of
500 rows, as the flow does, until its first promote/reject or its row budget. A fixed-sample z-test
peeked at the same batches of the SAME runs shows what the confidence sequence protects against.
``pytest -s`` prints the measured rates.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from scipy import special

from driftline.errors import InputError
from driftline.models.spec import ShadowSpec
from driftline.statistics.sequential import (
    bounds_verdict,
    confidence_sequence,
    cs_radius,
    merge_moments,
    naive_z_verdict,
    optimal_rho2,
)
from driftline.statistics.shadow import (
    ShadowState,
    ShadowVerdict,
    decide,
    fold_batch,
    paired_differences,
    per_row_losses,
    start_shadow,
)

T0 = datetime(2024, 5, 1, tzinfo=UTC)
RUNS = 2_000
BATCH_ROWS = 500
SD = 0.5  # per-row sd of the loss difference in the Gaussian scenarios
ALPHA = 0.05
POLICY = ShadowSpec(
    alpha=ALPHA, min_rows=1_000, max_rows=20_000, planned_rows=10_000, max_latency_ratio=None, max_batches=None
)

DrawBatch = Callable[[np.random.Generator, int, int], np.ndarray]


# --------------------------------------------------------------------------------------- simulation
@dataclass(frozen=True)
class Simulation:
    """Final verdicts of every run (ours and the peeked z-test) and when ours promoted."""

    ours: np.ndarray
    naive: np.ndarray
    ours_promoted_at: np.ndarray  # rows at our promotion, -1 if never

    def rate(self, verdict: str, *, naive: bool = False) -> float:
        return float(np.mean((self.naive if naive else self.ours) == verdict))

    def promoted_by(self, rows: int) -> float:
        return float(np.mean((self.ours_promoted_at >= 0) & (self.ours_promoted_at <= rows)))


def simulate(draw: DrawBatch, policy: ShadowSpec, *, runs: int = RUNS, seed: int = 0) -> Simulation:
    """Peek after every batch of every run; a run stops at its first promote/reject, else inconclusive."""
    rng = np.random.default_rng(seed)
    n, mean, m2 = 0, np.zeros(runs), np.zeros(runs)
    ours = np.full(runs, "continue", dtype="<U12")
    naive = ours.copy()
    promoted_at = np.full(runs, -1)
    while n < policy.max_rows:
        rows = min(BATCH_ROWS, policy.max_rows - n)
        batch = draw(rng, runs, rows)
        batch_mean = batch.mean(axis=1)
        batch_m2 = np.sum((batch - batch_mean[:, None]) ** 2, axis=1)
        n, mean, m2 = merge_moments(n, mean, m2, rows, batch_mean, batch_m2)
        if n < policy.min_rows:
            continue
        variance = m2 / (n - 1)
        radius = cs_radius(n, variance, policy.alpha, policy.planned_rows)
        ours_now = bounds_verdict(mean - radius, mean + radius, policy.equivalence_margin)
        naive_now = naive_z_verdict(n, mean, variance, policy.alpha, policy.equivalence_margin)
        still_open = ours == "continue"
        promoted_at[still_open & (ours_now == "promote")] = n
        ours[still_open] = ours_now[still_open]
        naive_open = naive == "continue"
        naive[naive_open] = naive_now[naive_open]
    ours[ours == "continue"] = "inconclusive"
    naive[naive == "continue"] = "inconclusive"
    return Simulation(ours, naive, promoted_at)


def gaussian(mean_difference: float, sd: float = SD) -> DrawBatch:
    return lambda rng, runs, rows: rng.normal(mean_difference, sd, size=(runs, rows))


def logloss_pair(candidate_noise: float, champion_noise: float = 0.5) -> DrawBatch:
    """Realistic binary log-loss differences: both models see the true logit plus their own noise.

    Equal noise makes the two models exchangeable, so the true mean difference is exactly 0; more
    candidate noise makes the candidate truly worse.
    """

    def draw(rng: np.random.Generator, runs: int, rows: int) -> np.ndarray:
        logit = rng.normal(-1.0, 1.5, size=(runs, rows))
        y = (rng.random((runs, rows)) < special.expit(logit)).astype(np.float64)
        candidate = special.expit(logit + rng.normal(0, candidate_noise, size=(runs, rows)))
        champion = special.expit(logit + rng.normal(0, champion_noise, size=(runs, rows)))
        return paired_differences("binary", y.ravel(), candidate.ravel(), champion.ravel()).reshape(runs, rows)

    return draw


def _report(name: str, sim: Simulation) -> None:
    print(
        f"\n[shadow] {name}: {RUNS} runs, peeked every {BATCH_ROWS} rows | ours: promote {sim.rate('promote'):.4f} "
        f"reject {sim.rate('reject'):.4f} inconclusive {sim.rate('inconclusive'):.4f} | naive peeked z-test: "
        f"promote {sim.rate('promote', naive=True):.4f} reject {sim.rate('reject', naive=True):.4f}"
    )


# ------------------------------------------------------------------------------------ error control
@pytest.mark.parametrize(
    ("name", "draw"),
    [
        ("clearly worse N(+0.02, 0.5^2)", gaussian(0.02)),
        ("barely worse N(+0.002, 0.5^2)", gaussian(0.002)),
        ("worse log loss (candidate logit noise 0.55 vs 0.5)", logloss_pair(0.55)),
    ],
)
def test_worse_candidate_is_promoted_at_most_alpha_under_continuous_peeking(name: str, draw: DrawBatch) -> None:
    sim = simulate(draw, POLICY, seed=11)
    _report(name, sim)
    assert sim.rate("promote") <= ALPHA
    # The same runs judged by the peeked fixed-sample test: reported, never better than ours.
    assert sim.rate("promote", naive=True) >= sim.rate("promote")


@pytest.mark.parametrize(
    ("name", "draw"),
    [("equal N(0, 0.5^2)", gaussian(0.0)), ("equal log loss (exchangeable models)", logloss_pair(0.5))],
)
def test_equal_candidate_peeking_inflates_the_naive_test_but_not_ours(name: str, draw: DrawBatch) -> None:
    sim = simulate(draw, POLICY, seed=12)
    _report(name, sim)
    assert sim.rate("promote") <= ALPHA
    assert sim.rate("promote") + sim.rate("reject") <= ALPHA  # any false conclusion, both sides
    assert sim.rate("inconclusive") >= 1 - ALPHA
    assert sim.rate("promote", naive=True) > ALPHA
    assert sim.rate("promote", naive=True) > 3 * sim.rate("promote")


def test_equal_candidate_with_equivalence_margin_is_promoted_as_equivalent() -> None:
    policy = POLICY.model_copy(update={"equivalence_margin": 0.03, "max_rows": 50_000})
    sim = simulate(gaussian(0.0), policy, seed=13)
    _report("equal N(0, 0.5^2), equivalence margin 0.03", sim)
    assert sim.rate("reject") <= ALPHA
    assert sim.rate("promote") >= 1 - ALPHA


def test_better_candidate_is_promoted_with_power_growing_with_rows() -> None:
    policy = POLICY.model_copy(update={"max_rows": 40_000})
    sim = simulate(gaussian(-0.02), policy, seed=14)
    table = {rows: sim.promoted_by(rows) for rows in (2_000, 5_000, 10_000, 20_000, 40_000)}
    print(
        "\n[shadow] power, better N(-0.02, 0.5^2), promoted by rows: "
        + ", ".join(f"{rows}: {share:.3f}" for rows, share in table.items())
    )
    assert list(table.values()) == sorted(table.values())
    assert table[10_000] >= 0.8
    assert table[40_000] >= 0.99
    assert sim.rate("reject") == 0.0


def test_vectorised_simulation_equals_fold_batch_and_decide() -> None:
    """The statistical tests above measure the production path: same verdicts run by run."""
    runs, policy = 150, POLICY.model_copy(update={"max_rows": 6_000})
    truth = np.repeat([-0.06, 0.0, 0.06], runs // 3)
    data = np.random.default_rng(15).normal(truth[:, None], SD, size=(runs, policy.max_rows))

    offsets = iter(range(0, policy.max_rows, BATCH_ROWS))

    def replay(_: np.random.Generator, count: int, rows: int) -> np.ndarray:
        start = next(offsets)
        return data[:count, start : start + rows]

    vectorised = simulate(replay, policy, runs=runs)
    for run in range(runs):
        state = start_shadow("m", "v2", "v1", now=T0)
        for start in range(0, policy.max_rows, BATCH_ROWS):
            state = fold_batch(state, data[run, start : start + BATCH_ROWS], f"b{start}", policy=policy, now=T0)
        assert state.verdict == vectorised.ours[run], run
    assert set(vectorised.ours) == {"promote", "reject", "inconclusive"}


# ------------------------------------------------------------------------------ confidence sequence
def test_confidence_sequence_is_the_gaussian_mixture_boundary_tuned_at_planned_rows() -> None:
    rho2 = optimal_rho2(ALPHA, 10_000)
    closed_form = (-2 * np.log(ALPHA) + np.log(1 - 2 * np.log(ALPHA))) / 10_000  # the paper's approximation
    assert rho2 == pytest.approx(closed_form, rel=0.05)
    lower, upper = confidence_sequence(10_000, 0.1, 4.0, ALPHA, 10_000)
    t = 10_000
    expected = 2.0 * np.sqrt(2 * (t * rho2 + 1) / (t**2 * rho2) * np.log(np.sqrt(t * rho2 + 1) / ALPHA))
    assert (lower, upper) == pytest.approx((0.1 - expected, 0.1 + expected))
    # Tightest at planned_rows: tuning for other row counts gives a wider boundary there.
    tuned = cs_radius(t, 1.0, ALPHA, t)
    assert all(tuned < cs_radius(t, 1.0, ALPHA, other) for other in (2_000, 5_000, 20_000, 50_000))
    print(f"\n[shadow] CS half-width at planned_rows / fixed-sample 95% z half-width: {tuned * np.sqrt(t) / 1.96:.3f}")


def test_confidence_sequence_edge_cases() -> None:
    assert confidence_sequence(0, 0.0, float("nan"), ALPHA, 1_000) == (-np.inf, np.inf)
    assert confidence_sequence(1, 0.3, float("nan"), ALPHA, 1_000) == (-np.inf, np.inf)
    assert confidence_sequence(50, 0.3, 0.0, ALPHA, 1_000) == (0.3, 0.3)
    with pytest.raises(InputError, match="alpha"):
        confidence_sequence(50, 0.3, 1.0, 1.5, 1_000)
    with pytest.raises(InputError, match="planned_rows"):
        confidence_sequence(50, 0.3, 1.0, ALPHA, 0)


def test_identical_models_are_promoted_only_with_an_equivalence_margin() -> None:
    """Zero differences on every row: zero variance, a point interval at 0."""
    zeros = np.zeros(2_000)
    strict = fold_batch(start_shadow("m", "v2", "v1", now=T0), zeros, "b1", policy=POLICY, now=T0)
    assert strict.verdict == "continue"
    margin = POLICY.model_copy(update={"equivalence_margin": 0.01})
    lenient = fold_batch(start_shadow("m", "v2", "v1", now=T0), zeros, "b1", policy=margin, now=T0)
    assert lenient.verdict == "promote"
    assert "equivalent within margin 0.01" in decide(lenient, margin, T0).reasons[0]


# ------------------------------------------------------------------------------------------ folding
@pytest.mark.parametrize("cuts", [[], [1], [1, 2], [0, 0, 10], [333, 334, 2_000, 4_999], list(range(0, 5_000, 7))])
def test_batch_merging_equals_one_shot(cuts: list[int]) -> None:
    values = np.random.default_rng(3).standard_t(4, size=5_000) * 0.3 + 0.01
    state = start_shadow("m", "v2", "v1", now=T0)
    for index, part in enumerate(np.split(values, cuts)):
        state = fold_batch(state, part, f"b{index}", policy=POLICY, now=T0)
    assert state.n == values.size
    assert state.mean == pytest.approx(values.mean(), rel=1e-12, abs=1e-15)
    assert state.variance == pytest.approx(values.var(ddof=1), rel=1e-12)
    assert state.m2 == pytest.approx(np.sum((values - values.mean()) ** 2), rel=1e-12)


def test_repeated_batch_id_is_ignored() -> None:
    rng = np.random.default_rng(4)
    state = fold_batch(start_shadow("m", "v2", "v1", now=T0), rng.normal(0, 1, 100), "b1", policy=POLICY, now=T0)
    again = fold_batch(state, rng.normal(5, 1, 100), "b1", policy=POLICY, now=T0 + timedelta(hours=1))
    assert again is state
    assert state.batch_ids == ["b1"] and len(state.history) == 1


def test_history_has_a_point_per_batch_with_json_safe_bounds() -> None:
    state = start_shadow("m", "v2", "v1", now=T0)
    state = fold_batch(state, np.array([0.5]), "b1", policy=POLICY, now=T0)
    state = fold_batch(state, np.random.default_rng(5).normal(0, 1, 999), "b2", policy=POLICY, now=T0)
    first, second = state.history
    assert first == {"batch_id": "b1", "at": T0.isoformat(), "n": 1, "estimate": 0.5, "lower": None, "upper": None}
    assert second["n"] == 1_000 and second["lower"] < second["estimate"] < second["upper"]


def test_bad_differences_and_naive_times_are_refused() -> None:
    state = start_shadow("m", "v2", "v1", now=T0)
    with pytest.raises(InputError, match="NaN or infinite"):
        fold_batch(state, np.array([0.1, np.nan]), "b1", policy=POLICY, now=T0)
    with pytest.raises(InputError, match="1-D"):
        fold_batch(state, np.zeros((2, 2)), "b1", policy=POLICY, now=T0)
    with pytest.raises(InputError, match="timezone-aware"):
        fold_batch(state, np.zeros(3), "b1", policy=POLICY, now=datetime(2024, 5, 1))
    with pytest.raises(InputError, match="both 'v1'"):
        start_shadow("m", "v1", "v1", now=T0)


# ---------------------------------------------------------------------------------------- decisions
def _state_with(values: np.ndarray, policy: ShadowSpec = POLICY, **latency: float) -> ShadowState:
    state = start_shadow("m", "v2", "v1", now=T0)
    return fold_batch(state, values, "b1", policy=policy, now=T0, **latency)


def test_no_verdict_below_min_rows_even_with_overwhelming_evidence() -> None:
    much_better = np.random.default_rng(6).normal(-1.0, 0.1, size=999)
    state = _state_with(much_better)
    verdict = decide(state, POLICY, T0)
    assert verdict.verdict == "continue"
    assert verdict.reasons == ["999 of min_rows 1000 labelled rows"]
    state = fold_batch(state, np.array([-1.0]), "b2", policy=POLICY, now=T0)
    assert state.verdict == "promote" and state.closed


def test_better_candidate_is_promoted_and_worse_rejected_with_numbers_in_reasons() -> None:
    rng = np.random.default_rng(7)
    better = decide(_state_with(rng.normal(-0.1, 0.5, 5_000)), POLICY, T0)
    assert better.verdict == "promote" and better.upper < 0
    assert better.reasons[0].startswith("candidate better at n=5000: mean loss difference -0.")
    assert "95% CS [" in better.reasons[0]
    worse = decide(_state_with(rng.normal(0.1, 0.5, 5_000)), POLICY, T0)
    assert worse.verdict == "reject" and worse.lower > 0
    assert "candidate worse at n=5000" in worse.reasons[0]


def test_equivalence_margin_promotes_within_and_rejects_beyond() -> None:
    policy = POLICY.model_copy(update={"equivalence_margin": 0.05})
    rng = np.random.default_rng(8)
    within = decide(_state_with(rng.normal(0.01, 0.2, 20_000), policy), policy, T0)
    assert within.verdict == "promote" and 0 < within.upper < 0.05
    beyond = decide(_state_with(rng.normal(0.2, 0.2, 20_000), policy), policy, T0)
    assert beyond.verdict == "reject" and beyond.lower > 0.05
    assert "entirely above 0.05" in beyond.reasons[0]


def test_row_budget_ends_inconclusive() -> None:
    policy = POLICY.model_copy(update={"max_rows": 5_000})
    state = _state_with(np.random.default_rng(9).normal(0.0, 0.5, 5_000), policy)
    verdict = decide(state, policy, T0)
    assert verdict.verdict == "inconclusive" and state.closed
    assert verdict.reasons[0] == "row budget spent: 5000 >= max_rows 5000"


@pytest.mark.parametrize("rows", [200, 3_000])
def test_day_budget_set_by_the_spec_ends_inconclusive(rows: int) -> None:
    policy = POLICY.model_copy(update={"max_days": 14.0})
    state = _state_with(np.random.default_rng(10).normal(0.0, 0.5, rows), policy)
    assert decide(state, policy, T0 + timedelta(days=13.9)).verdict == "continue"
    verdict = decide(state, policy, T0 + timedelta(days=14))
    assert verdict.verdict == "inconclusive"
    assert verdict.reasons[0] == "time budget spent: 14.00 days >= max_days 14"
    if rows < policy.min_rows:  # the budget ran out before the test could say anything: the reason says so
        assert "cannot hold min_rows 1000" in verdict.reasons[1]


def test_default_budgets_ignore_the_clock_so_slow_batches_can_reach_a_verdict() -> None:
    """A batch may span years of event time: by default only rows and batches bound the test."""
    policy = ShadowSpec(min_rows=1_000, max_latency_ratio=None)
    assert policy.max_days is None
    state = _state_with(np.random.default_rng(12).normal(0.0, 0.5, 500), policy)
    assert decide(state, policy, T0 + timedelta(days=505)).verdict == "continue"
    better = _state_with(np.random.default_rng(13).normal(-0.3, 0.5, 1_500), policy)
    assert decide(better, policy, T0 + timedelta(days=3 * 505)).verdict == "promote"


def test_batch_budget_ends_inconclusive() -> None:
    policy = POLICY.model_copy(update={"max_batches": 3})
    state = start_shadow("m", "v2", "v1", now=T0)
    rng = np.random.default_rng(14)
    for index in range(3):
        assert state.verdict == "continue"
        state = fold_batch(state, rng.normal(0.0, 0.5, 200), f"b{index}", policy=policy, now=T0)
    verdict = decide(state, policy, T0)
    assert verdict.verdict == "inconclusive" and state.closed
    assert verdict.reasons[0] == "batch budget spent: 3 >= max_batches 3"


def test_slow_candidate_is_rejected_instead_of_promoted() -> None:
    policy = POLICY.model_copy(update={"max_latency_ratio": 1.5})
    better = np.random.default_rng(11).normal(-0.2, 0.5, 3_000)
    slow = decide(_state_with(better, policy, candidate_p99_ms=16.5, champion_p99_ms=10.0), policy, T0)
    assert slow.verdict == "reject" and slow.latency_ok is False
    assert slow.reasons[-1] == (
        "but candidate p99 latency 16.50 ms > 1.5 x champion p99 10.00 ms + 1 ms slack = 16.00 ms"
    )
    fast = decide(_state_with(better, policy, candidate_p99_ms=15.5, champion_p99_ms=10.0), policy, T0)
    assert fast.verdict == "promote" and fast.latency_ok is True
    unknown = decide(_state_with(better, policy, candidate_p99_ms=14.0), policy, T0)
    assert unknown.verdict == "promote" and unknown.latency_ok is None
    # Sub-millisecond p99s: a 3x ratio inside the slack is timer noise, not a slower model.
    tiny = decide(_state_with(better, policy, candidate_p99_ms=0.9, champion_p99_ms=0.3), policy, T0)
    assert tiny.verdict == "promote" and tiny.latency_ok is True


def test_latest_latency_is_kept_when_a_batch_has_none() -> None:
    policy = POLICY.model_copy(update={"min_rows": 30})
    state = start_shadow("m", "v2", "v1", now=T0)
    state = fold_batch(state, np.zeros(5), "b1", policy=policy, now=T0, candidate_p99_ms=30.0, champion_p99_ms=10.0)
    state = fold_batch(state, np.zeros(5), "b2", policy=policy, now=T0, candidate_p99_ms=12.0)
    state = fold_batch(state, np.zeros(5), "b3", policy=policy, now=T0)
    assert state.latency_p99_ms == {"candidate_ms": 12.0, "champion_ms": 10.0}


def test_closed_state_takes_no_more_batches() -> None:
    state = _state_with(np.random.default_rng(12).normal(-0.2, 0.5, 3_000))
    assert state.closed and state.verdict == "promote"
    assert fold_batch(state, np.full(3_000, 5.0), "b2", policy=POLICY, now=T0) is state


def test_state_and_verdict_round_trip_through_strict_json() -> None:
    state = start_shadow("m", "v2", "v1", now=T0)
    state = fold_batch(state, np.array([0.25]), "b1", policy=POLICY, now=T0, candidate_p99_ms=3.5)
    state = fold_batch(state, np.random.default_rng(13).normal(0, 0.5, 1_500), "b2", policy=POLICY, now=T0)
    text = json.dumps(state.to_dict(), allow_nan=False)
    assert ShadowState.from_dict(json.loads(text)) == state
    for verdict in (decide(start_shadow("m", "v2", "v1", now=T0), POLICY, T0), decide(state, POLICY, T0)):
        assert isinstance(verdict, ShadowVerdict)
        json.dumps(verdict.to_dict(), allow_nan=False)


# -------------------------------------------------------------------------------------------- losses
def test_per_row_losses_and_paired_differences() -> None:
    y = np.array([1.0, 0.0, 1.0])
    p = np.array([0.9, 0.2, 0.0])
    expected = [-np.log(0.9), -np.log(0.8), -np.log(1e-7)]
    assert per_row_losses("binary", y, p) == pytest.approx(expected)
    assert per_row_losses("regression", np.array([1.0, 2.0]), np.array([1.5, 0.0])) == pytest.approx([0.25, 4.0])
    better = paired_differences("binary", y, np.array([0.95, 0.1, 0.5]), p)
    assert np.all(better < 0)
    with pytest.raises(InputError):
        per_row_losses("binary", y, p[:2])


def test_naive_z_verdict_uses_the_same_rules_on_a_fixed_sample_interval() -> None:
    assert naive_z_verdict(10_000, -0.02, 0.25, ALPHA).item() == "promote"  # z = -4
    assert naive_z_verdict(10_000, 0.005, 0.25, ALPHA).item() == "continue"  # z = 1
    assert naive_z_verdict(10_000, 0.02, 0.25, ALPHA, 0.01).item() == "reject"
    assert list(bounds_verdict(np.array([-1, -0.01, 0.2]), np.array([-0.5, 0.01, 0.3]), 0.05)) == [
        "promote",
        "promote",
        "reject",
    ]


def test_the_stdlib_lambert_w_and_normal_quantile_match_scipys_where_the_shadow_test_uses_them() -> None:
    """The flow runs do without scipy at import; the boundary must be the same number as scipy's."""
    import math

    import numpy as np
    from scipy import special

    from driftline.statistics.sequential import lambert_w_lower, normal_quantile

    for alpha in np.concatenate([np.logspace(-12, np.log10(0.5), 300), np.linspace(0.5, 0.99, 100)]):
        x = -(alpha**2) / math.e
        expected = special.lambertw(x, k=-1).real
        assert lambert_w_lower(x) == pytest.approx(expected, rel=1e-13), alpha
    assert lambert_w_lower(-1 / math.e) == pytest.approx(-1.0)
    for p in np.linspace(1e-9, 1 - 1e-9, 2001):
        assert normal_quantile(p) == pytest.approx(float(special.ndtri(p)), rel=1e-12, abs=1e-12)
    with pytest.raises(InputError, match="W_-1"):
        lambert_w_lower(0.1)
