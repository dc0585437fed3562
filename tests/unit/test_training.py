"""Training on seeded synthetic data whose truth is known: window assembly, time split, encoder,
deterministic XGBoost models and the metrics the gates and the shadow test use.

Column names are deliberately awkward (spaces, dots, capitals): they are the user's and must survive.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
from datetime import UTC, date, datetime, timedelta

import numpy as np
import polars as pl
import pytest
import xgboost

from driftline.errors import InputError, ObjectNotFoundError
from driftline.models import training
from driftline.models.spec import ModelSpec, parse_spec
from driftline.statistics.metrics import auc, evaluate, per_row_loss
from driftline.storage import layout
from driftline.storage.store import MemoryStore

SEED = 20_261_126
ROWS_PER_BATCH = 800
START = datetime(2026, 1, 1, tzinfo=UTC)

SPEC_YAML = """
name: churn
task: {task}
target: Churned
id_column: row id
time_column: event.ts
features:
  numeric: ["Tenure Months", "spend.total", "Is Active"]
  categorical: ["Plan Type"]
xgboost:
  num_boost_round: 80
  early_stopping_rounds: 10
window:
  min_labelled_rows: 500
  holdout_fraction: 0.25
  early_stop_fraction: 0.2
"""
PLANS = ["gold", "basic", "Plus Plan", "free"]


def _spec(task: str = "binary", **sections: dict) -> ModelSpec:
    spec = parse_spec(SPEC_YAML.format(task=task))
    if not sections:
        return spec
    data = spec.model_dump()
    for name, values in sections.items():
        data[name] = {**data[name], **values}
    return ModelSpec.model_validate(data)


def _batch(
    index: int, task: str = "binary", rows: int = ROWS_PER_BATCH, learnable: bool = True
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Features and labels of batch ``index``; its events follow those of batch ``index - 1``.

    Truth: the target depends on tenure (+), spend (-), the plan and activity; with ``learnable`` False
    the labels are permuted, so no feature carries information about them.
    """
    rng = np.random.default_rng(SEED + index)
    tenure = rng.normal(24, 10, rows)
    spend = rng.lognormal(3, 0.5, rows)
    active = rng.random(rows) < 0.6
    plan = rng.choice(PLANS, rows, p=[0.2, 0.4, 0.25, 0.15])
    signal = (
        0.15 * (tenure - 24)
        - 1.5 * (np.log(spend) - 3)
        + 1.2 * (plan == "gold")
        - 1.0 * (plan == "free")
        + 0.6 * active
    )
    if task == "binary":
        target = (rng.random(rows) < 1 / (1 + np.exp(-signal))).astype(np.int64)
    else:
        target = 10 + 2 * signal + rng.normal(0, 0.5, rows)
    if not learnable:
        target = rng.permutation(target)
    ids = np.arange(rows) + index * 100_000
    seconds = np.sort(rng.uniform(0, 86_400, rows))  # one day per batch
    times = [START + timedelta(days=index, seconds=float(s)) for s in seconds]
    features = pl.DataFrame(
        {
            "row id": ids,
            "event.ts": times,
            "Tenure Months": tenure,
            "spend.total": spend,
            "Is Active": active,
            "Plan Type": plan,
        }
    )
    labels = pl.DataFrame({"row id": ids, "Churned": target})
    return features, labels


def _parquet(frame: pl.DataFrame) -> bytes:
    sink = io.BytesIO()
    frame.write_parquet(sink)
    return sink.getvalue()


def _store_batches(
    spec: ModelSpec,
    batches: int,
    *,
    labelled: set[int] | None = None,
    shuffle: bool = False,
    learnable: bool = True,
    rows: int = ROWS_PER_BATCH,
) -> tuple[MemoryStore, list[str]]:
    store = MemoryStore()
    batch_ids = []
    for index in range(batches):
        batch_id = f"b{index:03d}"
        features, labels = _batch(index, spec.task, rows=rows, learnable=learnable)
        if shuffle:
            features = features.sample(fraction=1.0, shuffle=True, seed=index)
            labels = labels.sample(fraction=1.0, shuffle=True, seed=index + 1)
        store.create(layout.batch_data(spec.name, batch_id), _parquet(features))
        if labelled is None or index in labelled:
            store.create(layout.batch_labels(spec.name, batch_id), _parquet(labels))
        batch_ids.append(batch_id)
    return store, batch_ids


def _sha256(trained: training.TrainedModel) -> str:
    return hashlib.sha256(training.model_bytes(trained.booster)).hexdigest()


def _train_window(spec: ModelSpec, batches: int = 4, nthread: int = 2, **options: object) -> training.TrainedModel:
    store, batch_ids = _store_batches(spec, batches, **options)
    data = training.assemble_window(store, spec, batch_ids)
    return training.train(training.time_split(data.frame, spec), spec, nthread=nthread)


@pytest.fixture(scope="module")
def binary_spec() -> ModelSpec:
    return _spec()


@pytest.fixture(scope="module")
def binary_window(binary_spec: ModelSpec) -> training.TrainingData:
    store, batch_ids = _store_batches(binary_spec, 4)
    return training.assemble_window(store, binary_spec, batch_ids)


@pytest.fixture(scope="module")
def binary_model(binary_spec: ModelSpec, binary_window: training.TrainingData) -> training.TrainedModel:
    return training.train(training.time_split(binary_window.frame, binary_spec), binary_spec, nthread=2)


# --- window assembly --------------------------------------------------------------------------


