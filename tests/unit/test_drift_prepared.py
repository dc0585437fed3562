"""The batched check against a ``PreparedReference`` gives bit for bit the report of the plain path.

The batched path reads each sketch's values once (``_sorted_sketch``) and answers quantiles and CDFs
with numpy; those answers are checked here against the sketch's own, exactly, on many sketches.

The plain path is ``feature_drift`` (one sketch query per use, straight from the two views); the batched
one prepares the reference once and computes every numeric feature's statistics at once. Seeded
synthetic data with planted drift and without; the comparison is on the JSON of the reports, so even a
-0.0 against a 0.0 or a numpy float in place of a Python one would fail.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl
import pytest

from driftline.data.profiling import merge as merge_profiles
from driftline.data.profiling import profile_frame
from driftline.statistics.drift import (
    _CURRENT_FRACTION_ARRAY,
    _CURRENT_FRACTIONS,
    DriftPolicy,
    DriftReport,
    PreparedReference,
    _sorted_sketch,
    compare_profiles,
    feature_drift,
)

if TYPE_CHECKING:
    from whylogs.core import DatasetProfileView

ROWS = 20_000
NUMERIC = [f"num_{i}" for i in range(8)] + ["count", "constant", "rounded", "huge"]
CATEGORICAL = ["region", "zip", "flag"]
SHIFTED = ["num_0", "num_5", "count"]
REGIONS = ["north", "south", "east", "west"]


def frame(seed: int, rows: int = ROWS, drift: bool = False) -> pl.DataFrame:
    """Continuous, integer, constant, tied, huge-valued, categorical, long-tailed and boolean columns;
    with ``drift`` three numeric columns move, one category's share doubles and a new one appears."""
    rng = np.random.default_rng(seed)
    columns: dict[str, object] = {}
    for i in range(8):
        sd = 1.0 + i
        shift = 0.5 * sd if drift and f"num_{i}" in SHIFTED else 0.0
        columns[f"num_{i}"] = rng.normal(i + shift, sd, rows)
    columns["count"] = rng.poisson(4.0 if drift else 3.0, rows).astype(np.int64)
    columns["constant"] = np.full(rows, 2.5)
    columns["rounded"] = np.round(rng.exponential(2.0, rows), 1)
    columns["huge"] = rng.normal(0.0, 1e300, rows)  # sd overflows to inf: Wasserstein falls back to the IQR
    shares = [0.2, 0.4, 0.2, 0.2] if drift else [0.4, 0.3, 0.2, 0.1]
    regions = rng.choice(REGIONS, size=rows, p=shares).astype(object)
    if drift:
        regions[rng.random(rows) < 0.08] = "island"
    columns["region"] = regions
    columns["zip"] = [f"z{int(z) % 3000}" for z in rng.zipf(1.4, rows)]
    columns["flag"] = rng.random(rows) < (0.5 if drift else 0.3)
    result = pl.DataFrame(columns)
    # Missing values and infinities are missing shares, and kept out of the sketches.
    missing = rng.random(rows) < (0.2 if drift else 0.02)
    return result.with_columns(
        pl.when(pl.Series(missing)).then(None).otherwise(pl.col("num_7")).alias("num_7"),
        pl.when(pl.Series(rng.random(rows) < 0.01)).then(np.inf).otherwise(pl.col("num_6")).alias("num_6"),
    )


@pytest.fixture(scope="module")
def reference() -> DatasetProfileView:
    return profile_frame(frame(1))


@pytest.fixture(scope="module")
def currents() -> dict[str, DatasetProfileView]:
    return {"no drift": profile_frame(frame(2)), "drift": profile_frame(frame(3, drift=True))}


def _json(report: DriftReport) -> str:
    return json.dumps(report.to_dict())


def _plain_features(
    reference: DatasetProfileView, current: DatasetProfileView, report: DriftReport, policy: DriftPolicy
) -> str:
    plain = {name: feature_drift(name, reference, current, f.kind, policy) for name, f in report.features.items()}
    return json.dumps({name: feature.to_dict() for name, feature in plain.items()})


