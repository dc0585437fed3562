"""The shortcuts of the batched check give the plain path's report bit for bit, taken or not.

Two shortcuts rely on a property of the data and check it first:

* a strictly ascending current sketch (``_SortedSketch.distinct``) reads the CDF at its own quantiles from
  where its rank search stopped; ties, point masses, integers and zeros of both signs must fall back to
  searching;
* categorical features whose counts are known exactly on both sides are binned with arrays against the
  reference's sorted categories (``_categorical_statistics_exact``); loose sketch counts, a real category
  named like the pooled bin and unseen categories take the dict path or its sorted merge.

Seeded synthetic data with each case, compared with ``feature_drift`` on the JSON of the features.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import numpy as np
import polars as pl
import pytest

from driftline.data.profiling import profile_frame
from driftline.statistics.drift import (
    OTHER,
    DriftPolicy,
    PreparedReference,
    _reference_categories,
    _sorted_sketch,
    compare_profiles,
    feature_drift,
)

if TYPE_CHECKING:
    from whylogs.core import DatasetProfileView

ROWS = 40_000
NUMERIC = ["continuous", "ties", "ints", "point_mass", "mixed_zeros", "with_nan_inf"]
CATEGORICAL = ["many", "unseen", "named_other", "long_tail", "flag"]


def _numeric(rng: np.random.Generator, rows: int, shift: float) -> dict[str, np.ndarray]:
    normal = rng.normal(shift, 1.0, rows)
    with_nan_inf = rng.normal(shift, 2.0, rows)
    with_nan_inf[rng.random(rows) < 0.03] = np.nan
    with_nan_inf[rng.random(rows) < 0.02] = np.inf
    with_nan_inf[rng.random(rows) < 0.02] = -np.inf
    return {
        "continuous": normal,
        "ties": np.round(rng.exponential(2.0 + shift, rows), 1),
        "ints": rng.poisson(3.0 + shift, rows).astype(np.float64),
        "point_mass": np.where(rng.random(rows) < 0.6, 1.5, rng.normal(shift, 1.0, rows)),
        "mixed_zeros": np.where(rng.random(rows) < 0.5, -0.0, 0.0) + np.round(rng.normal(shift, 1.0, rows)),
        "with_nan_inf": with_nan_inf,
    }


def _categorical(rng: np.random.Generator, rows: int, shift: float) -> dict[str, object]:
    many = [f"m{i:03d}" for i in range(120)]
    weights = np.linspace(1.0, 1.0 + 4 * shift, len(many))
    unseen_pool = many[:40] + (["new_big", "new_small", "a_new"] if shift else [])
    unseen_p = np.r_[np.full(40, 1.0), [40.0, 0.05, 8.0] if shift else []]
    named = np.array(["x", "y", OTHER, "z"], dtype=object)
    return {
        "many": rng.choice(many, rows, p=weights / weights.sum()),
        "unseen": rng.choice(unseen_pool, rows, p=unseen_p / unseen_p.sum()),
        "named_other": named[rng.integers(0, 4, rows)],
        # Far more distinct values than the frequent-items sketch keeps: its counts are bounds only.
        "long_tail": [f"t{int(z)}" for z in rng.zipf(1.2 + shift / 10, rows) % 20_000],
        "flag": rng.random(rows) < 0.3 + shift / 5,
    }


def _profile(seed: int, shift: float) -> DatasetProfileView:
    rng = np.random.default_rng(seed)
    return profile_frame(pl.DataFrame({**_numeric(rng, ROWS, shift), **_categorical(rng, ROWS, shift)}))


@pytest.fixture(scope="module")
def reference() -> DatasetProfileView:
    return _profile(101, 0.0)


@pytest.fixture(scope="module", params=[0.0, 0.4], ids=["same", "shifted"])
def current(request: pytest.FixtureRequest) -> DatasetProfileView:
    return _profile(202, request.param)


def _kll(view: DatasetProfileView, name: str) -> object:
    return view.get_column(name).get_metric("distribution").kll.value


def test_the_distinct_shortcut_is_taken_only_on_strictly_ascending_sketches(current: DatasetProfileView) -> None:
    distinct = {name: getattr(_sorted_sketch(_kll(current, name)), "distinct", None) for name in NUMERIC}
    assert distinct == {
        "continuous": True,
        "ties": False,
        "ints": False,
        "point_mass": False,
        "mixed_zeros": None,  # zeros of both signs: no sorted sketch, the sketch answers itself
        "with_nan_inf": True,  # NaN and +-inf are missing values, kept out of the sketch
    }


def test_the_array_binning_is_taken_only_when_every_count_is_known(reference: DatasetProfileView) -> None:
    prepared = PreparedReference(reference)
    taken = {name: _reference_categories(prepared.column(name)) is not None for name in CATEGORICAL}
    assert taken == {"many": True, "unseen": True, "named_other": False, "long_tail": False, "flag": True}


@pytest.mark.parametrize("bins", [2, 10, 37])
def test_fast_paths_and_fallbacks_match_the_plain_path_bit_for_bit(
    reference: DatasetProfileView, current: DatasetProfileView, bins: int
) -> None:
    policy = DriftPolicy(bins=bins)
    for left, right in ((reference, current), (current, reference)):
        prepared = PreparedReference(left)
        for _ in range(2):  # the second check on what the first kept
            report = compare_profiles(prepared, right, numeric=NUMERIC, categorical=CATEGORICAL, policy=policy)
            kinds = {name: feature.kind for name, feature in report.features.items()}
            plain = {name: feature_drift(name, left, right, kind, policy) for name, kind in kinds.items()}
            assert json.dumps({name: f.to_dict() for name, f in report.features.items()}) == json.dumps(
                {name: f.to_dict() for name, f in plain.items()}
            )


def test_unseen_categories_are_reported_through_the_array_binning(
    reference: DatasetProfileView, current: DatasetProfileView
) -> None:
    report = compare_profiles(PreparedReference(reference), current, categorical=["unseen"])
    unseen_share = report.features["unseen"].statistics["unseen_share"]
    listed = current.get_column("unseen").get_metric("frequent_items").strings
    assert (unseen_share > 0.4) == any(item.value == "new_big" for item in listed)