def test_window_joins_sorts_and_records_etags(binary_spec: ModelSpec) -> None:
    store, batch_ids = _store_batches(binary_spec, 3, shuffle=True)
    data = training.assemble_window(store, binary_spec, list(reversed(batch_ids)))
    assert data.frame.columns == [
        "row id",
        "event.ts",
        "Tenure Months",
        "spend.total",
        "Is Active",
        "Plan Type",
        "Churned",
    ]
    assert data.rows == 3 * ROWS_PER_BATCH
    assert data.frame.get_column("event.ts").is_sorted()
    assert [b.batch_id for b in data.batches] == list(reversed(batch_ids))
    for used in data.batches:
        assert used.rows == ROWS_PER_BATCH
        assert used.features_etag == store.info(layout.batch_data("churn", used.batch_id)).etag
        assert used.labels_etag == store.info(layout.batch_labels("churn", used.batch_id)).etag
    assert data.unlabelled == []


def test_unlabelled_batches_are_skipped_and_listed(binary_spec: ModelSpec) -> None:
    store, batch_ids = _store_batches(binary_spec, 4, labelled={0, 2})
    data = training.assemble_window(store, binary_spec, batch_ids)
    assert [b.batch_id for b in data.batches] == ["b000", "b002"]
    assert data.unlabelled == ["b001", "b003"]
    assert data.rows == 2 * ROWS_PER_BATCH


def test_labels_for_part_of_a_batch_join_only_those_rows(binary_spec: ModelSpec) -> None:
    store = MemoryStore()
    features, labels = _batch(0)
    store.create(layout.batch_data("churn", "b0"), _parquet(features))
    store.create(layout.batch_labels("churn", "b0"), _parquet(labels.head(600)))
    data = training.assemble_window(store, binary_spec, ["b0"])
    assert data.batches[0].rows == 600
    assert set(data.frame.get_column("row id")) == set(labels.head(600).get_column("row id"))


def test_rows_without_an_event_time_or_a_target_are_dropped_and_counted_per_batch(binary_spec: ModelSpec) -> None:
    store = MemoryStore()
    features, labels = _batch(0)
    # Batch b0: 3 rows without a time, 2 with a null target and 4 with a NaN one (one of them also timeless).
    no_time, null_target, nan_target = [5, 6, 7], [10, 11], [7, 20, 21, 22]
    row = pl.int_range(pl.len())
    features = features.with_columns(
        pl.when(row.is_in(no_time)).then(None).otherwise(pl.col("event.ts")).alias("event.ts")
    )
    target = pl.col("Churned").cast(pl.Float64)
    target = pl.when(row.is_in(null_target)).then(None).when(row.is_in(nan_target)).then(float("nan")).otherwise(target)
    store.create(layout.batch_data("churn", "b0"), _parquet(features))
    store.create(layout.batch_labels("churn", "b0"), _parquet(labels.with_columns(target.alias("Churned"))))
    clean_features, clean_labels = _batch(1)
    store.create(layout.batch_data("churn", "b1"), _parquet(clean_features))
    store.create(layout.batch_labels("churn", "b1"), _parquet(clean_labels))

    data = training.assemble_window(store, binary_spec, ["b0", "b1"])
    dropped = {5, 6, 7, 10, 11, 20, 21, 22}
    assert [(b.batch_id, b.rows, b.dropped_rows) for b in data.batches] == [
        ("b0", ROWS_PER_BATCH - len(dropped), len(dropped)),
        ("b1", ROWS_PER_BATCH, 0),
    ]
    ids = features.get_column("row id").to_list()
    kept = set(data.frame.get_column("row id").to_list())
    assert kept.isdisjoint(ids[i] for i in dropped) and kept >= set(clean_features.get_column("row id").to_list())
    assert data.frame.get_column("Churned").is_in([0.0, 1.0]).all()


def test_too_few_labelled_rows_names_the_counts(binary_spec: ModelSpec) -> None:
    store, batch_ids = _store_batches(binary_spec, 3, labelled={1}, rows=300)
    with pytest.raises(InputError) as raised:
        training.assemble_window(store, binary_spec, batch_ids)
    message = str(raised.value)
    assert "'churn'" in message
    assert "300 labelled row(s)" in message
    assert "2 of 3 without labels" in message
    assert "min_labelled_rows 500" in message


def test_a_missing_batch_is_named(binary_spec: ModelSpec) -> None:
    store, batch_ids = _store_batches(binary_spec, 2)
    with pytest.raises(ObjectNotFoundError, match="no batch 'b999'"):
        training.assemble_window(store, binary_spec, [*batch_ids, "b999"])


def test_binary_target_outside_zero_one_is_rejected(binary_spec: ModelSpec) -> None:
    store = MemoryStore()
    features, labels = _batch(0)
    store.create(layout.batch_data("churn", "b0"), _parquet(features))
    store.create(layout.batch_labels("churn", "b0"), _parquet(labels.with_columns(pl.col("Churned") * 2)))
    with pytest.raises(InputError, match="must be 0 or 1"):
        training.assemble_window(store, binary_spec, ["b0"])


def test_integer_epoch_time_column_works(binary_spec: ModelSpec) -> None:
    store = MemoryStore()
    for index in range(2):
        features, labels = _batch(index)
        features = features.with_columns(pl.col("event.ts").dt.epoch("s"))
        store.create(layout.batch_data("churn", f"b{index}"), _parquet(features))
        store.create(layout.batch_labels("churn", f"b{index}"), _parquet(labels))
    data = training.assemble_window(store, binary_spec, ["b0", "b1"])
    assert data.frame.schema["event.ts"] == pl.Int64
    split = training.time_split(data.frame, binary_spec)
    assert split.train.get_column("event.ts").max() < split.holdout.get_column("event.ts").min()


