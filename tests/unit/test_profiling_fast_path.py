"""The fast paths of driftline.data.profiling give why.log's profile: presorted float runs, HLL on repeated values
skipped, strings counted in one polars call, helper threads, cached metric resolution.

Seeded data with known truth, compared with stock ``why.log`` on the same rows. KLL makes random choices,
so quantiles are checked against the true ranks within its error bound, not against why.log's values.
"""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl
import pytest

from benchmarks.data import CATEGORY_COUNTS, mixed_frame
from driftline.data.profiling import SORTED_RUN, Profiler, deserialize, profile_frame, serialize
from driftline.data.whylogs_compat import whylogs

if TYPE_CHECKING:
    from whylogs.core import DatasetProfileView

ROWS = 120_000
# whylogs' KLL has k=1024: single-quantile normalised rank error ~0.27% (99% confidence). 1% is well
# outside that, and well inside what a sketch fed part of the data, or the wrong data, would show.
RANK_TOLERANCE = 0.01
QUANTILE_KEYS = {
    "distribution/q_01": 0.01,
    "distribution/q_05": 0.05,
    "distribution/q_10": 0.10,
    "distribution/q_25": 0.25,
    "distribution/median": 0.50,
    "distribution/q_75": 0.75,
    "distribution/q_90": 0.90,
    "distribution/q_95": 0.95,
    "distribution/q_99": 0.99,
}
EXACT_KEYS = [
    "counts/n",
    "counts/null",
    "counts/nan",
    "counts/inf",
    "types/integral",
    "types/fractional",
    "types/boolean",
    "types/string",
    "types/object",
]
HLL_RELATIVE_ERROR = 0.05  # lg_k=12: ~1.6% standard error, so 5% is ~3 standard errors


def _benchmark_frame(rows: int = ROWS, seed: int = 20261202) -> pl.DataFrame:
    """The benchmark's layout (16 floats of 8 shapes, 4 strings of 5-200 categories) plus the awkward cases:
    NaN and +-inf among floats, a float column of a few repeated values, integers."""
    rng = np.random.default_rng(seed)
    frame = mixed_frame(rows, seed=seed)
    awkward = rng.normal(0.0, 1.0, rows)
    awkward[rng.random(rows) < 0.03] = np.nan
    awkward[rng.random(rows) < 0.01] = np.inf
    awkward[rng.random(rows) < 0.01] = -np.inf
    return frame.with_columns(
        pl.Series("with_nan_and_inf", awkward, nan_to_null=False),
        pl.Series("ratings", rng.integers(1, 6, rows).astype(np.float64) / 2),  # 5 distinct values
        pl.Series("visits", rng.poisson(3.0, rows)),
    )


@pytest.fixture(scope="module")
def why() -> ModuleType:
    return whylogs()


@pytest.fixture(scope="module")
def frame() -> pl.DataFrame:
    return _benchmark_frame()


@pytest.fixture(scope="module")
def ours(frame: pl.DataFrame) -> DatasetProfileView:
    return profile_frame(frame, chunk_rows=50_000)


@pytest.fixture(scope="module")
def theirs(frame: pl.DataFrame, why: ModuleType) -> DatasetProfileView:
    return why.log(pandas=frame.to_pandas()).view()


def _summary(view: DatasetProfileView, column: str) -> dict[str, Any]:
    return view.get_column(column).to_summary_dict()


def _exact(view: DatasetProfileView, column: str) -> dict[str, int]:
    summary = _summary(view, column)
    return {key: int(summary[key]) for key in EXACT_KEYS if key in summary}


def _frequent(view: DatasetProfileView, column: str) -> dict[str, int]:
    return {item.value: int(item.est) for item in _summary(view, column)["frequent_items/frequent_strings"]}


def _finite_sorted(values: np.ndarray) -> np.ndarray:
    return np.sort(values[np.isfinite(values)])


def _rank_misses(sorted_values: np.ndarray, summary: dict[str, Any]) -> dict[str, float]:
    """Quantile key -> rank distance from its target, for the misses beyond RANK_TOLERANCE (ties count as hits)."""
    misses = {}
    for key, target in QUANTILE_KEYS.items():
        below = np.searchsorted(sorted_values, summary[key], side="left") / len(sorted_values)
        at_or_below = np.searchsorted(sorted_values, summary[key], side="right") / len(sorted_values)
        miss = 0.0 if below <= target <= at_or_below else min(abs(below - target), abs(at_or_below - target))
        if miss > RANK_TOLERANCE:
            misses[key] = round(miss, 4)
    return misses


FLOAT_COLUMNS = [f"num_{index:02d}" for index in range(16)] + ["with_nan_and_inf", "ratings"]
STRING_COLUMNS = [f"cat_{index}" for index in range(len(CATEGORY_COUNTS))]
ALL_COLUMNS = [*FLOAT_COLUMNS, *STRING_COLUMNS, "visits"]


