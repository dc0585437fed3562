"""Scoring a batch with a registered version, and reading predictions, labels and event times back.

Known truth: a small XGBoost model trained on seeded rows whose label depends on ``x`` only; the stored
predictions must be exactly what ``training.predict`` gives for the same rows, joined by id.
"""

from __future__ import annotations

import io
import json
import re
from datetime import UTC, date, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from driftline.errors import ObjectNotFoundError
from driftline.models import registry, scoring, training
from driftline.models.scoring import ScoredBatch
from driftline.models.spec import parse_spec
from driftline.storage import layout
from driftline.storage.store import MemoryStore

SPEC = parse_spec(
    """
name: m
task: binary
target: y
id_column: id
time_column: ts
features: {numeric: [x, z], categorical: [c]}
xgboost: {num_boost_round: 20, early_stopping_rounds: 5}
"""
)
START = datetime(2026, 3, 1)


def _frame(seed: int, rows: int, id_offset: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=rows)
    return pl.DataFrame(
        {
            "id": np.arange(id_offset, id_offset + rows, dtype=np.int64),
            "ts": [START + timedelta(minutes=i) for i in range(rows)],
            "x": x,
            "z": rng.normal(size=rows),
            "c": rng.choice(["a", "b"], rows),
            "y": (rng.random(rows) < 1 / (1 + np.exp(-2 * x))).astype(np.int8),
        }
    )


def _parquet(frame: pl.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.write_parquet(buffer)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def trained() -> training.TrainedModel:
    return training.train(training.time_split(_frame(1, 1_500), SPEC), SPEC, nthread=1)


@pytest.fixture
def store(trained: training.TrainedModel) -> MemoryStore:
    store = MemoryStore()
    booster = training.model_bytes(trained.booster)
    registry.register_version(store, "m", "v1", booster, {"encoder": trained.encoder.to_dict()})
    return store


def test_a_scored_batch_stores_the_models_predictions_by_id_with_latency(
    store: MemoryStore, trained: training.TrainedModel
) -> None:
    batch = _frame(2, 300, id_offset=10_000).drop("y")
    scored = scoring.score(store, SPEC, batch, "b1", "v1", "champion", nthread=1)
    assert (scored.rows, scored.role, scored.already_scored) == (300, "champion", False)
    assert scored.key == layout.predictions("m", "b1", "v1")
    stored = scoring.read_predictions(store, SPEC, "b1", "v1")
    assert stored.columns == ["id", "prediction", "latency_ms"]
    assert stored["id"].to_list() == batch["id"].to_list()
    expected = training.predict(trained.booster, trained.encoder, batch)
    np.testing.assert_allclose(stored["prediction"].to_numpy(), expected.astype(np.float64))
    assert scored.p50_ms <= scored.p95_ms <= scored.p99_ms


def test_scoring_a_batch_again_keeps_the_first_predictions(store: MemoryStore) -> None:
    batch = _frame(2, 200).drop("y")
    scoring.score(store, SPEC, batch, "b1", "v1", "champion", nthread=1)
    first = store.get(layout.predictions("m", "b1", "v1"))
    again = scoring.score(store, SPEC, batch.reverse(), "b1", "v1", "champion", nthread=1)
    assert again.already_scored
    assert store.get(layout.predictions("m", "b1", "v1")) == first


def test_a_missing_batch_names_the_batch_the_model_and_the_key() -> None:
    expected = f"no batch 'b9' for model 'm' ({layout.batch_data('m', 'b9')})"
    with pytest.raises(ObjectNotFoundError, match=re.escape(expected)):
        scoring.read_batch(MemoryStore(), SPEC, "b9")


def test_a_stored_batch_reads_back() -> None:
    store, batch = MemoryStore(), _frame(3, 50).drop("y")
    store.put(layout.batch_data("m", "b1"), _parquet(batch))
    assert scoring.read_batch(store, SPEC, "b1").equals(batch)


def test_missing_predictions_and_labels_read_as_none() -> None:
    store = MemoryStore()
    assert scoring.read_predictions(store, SPEC, "b1", "v1") is None
    assert scoring.read_labels(store, SPEC, "b1") is None


def test_a_failure_record_keeps_why_a_version_did_not_score() -> None:
    store = MemoryStore()
    key = scoring.record_failure(store, "m", "b1", "v2", "shadow", "booster sha256 mismatch")
    assert key == layout.scoring_failure("m", "b1", "v2")
    body = json.loads(store.get(key))
    assert {k: body[k] for k in ("model", "batch_id", "version", "role", "error")} == {
        "model": "m",
        "batch_id": "b1",
        "version": "v2",
        "role": "shadow",
        "error": "booster sha256 mismatch",
    }
    assert datetime.fromisoformat(body["at"]).tzinfo is not None


def test_labelled_predictions_join_by_id_in_id_order_and_leave_out_unlabelled_rows() -> None:
    labels = pl.DataFrame({"id": [3, 1, 2, 9], "y": [1, None, 0, 1]})
    predictions = pl.DataFrame({"id": [1, 2, 3, 4], "prediction": [0.1, 0.2, 0.3, 0.4]})
    y, p = scoring.labelled_predictions(labels, predictions, SPEC)
    assert y.tolist() == [0.0, 1.0] and p.tolist() == [0.2, 0.3]


def test_paired_outcomes_keep_the_rows_all_three_share_in_id_order() -> None:
    labels = pl.DataFrame({"id": [5, 1, 2, 3], "y": [1, 0, 1, 0]})
    first = pl.DataFrame({"id": [1, 2, 3, 5], "prediction": [0.1, 0.2, 0.3, 0.5]})
    second = pl.DataFrame({"id": [5, 3, 1], "prediction": [0.55, 0.35, 0.15]})
    y, a, b = scoring.paired_outcomes(labels, first, second, SPEC)
    assert y.tolist() == [0.0, 0.0, 1.0]
    assert a.tolist() == [0.1, 0.3, 0.5] and b.tolist() == [0.15, 0.35, 0.55]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        (datetime(2026, 3, 1, 12, 30), datetime(2026, 3, 1, 12, 30, tzinfo=UTC)),
        (datetime(2026, 3, 1, 12, 30, tzinfo=UTC), datetime(2026, 3, 1, 12, 30, tzinfo=UTC)),
        (date(2026, 3, 1), datetime(2026, 3, 1, tzinfo=UTC)),
        (86_400, datetime(1970, 1, 2, tzinfo=UTC)),
        (1.5, datetime(1970, 1, 1, 0, 0, 1, 500_000, tzinfo=UTC)),
        ("2026-03-01", None),
    ],
    ids=["none", "naive", "aware", "date", "epoch int", "epoch float", "text"],
)
def test_event_times_become_aware_utc_datetimes(value: object, expected: datetime | None) -> None:
    assert scoring.as_utc(value) == expected


