"""Dask (a 2-worker LocalCluster, one thread each) against the single-process path, on 10M rows.

* ``profiling_dask_seconds_10m_rows``: ``distributed.profile_parquet_partitioned`` over a seeded 10M-row
  parquet of ``mixed_frame``'s layout (16 float, 4 string columns; row groups of 250k rows), the cluster
  started beforehand (its start is ``dask_local_cluster_start_seconds``). Baseline: ``profiling.profile_parquet``
  on the same file in this process (what profile-batch does below the threshold). Runs interleaved
  (single, dask, single, dask); each side's fastest run is its figure. Ratio = dask / single, lower is
  better. The notes compare the two profiles: equal counts, the largest relative mean difference, and the
  drift verdict of one against the other (must be no drift).
* ``retrain_dask_train_seconds_10m_rows``: ``training.train`` with ``distributed.DaskFitter`` on the same
  split of ``bench_retrain.labelled_frame`` (10M labelled rows: 7.2M train, 0.8M early stop, 2M holdout),
  ``ROUNDS`` rounds without early stop, then the refit, holdout metrics on the client. Baseline:
  ``training.train(nthread=2)`` on the same split. One run each (minutes at 10M). Ratio = dask / single.
  The notes give both AUCs and where the time goes.
* ``dask_local_cluster_start_seconds``: ``distributed.dask_client`` starting the LocalCluster (no baseline).

Both sides use the same 2 cores here: Dask pays serialisation and scheduling and wins only through the
parallel profiling of row groups; its point is a cluster with more machines than this one.

    .venv/bin/python -m benchmarks dask                      # 10M rows, saved in results.json
    .venv/bin/python -m benchmarks.bench_dask --rows 1000000 # a smoke run, printed only
"""

from __future__ import annotations

import argparse
import json
import time

from benchmarks.data import cached_parquet

ROWS = 10_000_000
WORKERS = 2
ROUNDS = 50  # 200 rounds on 7.2M rows take ~3 min a side here; 50 keep the bench to minutes
ROW_GROUP_ROWS = 250_000
SEED = 20261202


def _label(rows: int) -> str:
    return f"{rows // 1_000_000}m" if rows % 1_000_000 == 0 else f"{rows // 1000}k"


def _profiling(client, rows: int) -> dict[str, dict]:
    from driftline.data import distributed, profiling
    from driftline.statistics import drift

    path, write_seconds = cached_parquet(rows, seed=SEED, row_group_rows=ROW_GROUP_ROWS)
    written = "reused from the cache" if write_seconds is None else f"written in {write_seconds:.0f} s"
    single_runs: list[float] = []
    dask_runs: list[float] = []
    single = merged = None
    for _ in range(2):
        started = time.perf_counter()
        single = profiling.profile_parquet(path)
        single_runs.append(time.perf_counter() - started)
        started = time.perf_counter()
        merged = distributed.profile_parquet_partitioned(client, str(path))
        dask_runs.append(time.perf_counter() - started)
    columns = sorted(single.get_columns())
    counts_equal = all(
        merged.view.get_column(c).to_summary_dict()["counts/n"] == single.get_column(c).to_summary_dict()["counts/n"]
        for c in columns
    )
    mean_gaps = []
    for column in columns:
        ours = merged.view.get_column(column).to_summary_dict().get("distribution/mean")
        theirs = single.get_column(column).to_summary_dict().get("distribution/mean")
        if ours is not None and theirs:
            mean_gaps.append(abs(ours - theirs) / max(abs(theirs), 1e-12))
    report = drift.compare_profiles(single, merged.view)
    worst = max(report.features.values(), key=lambda f: f.value / f.floor if f.floor else 0.0)
    value, baseline = min(dask_runs), min(single_runs)
    return {
        f"profiling_dask_seconds_{_label(rows)}_rows": {
            "value": value,
            "unit": "s",
            "baseline": baseline,
            "ratio": value / baseline,
            "notes": (
                f"profile_parquet_partitioned on a {WORKERS}-worker LocalCluster (1 thread each): {merged.row_groups} "
                f"row groups of {ROW_GROUP_ROWS:,} in {merged.partitions} tasks, views merged; {rows:,} rows x 20 "
                f"(16 float, 4 string), file {written}. Baseline: profile_parquet in this "
                f"process. Runs (s): dask {', '.join(f'{r:.1f}' for r in dask_runs)}; single "
                f"{', '.join(f'{r:.1f}' for r in single_runs)}. Merged vs single: counts equal {counts_equal}, "
                f"largest relative mean gap {max(mean_gaps, default=0.0):.1e}, drift {report.drift} (worst "
                f"{worst.name} {worst.statistic} {worst.value:.4f} vs floor {worst.floor:.4f}). ratio = dask / "
                "single, lower is better"
            ),
        }
    }


