"""Seeded synthetic tables for the benchmarks: float columns of varied shapes and Zipf-like string categories.

Large parquet files of this layout are cached (``cached_parquet``) under ``benchmarks/.data/`` (or
``$DRIFTLINE_BENCH_DATA``) so that ``make bench`` writes the 10M-row file (~1.25 GB, ~1 min) once, not
every run.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

if TYPE_CHECKING:
    import pyarrow as pa

# 4 string columns spanning 5-200 categories (the 20-column layout of the profiling benchmark).
CATEGORY_COUNTS = (5, 20, 60, 200)
NUMERIC_COLUMNS = 16
# Part of every cache key: bump when the generator below (shapes, seeding, column order, dtypes) changes,
# so that files written by the old generator are never reused.
GENERATOR_VERSION = 1
CACHE_DIRECTORY = Path(__file__).resolve().parent / ".data"


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
    numeric: int = NUMERIC_COLUMNS,
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


def cache_directory() -> Path:
    """Where cached benchmark files live: ``$DRIFTLINE_BENCH_DATA`` or ``benchmarks/.data/``."""
    configured = os.environ.get("DRIFTLINE_BENCH_DATA")
    return Path(configured) if configured else CACHE_DIRECTORY


def cached_parquet(
    rows: int,
    *,
    seed: int = 0,
    piece_rows: int = 1_000_000,
    row_group_rows: int = 250_000,
    directory: Path | None = None,
) -> tuple[Path, float | None]:
    """A parquet file of ``write_parquet_in_pieces(rows, ...)``, written on first use and reused after.

    The file name holds everything that decides its content (rows, seed, piece and row-group sizes, the
    column layout and ``GENERATOR_VERSION``). A file is reused only if its footer agrees: row count,
    row-group count and the schema ``mixed_frame`` gives; otherwise it is written again. Writes go to a
    temporary name in the same directory and are renamed into place when complete, so an interrupted
    write is never taken for a finished one; temporaries left by dead processes are removed.

    Returns:
        The path, and the seconds spent writing it (None when an existing file was reused).
    """
    directory = directory or cache_directory()
    layout = f"f{NUMERIC_COLUMNS}-c{'-'.join(str(count) for count in CATEGORY_COUNTS)}"
    name = f"mixed_{rows}_seed{seed}_{layout}_piece{piece_rows}_rg{row_group_rows}_v{GENERATOR_VERSION}.parquet"
    path = directory / name
    if _is_complete(path, rows, piece_rows, row_group_rows):
        return path, None
    directory.mkdir(parents=True, exist_ok=True)
    _remove_abandoned_temporaries(path)
    temporary = path.with_name(f".{name}.{os.getpid()}.tmp")
    try:
        seconds = write_parquet_in_pieces(
            temporary, rows, piece_rows=piece_rows, row_group_rows=row_group_rows, seed=seed
        )
        if not _is_complete(temporary, rows, piece_rows, row_group_rows):
            raise RuntimeError(f"{temporary}: the file just written does not have {rows} rows of the expected schema")
        os.replace(temporary, path)  # atomic within a directory: readers see no file or a whole one
    finally:
        temporary.unlink(missing_ok=True)
    return path, seconds


def _expected_schema() -> pa.Schema:
    return mixed_frame(1).to_arrow().schema


def _is_complete(path: Path, rows: int, piece_rows: int, row_group_rows: int) -> bool:
    """True when ``path`` is a readable parquet file with the rows, row groups and schema expected."""
    import pyarrow.parquet as pq

    if not path.is_file():
        return False
    try:
        metadata = pq.read_metadata(str(path))
        schema = pq.read_schema(str(path))
    except (OSError, ValueError):  # a truncated or foreign file: pyarrow raises ArrowInvalid or OSError
        return False
    # Each piece is written whole, so a piece that is not a multiple of the row group ends with a short one.
    pieces = [min(piece_rows, rows - start) for start in range(0, rows, piece_rows)]
    row_groups = sum(-(-piece // row_group_rows) for piece in pieces)
    return (
        metadata.num_rows == rows
        and metadata.num_row_groups == row_groups
        and schema.remove_metadata().equals(_expected_schema().remove_metadata())
    )


def _remove_abandoned_temporaries(path: Path) -> None:
    """Delete temporaries of ``path`` whose writing process is gone (an interrupted earlier run)."""
    for temporary in path.parent.glob(f".{path.name}.*.tmp"):
        pid = temporary.name.removeprefix(f".{path.name}.").removesuffix(".tmp")
        if pid.isdigit() and not _is_running(int(pid)):
            temporary.unlink(missing_ok=True)


def _is_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True
