"""Dask for large batches, on a real 2-worker LocalCluster (loopback, no dashboard) started once for the module.

Seeded synthetic data with known truth: a profile merged from partitions must agree with a single pass
(counts and means exactly, quantiles within the KLL rank error), must not drift against another sample of
the same distribution, and must still show a real shift; training with ``xgboost.dask`` must give the same
booster bytes twice and about the single-process AUC.
"""

from __future__ import annotations

import hashlib
import io
import subprocess
import sys
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from driftline.data import distributed, profiling
from driftline.errors import InfrastructureError, InputError, IntegrityError
from driftline.loop import retraining
from driftline.loop.cooldown import RetrainRequest
from driftline.models import registry, training
from driftline.models.spec import ModelSpec
from driftline.settings import Settings
from driftline.statistics import drift
from driftline.storage import layout
from driftline.storage.store import MemoryStore, S3Store

SEED = 20_261_202
WORKERS = 2
ROWS = 200_000
ROW_GROUP = 20_000  # 10 row groups: 4 tasks on 2 workers
START = datetime(2026, 1, 1, tzinfo=UTC)
PLANS = ["gold", "basic", "Plus Plan", "free", "trial"]


@pytest.fixture(scope="module")
def client():
    with distributed.dask_client(Settings(dask_address="local", dask_workers=WORKERS)) as dask_client:
        yield dask_client


def _features(rows: int, seed: int, shift: float = 0.0) -> pl.DataFrame:
    """Floats (normal, lognormal with nulls, NaN and inf), ints, strings, booleans; ``shift`` moves "spend"."""
    rng = np.random.default_rng(seed)
    spend = rng.lognormal(3.0 + shift, 0.7, rows)
    spend[rng.random(rows) < 0.01] = np.nan
    spend[rng.random(rows) < 0.001] = np.inf
    score = pl.Series("score", rng.normal(0.0, 1.0, rows))
    return pl.DataFrame(
        {
            "score": score,
            "spend.total": spend,
            "visits": rng.poisson(4.0, rows),
            "Plan Type": rng.choice(PLANS, rows, p=[0.1, 0.4, 0.2, 0.25, 0.05]),
            "active": rng.random(rows) < 0.7,
        }
    ).with_columns(pl.when(pl.int_range(pl.len()) % 97 == 0).then(None).otherwise(pl.col("score")).alias("score"))


def _parquet(frame: pl.DataFrame, path: Path) -> str:
    frame.write_parquet(path, row_group_size=ROW_GROUP)
    return str(path)


def _summary(view, column: str) -> dict:
    return view.get_column(column).to_summary_dict()


# --------------------------------------------------------------------------------------------- the rule
@pytest.mark.parametrize(
    ("address", "min_rows", "rows", "expected"),
    [
        (None, None, 10**9, False),  # neither setting: never
        (None, 1_000_000, 999_999, False),
        (None, 1_000_000, 1_000_000, True),  # at the threshold: yes (LocalCluster)
        ("local", None, 1, True),  # an address turns it on for every size
        ("tcp://10.0.0.5:8786", 1_000_000, 10, True),
    ],
)
def test_threshold_rule(address: str | None, min_rows: int | None, rows: int, expected: bool) -> None:
    settings = Settings(dask_address=address, dask_min_rows=min_rows)
    assert distributed.use_dask(rows, settings) is expected
    reason = distributed.dask_reason(rows, settings)
    assert (reason is not None) is expected
    if expected:
        assert "DRIFTLINE_DASK_" in reason


def test_missing_extra_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "distributed", None)  # what `import distributed` sees without the extra
    with (
        pytest.raises(distributed.DaskNotInstalledError, match=r"DRIFTLINE_DASK_ADDRESS=local.*driftline\[dask\]"),
        distributed.dask_client(Settings(dask_address="local")),
    ):
        pass


