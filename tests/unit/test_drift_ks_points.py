"""The batched KS distance (undeduplicated points, the reference's CDF at its own points kept) is the plain one.

``compare_profiles`` against a ``PreparedReference`` takes the largest CDF gap over both sides' grid
quantiles and the next double above each without deduplicating them, and reads the current sketch
once for every point; ``feature_drift`` deduplicates and asks each sketch. Values shared by both sides,
one-valued columns, quantiles at the largest double (the next one up is +inf) and merged sketches are
where the two could part; the reports are compared as JSON, so any differing bit fails.
"""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from driftline.data.profiling import merge as merge_profiles
from driftline.data.profiling import profile_frame
from driftline.statistics.drift import DriftPolicy, PreparedReference, compare_profiles, feature_drift

ROWS = 30_000
LARGEST = float(np.finfo(np.float64).max)


def _frame(seed: int, rows: int, shift: float) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    return pl.DataFrame(
        {
            # Few distinct values, most of them on both sides: every point is a value of both sketches.
            "shared_ints": rng.integers(0, 12, rows).astype(np.float64) + np.round(shift),
            "one_value": np.full(rows, 7.0),
            "two_values": np.where(rng.random(rows) < 0.5 + shift / 10, 1.0, 2.0),
            "at_the_top": np.where(rng.random(rows) < 0.3, LARGEST, rng.normal(0.0, 1.0, rows)),
            "continuous": rng.normal(shift, 1.0, rows),
        }
    )


def _merged(seed: int, shift: float) -> object:
    parts = [profile_frame(_frame(seed + part, ROWS // 4, shift)) for part in range(4)]
    return merge_profiles(parts)


CASES = {
    "same distribution": (lambda: profile_frame(_frame(1, ROWS, 0.0)), lambda: profile_frame(_frame(2, ROWS, 0.0))),
    "shifted": (lambda: profile_frame(_frame(1, ROWS, 0.0)), lambda: profile_frame(_frame(3, ROWS, 1.0))),
    "merged against one": (lambda: _merged(10, 0.0), lambda: profile_frame(_frame(4, ROWS, 0.5))),
    "small against large": (lambda: profile_frame(_frame(5, 50, 0.0)), lambda: profile_frame(_frame(6, ROWS, 0.0))),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("bins", [2, 10, 37])
def test_batched_ks_and_bins_match_the_plain_path_bit_for_bit(case: str, bins: int) -> None:
    make_reference, make_current = CASES[case]
    reference, current = make_reference(), make_current()
    names = list(reference.get_columns())
    policy = DriftPolicy(bins=bins)
    prepared = PreparedReference(reference)
    for left, right in ((prepared, current), (PreparedReference(current), reference)):
        report = compare_profiles(left, right, numeric=names, policy=policy)
        plain = {name: feature_drift(name, left.view, right, "numeric", policy) for name in names}
        assert json.dumps({name: f.to_dict() for name, f in report.features.items()}) == json.dumps(
            {name: f.to_dict() for name, f in plain.items()}
        )
    # The same prepared reference again gives the same report: nothing kept in it changed.
    again = compare_profiles(prepared, current, numeric=names, policy=policy)
    assert json.dumps(again.to_dict()) == json.dumps(
        compare_profiles(reference, current, numeric=names, policy=policy).to_dict()
    )
