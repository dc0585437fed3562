"""Scoring a batch with a registered version: predictions written to S3 with their latency.

The champion's predictions are the output users consume; a shadow candidate (or, after a promotion, the
previous champion under guard) is scored on the same rows and written beside it. Prediction files hold
``id, prediction, latency_ms`` (per-row share of the batch call), and a small latency probe measures the
single-row p99 that the shadow test compares.
"""

from __future__ import annotations

import io
import json
import math
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

import numpy as np
import polars as pl

from driftline import layout, registry, training
from driftline.errors import ConflictError, ObjectNotFoundError
from driftline.spec import ModelSpec
from driftline.store import ObjectStore

LATENCY_PROBE_ROWS = 100
LATENCY_REPEATS = 3


@dataclass(frozen=True)
class ScoredBatch:
    """One version's predictions for one batch."""

    model: str
    batch_id: str
    version: str
    role: str
    rows: int
    key: str
    seconds: float
    p99_ms: float
    already_scored: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


def read_batch(store: ObjectStore, spec: ModelSpec, batch_id: str) -> pl.DataFrame:
    key = layout.batch_data(spec.name, batch_id)
    try:
        return pl.read_parquet(io.BytesIO(store.get(key)))
    except ObjectNotFoundError as error:
        raise ObjectNotFoundError(f"no batch {batch_id!r} for model {spec.name!r} ({key})") from error


def score(
    store: ObjectStore, spec: ModelSpec, batch: pl.DataFrame, batch_id: str, version: str, role: str, nthread: int
) -> ScoredBatch:
    """Predict ``batch`` with ``version`` and store ``predictions/<model>/<batch>/<version>.parquet``.

    Idempotent: when the predictions exist they are kept (conditional create) and reported as such.
    """
    key = layout.predictions(spec.name, batch_id, version)
    booster_bytes, metadata = registry.load_model(store, spec.name, version)
    booster = training.load_booster(booster_bytes)
    encoder = training.FeatureEncoder.from_dict(metadata["encoder"])
    started = time.perf_counter()
    predictions = training.predict(booster, encoder, batch, nthread=nthread)
    seconds = time.perf_counter() - started
    probe = batch.head(LATENCY_PROBE_ROWS)
    timings = []
    for i in range(probe.height):
        row = probe.slice(i, 1)
        # The fastest of a few repeats per row: what the model costs, not what the scheduler did meanwhile.
        best = math.inf
        for _ in range(LATENCY_REPEATS):
            tick = time.perf_counter()
            training.predict(booster, encoder, row, nthread=1)
            best = min(best, time.perf_counter() - tick)
        timings.append(best * 1000)
    p99 = float(np.percentile(timings, 99)) if timings else 0.0
    frame = pl.DataFrame(
        {
            spec.id_column: batch.get_column(spec.id_column),
            "prediction": predictions.astype(np.float64),
            "latency_ms": np.full(batch.height, seconds * 1000 / max(batch.height, 1)),
        }
    )
    buffer = io.BytesIO()
    frame.write_parquet(buffer)
    already = False
    try:
        store.create(key, buffer.getvalue(), content_type="application/vnd.apache.parquet")
    except ConflictError:
        already = True
    return ScoredBatch(spec.name, batch_id, version, role, batch.height, key, round(seconds, 4), round(p99, 3), already)


def record_failure(store: ObjectStore, model: str, batch_id: str, version: str, role: str, error: str) -> str:
    """Keep why a non-champion model failed to score (the champion's output is unaffected)."""
    key = layout.scoring_failure(model, batch_id, version)
    body = {
        "model": model,
        "batch_id": batch_id,
        "version": version,
        "role": role,
        "error": error,
        "at": datetime.now(UTC).isoformat(),
    }
    store.put(key, json.dumps(body).encode(), content_type="application/json")
    return key


def read_predictions(store: ObjectStore, spec: ModelSpec, batch_id: str, version: str) -> pl.DataFrame | None:
    try:
        return pl.read_parquet(io.BytesIO(store.get(layout.predictions(spec.name, batch_id, version))))
    except ObjectNotFoundError:
        return None


def read_labels(store: ObjectStore, spec: ModelSpec, batch_id: str) -> pl.DataFrame | None:
    try:
        return pl.read_parquet(io.BytesIO(store.get(layout.batch_labels(spec.name, batch_id))))
    except ObjectNotFoundError:
        return None


def paired_outcomes(
    labels: pl.DataFrame, first: pl.DataFrame, second: pl.DataFrame, spec: ModelSpec
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(y, prediction of first, prediction of second) on the rows all three share, in id order."""
    joined = (
        labels.select(spec.id_column, spec.target)
        .join(first.select(spec.id_column, pl.col("prediction").alias("first")), on=spec.id_column)
        .join(second.select(spec.id_column, pl.col("prediction").alias("second")), on=spec.id_column)
        .sort(spec.id_column)
    )
    return (
        joined.get_column(spec.target).cast(pl.Float64).to_numpy(),
        joined.get_column("first").to_numpy(),
        joined.get_column("second").to_numpy(),
    )


def write_summary(store: ObjectStore, model: str, batch_id: str, scored: list[ScoredBatch]) -> str:
    """version -> scoring facts for the batch (read by the shadow test for its latency check)."""
    key = layout.scoring_summary(model, batch_id)
    body = {s.version: {"role": s.role, "rows": s.rows, "seconds": s.seconds, "p99_ms": s.p99_ms} for s in scored}
    store.put(key, json.dumps(body).encode(), content_type="application/json")
    return key
