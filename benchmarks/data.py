"""Seeded synthetic tables for the benchmarks: float columns of varied shapes and Zipf-like string categories."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import polars as pl

# 4 string columns spanning 5-200 categories (the 20-column layout of the profiling benchmark).
CATEGORY_COUNTS = (5, 20, 60, 200)


def _numeric(rng: np.random.Generator, index: int, rows: int) -> np.ndarray:
    """One float column; the shape cycles through eight distributions (skewed, heavy-tailed, bimodal, discrete)."""
    shape = index % 8
    if shape == 0:
        return rng.normal(0.0, 1.0, rows)
    if shape == 1:
        return rng.lognormal(3.0, 1.0, rows)
    if shape == 2:
        return rng.exponential(2.0, rows)
    if shape == 3:
        return rng.uniform(-100.0, 100.0, rows)
    if shape == 4:
        return rng.gamma(2.0, 5.0, rows)
    if shape == 5:
        return rng.standard_t(3, rows)
    if shape == 6:
        return np.where(rng.random(rows) < 0.3, rng.normal(-5.0, 1.0, rows), rng.normal(5.0, 2.0, rows))
    return rng.poisson(4.0, rows).astype(np.float64)


def _categorical(rng: np.random.Generator, categories: int, rows: int, tilt: float = 0.0) -> pl.Series:
    """Strings ``c000``.. with Zipf-like shares; ``tilt`` > 0 moves mass towards rarer categories (drift)."""
    weights = 1.0 / np.arange(1, categories + 1) ** (1.1 - tilt)
    weights /= weights.sum()
    labels = pl.Series([f"c{j:03d}" for j in range(categories)])
    return labels.gather(rng.choice(categories, size=rows, p=weights))


def mixed_frame(
    rows: int,
    *,
    numeric: int = 16,
    category_counts: tuple[int, ...] = CATEGORY_COUNTS,
    seed: int = 0,
    shifted: tuple[int, ...] = (),
    tilted: tuple[int, ...] = (),
) -> pl.DataFrame:
    """``rows`` x (``numeric`` floats + one string column per entry of ``category_counts``), seeded.

    Args:
        rows: number of rows.
        numeric: number of float columns ``num_00``...
        category_counts: categories of each string column ``cat_0``...
        seed: numpy seed; the same arguments give the same frame.
        shifted: indices of float columns whose values move by half a standard deviation (drift).
        tilted: indices of string columns whose category shares flatten (drift).
    """
    rng = np.random.default_rng(seed)
    columns: dict[str, np.ndarray | pl.Series] = {}
    for index in range(numeric):
        values = _numeric(rng, index, rows)
        if index in shifted:
            values = values + 0.5 * values.std()
        columns[f"num_{index:02d}"] = values
    for index, categories in enumerate(category_counts):
        columns[f"cat_{index}"] = _categorical(rng, categories, rows, tilt=0.4 if index in tilted else 0.0)
    return pl.DataFrame(columns)


def write_parquet_in_pieces(
    path: Path, rows: int, *, piece_rows: int = 1_000_000, row_group_rows: int = 250_000, seed: int = 0
) -> float:
    """Write ``rows`` rows of ``mixed_frame`` layout to ``path`` one piece at a time (memory ~ one piece).

    Returns:
        Seconds taken.
    """
    import pyarrow.parquet as pq

    started = time.perf_counter()
    writer = None
    try:
        for piece, start in enumerate(range(0, rows, piece_rows)):
            table = mixed_frame(min(piece_rows, rows - start), seed=seed + piece).to_arrow()
            if writer is None:
                writer = pq.ParquetWriter(str(path), table.schema)
            writer.write_table(table, row_group_size=row_group_rows)
    finally:
        if writer is not None:
            writer.close()
    return time.perf_counter() - started
