"""Scoring a batch with a registered version: predictions written to S3 with their latency.

The champion's predictions are the output users consume; a shadow candidate (or, after a promotion, the
previous champion under guard) is scored on the same rows and written beside it. Prediction files hold
``id, prediction, latency_ms`` (per-row share of the batch call), and a small latency probe measures the
single-row latency percentiles (p50/p95/p99) that the shadow test compares and ``_summary.json`` keeps.
"""

from __future__ import annotations

import io
import json
import math
import time
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime

import numpy as np
import polars as pl

from driftline.errors import ConflictError, ObjectNotFoundError
from driftline.models import registry, training
from driftline.models.spec import ModelSpec
from driftline.storage import layout
from driftline.storage.store import ObjectStore

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
    p50_ms: float | None = None
    p95_ms: float | None = None

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
    p50, p95, p99 = (float(np.percentile(timings, q)) if timings else 0.0 for q in (50, 95, 99))
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
    return ScoredBatch(
        spec.name,
        batch_id,
        version,
        role,
        batch.height,
        key,
        round(seconds, 4),
        round(p99, 3),
        already,
        p50_ms=round(p50, 3),
        p95_ms=round(p95, 3),
    )


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


def labelled_predictions(
    labels: pl.DataFrame, predictions: pl.DataFrame, spec: ModelSpec
) -> tuple[np.ndarray, np.ndarray]:
    """(y, prediction) on the rows labels and predictions share, in id order; rows without a label are left out."""
    joined = (
        labels.select(spec.id_column, spec.target)
        .drop_nulls(spec.target)
        .join(predictions.select(spec.id_column, "prediction"), on=spec.id_column)
        .sort(spec.id_column)
    )
    return joined.get_column(spec.target).cast(pl.Float64).to_numpy(), joined.get_column("prediction").to_numpy()


def _iso(value: object) -> str | None:
    """An event time as drift payloads carry it (ISO for temporal columns, the number as text otherwise)."""
    if value is None:
        return None
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def event_time_min(batch: pl.DataFrame, spec: ModelSpec) -> str | None:
    """The earliest event time of a batch (the onset a drift payload carries)."""
    if spec.time_column not in batch.columns or batch.height == 0:
        return None
    return _iso(batch.get_column(spec.time_column).min())


def stored_event_time_min(store: ObjectStore, spec: ModelSpec, batch_id: str) -> str | None:
    """The earliest event time of a stored batch (only its time column is decoded); None when it is gone."""
    try:
        data = store.get(layout.batch_data(spec.name, batch_id))
    except ObjectNotFoundError:
        return None
    return event_time_min(pl.read_parquet(io.BytesIO(data), columns=[spec.time_column]), spec)


def stored_event_time_max(store: ObjectStore, spec: ModelSpec, batch_id: str) -> datetime | None:
    """The latest event time of a stored batch as an aware datetime (epoch numbers as seconds); None if gone.

    Budgets in event time (``shadow.max_days``) count with it, so they mean the same whatever the cadence
    of arrival and however late the labels come.
    """
    try:
        data = store.get(layout.batch_data(spec.name, batch_id))
    except ObjectNotFoundError:
        return None
    column = pl.read_parquet(io.BytesIO(data), columns=[spec.time_column]).get_column(spec.time_column)
    return as_utc(column.max())


def as_utc(value: object) -> datetime | None:
    """An event time (datetime, date or epoch seconds) as an aware UTC datetime; None when unknown."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    if isinstance(value, int | float):
        return datetime.fromtimestamp(float(value), UTC)
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


def summarize(scored: list[ScoredBatch], failed: dict[str, tuple[str, str]] | None = None) -> dict[str, dict]:
    """Operational facts of a batch, one entry per version (what ``_summary.json`` holds).

    A scored version: ``{"role", "status": "scored", "rows", "seconds", "rows_per_s", "p50_ms", "p95_ms",
    "p99_ms", "already_scored"}`` (latency percentiles of single-row calls; the shadow test reads p99). A
    version that failed: ``{"role", "status": "failed", "failure_key"}``.

    Args:
        failed: version -> (role, key of its failure record).
    """
    body: dict[str, dict] = {
        s.version: {
            "role": s.role,
            "status": "scored",
            "rows": s.rows,
            "seconds": s.seconds,
            "rows_per_s": round(s.rows / s.seconds, 1) if s.seconds > 0 else None,
            "p50_ms": s.p50_ms,
            "p95_ms": s.p95_ms,
            "p99_ms": s.p99_ms,
            "already_scored": s.already_scored,
        }
        for s in scored
    }
    for version, (role, failure_key) in (failed or {}).items():
        body[version] = {"role": role, "status": "failed", "failure_key": failure_key}
    return body


def write_summary(
    store: ObjectStore,
    model: str,
    batch_id: str,
    scored: list[ScoredBatch],
    failed: dict[str, tuple[str, str]] | None = None,
) -> str:
    """Store the batch's :func:`summarize` at ``predictions/<model>/<batch>/_summary.json``; return the key."""
    key = layout.scoring_summary(model, batch_id)
    store.put(key, json.dumps(summarize(scored, failed)).encode(), content_type="application/json")
    return key


def metrics_table(summary: dict[str, dict]) -> list[dict]:
    """Rows of the operational-metrics table artifact: one per version, champion first."""
    order = {"champion": 0, "shadow": 1, "previous": 2}
    rows = [
        {
            "role": facts.get("role"),
            "version": version,
            "status": facts.get("status", "scored"),
            **{k: facts.get(k) for k in ("rows", "seconds", "rows_per_s", "p50_ms", "p95_ms", "p99_ms")},
        }
        for version, facts in summary.items()
    ]
    return sorted(rows, key=lambda row: (order.get(str(row["role"]), 9), row["version"]))
