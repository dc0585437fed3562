"""A sketch's level layout is read from its header once per layout: what does not add up is refused.

``_sketch_levels`` caches the parse of the bytes before a sketch's min and max (``_level_layout``); the
sketches of one profile share them. A header that disagrees with the sketch's own n or size must give
None (the caller then asks the sketch itself), not values read from the wrong place.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from driftline.data.profiling import profile_frame
from driftline.statistics.drift import _level_layout, _sketch_levels, _sorted_sketch


def _klls() -> list:
    rng = np.random.default_rng(11)
    frame = pl.DataFrame({f"x{i}": rng.normal(i, 1.0 + i, 30_000) for i in range(3)})
    view = profile_frame(frame)
    return [view.get_column(name).get_metric("distribution").kll.value for name in frame.columns]


def test_sketches_of_one_layout_share_it_and_each_reads_its_own_values() -> None:
    klls = _klls()
    headers = {bytes(kll.serialize()[: 4 * kll.serialize()[0] + 4 * kll.serialize()[18]]) for kll in klls}
    assert len(headers) == 1  # same rows, same k: one layout for all three
    levels = [_sketch_levels(kll) for kll in klls]
    assert all(level is not None for level in levels)
    assert len({level[1] for level in levels}) == 1
    for kll in klls:
        ordered = _sorted_sketch(kll)
        assert ordered is not None
        expected = np.asarray(kll.get_quantiles([0.1, 0.5, 0.9]))
        assert np.array_equal(ordered.quantiles(np.array([0.1, 0.5, 0.9])), expected)


def test_a_header_that_does_not_add_up_is_refused() -> None:
    kll = _klls()[0]
    data = kll.serialize()
    header = data[: 4 * data[0] + 4 * data[18]]
    retained, n = int(kll.get_num_retained()), int(kll.get_n())
    assert _level_layout(header, len(data), retained, n) is not None
    assert _level_layout(header, len(data), retained, n + 1) is None  # n is not the header's
    assert _level_layout(header, len(data) - 8, retained, n) is None  # one value short
    assert _level_layout(header[:-4], len(data), retained, n) is None  # a level's offset cut off