# --- time split -------------------------------------------------------------------------------


def test_time_split_orders_parts_and_follows_the_fractions(
    binary_spec: ModelSpec, binary_window: training.TrainingData
) -> None:
    shuffled = binary_window.frame.sample(fraction=1.0, shuffle=True, seed=1)
    split = training.time_split(shuffled, binary_spec)
    rows = binary_window.rows
    assert split.train.height + split.early_stop.height + split.holdout.height == rows
    assert split.holdout.height == round(rows * 0.25)
    assert split.early_stop.height == round((rows - split.holdout.height) * 0.2)
    assert split.train.get_column("event.ts").max() < split.early_stop.get_column("event.ts").min()
    assert split.early_stop.get_column("event.ts").max() < split.holdout.get_column("event.ts").min()
    assert not split.ties_broken and split.notes == ()


def test_time_split_never_separates_equal_times(binary_spec: ModelSpec) -> None:
    # 10 rows per timestamp: a count-based cut would fall inside a run of equal times.
    frame = pl.DataFrame({"row id": np.arange(1000), "event.ts": np.arange(1000) // 10, "Churned": np.zeros(1000)})
    split = training.time_split(frame, binary_spec)
    assert split.train.get_column("event.ts").max() < split.early_stop.get_column("event.ts").min()
    assert split.early_stop.get_column("event.ts").max() < split.holdout.get_column("event.ts").min()
    assert not split.ties_broken


def _ids(frame: pl.DataFrame) -> list[int]:
    return frame.get_column("row id").to_list()


def test_a_window_at_one_timestamp_is_split_by_id(binary_spec: ModelSpec) -> None:
    # A yearly extract: every row has the same event time; ids arrive in any order.
    ids = np.random.default_rng(SEED).permutation(512)
    frame = pl.DataFrame({"row id": ids, "event.ts": [date(2021, 1, 1)] * 512, "Churned": np.zeros(512)})
    split = training.time_split(frame, binary_spec)
    assert (split.train.height, split.early_stop.height, split.holdout.height) == (307, 77, 128)
    assert _ids(split.train) + _ids(split.early_stop) + _ids(split.holdout) == list(range(512))
    assert split.ties_broken
    assert split.notes == (
        "holdout cut inside 512 rows sharing event.ts 2021-01-01 (384 before, 128 after): ties broken by row id",
        "early-stopping cut inside 384 rows sharing event.ts 2021-01-01 (307 before, 77 after): ties broken by row id",
    )
    again = training.time_split(frame.sample(fraction=1.0, shuffle=True, seed=3), binary_spec)
    for part in ("train", "early_stop", "holdout"):
        assert getattr(again, part).equals(getattr(split, part))
    assert again.notes == split.notes


def test_two_daily_snapshots_split_inside_the_second_day(binary_spec: ModelSpec) -> None:
    days = [date(2021, 1, 1)] * 500 + [date(2021, 1, 2)] * 500
    frame = pl.DataFrame({"row id": np.arange(1000), "event.ts": days, "Churned": np.zeros(1000)})
    split = training.time_split(frame, binary_spec)
    assert (split.train.height, split.early_stop.height, split.holdout.height) == (600, 150, 250)
    assert _ids(split.holdout) == list(range(750, 1000))
    assert split.train.get_column("event.ts").max() == date(2021, 1, 2)  # rows 500-599: ties broken
    assert [note.split(" (")[0] for note in split.notes] == [
        "holdout cut inside 500 rows sharing event.ts 2021-01-02",
        "early-stopping cut inside 250 rows sharing event.ts 2021-01-02",  # of the 750 rows before the holdout
    ]


def test_a_time_change_near_the_cut_is_preferred_to_breaking_ties(binary_spec: ModelSpec) -> None:
    # The holdout's 250 rows would cut 5 rows into the run of time 1 (745 rows of time 0, then 255 of time 1):
    # the cut moves to the time change (5 <= 10% of 250). The early-stopping cut (149 rows) has no time change
    # near it, so it divides the run of time 0 by id.
    frame = pl.DataFrame({"row id": np.arange(1000), "event.ts": [0] * 745 + [1] * 255, "Churned": np.zeros(1000)})
    split = training.time_split(frame, binary_spec)
    assert split.holdout.height == 255 and split.holdout.get_column("event.ts").min() == 1
    assert (split.train.height, split.early_stop.height) == (596, 149)
    assert [note.split(" ")[0] for note in split.notes] == ["early-stopping"]


def test_time_split_of_fewer_than_three_rows_raises(binary_spec: ModelSpec) -> None:
    frame = pl.DataFrame({"row id": [0, 1], "event.ts": [0, 1], "Churned": [0.0, 1.0]})
    with pytest.raises(InputError, match="2 row\\(s\\) cannot be split"):
        training.time_split(frame, binary_spec)


def test_a_whole_window_at_one_timestamp_trains(binary_spec: ModelSpec, binary_window: training.TrainingData) -> None:
    frame = binary_window.frame.with_columns(pl.lit(START).alias("event.ts"))
    split = training.time_split(frame, binary_spec)
    trained = training.train(split, binary_spec, nthread=2)
    assert split.ties_broken and trained.metrics["auc"] > 0.75


# --- encoder ----------------------------------------------------------------------------------


def test_categories_are_sorted_from_training_rows_and_unseen_become_nan(binary_spec: ModelSpec) -> None:
    train_rows = pl.DataFrame(
        {
            "Tenure Months": [1.0, 2.0, 3.0, 4.0],
            "spend.total": [1, 2, 3, None],
            "Is Active": [True, False, None, True],
            "Plan Type": ["gold", "basic", None, "Plus Plan"],
        }
    )
    encoder = training.FeatureEncoder.fit(train_rows, binary_spec)
    assert encoder.categories == {"Plan Type": ("Plus Plan", "basic", "gold")}
    assert encoder.feature_types == ["q", "q", "q", "c"]
    later = pl.DataFrame(
        {
            "Plan Type": pl.Series(["gold", "platinum", None], dtype=pl.Categorical),  # another dtype is fine
            "Is Active": [False, True, None],
            "spend.total": [float("inf"), 2.5, None],
            "Tenure Months": [7, 8, 9],
            "extra": ["ignored", "ignored", "ignored"],
        }
    )
    matrix = encoder.encode(later)
    assert matrix.dtype == np.float32 and matrix.flags.c_contiguous and matrix.shape == (3, 4)
    expected = np.array(
        [[7, np.nan, 0, 2], [8, 2.5, 1, np.nan], [9, np.nan, np.nan, np.nan]],
        dtype=np.float32,
    )
    np.testing.assert_array_equal(matrix, expected)


def test_a_few_rows_encode_as_the_expressions_encode_them(
    binary_spec: ModelSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = pl.DataFrame(
        {
            "Tenure Months": pl.Series([1, None, 2**40, -5, 0, 7], dtype=pl.Int64),
            "spend.total": [1.5, None, float("inf"), float("nan"), 1e300, -2.25],
            "Is Active": [True, False, None, True, True, False],
            "Plan Type": pl.Series(["gold", None, "platinum", "basic", "gold", "Plus Plan"], dtype=pl.Categorical),
        }
    )
    encoder = training.FeatureEncoder.fit(rows.head(4), binary_spec, rows.tail(2))
    assert encoder.categories == {"Plan Type": ("Plus Plan", "basic", "gold", "platinum")}
    few = [encoder.encode(rows.slice(i, 1)) for i in range(rows.height)] + [encoder.encode(rows)]
    monkeypatch.setattr(training, "SMALL_FRAME_ROWS", 0)  # every frame through the polars expressions
    through_expressions = [encoder.encode(rows.slice(i, 1)) for i in range(rows.height)] + [encoder.encode(rows)]

    for small, expected in zip(few, through_expressions, strict=True):
        assert small.dtype == np.float32 and small.flags.c_contiguous
        np.testing.assert_array_equal(small, expected)
    assert np.isinf(few[-1][4, 1])  # beyond float32's range: inf on both paths, as polars casts it


def test_time_split_of_rows_in_order_equals_the_split_of_shuffled_rows(binary_spec: ModelSpec) -> None:
    ordered = pl.DataFrame(
        {
            "row id": [3, 1, 2, 5, 4, 6, 7, 9, 8, 10],
            "event.ts": [1, 2, 2, 3, 4, 4, 4, 5, 6, 7],
        }
    ).sort(["event.ts", "row id"])
    shuffled = ordered.sample(fraction=1.0, shuffle=True, seed=3)
    assert training.sort_by_time(ordered, binary_spec) is ordered  # already in order: no second sort
    assert training.sort_by_time(shuffled, binary_spec).equals(ordered)
    swapped_ids = ordered.with_columns(pl.Series("row id", [3, 2, 1, 5, 4, 6, 7, 9, 8, 10]))
    assert training.sort_by_time(swapped_ids, binary_spec)["row id"].to_list()[:3] == [3, 1, 2]


def test_temporal_numeric_features_are_epoch_seconds() -> None:
    spec = ModelSpec.model_validate(
        {
            "name": "m",
            "task": "regression",
            "target": "y",
            "id_column": "id",
            "time_column": "ts",
            "features": {"numeric": ["signup", "day", "wait"], "categorical": ["code"]},
        }
    )
    frame = pl.DataFrame(
        {
            "signup": [datetime(1970, 1, 1, 0, 1, tzinfo=UTC)],
            "day": [datetime(1970, 1, 2).date()],
            "wait": [timedelta(seconds=90)],
            "code": [7],  # integer categories are compared as strings
        }
    )
    encoder = training.FeatureEncoder.fit(frame, spec)
    assert encoder.categories == {"code": ("7",)}
    np.testing.assert_array_equal(encoder.encode(frame), np.array([[60, 86_400, 90, 0]], dtype=np.float32))


def test_encoder_round_trips_through_json(
    binary_model: training.TrainedModel, binary_window: training.TrainingData
) -> None:
    encoder = binary_model.encoder
    restored = training.FeatureEncoder.from_dict(json.loads(json.dumps(encoder.to_dict())))
    assert restored == encoder
    np.testing.assert_array_equal(restored.encode(binary_window.frame), encoder.encode(binary_window.frame))


def test_encoder_from_a_foreign_dict_is_an_input_error() -> None:
    with pytest.raises(InputError):
        training.FeatureEncoder.from_dict({"format": 1, "features": [{"kind": "numeric"}]})
    with pytest.raises(InputError, match="format 9"):
        training.FeatureEncoder.from_dict({"format": 9, "features": []})


def test_a_missing_feature_column_is_named(binary_model: training.TrainedModel) -> None:
    with pytest.raises(InputError, match="'Plan Type'"):
        binary_model.encoder.encode(pl.DataFrame({"Tenure Months": [1.0], "spend.total": [1.0], "Is Active": [True]}))


def test_booster_feature_names_are_the_column_names(binary_model: training.TrainedModel) -> None:
    assert binary_model.booster.feature_names == ["Tenure Months", "spend.total", "Is Active", "Plan Type"]
    assert binary_model.booster.feature_types == ["q", "q", "q", "c"]


def test_names_xgboost_refuses_are_mapped_and_still_train() -> None:
    spec = ModelSpec.model_validate(
        {
            "name": "m",
            "task": "regression",
            "target": "y",
            "id_column": "id",
            "time_column": "ts",
            "features": {"numeric": ["x[0]", "x(0)", "a<b"], "categorical": []},
            "xgboost": {"num_boost_round": 5},
        }
    )
    rng = np.random.default_rng(SEED)
    rows = 400
    frame = pl.DataFrame(
        {"id": np.arange(rows), "ts": np.arange(rows), "x[0]": rng.normal(size=rows), "x(0)": rng.normal(size=rows)}
    ).with_columns((pl.col("x[0]") * 3).alias("a<b"), (pl.col("x[0]") * 2 + pl.col("x(0)")).alias("y"))
    trained = training.train(training.time_split(frame, spec), spec, nthread=1)
    assert trained.encoder.booster_names == ["x(0)~1", "x(0)", "a\u2039b"]
    assert set(trained.importances) == {"x[0]", "x(0)", "a<b"}


# --- training ---------------------------------------------------------------------------------


def test_same_data_and_spec_give_byte_identical_models(
    binary_spec: ModelSpec, binary_model: training.TrainedModel
) -> None:
    again = _train_window(binary_spec)
    from_shuffled_rows = _train_window(binary_spec, shuffle=True)
    assert _sha256(again) == _sha256(binary_model)
    assert _sha256(from_shuffled_rows) == _sha256(binary_model)


def test_thread_count_does_not_change_the_model(
    binary_spec: ModelSpec, binary_window: training.TrainingData, binary_model: training.TrainedModel
) -> None:
    split = training.time_split(binary_window.frame, binary_spec)
    single = training.train(split, binary_spec, nthread=1)
    assert _sha256(single) == _sha256(binary_model)


def test_a_different_seed_gives_a_different_model(
    binary_spec: ModelSpec, binary_window: training.TrainingData, binary_model: training.TrainedModel
) -> None:
    reseeded = _spec(xgboost={"seed": 7})
    other = training.train(training.time_split(binary_window.frame, reseeded), reseeded, nthread=2)
    assert _sha256(other) != _sha256(binary_model)


def test_the_holdout_predictions_behind_the_metrics_are_kept_for_the_gates(
    binary_spec: ModelSpec, binary_window: training.TrainingData, binary_model: training.TrainedModel
) -> None:
    holdout = training.time_split(binary_window.frame, binary_spec).holdout
    kept = binary_model.holdout_predictions
    assert kept is not None
    np.testing.assert_array_equal(kept, training.predict(binary_model.booster, binary_model.encoder, holdout))
    y = holdout.get_column(binary_spec.target).to_numpy()
    assert evaluate("binary", y, kept) == binary_model.metrics


def test_learnable_binary_problem_reaches_high_auc(binary_model: training.TrainedModel) -> None:
    assert binary_model.metrics["auc"] > 0.8
    assert set(binary_model.metrics) == {"auc", "logloss"}
    assert binary_model.params["objective"] == "binary:logistic"
    assert binary_model.params["eval_metric"] == "logloss"
    assert binary_model.params["seed"] == 0


def test_shuffled_labels_stay_near_chance(binary_spec: ModelSpec) -> None:
    trained = _train_window(binary_spec, learnable=False)
    assert abs(trained.metrics["auc"] - 0.5) < 0.08


def test_regression_rmse_is_below_the_target_sd() -> None:
    spec = _spec("regression")
    store, batch_ids = _store_batches(spec, 4)
    data = training.assemble_window(store, spec, batch_ids)
    split = training.time_split(data.frame, spec)
    trained = training.train(split, spec, nthread=2)
    target_sd = float(split.holdout.get_column("Churned").std())
    assert set(trained.metrics) == {"rmse", "mae"}
    assert trained.params["objective"] == "reg:squarederror"
    assert trained.metrics["rmse"] < 0.5 * target_sd


def test_spec_params_override_the_task_defaults(binary_spec: ModelSpec, binary_window: training.TrainingData) -> None:
    spec = _spec(xgboost={"params": {"tree_method": "hist", "max_depth": 3, "eval_metric": "auc"}})
    trained = training.train(training.time_split(binary_window.frame, spec), spec, nthread=2)
    assert trained.params["eval_metric"] == "auc"
    assert trained.params["max_depth"] == 3


def test_importances_cover_every_feature_and_sum_to_one(binary_model: training.TrainedModel) -> None:
    importances = binary_model.importances
    assert list(importances) == ["Tenure Months", "spend.total", "Is Active", "Plan Type"]
    assert math.isclose(sum(importances.values()), 1.0)
    assert all(value >= 0 for value in importances.values())
    # spend and tenure drive the truth most.
    assert max(importances, key=importances.get) in {"spend.total", "Tenure Months"}


def test_an_unused_feature_has_zero_importance(binary_spec: ModelSpec, binary_window: training.TrainingData) -> None:
    frame = binary_window.frame.with_columns(pl.lit(1.0).alias("Tenure Months"))
    trained = training.train(training.time_split(frame, binary_spec), binary_spec, nthread=2)
    assert trained.importances["Tenure Months"] == 0.0
    assert math.isclose(sum(trained.importances.values()), 1.0)


def test_progress_reports_rows_and_best_iteration(binary_spec: ModelSpec, binary_window: training.TrainingData) -> None:
    messages: list[str] = []
    split = training.time_split(binary_window.frame, binary_spec)
    trained = training.train(split, binary_spec, nthread=2, progress=messages.append)
    assert f"{split.train.height} train" in messages[0]
    assert any(f"best iteration {trained.best_iteration}" in m for m in messages)
    assert any(
        f"refit {trained.refit_rounds} rounds on {split.train.height + split.early_stop.height}" in m for m in messages
    )
    assert any("holdout auc" in m for m in messages)


def test_single_class_holdout_is_an_input_error(binary_spec: ModelSpec, binary_window: training.TrainingData) -> None:
    split = training.time_split(binary_window.frame, binary_spec)
    one_class = training.Split(split.train, split.early_stop, split.holdout.with_columns(pl.lit(1).alias("Churned")))
    with pytest.raises(InputError, match="both classes"):
        training.train(one_class, binary_spec, nthread=2)


# --- saved models and prediction --------------------------------------------------------------


def test_saved_ubj_round_trip_predicts_the_same(
    binary_model: training.TrainedModel, binary_window: training.TrainingData
) -> None:
    data = training.model_bytes(binary_model.booster)
    assert data[:1] == b"{"  # UBJ object
    loaded = training.load_booster(data)
    before = training.predict(binary_model.booster, binary_model.encoder, binary_window.frame)
    after = training.predict(loaded, binary_model.encoder, binary_window.frame, nthread=1)
    np.testing.assert_array_equal(before, after)
    assert ((after > 0) & (after < 1)).all()
    assert training.model_bytes(loaded) == data


def test_unseen_category_at_predict_time_does_not_crash(binary_model: training.TrainedModel) -> None:
    frame = pl.DataFrame(
        {"Tenure Months": [24.0, 24.0], "spend.total": [20.0, 20.0], "Is Active": [True, True]}
    ).with_columns(pl.Series("Plan Type", ["never seen", None]))
    predictions = training.predict(binary_model.booster, binary_model.encoder, frame)
    assert predictions.shape == (2,) and np.isfinite(predictions).all()
    assert predictions[0] == predictions[1]  # both are simply missing


def test_saved_model_is_the_refit_on_train_and_early_stop_rows() -> None:
    # Noisy labels and a large step: validation loss turns up early, well before the round limit.
    spec = _spec(xgboost={"num_boost_round": 200, "early_stopping_rounds": 5, "params": {"eta": 0.6, "max_depth": 6}})
    store, batch_ids = _store_batches(spec, 3)
    data = training.assemble_window(store, spec, batch_ids)
    split = training.time_split(data.frame, spec)
    trained = training.train(split, spec, nthread=2)
    assert trained.best_iteration + 1 < trained.rounds < 200
    # 360 early-stopping rows (< 500): at least 10 / 0.6 -> 17 rounds.
    scaled = math.floor((trained.best_iteration + 1) * 1800 / 1440 + 0.5)
    assert trained.refit_rounds == max(scaled, 17)
    loaded = training.load_booster(training.model_bytes(trained.booster))
    assert loaded.num_boosted_rounds() == trained.refit_rounds

    # The same booster, rebuilt from the train and early-stopping rows alone.
    encoder = trained.encoder
    options = {"feature_names": encoder.booster_names, "feature_types": encoder.feature_types}
    options |= {"enable_categorical": True, "missing": np.nan}
    fit = pl.concat([split.train, split.early_stop])
    matrix = xgboost.QuantileDMatrix(encoder.encode(fit), label=fit.get_column("Churned").to_numpy(), **options)
    rebuilt = xgboost.train(trained.params, matrix, trained.refit_rounds)
    assert training.model_bytes(rebuilt) == training.model_bytes(trained.booster)
    np.testing.assert_array_equal(
        training.predict(loaded, encoder, split.holdout), rebuilt.inplace_predict(encoder.encode(split.holdout))
    )


def test_a_large_early_stopping_set_sets_the_rounds_alone() -> None:
    # 6 batches: 1200 holdout, 720 early-stopping (>= 500: no floor) and 2880 training rows.
    spec = _spec(xgboost={"num_boost_round": 400, "early_stopping_rounds": 10})
    store, batch_ids = _store_batches(spec, 6)
    split = training.time_split(training.assemble_window(store, spec, batch_ids).frame, spec)
    assert (split.train.height, split.early_stop.height) == (2880, 720)
    trained = training.train(split, spec, nthread=2)
    assert trained.refit_rounds == math.floor((trained.best_iteration + 1) * 3600 / 2880 + 0.5)
    assert trained.refit_rounds < 100 and trained.notes == ()


def test_a_large_window_keeps_the_early_stopped_booster_at_its_best_iteration_without_a_refit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # 6 batches: 2880 training rows; the threshold is lowered so a small window stands for a large one.
    spec = _spec(xgboost={"num_boost_round": 400, "early_stopping_rounds": 10, "params": {"eta": 0.6}})
    store, batch_ids = _store_batches(spec, 6)
    split = training.time_split(training.assemble_window(store, spec, batch_ids).frame, spec)
    refit = training.train(split, spec, nthread=2)
    monkeypatch.setattr(training, "REFIT_MAX_TRAIN_ROWS", 2880)
    messages: list[str] = []
    kept = training.train(split, spec, nthread=2, progress=messages.append)
    assert kept.refit_rounds is None and refit.refit_rounds is not None
    assert kept.best_iteration == refit.best_iteration
    assert kept.booster.num_boosted_rounds() == kept.best_iteration + 1 < kept.rounds
    assert kept.notes and "no refit: 2,880 training rows" in kept.notes[0] and kept.notes[0] in messages
    assert not any(m.startswith("refit ") for m in messages)

    # The same booster as the early-stopped run on the training rows alone, cut at its best iteration.
    encoder = kept.encoder
    options = {"feature_names": encoder.booster_names, "feature_types": encoder.feature_types}
    options |= {"enable_categorical": True, "missing": np.nan}
    train_matrix = xgboost.QuantileDMatrix(
        encoder.encode(split.train), label=split.train.get_column("Churned").to_numpy(), **options
    )
    early_matrix = xgboost.DMatrix(
        encoder.encode(split.early_stop), label=split.early_stop.get_column("Churned").to_numpy(), **options
    )
    first = xgboost.train(
        kept.params,
        train_matrix,
        400,
        evals=[(early_matrix, "early_stop")],
        early_stopping_rounds=10,
        verbose_eval=False,
    )
    assert training.model_bytes(first[: first.best_iteration + 1]) == training.model_bytes(kept.booster)
    loaded = training.load_booster(training.model_bytes(kept.booster))
    np.testing.assert_array_equal(
        training.predict(loaded, encoder, split.holdout), training.predict(kept.booster, encoder, split.holdout)
    )


def _categorical_rows(rng: np.random.Generator, rows: int, categories: int) -> training.FitData:
    """Three numeric columns (5% missing) and a category code in [0, categories); a known logit of both."""
    numeric = rng.normal(size=(rows, 3)).astype(np.float32)
    numeric[rng.random((rows, 3)) < 0.05] = np.nan
    code = rng.integers(0, categories, rows)
    logit = np.nan_to_num(numeric[:, 0]) - 0.8 * (code == 2) + 1.2 * (code >= 4)
    label = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(np.float32)
    return training.FitData(np.column_stack([numeric, code]).astype(np.float32), label)


def test_early_stopping_judges_the_boosters_own_predictions_even_on_categories_new_in_those_rows() -> None:
    # Codes 4 and 5 appear only in the early-stopping rows (a category new in the latest rows, which the
    # encoder of the train and early-stopping rows knows); a matrix binned on the training rows' cuts put
    # them in another category's bin and picked best iteration 4 here, where the booster's predictions say 5.
    rng = np.random.default_rng(5)
    train_rows, early_rows = _categorical_rows(rng, 4_000, 4), _categorical_rows(rng, 1_500, 6)
    params = {"objective": "binary:logistic", "eval_metric": "logloss", "max_depth": 4, "eta": 0.3, "seed": 0}
    options = {"feature_types": ["q", "q", "q", "c"], "enable_categorical": True, "missing": np.nan}
    booster = training.LocalFitter(nthread=1).fit(
        params, options, train_rows, num_boost_round=40, early_stop=early_rows, early_stopping_rounds=40
    )

    y = early_rows.y
    losses = []
    for rounds in range(1, booster.num_boosted_rounds() + 1):
        p = np.clip(booster.inplace_predict(early_rows.x, iteration_range=(0, rounds)), 1e-16, 1 - 1e-16)
        losses.append(float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))))
    assert booster.best_iteration == int(np.argmin(losses))
    assert booster.best_score == pytest.approx(min(losses), rel=1e-5)


