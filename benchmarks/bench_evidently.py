"""driftline's drift check against Evidently's ``DataDriftPreset`` on the same 1M x 20 frames.

The data: a reference and a current frame of ``ROWS`` rows in the layout of ``benchmarks.data.mixed_frame``
(16 float columns of 8 shapes, 4 string columns of 5-200 categories), different seeds; in the current
one ``SHIFTED_COLUMN`` moves by ``SHIFT_SD`` of its standard deviation and the share of category
``DOUBLED_CATEGORY`` of ``DOUBLED_COLUMN`` doubles (5.3% -> 10.6%, the other categories shrink in
proportion). Nothing else differs, so those two columns are the planted drift. Both are written once as
parquet under ``benchmarks/.data/`` (keyed by rows, seed and generator version; temp file then rename)
and reused by later runs.

Each run is a fresh child process, alternating driftline (``DRIFTLINE_RUNS``, in ``.venv``) and
Evidently (``EVIDENTLY_RUNS``, in ``.venv-peers``: Evidently needs pandas < 3), both on those files:

* Evidently (``benchmarks/peers/evidently_drift.py``): reads both parquet files into pandas (not timed),
  then timed: ``Report([DataDriftPreset()]).run(current, reference)`` with float columns declared
  numerical and string columns categorical, and reading the per-column verdicts. It needs the raw
  reference rows.
* driftline, as production checks a batch: the reference profile is made beforehand (``profile_parquet``
  of the reference file in this process, ``serialize`` -> bytes in a file, as the store holds it). The
  child reads the current parquet into polars and the bytes from the file (not timed), then timed:
  ``deserialize`` the reference bytes + ``profile_frame(current)`` + ``compare_profiles(reference,
  current)`` (default policy, uniform weights).

Entries (medians over the runs):

* ``drift_vs_evidently_seconds``: value = driftline's seconds, baseline = Evidently's; ratio = Evidently /
  driftline (higher is better; goal >= 40).
* ``drift_vs_evidently_peak_rss``: the memory the work adds, the same way for both (``MemoryProbe`` in
  the peer script): peak RSS during the work (``VmHWM``, reset to the RSS once the data is loaded) minus
  the RSS after imports and reading the data. value = driftline's MB, baseline = Evidently's; ratio =
  driftline / Evidently (lower is better; goal <= 0.25). The notes give each process's whole-life peak
  and its after-load RSS too. Memory that reading freed but the allocator kept counts in the after-load
  RSS and can be reused by the work, so one run's figure varies (driftline 8-45 MB seen); hence medians.

The notes also give each run's wall seconds and the median CPU seconds (``process_time``), which hold
better than wall time when other jobs load the machine. Measured here on 2 shared cores (2026-12, two
bench runs): driftline 0.45-2.01 s (CPU 0.44 s), 8-45 MB added (peak 440-470 MB); Evidently 0.7.23
64-242 s (CPU 66 s), ~930 MB added (peak ~1.85 GB, ~915 MB after loading both frames); driftline
flagged both planted columns, Evidently only the numeric one (Jensen-Shannon 0.07 < its 0.1 on the
doubled category). Two Evidently runs keep ``make bench`` within a few minutes.

No peer environment (``make peers`` creates it; it needs PyPI): the Evidently entries are skipped with
the reason printed, the benchmark does not fail.

    make peers && .venv/bin/python -m benchmarks evidently
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

from benchmarks.data import CATEGORY_COUNTS, mixed_frame

ROWS = 1_000_000
SEED = 20261202
SHIFTED_COLUMN = "num_00"  # normal(0, 1)
SHIFT_SD = 0.2
DOUBLED_COLUMN = "cat_1"  # 20 categories
DOUBLED_CATEGORY = "c004"  # share 5.3% -> 10.6%
GENERATOR_VERSION = 1  # part of the cache key: bump when the frames change
DRIFTLINE_RUNS = 3
EVIDENTLY_RUNS = 2
REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / "benchmarks" / ".data"
PEERS_VENV = REPO / ".venv-peers"  # `make bench` passes its PEERS_VENV as DRIFTLINE_BENCH_PEERS_VENV
PEER_SCRIPT = REPO / "benchmarks" / "peers" / "evidently_drift.py"
CHILD_TIMEOUT_S = 1800


def category_share(column: str, category: str) -> float:
    """Expected share of ``category`` in ``column`` of ``mixed_frame`` (Zipf-like weights 1/k^1.1)."""
    categories = CATEGORY_COUNTS[int(column.removeprefix("cat_"))]
    weights = 1.0 / np.arange(1, categories + 1) ** 1.1
    return float(weights[int(category.removeprefix("c"))] / weights.sum())


def drift_frames(rows: int, seed: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The reference and the current frame; the current with the two planted drifts.

    Args:
        rows: rows of each frame.
        seed: the reference uses ``seed``, the current ``seed + 1`` (and ``seed + 2`` for the re-labelling).

    Returns:
        ``(reference, current)``; only ``SHIFTED_COLUMN`` and ``DOUBLED_COLUMN`` differ in distribution.
    """
    reference = mixed_frame(rows, seed=seed)
    current = mixed_frame(rows, seed=seed + 1)
    rng = np.random.default_rng(seed + 2)
    shifted = current[SHIFTED_COLUMN]
    # Relabel each other row with probability p / (1 - p): the category's share goes p -> 2p and
    # the others keep their relative shares.
    share = category_share(DOUBLED_COLUMN, DOUBLED_CATEGORY)
    relabel = pl.Series(rng.random(rows) < share / (1.0 - share))
    current = current.with_columns(
        (shifted + SHIFT_SD * shifted.std()).alias(SHIFTED_COLUMN),
        pl.when(relabel).then(pl.lit(DOUBLED_CATEGORY)).otherwise(pl.col(DOUBLED_COLUMN)).alias(DOUBLED_COLUMN),
    )
    return reference, current