POLICIES = {
    "default": DriftPolicy(),
    "psi, 5 bins": DriftPolicy(numeric_statistic="psi", categorical_statistic="psi", bins=5),
    "hellinger, 2 bins": DriftPolicy(numeric_statistic="hellinger", categorical_statistic="js", bins=2),
    "wasserstein, 37 bins": DriftPolicy(numeric_statistic="wasserstein", bins=37),
    "ks, 100 bins": DriftPolicy(numeric_statistic="ks", categorical_statistic="js", bins=100),
}


@pytest.mark.parametrize("case", ["no drift", "drift"])
@pytest.mark.parametrize("policy_name", list(POLICIES))
def test_prepared_reference_gives_the_plain_report_bit_for_bit(
    case: str, policy_name: str, reference: DatasetProfileView, currents: dict[str, DatasetProfileView]
) -> None:
    policy, current = POLICIES[policy_name], currents[case]
    prepared = PreparedReference(reference)
    cold = compare_profiles(reference, current, numeric=NUMERIC, categorical=CATEGORICAL, policy=policy)
    warm = [
        compare_profiles(prepared, current, numeric=NUMERIC, categorical=CATEGORICAL, policy=policy) for _ in range(2)
    ]
    assert _json(warm[0]) == _json(cold) and _json(warm[1]) == _json(cold)
    assert _plain_features(reference, current, cold, policy) == json.dumps(
        {name: feature.to_dict() for name, feature in cold.features.items()}
    )


def test_planted_drift_is_found_and_identical_data_is_not(
    reference: DatasetProfileView, currents: dict[str, DatasetProfileView]
) -> None:
    prepared = PreparedReference(reference)
    quiet = compare_profiles(prepared, currents["no drift"], numeric=NUMERIC, categorical=CATEGORICAL)
    moved = compare_profiles(prepared, currents["drift"], numeric=NUMERIC, categorical=CATEGORICAL)
    assert quiet.drift is False and quiet.drifted_features == []
    assert moved.drift is True
    assert {*SHIFTED, "num_7", "region", "flag"} <= set(moved.drifted_features)
    assert any("unseen categories" in reason for reason in moved.features["region"].reasons)


def test_one_prepared_reference_serves_every_batch_and_policy_in_any_order(
    reference: DatasetProfileView, currents: dict[str, DatasetProfileView]
) -> None:
    """Cached bins of one bin count never leak into a check with another."""
    prepared = PreparedReference(reference)
    for policy in [*POLICIES.values(), *reversed(POLICIES.values())]:
        for current in currents.values():
            expected = compare_profiles(reference, current, numeric=NUMERIC, categorical=CATEGORICAL, policy=policy)
            got = compare_profiles(prepared, current, numeric=NUMERIC, categorical=CATEGORICAL, policy=policy)
            assert _json(got) == _json(expected)


def test_inferred_kinds_weights_and_absent_columns_match_the_plain_report(
    reference: DatasetProfileView,
) -> None:
    current = profile_frame(frame(4, drift=True).drop("num_3", "zip"))
    weights = {"num_0": 5.0, "region": 2.0, "num_3": 1.0}
    prepared = PreparedReference(reference)
    for kwargs in ({}, {"numeric": NUMERIC, "categorical": CATEGORICAL, "weights": weights}):
        cold = compare_profiles(reference, current, **kwargs)  # type: ignore[arg-type]
        assert _json(compare_profiles(prepared, current, **kwargs)) == _json(cold)  # type: ignore[arg-type]
        assert _plain_features(reference, current, cold, DriftPolicy()) == json.dumps(
            {name: feature.to_dict() for name, feature in cold.features.items()}
        )
    assert compare_profiles(prepared, current, numeric=NUMERIC).features["num_3"].verdict == "drift"


@pytest.mark.parametrize("rows", [0, 1, 3, 40], ids=lambda n: f"{n}rows")
def test_tiny_and_empty_profiles_match_the_plain_report(rows: int, reference: DatasetProfileView) -> None:
    small = profile_frame(frame(5, rows=max(rows, 1)).head(rows))
    for left, right in ((reference, small), (small, reference), (small, small)):
        cold = compare_profiles(left, right, numeric=NUMERIC, categorical=CATEGORICAL)
        warm = compare_profiles(PreparedReference(left), right, numeric=NUMERIC, categorical=CATEGORICAL)
        assert _json(warm) == _json(cold)
        assert _plain_features(left, right, cold, DriftPolicy()) == json.dumps(
            {name: feature.to_dict() for name, feature in cold.features.items()}
        )