@pytest.mark.parametrize(("num_boost_round", "floored"), [(5, False), (80, True)])
def test_refit_rounds_never_exceed_num_boost_round(
    binary_window: training.TrainingData, num_boost_round: int, floored: bool
) -> None:
    # 480 early-stopping rows: the floor (100 at eta 0.1) applies, capped at num_boost_round. With 5 rounds
    # early stopping never ends the run; scaling for the extra rows (5 -> 6) is capped too.
    spec = _spec(xgboost={"num_boost_round": num_boost_round, "early_stopping_rounds": 10})
    trained = training.train(training.time_split(binary_window.frame, spec), spec, nthread=2)
    assert trained.refit_rounds == num_boost_round == trained.booster.num_boosted_rounds()
    assert [f"raised to {num_boost_round}" in note for note in trained.notes] == ([True] if floored else [])


def test_holdout_rows_never_train(
    binary_spec: ModelSpec, binary_window: training.TrainingData, binary_model: training.TrainedModel
) -> None:
    split = training.time_split(binary_window.frame, binary_spec)
    holdout = split.holdout.with_columns(pl.col("Churned").shuffle(seed=1), pl.col("spend.total") * 3)
    other = training.train(training.Split(split.train, split.early_stop, holdout), binary_spec, nthread=2)
    assert _sha256(other) == _sha256(binary_model)
    assert other.metrics["auc"] < binary_model.metrics["auc"] - 0.2


