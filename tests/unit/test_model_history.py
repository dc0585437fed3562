"""model_history: a model's batches read back from the store (known predictions, labels and switchovers)."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from driftline.errors import IntegrityError
from driftline.loop import promotion
from driftline.models import registry
from driftline.reports import renderings
from driftline.reports.model_history import collect_history
from driftline.storage import layout
from driftline.storage.store import MemoryStore
from tests.batches import example_spec, parquet_bytes

SPEC = example_spec("h")
ROWS = 400


def _batch(store: MemoryStore, index: int, version: str, quality: float, drift: bool) -> str:
    """A scored, labelled batch whose champion ranks the labels with known quality (1.0: perfectly)."""
    batch_id = f"b{index:03d}"
    rng = np.random.default_rng(index)
    ids = np.arange(ROWS) + index * 10_000
    y = rng.integers(0, 2, ROWS)
    prediction = np.where(rng.random(ROWS) < quality, y * 0.8 + 0.1, rng.random(ROWS))
    store.create(layout.batch_data("h", batch_id), parquet_bytes(pl.DataFrame({"id": ids})))
    store.create(layout.batch_labels("h", batch_id), parquet_bytes(pl.DataFrame({"id": ids, "default": y})))
    store.create(
        layout.predictions("h", batch_id, version), parquet_bytes(pl.DataFrame({"id": ids, "prediction": prediction}))
    )
    summary = {version: {"role": "champion", "rows": ROWS, "p50_ms": 0.2, "p95_ms": 0.3, "p99_ms": 0.5}}
    store.put(layout.scoring_summary("h", batch_id), json.dumps(summary).encode())
    store.put(layout.drift_report("h", batch_id), json.dumps({"drift": drift, "score": 0.4 if drift else 0.0}).encode())
    return batch_id


def test_history_shows_the_drop_and_the_promotion_that_fixed_it() -> None:
    store = MemoryStore()
    for version in ("v1", "v2"):
        registry.register_version(store, "h", version, b"booster", {"decision": "champion"})
    promotion.promote(store, "h", "v1", "bootstrap")
    _batch(store, 1, "v1", quality=0.9, drift=False)
    _batch(store, 2, "v1", quality=0.1, drift=True)
    promotion.promote(store, "h", "v2", "shadow test: promote")
    _batch(store, 3, "v2", quality=0.9, drift=False)

    history = collect_history(store, SPEC)
    metrics = [point.metric for point in history.batches]
    assert history.metric == "auc" and len(metrics) == 3
    assert metrics[1] < metrics[0] - 0.2 and metrics[2] > metrics[1] + 0.2
    assert [point.champion for point in history.batches] == ["v1", "v1", "v2"]
    assert [point.input_drift for point in history.batches] == [False, True, False]
    assert history.batches[0].latency_ms == {"p50": 0.2, "p95": 0.3, "p99": 0.5}
    assert [(s.kind, s.version, s.batch_id) for s in history.switches] == [
        ("bootstrap", "v1", "b001"),
        ("promotion", "v2", "b003"),
    ]
    assert collect_history(store, SPEC, last=1).batches[0].batch_id == "b003"
    png = renderings.history_png(history.to_dict())
    assert png.startswith(b"\x89PNG")


def test_batches_without_scores_or_labels_have_no_metric() -> None:
    store = MemoryStore()
    store.create(layout.batch_data("h", "b001"), parquet_bytes(pl.DataFrame({"id": [1]})))
    point = collect_history(store, SPEC).batches[0]
    assert (point.batch_id, point.metric, point.champion, point.labelled_rows) == ("b001", None, None, 0)


def test_a_bounded_read_sees_the_same_last_batches_without_reading_older_ones() -> None:
    """The monitor figure drawn on every shadow-evaluate run reads the last N (+1) batches only."""
    store = MemoryStore()
    for version in ("v1", "v2"):
        registry.register_version(store, "h", version, b"booster", {"decision": "champion"})
    promotion.promote(store, "h", "v1", "bootstrap")
    for index in (1, 2, 3):
        _batch(store, index, "v1", quality=0.9, drift=False)
    promotion.promote(store, "h", "v2", "shadow test: promote")
    _batch(store, 4, "v2", quality=0.9, drift=True)
    expected = collect_history(store, SPEC, last=2)

    store.tamper(layout.predictions("h", "b001", "v1"), b"not a parquet file")
    with pytest.raises(IntegrityError):
        collect_history(store, SPEC, last=2)  # reads every batch, b001 too
    bounded = collect_history(store, SPEC, last=2, read_all=False)
    assert bounded == expected
    assert [(s.kind, s.version, s.batch_id) for s in bounded.switches] == [("promotion", "v2", "b004")]
