"""The Evidently comparison benchmark's data, its driftline side and its result entries (no peer env needed)."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from benchmarks import bench_evidently
from benchmarks.bench_evidently import (
    DOUBLED_CATEGORY,
    DOUBLED_COLUMN,
    SHIFT_SD,
    SHIFTED_COLUMN,
    cached_frames,
    category_share,
    comparison_entries,
    drift_frames,
    peer_python,
)
from driftline.data import profiling

ROWS = 100_000


@pytest.fixture(scope="module")
def frames() -> tuple[pl.DataFrame, pl.DataFrame]:
    return drift_frames(ROWS, seed=7)


def _shares(series: pl.Series) -> dict[str, float]:
    counts = series.value_counts()
    return dict(zip(counts[series.name].to_list(), (counts["count"] / series.len()).to_list(), strict=True))


def test_the_shifted_column_moves_by_the_planted_fraction_of_a_standard_deviation(frames) -> None:
    reference, current = frames
    moved = (current[SHIFTED_COLUMN].mean() - reference[SHIFTED_COLUMN].mean()) / reference[SHIFTED_COLUMN].std()
    assert moved == pytest.approx(SHIFT_SD, abs=0.02)


def test_the_doubled_category_doubles_and_the_others_keep_their_relative_shares(frames) -> None:
    reference, current = frames
    before, after = _shares(reference[DOUBLED_COLUMN]), _shares(current[DOUBLED_COLUMN])
    share = category_share(DOUBLED_COLUMN, DOUBLED_CATEGORY)
    assert before[DOUBLED_CATEGORY] == pytest.approx(share, rel=0.05)
    assert after[DOUBLED_CATEGORY] == pytest.approx(2 * share, rel=0.05)
    shrink = (1 - 2 * share) / (1 - share)
    for category in ("c000", "c001", "c002"):
        assert after[category] / before[category] == pytest.approx(shrink, rel=0.03)


def test_no_other_column_moves(frames) -> None:
    reference, current = frames
    for name in reference.columns:
        if name in (SHIFTED_COLUMN, DOUBLED_COLUMN):
            continue
        if reference[name].dtype == pl.String:
            before, after = _shares(reference[name]), _shares(current[name])
            assert max(abs(after.get(key, 0.0) - value) for key, value in before.items()) < 0.01, name
        else:
            moved = abs(current[name].median() - reference[name].median()) / reference[name].std()
            assert moved < 0.03, name


def test_the_frames_are_seeded() -> None:
    first, second = drift_frames(2_000, seed=3), drift_frames(2_000, seed=3)
    assert all(a.equals(b) for a, b in zip(first, second, strict=True))
    assert not drift_frames(2_000, seed=4)[0].equals(first[0])


def test_cached_frames_are_written_once_and_reused(tmp_path: Path) -> None:
    paths = cached_frames(1_000, 1, tmp_path)
    written = [path.stat().st_mtime_ns for path in paths]
    assert cached_frames(1_000, 1, tmp_path) == paths
    assert [path.stat().st_mtime_ns for path in paths] == written
    assert sorted(p.name for p in paths[0].parent.iterdir()) == ["current.parquet", "reference.parquet"]
    assert pl.read_parquet(paths[1]).equals(drift_frames(1_000, 1)[1])


def test_a_missing_peer_environment_is_a_reason_and_no_entries(tmp_path: Path, monkeypatch, capsys) -> None:
    python, reason = peer_python(tmp_path / ".venv-peers")
    assert python is None and "make peers" in reason
    monkeypatch.setenv("DRIFTLINE_BENCH_PEERS_VENV", str(tmp_path / ".venv-peers"))
    assert bench_evidently.main() == {}
    assert "skipping the Evidently comparison" in capsys.readouterr().out


def test_the_driftline_side_flags_both_planted_columns_and_nothing_else(tmp_path: Path, capsys) -> None:
    reference_path, current_path = cached_frames(20_000, 11, tmp_path)
    profile_path = tmp_path / "reference.profile"
    profile_path.write_bytes(profiling.serialize(profiling.profile_parquet(reference_path)))
    bench_evidently._child(str(current_path), str(profile_path))
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["drifted"] == sorted([SHIFTED_COLUMN, DOUBLED_COLUMN])
    assert result["rows"] == [20_000, 20_000]
    assert result["seconds"] > 0 and result["peak_work_mb"] >= result["rss_loaded_mb"] - 1


def _result(tool: str, seconds: float, work_mb: float, drifted: list[str]) -> dict:
    scores = {name: {"score": 0.2, "statistic": "psi", "threshold": 0.1} for name in (SHIFTED_COLUMN, DOUBLED_COLUMN)}
    memory = {"rss_loaded_mb": 300.0, "peak_loaded_mb": 320.0, "peak_work_mb": 300.0 + work_mb}
    memory |= {"peak_mb": 300.0 + work_mb, "work_mb": work_mb, "peak_reset": True}
    timing = {"seconds": seconds, "cpu_seconds": seconds}
    return {"tool": tool, "rows": [1000, 1000], **timing, **memory, "drifted": drifted, "scores": scores}


def test_the_entries_have_the_result_shape_and_say_what_each_tool_flagged() -> None:
    ours = [_result("driftline", s, 40.0, [DOUBLED_COLUMN, SHIFTED_COLUMN]) for s in (1.0, 2.0, 3.0)]
    peer = [_result("evidently 0.7.23", s, 800.0, [SHIFTED_COLUMN]) for s in (60.0, 80.0)]
    entries = comparison_entries(ours, peer)
    assert set(entries) == {"drift_vs_evidently_seconds", "drift_vs_evidently_peak_rss"}
    for entry in entries.values():
        assert set(entry) == {"value", "unit", "baseline", "ratio", "notes"}
    seconds, memory = entries["drift_vs_evidently_seconds"], entries["drift_vs_evidently_peak_rss"]
    assert (seconds["value"], seconds["baseline"], seconds["ratio"]) == (2.0, 70.0, 35.0)
    assert (memory["value"], memory["baseline"], memory["ratio"]) == (40.0, 800.0, 0.05)
    assert f"missed ['{DOUBLED_COLUMN}']" in seconds["notes"]
    assert f"driftline flagged ['{DOUBLED_COLUMN}', '{SHIFTED_COLUMN}']" in seconds["notes"]