def _training(client, rows: int) -> dict[str, dict]:
    from benchmarks.bench_retrain import labelled_frame, make_spec
    from driftline.data import distributed
    from driftline.models import training

    started = time.perf_counter()
    frame = labelled_frame(rows, seed=SEED)
    spec = make_spec(frame, last_batches=10, rounds=ROUNDS)
    split = training.time_split(frame, spec)
    del frame
    prepare_seconds = time.perf_counter() - started

    started = time.perf_counter()
    single = training.train(split, spec, nthread=WORKERS)
    single_seconds = time.perf_counter() - started
    started = time.perf_counter()
    on_dask = distributed.train_on_dask(client, split, spec)
    dask_seconds = time.perf_counter() - started
    return {
        f"retrain_dask_train_seconds_{_label(rows)}_rows": {
            "value": dask_seconds,
            "unit": "s",
            "baseline": single_seconds,
            "ratio": dask_seconds / single_seconds,
            "notes": (
                f"training.train with DaskFitter (DaskQuantileDMatrix + xgboost.dask.train) on a {WORKERS}-worker "
                f"LocalCluster vs training.train(nthread={WORKERS}) on the same split of {rows:,} labelled rows "
                f"({split.train.height:,} train, {split.early_stop.height:,} early stop, {split.holdout.height:,} "
                f"holdout; data built in {prepare_seconds:.0f} s, not timed): encoding, {ROUNDS} rounds with the "
                f"early-stopping eval, the refit ({on_dask.refit_rounds} rounds) and holdout metrics, one run each. "
                f"Holdout AUC dask {on_dask.metrics['auc']:.4f}, single {single.metrics['auc']:.4f}; booster "
                f"{len(training.model_bytes(on_dask.booster)) / 1e6:.2f} vs "
                f"{len(training.model_bytes(single.booster)) / 1e6:.2f} MB (UBJ). ratio = dask / single, lower is "
                "better"
            ),
        }
    }


def main(rows: int = ROWS) -> dict[str, dict]:
    """Dask figures as result entries (the cluster is started once for both)."""
    from driftline.data import distributed
    from driftline.settings import Settings

    entries: dict[str, dict] = {}
    started = time.perf_counter()
    with distributed.dask_client(Settings(dask_address="local", dask_workers=WORKERS)) as client:
        start_seconds = time.perf_counter() - started
        entries["dask_local_cluster_start_seconds"] = {
            "value": start_seconds,
            "unit": "s",
            "baseline": None,
            "ratio": None,
            "notes": (
                f"distributed.dask_client: LocalCluster of {WORKERS} worker processes (1 thread each) on 127.0.0.1, "
                "no dashboard, and its client; paid once per profile-batch or retrain run that uses a LocalCluster"
            ),
        }
        entries.update(_profiling(client, rows))
        entries.update(_training(client, rows))
    return entries


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=ROWS, help="rows to profile and train on, e.g. 1000000")
    print(json.dumps(main(parser.parse_args().rows), indent=2))
