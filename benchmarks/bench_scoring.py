"""Scoring a 1M-row batch with the champion and a shadow candidate vs the champion alone, S3 I/O included.

Both sides run `driftline.models.scoring` against a real moto S3 server over HTTP: read the batch parquet
(verified sha256), predict, time the single-row latency probe, write the predictions parquet. The
baseline is the champion alone (what a system without shadow mode does per batch); ours adds the
candidate on the same rows. Models: two XGBoost boosters (200 rounds, depth 6) trained outside the timed
region on the same 20-column layout. Ratio = ours / baseline, target <= 2.2.

    .venv/bin/python -m benchmarks scoring
"""

from __future__ import annotations

import io
import statistics
import time
import uuid

import numpy as np
import polars as pl

from benchmarks.data import mixed_frame

ROWS = 1_000_000
RUNS = 3
SEED = 20261127


def _spec(frame: pl.DataFrame):
    from driftline.models.spec import ModelSpec

    numeric = [c for c, t in frame.schema.items() if t.is_float()]
    categorical = [c for c, t in frame.schema.items() if t == pl.String]
    return ModelSpec.model_validate(
        {
            "name": "bench-scoring",
            "task": "binary",
            "target": "label",
            "id_column": "id",
            "time_column": "ts",
            "features": {"numeric": numeric, "categorical": categorical},
            "xgboost": {"num_boost_round": 200, "early_stopping_rounds": 200},
        }
    )


def main() -> dict[str, dict]:
    from driftline.models import registry, scoring, training
    from driftline.storage import layout
    from driftline.storage.store import S3Store
    from tests.support import moto_server

    frame = mixed_frame(ROWS, seed=SEED)
    frame = frame.with_columns(
        pl.Series("id", np.arange(ROWS, dtype=np.int64)), pl.Series("ts", np.arange(ROWS, dtype=np.int64))
    )
    spec = _spec(frame)
    rng = np.random.default_rng(SEED)
    first = frame.columns[0]
    signal = frame.get_column(first).to_numpy()
    labelled = frame.with_columns(
        pl.Series(
            "label", (rng.random(ROWS) < 1 / (1 + np.exp(-(signal - signal.mean()) / signal.std()))).astype(np.int8)
        )
    )
    with moto_server() as endpoint:
        store = S3Store(
            f"bench-{uuid.uuid4().hex[:8]}", endpoint_url=endpoint, access_key_id="b", secret_access_key="b"
        )
        store.create_bucket()
        buffer = io.BytesIO()
        frame.write_parquet(buffer)
        versions = []
        for seed in (0, 1):
            sample = labelled.sample(200_000, seed=seed).sort("ts")
            split = training.time_split(
                sample, spec.model_copy(update={"xgboost": spec.xgboost.model_copy(update={"seed": seed})})
            )
            trained = training.train(split, spec, nthread=2)
            version = f"v{seed}"
            registry.register_version(
                store, spec.name, version, training.model_bytes(trained.booster), {"encoder": trained.encoder.to_dict()}
            )
            versions.append(version)
        timings: dict[str, list[float]] = {"alone": [], "with_shadow": []}
        for run in range(RUNS):
            batch_id = f"b{run}"
            store.put(layout.batch_data(spec.name, batch_id), buffer.getvalue())
            for case, roles in (
                ("alone", [("champion", versions[0])]),
                ("with_shadow", list(zip(("champion", "shadow"), versions, strict=True))),
            ):
                # Fresh prediction keys each time: the conditional create must write, not skip.
                case_batch = f"{batch_id}-{case}"
                store.put(layout.batch_data(spec.name, case_batch), buffer.getvalue())
                started = time.perf_counter()
                batch = scoring.read_batch(store, spec, case_batch)
                for role, version in roles:
                    scoring.score(store, spec, batch, case_batch, version, role, nthread=2)
                timings[case].append(time.perf_counter() - started)
    ours = statistics.median(timings["with_shadow"])
    baseline = statistics.median(timings["alone"])
    notes = (
        f"median of {RUNS}: read 1M-row batch from moto S3, score, latency probe, write predictions; "
        f"baseline champion alone {baseline:.2f} s, ours champion + shadow {ours:.2f} s; ratio = ours / baseline, "
        "target <= 2.2"
    )
    print(notes)
    return {
        "scoring_shadow_seconds_1m_rows": {
            "value": round(ours, 3),
            "unit": "s",
            "baseline": round(baseline, 3),
            "ratio": round(ours / baseline, 3),
            "notes": notes,
        }
    }


if __name__ == "__main__":
    main()