# 1. The benchmark's layout against why.log


def test_every_column_has_why_logs_metrics(ours: DatasetProfileView, theirs: DatasetProfileView) -> None:
    assert {column: sorted(ours.get_column(column)._metrics) for column in ALL_COLUMNS} == {
        column: sorted(theirs.get_column(column)._metrics) for column in ALL_COLUMNS
    }


@pytest.mark.parametrize("column", ALL_COLUMNS)
def test_counts_and_types_equal_why_log(
    frame: pl.DataFrame, ours: DatasetProfileView, theirs: DatasetProfileView, column: str
) -> None:
    expected = _exact(theirs, column)
    if column == "with_nan_and_inf":
        # By design (see driftline.data.profiling) infinities are counted apart, not as fractional values;
        # why.log counts them in both.
        expected["types/fractional"] -= int(np.isinf(frame.get_column(column).to_numpy()).sum())
    assert _exact(ours, column) == expected


def test_nan_and_infinities_are_counted_like_why_log(frame: pl.DataFrame, ours: DatasetProfileView) -> None:
    values = frame.get_column("with_nan_and_inf").to_numpy()
    summary = _summary(ours, "with_nan_and_inf")
    expected_nan, expected_inf = int(np.isnan(values).sum()), int(np.isinf(values).sum())
    assert (summary["counts/nan"], summary["counts/null"], summary["counts/inf"]) == (
        expected_nan,
        expected_nan,
        expected_inf,
    )
    assert summary["distribution/n"] == ROWS - expected_nan - expected_inf


@pytest.mark.parametrize("column", [*FLOAT_COLUMNS, "visits"])
def test_moments_and_extremes_equal_why_log(
    frame: pl.DataFrame, ours: DatasetProfileView, theirs: DatasetProfileView, column: str
) -> None:
    mine, reference = _summary(ours, column), _summary(theirs, column)
    values = _finite_sorted(frame.get_column(column).cast(pl.Float64).to_numpy())
    if column == "with_nan_and_inf":  # why.log's moments take the infinities in (inf / nan): the truth instead
        reference = {
            "distribution/n": len(values),
            "distribution/mean": values.mean(),
            "distribution/stddev": values.std(ddof=1),
        }
    assert mine["distribution/n"] == reference["distribution/n"] == len(values)
    assert mine["distribution/mean"] == pytest.approx(reference["distribution/mean"], rel=1e-9, abs=1e-12)
    assert mine["distribution/stddev"] == pytest.approx(reference["distribution/stddev"], rel=1e-9)
    assert (mine["distribution/min"], mine["distribution/max"]) == (values[0], values[-1])


@pytest.mark.parametrize("column", [*FLOAT_COLUMNS, "visits"])
def test_quantiles_are_within_kll_error_of_the_true_ranks(
    frame: pl.DataFrame, ours: DatasetProfileView, theirs: DatasetProfileView, column: str
) -> None:
    values = _finite_sorted(frame.get_column(column).cast(pl.Float64).to_numpy())
    assert _rank_misses(values, _summary(ours, column)) == {}
    if column != "with_nan_and_inf":  # why.log ranks the infinities too
        assert _rank_misses(values, _summary(theirs, column)) == {}  # the bound is whylogs' own


@pytest.mark.parametrize("column", [*STRING_COLUMNS, "visits", "ratings"])
def test_frequent_items_are_exact_and_equal_why_log(
    frame: pl.DataFrame, ours: DatasetProfileView, theirs: DatasetProfileView, column: str
) -> None:
    if column == "ratings":  # whylogs keeps no frequent items for floats
        assert "frequent_items" not in ours.get_column(column)._metrics
        return
    truth = {str(value): count for value, count in frame.get_column(column).value_counts().iter_rows()}
    assert _frequent(ours, column) == _frequent(theirs, column) == truth


@pytest.mark.parametrize("column", ALL_COLUMNS)
def test_cardinality_is_within_hll_error_of_the_truth_and_of_why_log(
    frame: pl.DataFrame, ours: DatasetProfileView, theirs: DatasetProfileView, column: str
) -> None:
    values = frame.get_column(column)
    if values.dtype.is_float():
        values = values.filter(values.is_finite())
    true_distinct = values.n_unique()
    estimate = _summary(ours, column)["cardinality/est"]
    assert estimate == pytest.approx(true_distinct, rel=HLL_RELATIVE_ERROR)
    assert estimate == pytest.approx(_summary(theirs, column)["cardinality/est"], rel=HLL_RELATIVE_ERROR)


def test_few_distinct_values_give_why_logs_exact_cardinality(
    ours: DatasetProfileView, theirs: DatasetProfileView
) -> None:
    # Below a few thousand distinct values HLL keeps exact coupons: skipping repeats must change nothing.
    for column in ["ratings", "visits", *STRING_COLUMNS]:
        assert _summary(ours, column)["cardinality/est"] == pytest.approx(
            _summary(theirs, column)["cardinality/est"], rel=1e-9
        ), column