def cached_frames(rows: int = ROWS, seed: int = SEED, cache: Path = CACHE) -> tuple[Path, Path]:
    """Paths of the two frames as parquet, written on first use (temp file, then rename) and reused."""
    directory = cache / f"drift_pair_{rows}_{seed}_v{GENERATOR_VERSION}"
    paths = (directory / "reference.parquet", directory / "current.parquet")
    if all(path.exists() for path in paths):
        return paths
    directory.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    for frame, path in zip(drift_frames(rows, seed), paths, strict=True):
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        frame.write_parquet(temporary)
        os.replace(temporary, path)
    print(f"wrote {directory} in {time.perf_counter() - started:.1f} s", flush=True)
    return paths


def _child(current_path: str, reference_profile_path: str) -> None:
    """Run in a fresh process of .venv: driftline's check of the current file, printed as JSON."""
    from benchmarks.peers.evidently_drift import MemoryProbe
    from driftline.data import profiling
    from driftline.data.whylogs_compat import whylogs
    from driftline.statistics.drift import compare_profiles

    whylogs()
    probe = MemoryProbe()
    current = pl.read_parquet(current_path)
    reference_bytes = Path(reference_profile_path).read_bytes()
    probe.loaded()

    started, cpu_started = time.perf_counter(), time.process_time()
    reference = profiling.deserialize(reference_bytes, reference_profile_path)
    report = compare_profiles(reference, profiling.profile_frame(current))
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    memory = probe.done()

    scores = {
        name: {
            "score": feature.value,
            "statistic": feature.statistic,
            "threshold": max(feature.threshold, feature.floor),
        }
        for name, feature in report.features.items()
    }
    result = {"tool": "driftline", "rows": [report.n_reference, report.n_current], "seconds": seconds}
    result |= {"cpu_seconds": cpu_seconds, **memory}
    print(json.dumps({**result, "drifted": sorted(report.drifted_features), "scores": scores}))