# --- training weights -------------------------------------------------------------------------


def _weighted(frame: pl.DataFrame, weights: np.ndarray | list) -> pl.DataFrame:
    return frame.with_columns(pl.Series(training.WEIGHT_COLUMN, weights))


def test_unit_weights_give_the_unweighted_model(
    binary_spec: ModelSpec, binary_window: training.TrainingData, binary_model: training.TrainedModel
) -> None:
    frame = _weighted(binary_window.frame, np.ones(binary_window.rows))
    trained = training.train(training.time_split(frame, binary_spec), binary_spec, nthread=2)
    assert _sha256(trained) == _sha256(binary_model)
    assert trained.metrics == binary_model.metrics


def test_down_weighted_rows_before_a_change_barely_count(
    binary_spec: ModelSpec, binary_window: training.TrainingData
) -> None:
    # The earliest half of the window has its labels flipped (a concept change at mid-window); the holdout
    # (latest quarter) follows the new rule. Rows before the change weighted 0.01 hardly train at all.
    half = binary_window.rows // 2
    before = np.arange(binary_window.rows) < half
    flipped = binary_window.frame.with_columns(
        pl.when(pl.Series(before)).then(1 - pl.col("Churned")).otherwise(pl.col("Churned")).alias("Churned")
    )
    unweighted = training.train(training.time_split(flipped, binary_spec), binary_spec, nthread=2)
    frame = _weighted(flipped, np.where(before, 0.01, 1.0))
    weighted = training.train(training.time_split(frame, binary_spec), binary_spec, nthread=2)
    assert unweighted.metrics["auc"] < 0.5 < 0.8 < weighted.metrics["auc"]


