"""Seeded feature batches matching configs/example.yaml, for flow and e2e tests."""

from __future__ import annotations

import datetime as dt
import io
from pathlib import Path

import numpy as np
import polars as pl

from driftline.spec import ModelSpec, load_spec
from tests.support import REPO


def example_spec(name: str = "example") -> ModelSpec:
    spec = load_spec(REPO / "configs" / "example.yaml")
    return spec.model_copy(update={"name": name})


def example_batch(seed: int, rows: int = 20_000, income_shift: float = 0.0) -> pl.DataFrame:
    """Credit-like features; ``income_shift`` moves log-income (0.3 is a clear drift of one feature)."""
    rng = np.random.default_rng(seed)
    start = dt.datetime(2026, 1, 1) + dt.timedelta(days=seed)
    return pl.DataFrame(
        {
            "id": np.arange(rows, dtype=np.int64) + seed * 10_000_000,
            "ts": [start + dt.timedelta(seconds=i) for i in range(rows)],
            "income": rng.lognormal(10 + income_shift, 0.5, rows),
            "debt_ratio": rng.beta(2, 5, rows),
            "age": rng.integers(18, 80, rows),
            "credit_lines": rng.poisson(4, rows),
            "late_payments": rng.poisson(0.3, rows),
            "utilization": rng.uniform(0, 1, rows),
            "region": rng.choice(["north", "south", "east", "west"], rows),
            "employment": rng.choice(["salaried", "self", "none"], rows, p=[0.7, 0.2, 0.1]),
        }
    )


def parquet_bytes(frame: pl.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.write_parquet(buffer)
    return buffer.getvalue()


def write_parquet(frame: pl.DataFrame, path: Path) -> Path:
    frame.write_parquet(path)
    return path


def example_labels(frame: pl.DataFrame, seed: int, concept: float = 0.0) -> pl.DataFrame:
    """Default labels with a known rule: risk rises with debt ratio, utilization and late payments and falls
    with income; ``concept`` flips the role of utilization (a concept drift the features do not show)."""
    rng = np.random.default_rng(seed + 1000)
    utilization = frame.get_column("utilization").to_numpy()
    logit = (
        -1.0
        + 3.0 * frame.get_column("debt_ratio").to_numpy()
        + (2.0 - 4.0 * concept) * utilization
        + 0.8 * frame.get_column("late_payments").to_numpy()
        - 0.8 * (np.log(frame.get_column("income").to_numpy()) - 10.0)
        + np.where(frame.get_column("employment").to_numpy() == "none", 0.7, 0.0)
    )
    label = (rng.random(frame.height) < 1.0 / (1.0 + np.exp(-logit))).astype(np.int8)
    return pl.DataFrame({"id": frame.get_column("id"), "default": label})