def _run_child(command: list[str]) -> dict:
    env = {**os.environ, "WHYLOGS_NO_ANALYTICS": "1", "DO_NOT_TRACK": "1"}
    completed = subprocess.run(
        command, cwd=REPO, env=env, capture_output=True, text=True, check=False, timeout=CHILD_TIMEOUT_S
    )
    if completed.returncode != 0:
        raise RuntimeError(
            f"{Path(command[0]).name} child failed ({completed.returncode}):\n{completed.stderr[-3000:]}"
        )
    return json.loads(completed.stdout.strip().splitlines()[-1])


def peer_python(venv: Path = PEERS_VENV) -> tuple[Path | None, str]:
    """The peer environment's interpreter, or None and why it cannot be used."""
    python = venv / "bin" / "python"
    if not (venv / ".installed").exists() or not python.exists():
        return None, f"no peer environment at {venv.name}/ (`make peers` creates it; it needs PyPI)"
    check = subprocess.run([str(python), "-c", "import evidently, pandas"], capture_output=True, text=True, check=False)
    if check.returncode != 0:
        return None, f"{venv.name}/ cannot import evidently: {check.stderr.strip().splitlines()[-1:]}"
    return python, ""


def _flagged(result: dict, planted: set[str]) -> str:
    drifted = result["drifted"]
    found = sorted(set(drifted) & planted)
    missed = sorted(planted - set(drifted))
    extra = sorted(set(drifted) - planted)
    return (
        f"flagged {found or 'none'} of the planted"
        + (f", missed {missed}" if missed else "")
        + (f", also flagged {extra}" if extra else ", nothing else")
    )


def _score(result: dict, column: str) -> str:
    score = result["scores"].get(column, {})
    statistic = score.get("statistic") or score.get("method")
    return (
        f"{column} {statistic} {score.get('score', float('nan')):.3g} vs {score.get('threshold') or float('nan'):.3g}"
    )


def main() -> dict[str, dict]:
    """Both comparison entries, or none (with the reason printed) when the peer environment is missing."""
    python, reason = peer_python(Path(os.environ.get("DRIFTLINE_BENCH_PEERS_VENV") or PEERS_VENV))
    if python is None:
        print(f"skipping the Evidently comparison: {reason}", flush=True)
        return {}
    from driftline.data import profiling

    reference_path, current_path = cached_frames(ROWS, SEED, CACHE)
    with tempfile.TemporaryDirectory(prefix="driftline-bench-") as directory:
        profile_path = Path(directory) / "reference.profile"
        profile_path.write_bytes(profiling.serialize(profiling.profile_parquet(reference_path)))
        ours_command = [
            sys.executable,
            "-m",
            "benchmarks.bench_evidently",
            "--child",
            str(current_path),
            str(profile_path),
        ]
        peer_command = [str(python), str(PEER_SCRIPT), str(reference_path), str(current_path)]
        ours: list[dict] = []
        peer: list[dict] = []
        # Interleaved: driftline, Evidently, driftline, ... so a change in machine load hits both.
        for index in range(max(DRIFTLINE_RUNS, EVIDENTLY_RUNS)):
            if index < DRIFTLINE_RUNS:
                ours.append(_run_child(ours_command))
                print(
                    f"  driftline run {index + 1}: {ours[-1]['seconds']:.2f} s, work {ours[-1]['work_mb']:.0f} MB",
                    flush=True,
                )
            if index < EVIDENTLY_RUNS:
                try:
                    peer.append(_run_child(peer_command))
                except (RuntimeError, subprocess.TimeoutExpired) as error:
                    print(f"skipping the Evidently comparison: its run failed: {error}", flush=True)
                    return {}
                print(
                    f"  evidently run {index + 1}: {peer[-1]['seconds']:.1f} s, work {peer[-1]['work_mb']:.0f} MB",
                    flush=True,
                )

    flags, memory, runs = _summary(ours, peer)
    print(f"{runs}\n  {flags}\n  {memory}")
    return comparison_entries(ours, peer)