def test_holdout_weights_change_nothing(
    binary_spec: ModelSpec, binary_window: training.TrainingData, binary_model: training.TrainedModel
) -> None:
    weights = np.ones(binary_window.rows)
    weights[-800:] = np.random.default_rng(SEED).uniform(0, 5, 800)  # the holdout is the latest 800 rows
    trained = training.train(training.time_split(_weighted(binary_window.frame, weights), binary_spec), binary_spec, 2)
    assert _sha256(trained) == _sha256(binary_model)
    assert trained.metrics == binary_model.metrics


@pytest.mark.parametrize(
    ("weight", "problem"),
    [
        (-1.0, "1 weight\\(s\\) .* missing, negative or infinite"),
        (None, "1 weight\\(s\\) .* missing, negative or infinite"),
        (float("inf"), "missing, negative or infinite"),
    ],
)
def test_a_bad_weight_is_an_input_error(
    binary_spec: ModelSpec, binary_window: training.TrainingData, weight: float | None, problem: str
) -> None:
    weights = [1.0] * binary_window.rows
    weights[0] = weight
    split = training.time_split(_weighted(binary_window.frame, weights), binary_spec)
    with pytest.raises(InputError, match=problem):
        training.train(split, binary_spec, nthread=2)


def test_all_zero_training_weights_are_an_input_error(
    binary_spec: ModelSpec, binary_window: training.TrainingData
) -> None:
    split = training.time_split(_weighted(binary_window.frame, np.zeros(binary_window.rows)), binary_spec)
    with pytest.raises(InputError, match="training rows: every weight in '__driftline_weight__' is 0"):
        training.train(split, binary_spec, nthread=2)


