"""driftline.data.profiling against stock whylogs: same profile as ``why.log`` on seeded data with known truth."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl
import pytest

from driftline.data.profiling import (
    BOOLEAN,
    INTEGRAL,
    NUMERIC,
    STRING,
    TEMPORAL,
    Profiler,
    column_kind,
    deserialize,
    merge,
    profile_frame,
    profile_parquet,
    read_profile,
    row_count,
    serialize,
)
from driftline.data.whylogs_compat import dataset_profile_view_class, whylogs
from driftline.errors import InputError

if TYPE_CHECKING:
    from whylogs.core import DatasetProfileView

ROWS = 200_000
CATEGORIES = [f"cat_{i:02d}" for i in range(20)]
FLOAT_COLUMNS = ["normal", "lognormal", "uniform", "with_nulls"]
NUMERIC_COLUMNS = [*FLOAT_COLUMNS, "visits"]
STRING_COLUMNS = ["category", "user"]
ALL_COLUMNS = [*NUMERIC_COLUMNS, *STRING_COLUMNS]
QUANTILES = {
    "distribution/q_01": 0.01,
    "distribution/q_10": 0.10,
    "distribution/median": 0.50,
    "distribution/q_90": 0.90,
    "distribution/q_99": 0.99,
}
RANK_TOLERANCE = 0.02  # KLL (k=256) normalised rank error is ~1.3% at 99% confidence
COUNT_KEYS = ["counts/n", "counts/null", "counts/nan", "counts/inf", "counts/true"]
TYPE_KEYS = ["types/integral", "types/fractional", "types/boolean", "types/string"]


def _seeded_frame(rows: int = ROWS, seed: int = 20240611) -> pl.DataFrame:
    """Several float distributions, a count, 20 unequal categories, a long-tailed id and a column with nulls."""
    rng = np.random.default_rng(seed)
    category_weights = np.arange(1, len(CATEGORIES) + 1, dtype=float)
    user_weights = 1.0 / np.arange(1, 5001) ** 1.1
    with_nulls = rng.normal(5.0, 2.0, rows)
    return pl.DataFrame(
        {
            "normal": rng.normal(10.0, 3.0, rows),
            "lognormal": rng.lognormal(0.0, 1.0, rows),
            "uniform": rng.uniform(-5.0, 5.0, rows),
            "with_nulls": pl.Series(with_nulls).scatter(np.flatnonzero(rng.random(rows) < 0.05), None),
            "visits": rng.poisson(4.0, rows).astype(np.int64),
            "category": rng.choice(CATEGORIES, rows, p=category_weights / category_weights.sum()),
            "user": np.char.add("user_", rng.choice(5000, rows, p=user_weights / user_weights.sum()).astype(str)),
        }
    )


@pytest.fixture(scope="module")
def why() -> ModuleType:
    return whylogs()  # numpy-2 shim and telemetry off before whylogs is imported


@pytest.fixture(scope="module")
def frame() -> pl.DataFrame:
    return _seeded_frame()


@pytest.fixture(scope="module")
def profile(frame: pl.DataFrame) -> DatasetProfileView:
    return profile_frame(frame)


@pytest.fixture(scope="module")
def reference(frame: pl.DataFrame, why: ModuleType) -> DatasetProfileView:
    return why.log(pandas=frame.to_pandas()).view()


def _summary(view: DatasetProfileView, column: str) -> dict[str, Any]:
    return view.get_column(column).to_summary_dict()


def _comparable(summary: dict[str, Any]) -> dict[str, Any]:
    """A summary with NaN made equal to itself and frequent items keyed by value (ties come in any order)."""
    comparable: dict[str, Any] = {}
    for key, value in summary.items():
        if key.startswith("frequent_items/"):
            value = {item.value: (item.est, item.lower, item.upper) for item in value}
        elif isinstance(value, float) and np.isnan(value):
            value = "nan"
        comparable[key] = value
    return comparable


def _pick(view: DatasetProfileView, column: str, keys: list[str]) -> dict[str, Any]:
    summary = _summary(view, column)
    return {key: int(summary[key]) for key in keys}


def _frequent(view: DatasetProfileView, column: str) -> dict[str, int]:
    return {item.value: int(item.est) for item in _summary(view, column)["frequent_items/frequent_strings"]}


def _top(view: DatasetProfileView, column: str, size: int) -> set[str]:
    items = sorted(_summary(view, column)["frequent_items/frequent_strings"], key=lambda item: -item.est)
    return {item.value for item in items[:size]}


def _present(frame: pl.DataFrame, column: str) -> np.ndarray:
    """The finite, non-null values of a column, sorted (the data the distribution sketch should describe)."""
    values = frame.get_column(column).drop_nulls().cast(pl.Float64).to_numpy()
    return np.sort(values[np.isfinite(values)])


def _rank_misses(sorted_values: np.ndarray, summary: dict[str, Any]) -> dict[str, float]:
    """Quantile key -> how far (in rank) the reported value is from its target, for misses beyond tolerance.

    The empirical CDF of the raw data is read on both sides of the value, so ties (integers) count as hits.
    """
    size = len(sorted_values)
    misses = {}
    for key, target in QUANTILES.items():
        value = summary[key]
        below = np.searchsorted(sorted_values, value, side="left") / size
        at_or_below = np.searchsorted(sorted_values, value, side="right") / size
        miss = 0.0 if below <= target <= at_or_below else min(abs(below - target), abs(at_or_below - target))
        if miss > RANK_TOLERANCE:
            misses[key] = miss
    return misses


# 1. A stock whylogs profile


def test_serialized_profile_loads_with_plain_whylogs(profile: DatasetProfileView) -> None:
    loaded = dataset_profile_view_class().deserialize(serialize(profile))
    assert set(loaded.get_columns()) == set(ALL_COLUMNS)
    for column in ALL_COLUMNS:
        assert _comparable(_summary(loaded, column)) == _comparable(_summary(profile, column)), column


def test_profile_written_to_a_file_reads_back(profile: DatasetProfileView, tmp_path: Path) -> None:
    path = tmp_path / "reference.bin"
    path.write_bytes(serialize(profile))
    loaded = read_profile(path)
    assert {column: _pick(loaded, column, COUNT_KEYS) for column in ALL_COLUMNS} == {
        column: _pick(profile, column, COUNT_KEYS) for column in ALL_COLUMNS
    }


# 2. Equivalence with why.log


@pytest.mark.parametrize("column", ALL_COLUMNS)
def test_counts_and_types_equal_why_log(
    profile: DatasetProfileView, reference: DatasetProfileView, column: str
) -> None:
    # counts/nan differs by design for polars nulls (pandas turns them into NaN): tested on its own below.
    keys = ["counts/n", "counts/null", "counts/inf", "counts/true", *TYPE_KEYS]
    assert _pick(profile, column, keys) == _pick(reference, column, keys)


def test_polars_nulls_are_nulls_not_nans(frame: pl.DataFrame, profile: DatasetProfileView) -> None:
    nulls = frame.get_column("with_nulls").null_count()
    assert nulls > 5_000
    assert _pick(profile, "with_nulls", ["counts/null", "counts/nan"]) == {"counts/null": nulls, "counts/nan": 0}


@pytest.mark.parametrize("column", NUMERIC_COLUMNS)
def test_distribution_moments_and_extremes_equal_why_log(
    frame: pl.DataFrame, profile: DatasetProfileView, reference: DatasetProfileView, column: str
) -> None:
    ours, theirs = _summary(profile, column), _summary(reference, column)
    values = _present(frame, column)
    assert ours["distribution/n"] == theirs["distribution/n"] == len(values)
    assert ours["distribution/mean"] == pytest.approx(theirs["distribution/mean"], rel=1e-9)
    assert ours["distribution/mean"] == pytest.approx(values.mean(), rel=1e-9)
    assert ours["distribution/stddev"] == pytest.approx(theirs["distribution/stddev"], rel=1e-9)
    assert (ours["distribution/min"], ours["distribution/max"]) == (values[0], values[-1])


@pytest.mark.parametrize("column", NUMERIC_COLUMNS)
def test_quantiles_are_within_kll_rank_error_like_why_log(
    frame: pl.DataFrame, profile: DatasetProfileView, reference: DatasetProfileView, column: str
) -> None:
    values = _present(frame, column)
    assert _rank_misses(values, _summary(profile, column)) == {}
    assert _rank_misses(values, _summary(reference, column)) == {}


def test_frequent_strings_of_few_categories_are_exact(
    frame: pl.DataFrame, profile: DatasetProfileView, reference: DatasetProfileView
) -> None:
    truth = dict(frame.get_column("category").value_counts().iter_rows())
    assert len(set(truth.values())) > 10  # unequal frequencies
    assert _frequent(profile, "category") == _frequent(reference, "category") == truth


def test_frequent_strings_of_a_long_tail_find_the_true_top_values(
    frame: pl.DataFrame, profile: DatasetProfileView, reference: DatasetProfileView
) -> None:
    truth = dict(frame.get_column("user").value_counts().iter_rows())
    assert len(truth) > 2_000  # more distinct values than the sketch holds exactly
    true_top = set(sorted(truth, key=lambda value: -truth[value])[:5])
    assert _top(profile, "user", 5) == _top(reference, "user", 5) == true_top
    items = {item.value: item for item in _summary(profile, "user")["frequent_items/frequent_strings"]}
    outside_bounds = [value for value in true_top if not items[value].lower <= truth[value] <= items[value].upper]
    assert outside_bounds == []


def test_integer_frequent_items_are_exact(
    frame: pl.DataFrame, profile: DatasetProfileView, reference: DatasetProfileView
) -> None:
    truth = {str(value): count for value, count in frame.get_column("visits").value_counts().iter_rows()}
    assert _frequent(profile, "visits") == _frequent(reference, "visits") == truth


@pytest.mark.parametrize("column", ALL_COLUMNS)
def test_cardinality_is_close_to_why_log_and_to_the_truth(
    frame: pl.DataFrame, profile: DatasetProfileView, reference: DatasetProfileView, column: str
) -> None:
    estimate = _summary(profile, column)["cardinality/est"]
    true_distinct = frame.get_column(column).drop_nulls().n_unique()
    assert estimate == pytest.approx(_summary(reference, column)["cardinality/est"], rel=0.03)
    assert estimate == pytest.approx(true_distinct, rel=0.03)


@pytest.mark.parametrize(
    ("nulls", "nans", "positive_inf", "negative_inf"),
    [
        (10, 5, 3, 0),
        (0, 7, 0, 0),
        (4, 0, 1, 2),
        (0, 0, 0, 0),
        (0, 0, 0, 50),
    ],
)
def test_nulls_nans_and_infinities_are_counted_apart_and_kept_out_of_the_distribution(
    nulls: int, nans: int, positive_inf: int, negative_inf: int
) -> None:
    rng = np.random.default_rng(nulls * 1000 + nans * 100 + positive_inf * 10 + negative_inf)
    values = rng.normal(0.0, 1.0, 1_000)
    positions = rng.permutation(len(values))
    special = np.split(positions, np.cumsum([nulls, nans, positive_inf, negative_inf]))
    values[special[1]] = np.nan
    values[special[2]] = np.inf
    values[special[3]] = -np.inf
    finite = values[special[4]]
    series = pl.Series("x", values, nan_to_null=False).scatter(special[0], None)

    summary = _summary(profile_frame(pl.DataFrame({"x": series})), "x")

    assert {key: summary[key] for key in ["counts/n", "counts/null", "counts/nan", "counts/inf"]} == {
        "counts/n": 1_000,
        "counts/null": nulls + nans,  # whylogs' convention: a NaN is also a null
        "counts/nan": nans,
        "counts/inf": positive_inf + negative_inf,
    }
    assert summary["distribution/n"] == summary["types/fractional"] == len(finite)
    assert (summary["distribution/min"], summary["distribution/max"]) == (finite.min(), finite.max())
    assert summary["distribution/mean"] == pytest.approx(finite.mean(), rel=1e-9)


# 3. Chunking and row order


@pytest.mark.parametrize(
    "rearrange",
    [
        pytest.param(lambda frame: profile_frame(frame, chunk_rows=1_000), id="chunks_of_1000"),
        pytest.param(lambda frame: profile_frame(frame, chunk_rows=10**6), id="one_chunk"),
        pytest.param(lambda frame: profile_frame(frame, chunk_rows=65_537), id="uneven_chunks"),
        pytest.param(
            lambda frame: profile_frame(frame.sample(fraction=1.0, shuffle=True, seed=11)), id="shuffled_rows"
        ),
    ],
)
def test_chunking_and_row_order_do_not_change_the_profile(
    frame: pl.DataFrame, profile: DatasetProfileView, rearrange: Callable[[pl.DataFrame], DatasetProfileView]
) -> None:
    other = rearrange(frame)
    assert {column: _pick(other, column, COUNT_KEYS + TYPE_KEYS) for column in ALL_COLUMNS} == {
        column: _pick(profile, column, COUNT_KEYS + TYPE_KEYS) for column in ALL_COLUMNS
    }
    assert _frequent(other, "category") == _frequent(profile, "category")
    assert _frequent(other, "visits") == _frequent(profile, "visits")
    assert _top(other, "user", 5) == _top(profile, "user", 5)
    for column in NUMERIC_COLUMNS:
        ours, base = _summary(other, column), _summary(profile, column)
        assert ours["distribution/mean"] == pytest.approx(base["distribution/mean"], rel=1e-9), column
        assert (ours["distribution/min"], ours["distribution/max"]) == (
            base["distribution/min"],
            base["distribution/max"],
        )
        assert _rank_misses(_present(frame, column), ours) == {}, column
    for column in ALL_COLUMNS:
        true_distinct = frame.get_column(column).drop_nulls().n_unique()
        assert _summary(other, column)["cardinality/est"] == pytest.approx(true_distinct, rel=0.03), column


def test_empty_frame_gives_an_empty_profile() -> None:
    view = profile_frame(pl.DataFrame({"x": pl.Series([], dtype=pl.Float64), "s": pl.Series([], dtype=pl.String)}))
    assert row_count(view) == 0
    assert _pick(view, "x", ["counts/n", "counts/null"]) == {"counts/n": 0, "counts/null": 0}


def test_uint64_ids_beyond_int64_are_profiled_the_same_whatever_the_chunking() -> None:
    frame = pl.DataFrame({"id": pl.Series([1, 2**63 + 5, 1, 1], dtype=pl.UInt64)})
    keys = ["types/integral", "types/fractional"]
    whole, chunked = profile_frame(frame, chunk_rows=10), profile_frame(frame, chunk_rows=2)
    assert _pick(chunked, "id", keys) == _pick(whole, "id", keys) == {"types/integral": 0, "types/fractional": 4}
    assert _summary(chunked, "id")["cardinality/est"] == pytest.approx(2.0, rel=1e-6)


# 4. Types


@pytest.mark.parametrize(
    ("dtype", "kind"),
    [
        (pl.Float64(), NUMERIC),
        (pl.Float32(), NUMERIC),
        (pl.Decimal(10, 2), NUMERIC),
        (pl.Int8(), INTEGRAL),
        (pl.UInt64(), NUMERIC),  # may exceed int64: floats in every chunk
        (pl.Boolean(), BOOLEAN),
        (pl.Datetime("ns", "UTC"), TEMPORAL),
        (pl.Date(), TEMPORAL),
        (pl.Time(), TEMPORAL),
        (pl.Duration("ms"), TEMPORAL),
        (pl.String(), STRING),
        (pl.Categorical(), STRING),
        (pl.Enum(["a", "b"]), STRING),
        (pl.Null(), STRING),
        (pl.List(pl.Int64), None),
        (pl.Struct({"a": pl.Int64}), None),
        (pl.Binary(), None),
    ],
    ids=str,
)
def test_each_polars_dtype_has_the_expected_kind(dtype: pl.DataType, kind: str | None) -> None:
    assert column_kind(dtype) == kind


_EPOCH_SECONDS = np.random.default_rng(5).integers(1_500_000_000, 1_800_000_000, 500)
_STAMPS = [dt.datetime.fromtimestamp(int(seconds), dt.UTC) for seconds in _EPOCH_SECONDS]


@pytest.mark.parametrize(
    ("series", "expected_min", "expected_max"),
    [
        pytest.param(
            pl.Series([stamp.replace(tzinfo=None) for stamp in _STAMPS], dtype=pl.Datetime(unit)),
            float(_EPOCH_SECONDS.min()),
            float(_EPOCH_SECONDS.max()),
            id=f"datetime_{unit}",
        )
        for unit in ("us", "ns", "ms")
    ]
    + [
        pytest.param(
            pl.Series(_STAMPS).dt.convert_time_zone("America/New_York"),
            float(_EPOCH_SECONDS.min()),
            float(_EPOCH_SECONDS.max()),
            id="datetime_with_time_zone",
        ),
        pytest.param(
            pl.Series([stamp.date() for stamp in _STAMPS]),
            (min(_STAMPS).date() - dt.date(1970, 1, 1)).days * 86_400.0,
            (max(_STAMPS).date() - dt.date(1970, 1, 1)).days * 86_400.0,
            id="date",
        ),
        pytest.param(
            pl.Series([dt.time(3, 15, 7), dt.time(0, 0, 1), dt.time(23, 59, 58)]),
            1.0,
            86_398.0,
            id="time_of_day_as_seconds_since_midnight",
        ),
        pytest.param(
            pl.Series([dt.timedelta(minutes=-2), dt.timedelta(days=3, milliseconds=500)]),
            -120.0,
            3 * 86_400 + 0.5,
            id="duration_as_seconds",
        ),
    ],
)
def test_temporal_columns_are_profiled_as_epoch_seconds(
    series: pl.Series, expected_min: float, expected_max: float
) -> None:
    with_nulls = pl.concat([series, pl.Series([None, None], dtype=series.dtype)])
    summary = _summary(profile_frame(pl.DataFrame({"when": with_nulls})), "when")
    assert summary["distribution/min"] == pytest.approx(expected_min, abs=1e-6)
    assert summary["distribution/max"] == pytest.approx(expected_max, abs=1e-6)
    assert (summary["counts/n"], summary["counts/null"], summary["types/fractional"]) == (
        len(series) + 2,
        2,
        len(series),
    )


@pytest.mark.parametrize("dtype", [pl.Categorical(), pl.Enum([*CATEGORIES, "never_seen"])], ids=str)
def test_categorical_and_enum_columns_are_profiled_like_strings(frame: pl.DataFrame, dtype: pl.DataType) -> None:
    strings = frame.get_column("category").head(20_000).scatter([0, 7, 99], None)
    keys = ["counts/n", "counts/null", *TYPE_KEYS]
    as_string = profile_frame(pl.DataFrame({"c": strings}), chunk_rows=3_000)
    as_dtype = profile_frame(pl.DataFrame({"c": strings.cast(dtype)}), chunk_rows=3_000)
    assert _pick(as_dtype, "c", keys) == _pick(as_string, "c", keys)
    assert _pick(as_dtype, "c", ["counts/null", "types/string"]) == {"counts/null": 3, "types/string": 19_997}
    assert _frequent(as_dtype, "c") == _frequent(as_string, "c")
    assert _summary(as_dtype, "c")["cardinality/est"] == pytest.approx(len(CATEGORIES), rel=1e-6)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([True, False, True, True], {"counts/true": 3, "counts/null": 0, "types/boolean": 4}),
        ([None, False, True, None, False], {"counts/true": 1, "counts/null": 2, "types/boolean": 3}),
        ([False] * 7, {"counts/true": 0, "counts/null": 0, "types/boolean": 7}),
        ([None, None], {"counts/true": 0, "counts/null": 2, "types/boolean": 0}),
    ],
)
def test_boolean_columns_count_true_values(values: list[bool | None], expected: dict[str, int]) -> None:
    view = profile_frame(pl.DataFrame({"flag": pl.Series(values, dtype=pl.Boolean)}), chunk_rows=2)
    assert _pick(view, "flag", list(expected)) == expected


def test_boolean_column_matches_why_log(why: ModuleType) -> None:
    flags = pl.Series("flag", np.random.default_rng(3).random(5_000) < 0.3)
    ours = profile_frame(flags.to_frame(), chunk_rows=1_234)
    theirs = why.log(pandas=flags.to_frame().to_pandas()).view()
    keys = [*COUNT_KEYS, *TYPE_KEYS]
    assert _pick(ours, "flag", keys) == _pick(theirs, "flag", keys)
    assert _frequent(ours, "flag") == _frequent(theirs, "flag") == {"True": flags.sum(), "False": 5_000 - flags.sum()}


def test_unsupported_dtypes_are_skipped_and_listed() -> None:
    frame = pl.DataFrame(
        {
            "x": [1.5, 2.5, None],
            "tags": [["a"], [], ["b", "c"]],
            "point": [{"a": 1}, {"a": 2}, None],
            "blob": [b"\x00", b"\x01", b"\x02"],
        }
    )
    profiler = Profiler(dict(frame.schema))
    profiler.update(frame)
    assert profiler.skipped == {name: str(dtype) for name, dtype in frame.schema.items() if name != "x"}
    assert profiler.skipped["tags"] == "List(String)"
    assert profiler.rows == 3
    view = profiler.view()
    assert set(view.get_columns()) == {"x"}
    assert _pick(view, "x", ["counts/n", "counts/null"]) == {"counts/n": 3, "counts/null": 1}
    assert set(profile_frame(frame).get_columns()) == {"x"}


def test_a_chunk_missing_a_profiled_column_raises_input_error_naming_it() -> None:
    profiler = Profiler({"x": pl.Float64(), "amount": pl.Int64()})
    with pytest.raises(InputError, match="amount"):
        profiler.update(pl.DataFrame({"x": [1.0]}))


def test_a_string_column_with_any_name_is_profiled() -> None:
    view = profile_frame(pl.DataFrame({"__driftline_count__": ["a", "b", "a"]}))
    assert _frequent(view, "__driftline_count__") == {"a": 2, "b": 1}


# 5. Parquet


def test_parquet_profile_equals_the_frame_profile(
    frame: pl.DataFrame, profile: DatasetProfileView, tmp_path: Path
) -> None:
    path = tmp_path / "batch.parquet"
    frame.write_parquet(path, row_group_size=50_000)
    view = profile_parquet(path, chunk_rows=30_000)
    assert {column: _pick(view, column, COUNT_KEYS + TYPE_KEYS) for column in ALL_COLUMNS} == {
        column: _pick(profile, column, COUNT_KEYS + TYPE_KEYS) for column in ALL_COLUMNS
    }
    assert _frequent(view, "category") == _frequent(profile, "category")
    assert row_count(view) == ROWS


def test_parquet_column_selection_profiles_only_those_columns(frame: pl.DataFrame, tmp_path: Path) -> None:
    path = tmp_path / "batch.parquet"
    frame.head(1_000).write_parquet(path)
    view = profile_parquet(path, columns=["visits", "category"])
    assert set(view.get_columns()) == {"visits", "category"}
    assert row_count(view) == 1_000


def _missing(tmp_path: Path) -> Path:
    return tmp_path / "absent.parquet"


def _random_bytes(tmp_path: Path) -> Path:
    path = tmp_path / "corrupt.parquet"
    path.write_bytes(np.random.default_rng(9).bytes(4_096))
    return path


def _truncated(tmp_path: Path) -> Path:
    path = tmp_path / "truncated.parquet"
    pl.DataFrame({"x": np.arange(10_000.0)}).write_parquet(path)
    path.write_bytes(path.read_bytes()[:-100])
    return path


@pytest.mark.parametrize("make_file", [_missing, _random_bytes, _truncated], ids=lambda f: f.__name__.strip("_"))
def test_unreadable_parquet_raises_input_error_naming_the_file(
    tmp_path: Path, make_file: Callable[[Path], Path]
) -> None:
    path = make_file(tmp_path)
    with pytest.raises(InputError, match=re.escape(str(path))):
        profile_parquet(path, chunk_rows=1_000)


def test_selecting_a_column_the_parquet_lacks_raises_input_error(tmp_path: Path) -> None:
    path = tmp_path / "batch.parquet"
    pl.DataFrame({"x": [1.0, 2.0]}).write_parquet(path)
    with pytest.raises(InputError, match="amount"):
        profile_parquet(path, columns=["x", "amount"])


@pytest.mark.parametrize(
    "data",
    [b"garbage", b"", b"WHY1" + b"\xff" * 64],
    ids=["garbage", "empty", "magic_then_junk"],
)
def test_bytes_that_are_not_a_profile_raise_input_error_naming_the_source(data: bytes) -> None:
    with pytest.raises(InputError, match=re.escape("x.bin")):
        deserialize(data, "x.bin")


def test_truncated_profile_bytes_raise_input_error(profile: DatasetProfileView) -> None:
    data = serialize(profile)
    with pytest.raises(InputError, match="half.bin"):
        deserialize(data[: len(data) // 2], "half.bin")


def test_missing_profile_file_raises_input_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "nothing.bin"
    with pytest.raises(InputError, match=re.escape(str(path))):
        read_profile(path)


# 6. Merge and row count


@pytest.mark.parametrize("split_at", [70_000, ROWS // 2])
def test_merged_partitions_equal_the_whole(frame: pl.DataFrame, profile: DatasetProfileView, split_at: int) -> None:
    parts = [profile_frame(frame.head(split_at)), profile_frame(frame.tail(ROWS - split_at), chunk_rows=40_000)]
    merged = merge(parts)
    assert {column: _pick(merged, column, COUNT_KEYS + TYPE_KEYS) for column in ALL_COLUMNS} == {
        column: _pick(profile, column, COUNT_KEYS + TYPE_KEYS) for column in ALL_COLUMNS
    }
    assert _frequent(merged, "category") == _frequent(profile, "category")
    assert _frequent(merged, "visits") == _frequent(profile, "visits")
    for column in NUMERIC_COLUMNS:
        summary = _summary(merged, column)
        assert summary["distribution/mean"] == pytest.approx(_summary(profile, column)["distribution/mean"], rel=1e-9)
        assert _rank_misses(_present(frame, column), summary) == {}, column
    assert row_count(merged) == ROWS
    assert [row_count(part) for part in parts] == [split_at, ROWS - split_at]


def test_merging_a_single_profile_keeps_its_counts(profile: DatasetProfileView) -> None:
    assert _pick(merge([profile]), "user", COUNT_KEYS) == _pick(profile, "user", COUNT_KEYS)


def test_merging_nothing_raises_input_error() -> None:
    with pytest.raises(InputError, match="no profiles"):
        merge([])


def test_row_count_includes_rows_that_are_null_in_every_column() -> None:
    view = profile_frame(pl.DataFrame({"a": [1, None, 3, None], "b": ["x", None, None, None]}), chunk_rows=3)
    assert row_count(view) == 4