def _median(results: list[dict], key: str) -> float:
    return statistics.median(result[key] for result in results)


def _summary(ours: list[dict], peer: list[dict]) -> tuple[str, str, str]:
    """What each tool flagged, the memory figures and the runs, as text for the notes."""
    planted = {SHIFTED_COLUMN, DOUBLED_COLUMN}
    ours_last, peer_last = ours[-1], peer[-1]
    tool = peer_last["tool"]
    flags = (
        f"planted: {SHIFTED_COLUMN} +{SHIFT_SD} sd, {DOUBLED_COLUMN} share of {DOUBLED_CATEGORY} doubled "
        f"({category_share(DOUBLED_COLUMN, DOUBLED_CATEGORY):.1%}); driftline {_flagged(ours_last, planted)} "
        f"[{_score(ours_last, SHIFTED_COLUMN)}, {_score(ours_last, DOUBLED_COLUMN)}]; {tool} "
        f"{_flagged(peer_last, planted)} [{_score(peer_last, SHIFTED_COLUMN)}, {_score(peer_last, DOUBLED_COLUMN)}]"
    )
    if not all(result["peak_reset"] for result in ours + peer):
        flags += "; VmHWM could not be reset after loading, so the work's peak may be reading's (an upper bound)"
    memory = (
        f"driftline peak {_median(ours, 'peak_mb'):.0f} MB, {_median(ours, 'rss_loaded_mb'):.0f} MB after imports + "
        f"current rows + reference profile bytes; {tool} peak {_median(peer, 'peak_mb'):.0f} MB, "
        f"{_median(peer, 'rss_loaded_mb'):.0f} MB after imports + both frames in pandas"
    )
    ours_runs = ", ".join(f"{result['seconds']:.2f}" for result in ours)
    peer_runs = ", ".join(f"{result['seconds']:.1f}" for result in peer)
    runs = (
        f"{len(ours)} driftline and {len(peer)} Evidently runs interleaved, each a fresh process, medians (wall s: "
        f"driftline {ours_runs}, Evidently {peer_runs}; CPU s: driftline {_median(ours, 'cpu_seconds'):.2f}, "
        f"Evidently {_median(peer, 'cpu_seconds'):.1f})"
    )
    return flags, memory, runs


def comparison_entries(ours: list[dict], peer: list[dict]) -> dict[str, dict]:
    """The two result entries from the children's results (``_child`` and the peer script's JSON)."""
    ours_s, peer_s = _median(ours, "seconds"), _median(peer, "seconds")
    ours_mb, peer_mb = _median(ours, "work_mb"), _median(peer, "work_mb")
    flags, memory, runs = _summary(ours, peer)
    rows = max(ours[-1]["rows"])
    return {
        "drift_vs_evidently_seconds": {
            "value": ours_s,
            "unit": "s",
            "baseline": peer_s,
            "ratio": peer_s / ours_s,
            "notes": (
                f"{rows:,} x 20 reference vs current; timed: driftline deserialize(reference profile bytes) + "
                f"profile_frame(current polars) + compare_profiles, vs {peer[-1]['tool']} "
                "Report([DataDriftPreset()]).run(current, reference) on pandas (Dataset building and verdicts "
                f"included); imports and parquet reads not timed; {runs}; ratio = Evidently / driftline, higher is "
                f"better, goal >= 40; {flags}"
            ),
        },
        "drift_vs_evidently_peak_rss": {
            "value": ours_mb,
            "unit": "MB",
            "baseline": peer_mb,
            "ratio": ours_mb / peer_mb,
            "notes": (
                "memory the work adds: peak RSS during the timed work (VmHWM reset to the RSS once the data is "
                "loaded) minus the RSS after imports and reading the data, same probe in both processes; "
                f"{memory}; {runs}; ratio = driftline / Evidently, lower is better, goal <= 0.25"
            ),
        },
    }


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        _child(sys.argv[2], sys.argv[3])
    else:
        print(json.dumps(main(), indent=2))