def test_bytes_that_are_not_a_model_are_an_input_error() -> None:
    with pytest.raises(InputError, match="not an XGBoost UBJ model"):
        training.load_booster(b"definitely not a model")


# --- metrics ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("y_true", "y_score", "expected"),
    [
        ([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8], 0.75),  # 3 of 4 pairs ordered
        ([0, 1, 0, 1], [0.5, 0.5, 0.2, 0.9], 0.875),  # a tie counts half: (0.5 + 1 + 1 + 1) / 4
        ([1, 1, 0, 0], [0.1, 0.2, 0.3, 0.4], 0.0),
        ([0, 1, 0, 1], [0.3, 0.3, 0.3, 0.3], 0.5),
    ],
)
def test_auc_matches_hand_counted_pairs(y_true: list[int], y_score: list[float], expected: float) -> None:
    assert auc(np.array(y_true), np.array(y_score)) == pytest.approx(expected)


def test_binary_metrics_match_hand_computed_values() -> None:
    y_true = np.array([0, 0, 1, 1])
    y_pred = np.array([0.1, 0.4, 0.35, 0.8])
    losses = per_row_loss("binary", y_true, y_pred)
    expected = [-math.log(0.9), -math.log(0.6), -math.log(0.35), -math.log(0.8)]
    np.testing.assert_allclose(losses, expected)
    metrics = evaluate("binary", y_true, y_pred)
    assert metrics == pytest.approx({"auc": 0.75, "logloss": sum(expected) / 4})