def test_the_earliest_and_latest_event_times_of_a_stored_batch() -> None:
    store, batch = MemoryStore(), _frame(4, 30).drop("y").reverse()
    store.put(layout.batch_data("m", "b1"), _parquet(batch))
    assert scoring.event_time_min(batch, SPEC) == START.isoformat()
    assert scoring.stored_event_time_min(store, SPEC, "b1") == START.isoformat()
    assert scoring.stored_event_time_max(store, SPEC, "b1") == (START + timedelta(minutes=29)).replace(tzinfo=UTC)
    assert scoring.stored_event_time_min(store, SPEC, "gone") is None
    assert scoring.stored_event_time_max(store, SPEC, "gone") is None


def test_a_batch_without_rows_or_time_column_has_no_earliest_event_time() -> None:
    assert scoring.event_time_min(_frame(5, 0), SPEC) is None
    assert scoring.event_time_min(_frame(5, 3).drop("ts"), SPEC) is None
    assert scoring.event_time_min(pl.DataFrame({"ts": [3, 1, 2]}), SPEC) == "1"


def _scored(version: str, role: str, rows: int, seconds: float) -> ScoredBatch:
    key = layout.predictions("m", "b1", version)
    return ScoredBatch("m", "b1", version, role, rows, key, seconds, 3.0, p50_ms=1.0, p95_ms=2.0)


def test_the_summary_lists_scored_and_failed_versions_and_is_stored_beside_the_predictions() -> None:
    scored = [_scored("v2", "champion", 1_000, 0.5), _scored("v3", "shadow", 1_000, 0.0)]
    failed = {"v1": ("previous", "predictions/m/b1/_failed/v1.json")}
    summary = scoring.summarize(scored, failed)
    assert summary["v2"]["rows_per_s"] == 2_000.0 and summary["v2"]["status"] == "scored"
    assert summary["v3"]["rows_per_s"] is None  # no time measured: no rate
    assert summary["v1"] == {"role": "previous", "status": "failed", "failure_key": failed["v1"][1]}
    store = MemoryStore()
    key = scoring.write_summary(store, "m", "b1", scored, failed)
    assert key == layout.scoring_summary("m", "b1")
    assert json.loads(store.get(key)) == summary


def test_the_metrics_table_puts_the_champion_first_then_shadow_previous_and_unknown_roles() -> None:
    summary = {
        "v4": {"role": "other", "status": "scored"},
        "v3": {"role": "previous", "status": "failed"},
        "v2": {"role": "shadow", "rows": 10},
        "v1": {"role": "champion", "rows": 10, "p99_ms": 1.5},
    }
    rows = scoring.metrics_table(summary)
    assert [row["version"] for row in rows] == ["v1", "v2", "v3", "v4"]
    assert rows[0]["p99_ms"] == 1.5 and rows[1]["status"] == "scored" and rows[2]["status"] == "failed"
    assert set(rows[0]) == {"role", "version", "status", "rows", "seconds", "rows_per_s", "p50_ms", "p95_ms", "p99_ms"}
