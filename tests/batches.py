"""Seeded feature batches matching configs/example.yaml, for flow and e2e tests (drawn by driftline.replay.synth)."""

from __future__ import annotations

import datetime as dt
import io
from pathlib import Path

import polars as pl

from driftline.models.spec import ModelSpec, load_spec
from driftline.replay import synth
from tests.support import REPO

_INCOME_LOG_SD = next(f.sd for f in synth.NUMERIC_FEATURES if f.name == "income")


def example_spec(name: str = "example") -> ModelSpec:
    spec = load_spec(REPO / "configs" / "example.yaml")
    return spec.model_copy(update={"name": name})


def example_batch(seed: int, rows: int = 20_000, income_shift: float = 0.0) -> pl.DataFrame:
    """Credit-like features (every column of ``synth.FEATURES``); ``income_shift`` moves log-income (0.3 is a
    clear drift of one feature). Rows are one second apart from 2026-01-01 + ``seed`` days."""
    return synth.sample_features(
        seed,
        rows,
        start=dt.datetime(2026, 1, 1) + dt.timedelta(days=seed),
        spacing=dt.timedelta(seconds=1),
        id_offset=seed * synth.ID_STRIDE,
        shifts={"income": income_shift / _INCOME_LOG_SD} if income_shift else None,
    )


def parquet_bytes(frame: pl.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.write_parquet(buffer)
    return buffer.getvalue()


def write_parquet(frame: pl.DataFrame, path: Path) -> Path:
    frame.write_parquet(path)
    return path


def example_labels(frame: pl.DataFrame, seed: int, concept: float = 0.0) -> pl.DataFrame:
    """Default labels with a known rule (``synth.default_probability``): risk rises with debt ratio, utilization
    and late payments and falls with income; ``concept`` flips the role of utilization (a concept drift the
    features do not show)."""
    return synth.sample_labels(frame, seed + 1000, concept=concept)