def test_reports_share_no_mutable_state_through_the_prepared_reference(
    reference: DatasetProfileView, currents: dict[str, DatasetProfileView]
) -> None:
    prepared = PreparedReference(reference)
    first = compare_profiles(prepared, currents["drift"], numeric=["num_0"])
    expected = _json(first)
    quantiles = first.features["num_0"].quantiles
    assert quantiles is not None
    quantiles["reference"].clear()
    quantiles["probabilities"].clear()
    assert _json(compare_profiles(prepared, currents["drift"], numeric=["num_0"])) == expected


# ------------------------------------------------------------------------- sorted sketches vs the sketch
def _kll(view: DatasetProfileView, name: str) -> Any:
    return view.get_column(name).get_metric("distribution").kll.value


def _sketch_cases() -> list[pytest.ParameterSet]:
    rng = np.random.default_rng(20261202)
    cases = []
    for rows in (1, 2, 5, 300, 5_000, 120_000):
        frame = pl.DataFrame(
            {
                "normal": rng.normal(3.0, 2.0, rows),
                "ties": np.round(rng.exponential(2.0, rows), 1),
                "ints": rng.integers(0, 4, rows).astype(np.float64),
                "wide": rng.standard_t(1, rows) * 1e200,
                "infinite": np.where(rng.random(rows) < 0.5, np.inf, rng.normal(0.0, 1.0, rows)),
            }
        )
        view = profile_frame(frame, chunk_rows=max(rows // 3, 1))
        merged = merge_profiles([view, profile_frame(frame.with_columns(pl.all() * 2.0 + 1.0))])
        for name in frame.columns:
            cases += [
                pytest.param(view, name, id=f"{name}-{rows}"),
                pytest.param(merged, name, id=f"{name}-{rows}-merged"),
            ]
    return cases


@pytest.mark.parametrize(("view", "name"), _sketch_cases())
def test_sorted_sketches_answer_exactly_as_the_sketch_itself(view: DatasetProfileView, name: str) -> None:
    kll = _kll(view, name)
    ordered = _sorted_sketch(kll)
    if kll.is_empty():  # nothing retained to sort: None, so the sketch answers itself
        assert ordered is None
        return
    assert ordered is not None
    quantiles = ordered.quantiles(_CURRENT_FRACTION_ARRAY)
    expected = np.asarray(kll.get_quantiles(_CURRENT_FRACTIONS))
    assert np.array_equal(quantiles, expected) and np.array_equal(np.signbit(quantiles), np.signbit(expected))
    points = np.unique(np.concatenate([expected, np.nextafter(expected, np.inf), np.linspace(-1e3, 1e3, 57)]))
    for side in (points, points[::7], points[:1]):
        assert np.array_equal(ordered.cdf(side), np.asarray(kll.get_cdf(side.tolist()))[:-1])


def test_zeros_of_both_signs_are_left_to_the_sketch_and_match_the_plain_report() -> None:
    """The sketch may return either zero for a quantile among them: its own answer is used."""
    rng = np.random.default_rng(7)
    signed = pl.DataFrame({"x": np.where(rng.random(4000) < 0.5, -0.0, 0.0) + np.round(rng.normal(0, 1, 4000))})
    reference, current = profile_frame(signed), profile_frame(signed.sample(fraction=1.0, shuffle=True, seed=3))
    assert _sorted_sketch(_kll(reference, "x")) is None
    cold = compare_profiles(reference, current, numeric=["x"])
    assert _json(compare_profiles(PreparedReference(reference), current, numeric=["x"])) == _json(cold)
    assert json.dumps(feature_drift("x", reference, current, "numeric", DriftPolicy()).to_dict()) == json.dumps(
        cold.features["x"].to_dict()
    )