def test_importing_the_module_loads_no_dask() -> None:
    code = (
        "import sys, driftline.data.distributed\n"
        "print(sorted(m for m in ('dask', 'distributed', 's3fs', 'xgboost.dask') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


# --------------------------------------------------------------------------------------------- profiling
def test_partitioned_profile_equals_single_pass(client, tmp_path: Path) -> None:
    frame = _features(ROWS, SEED)
    path = _parquet(frame, tmp_path / "batch.parquet")
    merged = distributed.profile_parquet_partitioned(client, path)
    single = profiling.profile_parquet(path)
    assert (merged.rows, merged.row_groups, merged.partitions, merged.workers) == (ROWS, 10, 4, WORKERS)
    for column in frame.columns:
        ours, theirs = _summary(merged.view, column), _summary(single, column)
        for key in ("counts/n", "counts/null", "counts/nan", "counts/inf", "types/fractional", "types/string"):
            assert ours.get(key) == theirs.get(key), (column, key)
        if "distribution/mean" in theirs:
            assert ours["distribution/mean"] == pytest.approx(theirs["distribution/mean"], rel=1e-9), column
            assert ours["distribution/n"] == theirs["distribution/n"]

    # Frequent items of a 5-category column are exact in both.
    def frequent(view) -> dict[str, float]:
        return {item.value: item.est for item in view.get_column("Plan Type").get_metric("frequent_items").strings}

    assert frequent(merged.view) == frequent(single)
    # Quantiles: the merged sketch's CDF stays within its own rank error of the true one.
    spend = frame.get_column("spend.total").to_numpy()
    values = np.sort(spend[np.isfinite(spend)])
    kll = merged.view.get_column("spend.total").get_metric("distribution").kll.value
    grid = np.quantile(values, np.linspace(0.01, 0.99, 99))
    estimated = np.asarray(kll.get_cdf(list(grid)))[:-1]
    true = np.searchsorted(values, grid, side="left") / len(values)
    assert np.max(np.abs(estimated - true)) <= kll.normalized_rank_error(False)
    # The merged view round-trips as standard whylogs bytes.
    assert profiling.row_count(profiling.deserialize(profiling.serialize(merged.view))) == ROWS


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_merged_profile_of_the_same_distribution_does_not_drift(client, tmp_path: Path, seed: int) -> None:
    reference = profiling.profile_frame(_features(ROWS, SEED + 100 * seed))
    path = _parquet(_features(ROWS, SEED + 100 * seed + 1), tmp_path / "current.parquet")
    # Many partitions: the most merges, the largest merged-sketch error.
    current = distributed.profile_parquet_partitioned(client, path, tasks=10).view
    report = drift.compare_profiles(reference, current)
    assert not report.drift, report.reasons
    assert {name: f.verdict for name, f in report.features.items()} == dict.fromkeys(report.features, "none")
    ks = report.features["spend.total"]
    assert ks.value < ks.floor  # noise (sampling + both sketches' rank error) stays under the floor


def test_real_shift_in_a_merged_profile_is_detected(client, tmp_path: Path) -> None:
    reference = profiling.profile_frame(_features(ROWS, SEED + 7))
    path = _parquet(_features(ROWS, SEED + 8, shift=0.2), tmp_path / "shifted.parquet")
    current = distributed.profile_parquet_partitioned(client, path, tasks=10).view
    report = drift.compare_profiles(reference, current)
    assert report.drift
    assert report.drifted_features == ["spend.total"]
    # log-normal sigma 0.7 moved by 0.2: KS = 2 * Phi(0.1 / 0.7) - 1 ~ 0.114
    assert report.features["spend.total"].value == pytest.approx(0.114, abs=0.01)


def test_profile_batch_file_below_the_threshold_is_the_single_pass(tmp_path: Path) -> None:
    path = _parquet(_features(5_000, SEED), tmp_path / "small.parquet")
    view = distributed.profile_batch_file(path, settings=Settings(dask_min_rows=1_000_000))
    single = profiling.profile_parquet(path)
    keys = ("counts/n", "counts/null", "distribution/mean", "distribution/n", "cardinality/est")

    def facts(profile) -> dict:
        return {c: [_summary(profile, c).get(k) for k in keys] for c in profile.get_columns()}

    # Not byte-equal even so: a creation timestamp, and KLL compaction is randomised (quantiles too).
    assert facts(view) == facts(single)


def test_partitioned_profile_of_a_missing_file_is_an_input_error(client, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        distributed.profile_parquet_partitioned(client, str(tmp_path / "absent.parquet"))


# --------------------------------------------------------------------------------------------- training
SPEC = {
    "name": "churn",
    "task": "binary",
    "target": "Churned",
    "id_column": "row id",
    "time_column": "event.ts",
    "features": {"numeric": ["score", "spend.total", "visits", "active"], "categorical": ["Plan Type"]},
    "xgboost": {"num_boost_round": 60, "early_stopping_rounds": 10},
    "window": {"min_labelled_rows": 500, "holdout_fraction": 0.2, "early_stop_fraction": 0.2},
}


def _labelled(rows: int, seed: int, offset: int = 0) -> pl.DataFrame:
    """Features plus id, time and a label whose logit is known: score, log spend, visits, plan."""
    frame = _features(rows, seed)
    rng = np.random.default_rng(seed + 1)
    plan_effect = {"gold": 1.0, "basic": -0.5, "Plus Plan": 0.3, "free": -1.0, "trial": 0.0}
    spend = frame.get_column("spend.total").to_numpy()
    logit = (
        0.8 * frame.get_column("score").fill_null(0.0).to_numpy()
        + 0.6 * (np.log(np.where(np.isfinite(spend), spend, 20.0)) - 3.0)
        - 0.2 * (frame.get_column("visits").to_numpy() - 4)
        + np.array([plan_effect[p] for p in frame.get_column("Plan Type").to_list()])
    )
    label = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(np.int8)
    ids = np.arange(offset, offset + rows, dtype=np.int64)
    times = [START + timedelta(seconds=int(i)) for i in ids]
    return frame.with_columns(pl.Series("row id", ids), pl.Series("event.ts", times), pl.Series("Churned", label))


def test_dask_training_is_deterministic_and_as_good_as_single_process(client) -> None:
    spec = ModelSpec.model_validate(SPEC)
    split = training.time_split(_labelled(40_000, SEED), spec)
    first = distributed.train_on_dask(client, split, spec)
    second = distributed.train_on_dask(client, split, spec)
    assert (
        hashlib.sha256(training.model_bytes(first.booster)).digest()
        == hashlib.sha256(training.model_bytes(second.booster)).digest()
    )
    single = training.train(split, spec, nthread=2)
    assert first.metrics["auc"] == pytest.approx(single.metrics["auc"], abs=0.01)
    assert first.metrics["auc"] > 0.7
    # Same encoding and the same rule for the refit rounds; a plain booster that loads from UBJ.
    assert first.encoder == single.encoder
    assert abs(first.best_iteration - single.best_iteration) <= 10
    loaded = training.load_booster(training.model_bytes(first.booster))
    predictions = training.predict(loaded, first.encoder, split.holdout)
    assert np.allclose(predictions, training.predict(first.booster, first.encoder, split.holdout))


# --------------------------------------------------------------------------------------------- S3
def _parquet_bytes(frame: pl.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.write_parquet(buffer, row_group_size=ROW_GROUP)
    return buffer.getvalue()


def _s3_settings_and_store(endpoint: str, bucket: str) -> tuple[Settings, S3Store]:
    """Settings naming a fresh bucket (with a prefix) on the moto server, and its store."""
    settings = Settings(
        s3_endpoint_url=endpoint,
        s3_bucket=bucket,
        s3_prefix="team/prod",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    store = S3Store.from_settings(settings)
    store._client.create_bucket(Bucket=settings.s3_bucket)
    return settings, store


@pytest.mark.s3
def test_window_and_profile_read_from_s3_through_s3fs(client, s3_endpoint: str) -> None:
    settings, store = _s3_settings_and_store(s3_endpoint, "dask-window")
    spec = ModelSpec.model_validate(SPEC)
    batch_ids = ["b001", "b002", "b003"]
    for index, batch_id in enumerate(batch_ids):
        frame = _labelled(30_000, SEED + index, offset=index * 30_000)
        store.put(layout.batch_data(spec.name, batch_id), _parquet_bytes(frame.drop("Churned")))
        store.put(layout.batch_labels(spec.name, batch_id), _parquet_bytes(frame.select("row id", "Churned")))
    options = distributed.storage_options(settings)
    window = distributed.read_window(client, spec, distributed.window_parts(settings, spec.name, batch_ids), options)
    expected = training.assemble_window(store, spec, batch_ids).frame
    assert window.equals(expected)

    url = distributed.s3_url(settings, layout.batch_data(spec.name, "b002"))
    merged = distributed.profile_parquet_partitioned(client, url, spec.batch_columns, options=options)
    local = profiling.profile_frame(
        pl.read_parquet(io.BytesIO(store.get(layout.batch_data(spec.name, "b002")))).select(spec.batch_columns)
    )
    assert merged.rows == 30_000
    assert _summary(merged.view, "score")["distribution/mean"] == pytest.approx(
        _summary(local, "score")["distribution/mean"], rel=1e-9
    )


def test_one_worker_gives_the_single_process_booster() -> None:
    """Same encoding, params, early stopping, refit rounds and seed: with one worker, the very same model."""
    spec = ModelSpec.model_validate(SPEC)
    split = training.time_split(_labelled(20_000, SEED + 5), spec)
    with distributed.dask_client(Settings(dask_address="local", dask_workers=1)) as one_worker:
        on_dask = distributed.dask_trainer(one_worker)(split, spec, 2)
    single = training.train(split, spec, nthread=2)
    assert training.model_bytes(on_dask.booster) == training.model_bytes(single.booster)
    assert (on_dask.best_iteration, on_dask.refit_rounds) == (single.best_iteration, single.refit_rounds)


def test_an_unreachable_scheduler_names_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.support import free_port

    monkeypatch.setattr(distributed, "CONNECT_TIMEOUT_SECONDS", 1)
    address = f"tcp://127.0.0.1:{free_port()}"
    with (
        pytest.raises(InfrastructureError, match=f"DRIFTLINE_DASK_ADDRESS={address}: no Dask scheduler"),
        distributed.dask_client(Settings(dask_address=address)),
    ):
        pass


# ----------------------------------------------------------------------------------- the retrain window on Dask
def _window_store(tmp_path: Path | None, frames: list[pl.DataFrame], spec: ModelSpec, store=None):
    """Batches b000.. in a store (memory by default) and, when ``tmp_path``, as local files at their keys."""
    store = store or MemoryStore()
    for index, frame in enumerate(frames):
        batch_id = f"b{index:03d}"
        objects = {
            layout.batch_data(spec.name, batch_id): _parquet_bytes(frame.drop(spec.target)),
            layout.batch_labels(spec.name, batch_id): _parquet_bytes(frame.select(spec.id_column, spec.target)),
        }
        for key, data in objects.items():
            store.put(key, data)
            if tmp_path is not None:
                (tmp_path / key).parent.mkdir(parents=True, exist_ok=True)
                (tmp_path / key).write_bytes(data)
    return store


def _request(spec: ModelSpec, onset: datetime | None = None, kind: str | None = None) -> RetrainRequest:
    return RetrainRequest(
        model=spec.name,
        trigger="drift" if onset else "manual",
        requested_at=START.isoformat(),
        drift_onset=onset.isoformat() if onset else None,
        drift_kind=kind,
    )


def _no_window_in_this_process(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Spies: the single-process window assembly and split must not run (they hold every row here)."""
    calls: list[str] = []

    def spy(name: str):
        def refuse(*args, **kwargs):
            calls.append(name)
            raise AssertionError(f"{name} ran in the task process on the Dask path")

        return refuse

    monkeypatch.setattr(training, "assemble_window", spy("assemble_window"))
    monkeypatch.setattr(training, "time_split", spy("time_split"))
    monkeypatch.setattr(retraining, "prepare_window", spy("prepare_window"))
    return calls


def _both_paths(client, monkeypatch, store, spec, request, locate, options):
    single = retraining.prepare_window(store, spec, request)
    single_split = training.time_split(single.frame, spec)
    with monkeypatch.context() as patch:
        calls = _no_window_in_this_process(patch)
        prepared, window = distributed.prepare_window(client, store, spec, request, locate, options)
        split, trained = distributed.ClusterWindowTrainer(window).train(spec, 2, lambda _: None)
    assert calls == []
    return single, single_split, prepared, window, split, trained


def _assert_same_window(single, single_split, prepared, split) -> None:
    assert prepared.frame.height == 0  # no row of the window is held here but the holdout
    assert prepared.batch_ids == single.batch_ids
    assert [asdict(b) for b in prepared.data.batches] == [asdict(b) for b in single.data.batches]
    assert prepared.rows == single.rows == single.frame.height
    assert prepared.rows_since_onset == single.rows_since_onset
    assert prepared.weighted == single.weighted
    assert (split.train_rows, split.early_stop_rows) == (single_split.train.height, single_split.early_stop.height)
    assert split.holdout.equals(single_split.holdout)  # the very rows, weights included
    assert (split.ties_broken, split.notes) == (single_split.ties_broken, single_split.notes)


WINDOW_CASES = {
    # unique times, manual retrain: cuts at time changes
    "manual": ({}, None, None, 1),
    # coarse times (runs of 10,000 rows): the holdout cut divides a run by id, as time_split does
    "ties": ({}, None, None, 10_000),
    # a drift onset: older rows weigh before_onset_weight; last_days cuts the oldest batch's rows
    "onset-weighted": ({"last_days": 1.0}, 60_000, "input", 1),
    # a performance drop: rows before the onset weigh 0 and are dropped
    "onset-dropped": ({}, 70_000, "performance", 1),
}


@pytest.mark.parametrize("case", list(WINDOW_CASES))
def test_dask_window_from_local_parquet_matches_the_single_process_window(
    client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    window_settings, onset_seconds, kind, tick = WINDOW_CASES[case]
    spec = ModelSpec.model_validate({**SPEC, "window": {**SPEC["window"], **window_settings}})
    frames = []
    for index in range(4):
        frame = _labelled(25_000, SEED + 10 * index, offset=index * 25_000)
        times = [START + timedelta(seconds=int(i) // tick * tick) for i in frame.get_column("row id")]
        frames.append(frame.with_columns(pl.Series("event.ts", times)).sample(fraction=1.0, shuffle=True, seed=index))
    store = _window_store(tmp_path, frames, spec)
    onset = START + timedelta(seconds=onset_seconds) if onset_seconds else None
    single, single_split, prepared, _, split, trained = _both_paths(
        client, monkeypatch, store, spec, _request(spec, onset, kind), lambda key: str(tmp_path / key), None
    )
    _assert_same_window(single, single_split, prepared, split)
    if case == "ties":
        assert split.ties_broken
    if case.startswith("onset"):
        assert prepared.weighted
    reference = training.train(single_split, spec, nthread=2)
    assert trained.encoder == reference.encoder
    assert trained.metrics["auc"] == pytest.approx(reference.metrics["auc"], abs=0.01)


def test_dask_window_training_is_deterministic_and_gates_a_candidate(
    client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = ModelSpec.model_validate(SPEC)
    frames = [_labelled(20_000, SEED + index, offset=index * 20_000) for index in range(3)]
    store = _window_store(tmp_path, frames, spec)
    store.put(layout.model_spec(spec.name), spec.to_yaml().encode())
    request = _request(spec)
    locate = lambda key: str(tmp_path / key)  # noqa: E731
    digests = []
    for _ in range(2):
        with monkeypatch.context() as patch:
            _no_window_in_this_process(patch)
            prepared, window = distributed.prepare_window(client, store, spec, request, locate, None)
            trainer = distributed.ClusterWindowTrainer(window)
            digests.append(hashlib.sha256(training.model_bytes(trainer.train(spec, 2, print)[1].booster)).digest())
    assert digests[0] == digests[1]
    # The whole candidate: gates on the holdout here, lineage from head requests; no stored batch profiles, so
    # the reference profile is profiled on the workers.
    candidate = retraining.build_candidate(store, spec, request, prepared, nthread=2, environment={}, cluster=trainer)
    metadata = registry.read_metadata(store, spec.name, candidate.version)
    single = retraining.prepare_window(store, spec, request)
    assert metadata["lineage"]["training_batches"] == [asdict(b) for b in single.data.batches]
    assert metadata["lineage"]["training_rows"] == single.frame.height == candidate.training_rows
    assert any("trained on Dask from 3 parquet partition(s)" in note for note in candidate.gate_report.notes)
    reference = profiling.deserialize(store.get(candidate.reference_key))
    assert profiling.row_count(reference) == single.frame.height


def test_a_window_on_the_cluster_needs_the_cluster_to_train(tmp_path: Path) -> None:
    spec = ModelSpec.model_validate(SPEC)
    cluster = retraining.ClusterWindow(parts=[], rows=10, weighted=False)
    window = retraining.PreparedWindow(training.TrainingData(pl.DataFrame(), []), pl.DataFrame(), 10, cluster=cluster)
    with pytest.raises(InputError, match="on a Dask cluster"):
        retraining.build_candidate(MemoryStore(), spec, _request(spec), window, nthread=1, environment={})


def test_a_tampered_batch_fails_on_the_workers(client, tmp_path: Path) -> None:
    spec = ModelSpec.model_validate(SPEC)
    store = _window_store(tmp_path, [_labelled(5_000, SEED)], spec)
    key = layout.batch_data(spec.name, "b000")
    (tmp_path / key).write_bytes(_parquet_bytes(_labelled(5_000, SEED + 1).drop(spec.target)))
    with pytest.raises(IntegrityError, match="tampered"):
        distributed.prepare_window(client, store, spec, _request(spec), lambda k: str(tmp_path / k), None)


def test_window_rows_come_from_the_parquet_footers(tmp_path: Path) -> None:
    spec = ModelSpec.model_validate(SPEC)
    store = _window_store(tmp_path, [_labelled(3_000, SEED), _labelled(4_000, SEED + 1, offset=3_000)], spec)
    parts, etags, unlabelled = distributed.locate_parts(store, spec, ["b000", "b001"], lambda k: str(tmp_path / k))
    assert distributed.window_rows(parts, None) == 7_000
    assert etags["b001"] == (
        store.info(layout.batch_data(spec.name, "b001")).etag,
        store.info(layout.batch_labels(spec.name, "b001")).etag,
    )
    assert unlabelled == []


@pytest.mark.s3
def test_dask_window_from_s3_matches_the_single_process_window(
    client, s3_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings, store = _s3_settings_and_store(s3_endpoint, "dask-retrain-window")
    spec = ModelSpec.model_validate(SPEC)
    frames = [_labelled(20_000, SEED + 3 * index, offset=index * 20_000) for index in range(3)]
    _window_store(None, frames, spec, store=store)
    single, single_split, prepared, _, split, trained = _both_paths(
        client,
        monkeypatch,
        store,
        spec,
        _request(spec),
        lambda key: distributed.s3_url(settings, key),
        distributed.storage_options(settings),
    )
    _assert_same_window(single, single_split, prepared, split)
    assert [b.features_etag for b in prepared.data.batches] == [
        store.info(layout.batch_data(spec.name, f"b{i:03d}")).etag for i in range(3)
    ]
    reference = training.train(single_split, spec, nthread=2)
    assert trained.metrics["auc"] == pytest.approx(reference.metrics["auc"], abs=0.01)
