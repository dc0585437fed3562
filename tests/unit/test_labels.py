"""Labels validation: every problem named, the file at fault in the message."""

from __future__ import annotations

import polars as pl
import pytest

from driftline.data.batches import check_labels
from driftline.errors import InputError
from tests.batches import example_spec

SPEC = example_spec("m")
IDS = pl.Series("id", [1, 2, 3, 4])


def test_good_labels_are_reduced_to_the_label_columns() -> None:
    frame = pl.DataFrame({"id": [1, 2, 3], "default": [0, 1, 0], "note": ["a", "b", "c"]})
    checked = check_labels(frame, SPEC, IDS, "l.parquet")
    assert checked.columns == ["id", "default"] and checked.height == 3


def test_missing_target_column_is_named() -> None:
    with pytest.raises(InputError, match=r"l.parquet: missing column\(s\) \['default'\]"):
        check_labels(pl.DataFrame({"id": [1]}), SPEC, IDS, "l.parquet")


def test_every_problem_is_listed_at_once() -> None:
    frame = pl.DataFrame({"id": [1, 1, 9], "default": [0, 2, None]})
    with pytest.raises(InputError) as caught:
        check_labels(frame, SPEC, IDS, "l.parquet")
    message = str(caught.value)
    assert "1 row(s) have no 'default'" in message
    assert "duplicate ids in 'id'" in message
    assert "binary target 'default' has values ['0', '2'] (need 0/1)" in message
    assert "1 id(s) are not in the batch" in message