def test_log_loss_clips_certain_wrong_predictions() -> None:
    losses = per_row_loss("binary", np.array([1, 0, 1]), np.array([0.0, 1.0, 1.0]))
    np.testing.assert_allclose(losses, [-math.log(1e-7), -math.log(1e-7), -math.log(1 - 1e-7)])


def test_regression_metrics_match_hand_computed_values() -> None:
    y_true = np.array([1.0, 2.0, 3.0])
    y_pred = np.array([1.5, 2.0, 1.0])
    np.testing.assert_allclose(per_row_loss("regression", y_true, y_pred), [0.25, 0.0, 4.0])
    metrics = evaluate("regression", y_true, y_pred)
    assert metrics == pytest.approx({"rmse": math.sqrt(4.25 / 3), "mae": 2.5 / 3})


@pytest.mark.parametrize(
    ("y_true", "y_pred", "problem"),
    [
        ([1, 1, 1], [0.2, 0.5, 0.9], "both classes"),
        ([], [], "no rows"),
        ([0, 1], [0.5], "2 labels but 1 predictions"),
    ],
)
def test_metrics_refuse_what_cannot_be_scored(y_true: list, y_pred: list, problem: str) -> None:
    with pytest.raises(InputError, match=problem):
        evaluate("binary", np.array(y_true), np.array(y_pred))