def test_the_profile_round_trips_through_stock_whylogs_bytes(ours: DatasetProfileView) -> None:
    loaded = deserialize(serialize(ours), "ours")
    for column in ALL_COLUMNS:
        before, after = _summary(ours, column), _summary(loaded, column)
        assert {key: after[key] for key in EXACT_KEYS if key in after} == {
            key: before[key] for key in EXACT_KEYS if key in before
        }
        assert after.get("distribution/median") == before.get("distribution/median"), column


# 2. Presorted runs: orders that could trip a sorted-input shortcut


def _sawtooth(rows: int) -> np.ndarray:
    """Values that rise within each run and start over at the next: every run is the same sorted block."""
    return np.tile(np.linspace(0.0, 1.0, SORTED_RUN), rows // SORTED_RUN + 1)[:rows]


ORDERS = {
    "already_sorted": lambda rng, rows: np.sort(rng.lognormal(0.0, 1.0, rows)),
    "sorted_descending": lambda rng, rows: np.sort(rng.normal(0.0, 1.0, rows))[::-1].copy(),
    "sawtooth_of_run_length": lambda rng, rows: _sawtooth(rows),
    "mostly_one_value": lambda rng, rows: np.where(rng.random(rows) < 0.9, 7.0, rng.normal(7.0, 1.0, rows)),
    "two_values": lambda rng, rows: rng.choice([-1.0, 1.0], rows, p=[0.3, 0.7]),
    "repeats_then_continuous": lambda rng, rows: np.concatenate(
        [rng.integers(0, 3, SORTED_RUN).astype(float), rng.normal(0.0, 1.0, rows - SORTED_RUN)]
    ),
    "continuous_then_repeats": lambda rng, rows: np.concatenate(
        [rng.normal(0.0, 1.0, SORTED_RUN), rng.integers(0, 3, rows - SORTED_RUN).astype(float)]
    ),
    "shorter_than_a_run": lambda rng, rows: rng.exponential(1.0, SORTED_RUN // 3),
}


@pytest.mark.parametrize("order", list(ORDERS))
@pytest.mark.parametrize("chunk_rows", [250_000, 7_001])
def test_any_arrival_order_keeps_quantiles_counts_and_cardinality(order: str, chunk_rows: int) -> None:
    values = ORDERS[order](np.random.default_rng(len(order)), 150_000)
    view = profile_frame(pl.DataFrame({"x": values}), chunk_rows=chunk_rows)
    summary = _summary(view, "x")
    truth = np.sort(values)
    assert summary["counts/n"] == summary["distribution/n"] == len(values)
    assert (summary["distribution/min"], summary["distribution/max"]) == (truth[0], truth[-1])
    assert summary["distribution/mean"] == pytest.approx(values.mean(), rel=1e-9, abs=1e-12)
    assert _rank_misses(truth, summary) == {}
    assert summary["cardinality/est"] == pytest.approx(len(np.unique(values)), rel=HLL_RELATIVE_ERROR)


def test_profiling_leaves_the_frame_as_it_was() -> None:
    values = np.random.default_rng(4).normal(0.0, 1.0, 3 * SORTED_RUN + 5)
    frame = pl.DataFrame({"x": values, "y": values[::-1].copy()})
    before = frame.clone()
    profile_frame(frame)
    assert frame.equals(before)


# 3. Metric objects are fresh for every column and every profile


def _comparable(view: DatasetProfileView, column: str) -> dict[str, Any]:
    """A column's summary with NaN made equal to itself."""
    return {
        key: "nan" if isinstance(value, float) and np.isnan(value) else value
        for key, value in _summary(view, column).items()
    }


def test_columns_and_profiles_do_not_share_sketches() -> None:
    first = profile_frame(pl.DataFrame({"a": [1.0, 2.0, 3.0], "b": [10.0, 20.0, 30.0], "s": ["x", "y", "x"]}))
    before = {column: _comparable(first, column) for column in ["a", "b", "s"]}
    profile_frame(pl.DataFrame({"a": [100.0] * 5, "b": [-1.0] * 5, "s": ["z"] * 5}))
    assert {column: _comparable(first, column) for column in ["a", "b", "s"]} == before
    assert (before["a"]["distribution/max"], before["b"]["distribution/max"]) == (3.0, 30.0)
    assert _frequent(first, "s") == {"x": 2, "y": 1}


def test_a_chunk_that_cannot_be_read_as_its_schema_raises_from_the_helper_thread() -> None:
    profiler = Profiler({"x": pl.Float64(), "s": pl.String()})
    with pytest.raises(pl.exceptions.PolarsError):
        profiler.update(pl.DataFrame({"x": ["not a number"], "s": ["a"]}))
    assert profiler.rows == 0
