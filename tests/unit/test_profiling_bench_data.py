"""The profiling benchmark's parquet cache (``benchmarks.data.cached_parquet``): written once, reused while
valid, never reused half-written."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest

from benchmarks import data
from benchmarks.data import cached_parquet, mixed_frame

ROWS = 2_500
PIECE_ROWS = 1_000
ROW_GROUP_ROWS = 400


def _cached(directory: Path, **overrides: int) -> tuple[Path, float | None]:
    arguments = {"seed": 3, "piece_rows": PIECE_ROWS, "row_group_rows": ROW_GROUP_ROWS, **overrides}
    rows = arguments.pop("rows", ROWS)
    return cached_parquet(rows, directory=directory, **arguments)


def test_the_first_call_writes_and_later_calls_reuse_the_same_file(tmp_path: Path) -> None:
    path, seconds = _cached(tmp_path)
    assert seconds is not None
    written = path.stat()
    again, seconds_again = _cached(tmp_path)
    assert (again, seconds_again) == (path, None)
    assert (again.stat().st_ino, again.stat().st_mtime_ns) == (written.st_ino, written.st_mtime_ns)


def test_the_cached_file_holds_the_generated_rows(tmp_path: Path) -> None:
    path, _ = _cached(tmp_path)
    pieces = [
        mixed_frame(min(PIECE_ROWS, ROWS - start), seed=3 + index)
        for index, start in enumerate(range(0, ROWS, PIECE_ROWS))
    ]
    assert pl.read_parquet(path).equals(pl.concat(pieces))
    # 1000 + 1000 + 500 rows in groups of at most 400: 3 + 3 + 2
    assert pq.read_metadata(str(path)).num_row_groups == 8


@pytest.mark.parametrize(
    "overrides",
    [{"rows": ROWS + 1}, {"seed": 4}, {"piece_rows": 500}, {"row_group_rows": 300}],
    ids=lambda overrides: next(iter(overrides)),
)
def test_what_decides_the_content_is_part_of_the_key(tmp_path: Path, overrides: dict[str, int]) -> None:
    assert _cached(tmp_path, **overrides)[0] != _cached(tmp_path)[0]


def test_a_new_generator_version_is_never_served_an_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    old, _ = _cached(tmp_path)
    monkeypatch.setattr(data, "GENERATOR_VERSION", data.GENERATOR_VERSION + 1)
    new, seconds = _cached(tmp_path)
    assert new != old and seconds is not None


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-200])


def _other_rows(path: Path) -> None:
    mixed_frame(ROWS - 1, seed=3).write_parquet(path)


def _other_schema(path: Path) -> None:
    mixed_frame(ROWS, seed=3).drop("cat_3").write_parquet(path, row_group_size=ROW_GROUP_ROWS)


def _not_parquet(path: Path) -> None:
    path.write_bytes(b"not parquet at all")


@pytest.mark.parametrize("damage", [_truncate, _other_rows, _other_schema, _not_parquet], ids=lambda f: f.__name__[1:])
def test_a_file_that_fails_validation_is_written_again(tmp_path: Path, damage: Callable[[Path], None]) -> None:
    path, _ = _cached(tmp_path)
    damage(path)
    again, seconds = _cached(tmp_path)
    assert again == path and seconds is not None
    assert pq.read_metadata(str(path)).num_rows == ROWS


def test_an_interrupted_write_leaves_neither_a_file_nor_a_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(path: Path, rows: int, **_: int) -> float:
        mixed_frame(10, seed=0).write_parquet(path)  # part of the data, then the process is stopped
        raise KeyboardInterrupt

    monkeypatch.setattr(data, "write_parquet_in_pieces", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _cached(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_a_killed_writer_leaves_a_temporary_that_is_not_reused_and_is_cleaned_up(tmp_path: Path) -> None:
    path = _cached(tmp_path)[0]
    path.unlink()
    # A writer that died mid-file: its pid no longer exists.
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(finished.stdout)
    abandoned = path.with_name(f".{path.name}.{dead_pid}.tmp")
    abandoned.write_bytes(b"half a parquet file")
    # One that is still writing (our parent process) keeps its temporary.
    alive = path.with_name(f".{path.name}.{os.getppid()}.tmp")
    alive.write_bytes(b"in progress")

    again, seconds = _cached(tmp_path)
    assert again == path and seconds is not None
    assert not abandoned.exists()
    assert alive.exists()


def test_the_directory_comes_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRIFTLINE_BENCH_DATA", str(tmp_path / "elsewhere"))
    assert data.cache_directory() == tmp_path / "elsewhere"
    monkeypatch.delenv("DRIFTLINE_BENCH_DATA")
    assert data.cache_directory() == Path(data.__file__).resolve().parent / ".data"
