"""The synthetic stream: known truth, determinism, drift where (and only where) it is scheduled."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import typer
from typer.testing import CliRunner

from driftline.cli import synth_command
from driftline.data import profiling
from driftline.errors import InputError
from driftline.models import training
from driftline.models.spec import ModelSpec, load_spec, parse_spec
from driftline.replay import synth
from driftline.statistics.drift import compare_profiles
from driftline.statistics.metrics import auc
from tests.batches import example_batch, example_labels
from tests.support import REPO


def _drifted(reference: pl.DataFrame, current: pl.DataFrame) -> list[str]:
    report = compare_profiles(
        profiling.profile_frame(reference),
        profiling.profile_frame(current),
        numeric=list(synth.NUMERIC),
        categorical=list(synth.CATEGORICAL),
    )
    return report.drifted_features


def _rows(scenario: synth.Scenario, indices: range | list[int]) -> pl.DataFrame:
    """The history rows (features and target) of some batches."""
    target = synth.columns_of(scenario).target
    batches = (synth.generate_batch(scenario, index) for index in indices)
    return pl.concat(features.with_columns(labels.get_column(target)) for features, labels in batches)


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def test_features_superset_of_the_example_spec_with_sixteen_columns() -> None:
    spec = load_spec(REPO / "configs" / "example.yaml")
    assert spec.features.numeric == list(synth.NUMERIC) and spec.features.categorical == list(synth.CATEGORICAL)
    assert (len(synth.NUMERIC), len(synth.CATEGORICAL)) == (12, 4)
    frame, labels = synth.generate_batch(synth.default_scenario(), 0)
    assert frame.columns == ["id", "ts", *synth.FEATURES]
    assert labels.columns == ["id", "default"]
    matching = synth.spec_for(synth.default_scenario())
    assert matching.features == spec.features and matching.drift == spec.drift
    columns = ("target", "id_column", "time_column")
    assert [getattr(matching, c) for c in columns] == [getattr(spec, c) for c in columns]


def test_example_batch_keeps_its_original_columns_values() -> None:
    """The eight original columns are drawn first from default_rng(seed), exactly as before synth existed."""
    rng = np.random.default_rng(5)
    frame = example_batch(5, rows=1_000)
    np.testing.assert_array_equal(frame["income"].to_numpy(), rng.lognormal(10, 0.5, 1_000))
    np.testing.assert_array_equal(frame["debt_ratio"].to_numpy(), rng.beta(2, 5, 1_000))
    np.testing.assert_array_equal(frame["age"].to_numpy(), rng.integers(18, 80, 1_000))
    assert frame["id"][0] == 50_000_000 and frame["ts"][1] - frame["ts"][0] == dt.timedelta(seconds=1)
    shifted = example_batch(5, rows=1_000, income_shift=0.3)
    np.testing.assert_allclose(shifted["income"].to_numpy(), frame["income"].to_numpy() * np.exp(0.3))
    assert shifted.drop("income").equals(frame.drop("income"))


def test_same_seed_writes_identical_bytes_and_another_seed_does_not(tmp_path: Path) -> None:
    scenario = synth.get_scenario("fast", batches=4, rows=300)
    first = _digest(synth.write_dataset(scenario, tmp_path / "a").directory)
    second = _digest(synth.write_dataset(scenario, tmp_path / "b").directory)
    other = _digest(synth.write_dataset(scenario.model_copy(update={"seed": 1}), tmp_path / "c").directory)
    assert first == second
    assert sorted(first)[:2] == ["batches/b000.parquet", "batches/b001.parquet"]
    assert len(first) == 3 + 4 + 4  # history, spec, truth; 4 batches; 4 label files
    assert first["history.parquet"] != other["history.parquet"]


def test_a_batch_does_not_depend_on_which_batches_were_generated_before() -> None:
    scenario = synth.get_scenario("fast", rows=200)
    alone = synth.generate_batch(scenario, 9)
    from_stream = next(t.batch for t in synth.stream(scenario) if t.batch and t.batch.truth.index == 9)
    assert alone[0].equals(from_stream.features) and alone[1].equals(from_stream.labels)


def test_history_is_time_ordered_with_unique_ids_and_each_batch_in_its_period() -> None:
    scenario = synth.default_scenario()
    frame = synth.history(scenario)
    assert frame.height == 24 * 5_000 and frame["id"].n_unique() == frame.height
    assert frame["ts"].is_sorted()
    for index in (0, 13, 23):
        state = synth.truth(scenario, index)
        rows = frame.slice(index * 5_000, 5_000)
        assert rows["ts"].min() >= state.start and rows["ts"].max() < state.end


def test_stream_delivers_every_label_after_its_delay() -> None:
    scenario = synth.get_scenario("fast", batches=5, rows=50).model_copy(update={"label_delay": 2})
    ticks = list(synth.stream(scenario))
    assert [t.batch.truth.index if t.batch else None for t in ticks] == [0, 1, 2, 3, 4, None, None]
    assert [[b.truth.index for b in t.labelled] for t in ticks] == [[], [], [0], [1], [2], [3], [4]]


def test_covariate_drift_moves_only_the_scheduled_features() -> None:
    scenario = synth.default_scenario()
    before, _ = synth.generate_batch(scenario, 0)
    stable, _ = synth.generate_batch(scenario, 7)
    after, _ = synth.generate_batch(scenario, 8)
    assert _drifted(before, stable) == []
    assert sorted(_drifted(before, after)) == ["channel", "income"]
    mobile = after["channel"].eq("mobile").mean()
    assert 0.2 + 0.3 * 0.8 - 0.03 < mobile < 0.2 + 0.3 * 0.8 + 0.03  # (1 - s) p + s


def test_concept_drift_is_invisible_to_input_drift_but_degrades_the_old_rule() -> None:
    scenario = synth.default_scenario()
    before, before_labels = synth.generate_batch(scenario, 13)
    after, after_labels = synth.generate_batch(scenario, 14)
    assert synth.truth(scenario, 13).concept == 0.0 and synth.truth(scenario, 14).concept == 1.0
    assert _drifted(before, after) == []
    old_rule = synth.default_probability(after, concept=0.0)
    new_rule = synth.default_probability(after, concept=1.0)
    y = after_labels["default"].to_numpy()
    assert auc(y, new_rule) > auc(y, old_rule) + 0.1
    # Before the change the old rule is the right one.
    y_before = before_labels["default"].to_numpy()
    assert auc(y_before, synth.default_probability(before)) > auc(y_before, synth.default_probability(before, 1.0))


def test_prior_drift_moves_the_base_rate_by_the_scheduled_logit() -> None:
    scenario = synth.Scenario(rows=20_000, batches=2, events=[synth.PriorDrift(logit_shift=1.0, from_batch=1)])
    (first, first_labels), (second, second_labels) = (synth.generate_batch(scenario, i) for i in (0, 1))
    assert _drifted(first, second) == []
    p0, p1 = first_labels["default"].mean(), second_labels["default"].mean()
    expected = synth.default_probability(second, logit_shift=1.0).mean()
    assert p1 > p0 + 0.05 and abs(p1 - expected) < 0.01


def test_ramped_and_ending_events_follow_their_schedule() -> None:
    event = synth.ConceptDrift(strength=1.0, from_batch=2, ramp_batches=3, until_batch=8)
    scenario = synth.Scenario(batches=10, rows=10, events=[event])
    assert [synth.truth(scenario, i).concept for i in range(10)] == [0, 0, 0.25, 0.5, 0.75, 1, 1, 1, 0, 0]


def test_labels_follow_the_known_rule() -> None:
    frame = example_batch(3, rows=50_000)
    labels = example_labels(frame, 3)
    probability = synth.default_probability(frame)
    assert abs(labels["default"].mean() - probability.mean()) < 0.01
    # Irrelevant features do not enter the rule: changing them leaves every probability unchanged.
    noise = frame.with_columns(pl.col("loan_amount") * 3, pl.col("txn_count") + 7, pl.lit("web").alias("channel"))
    np.testing.assert_array_equal(synth.default_probability(noise), probability)
    assert not np.array_equal(synth.default_probability(frame.with_columns(pl.col("savings") * 3)), probability)


def test_resized_scenario_keeps_the_story_in_proportion() -> None:
    short = synth.get_scenario("default", batches=12)
    assert short.batches == 12
    assert [e.from_batch for e in short.events] == [4, 4, 7]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: synth.get_scenario("nope"), "unknown scenario 'nope'"),
        (lambda: synth.Scenario(events=[synth.CovariateDrift(feature="salary", shift=1, from_batch=1)]), "salary"),
        (lambda: synth.Scenario(batches=4, events=[synth.ConceptDrift(from_batch=9)]), "from_batch 9 >= batches 4"),
        (
            lambda: synth.Scenario(events=[synth.CovariateDrift(feature="region", shift=2.0, from_batch=1)]),
            "share of rows",
        ),
        (lambda: synth.get_scenario("fast", rows=5), "rows"),
        (lambda: synth.generate_batch(synth.fast_scenario(), 12), "not 12"),
    ],
)
def test_bad_scenarios_name_the_problem(make, message: str) -> None:
    with pytest.raises((InputError, ValueError), match=message):
        make()


def test_synth_command_writes_history_batches_labels_and_spec(tmp_path: Path) -> None:
    app = typer.Typer()
    app.command("synth")(synth_command.synth)
    app.command("other")(lambda: None)  # two commands, so the command name is required as in the real app
    result = CliRunner().invoke(
        app, ["synth", str(tmp_path), "--scenario", "fast", "--batches", "6", "--rows", "300", "--json"]
    )
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert len(document["batches"]) == len(document["labels"]) == 6
    history = pl.read_parquet(document["history"])
    assert history.height == 1_800 and "default" in history.columns
    spec = load_spec(document["spec"])
    assert pl.read_parquet(document["batches"][0]).columns == spec.batch_columns
    assert pl.read_parquet(document["labels"][0]).columns == spec.labels_columns
    assert json.loads(Path(document["truth"]).read_text())["batches"][5]["concept"] == 1.0

    text = CliRunner().invoke(app, ["synth", str(tmp_path / "t"), "--scenario", "fast", "--rows", "100"])
    assert text.exit_code == 0 and "concept drift" in text.stdout and "backtest" in text.stdout
    bad = CliRunner().invoke(app, ["synth", str(tmp_path / "x"), "--scenario", "nope"])
    assert isinstance(bad.exception, InputError) and "unknown scenario" in str(bad.exception)


# ------------------------------------------------------------------------------------------ presets kept


def _values_digest(frame: pl.DataFrame) -> str:
    """sha256 of a frame's names and values (numpy bytes, strings joined), independent of parquet's encoder."""
    digest = hashlib.sha256()
    for name in frame.columns:
        column = frame.get_column(name)
        data = "\n".join(column.to_list()).encode() if column.dtype == pl.String else column.to_numpy().tobytes()
        digest.update(name.encode() + data)
    return digest.hexdigest()


@pytest.mark.parametrize(
    ("preset", "values", "truth_file"),
    [
        (
            "default",
            "315191df2af8b80a1e287cd40df27e230639d02adf8cd0040c62b6839ff0559f",
            "ba065b5c73e9d25f80c98338d5b68522e91aa90d9e154ede28bc0ee8741e16bc",
        ),
        (
            "fast",
            "5c149cec679eeac28b22727bd842568fcc440adc27cfab751c7782ced9577e58",
            "abd3de43e43c7d2fa9ff5074893554849e40994fff9c4046af3c2228fcc0088f",
        ),
    ],
)
def test_presets_keep_the_values_and_truth_file_they_had_before_the_realism_suite(
    tmp_path: Path, preset: str, values: str, truth_file: str
) -> None:
    """Digests taken with the code before the realism suite existed (seed 3, 300 rows a batch)."""
    scenario = synth.get_scenario(preset, seed=3, rows=300)
    written = synth.write_dataset(scenario, tmp_path)
    assert _values_digest(synth.history(scenario)) == values
    assert hashlib.sha256(written.truth.read_bytes()).hexdigest() == truth_file
    assert set(scenario.model_dump()) == {
        "name", "batches", "rows", "seed", "start", "batch_period", "label_delay", "events",
    }  # fmt: skip


# ------------------------------------------------------------------------------------------ realism suite

SIZES = {  # name: (batches, rows, batch period)
    "slow-cadence": (30, 500, dt.timedelta(days=511)),
    "coarse-time": (24, 2_000, dt.timedelta(days=30)),
    "hourly-small": (30, 500, dt.timedelta(hours=500)),
    "inversion": (24, 2_000, dt.timedelta(days=1)),
    "regression-unicode": (24, 2_000, dt.timedelta(days=1)),
    "tiny": (24, 200, dt.timedelta(days=1)),
    "large": (8, 200_000, dt.timedelta(days=1)),
    "stable": (24, 2_000, dt.timedelta(days=1)),
}
CHANGES = {  # name: batch at which the label rule changes
    "slow-cadence": 15,
    "coarse-time": 14,
    "hourly-small": 12,
    "inversion": 12,
    "regression-unicode": 14,
    "tiny": 14,
    "large": 3,
}


def test_realism_suite_has_every_scenario_at_its_documented_size() -> None:
    assert list(synth.REALISM) == list(SIZES)
    for name, (batches, rows, period) in SIZES.items():
        scenario = synth.realism_scenario(name)
        assert (scenario.name, scenario.batches, scenario.rows, scenario.batch_period) == (name, batches, rows, period)
        assert synth.get_scenario(name, seed=4) == synth.realism_scenario(name, seed=4)
    assert set(CHANGES) == set(SIZES) - {"stable"}


@pytest.mark.parametrize("name", list(SIZES))
def test_realism_scenario_same_seed_writes_same_bytes_and_its_files_match_the_minimal_spec(
    tmp_path: Path, name: str
) -> None:
    scenario = synth.realism_scenario(name, batches=4, rows=300)
    first = synth.write_dataset(scenario, tmp_path / "a", spec="minimal")
    second = synth.write_dataset(scenario, tmp_path / "b", spec="minimal")
    other = synth.write_dataset(scenario.model_copy(update={"seed": 1}), tmp_path / "c", spec="minimal")
    assert _digest(first.directory) == _digest(second.directory)
    assert _digest(first.directory)["history.parquet"] != _digest(other.directory)["history.parquet"]
    spec = load_spec(first.spec)
    assert spec == synth.default_spec(scenario)
    assert "gates" not in first.spec.read_text(encoding="utf-8")  # only the keys the minimal spec sets
    assert pl.read_parquet(first.batches[0]).columns == spec.batch_columns
    assert pl.read_parquet(first.labels[0]).columns == spec.labels_columns
    history = pl.read_parquet(first.history)
    assert history.columns == [*spec.batch_columns, spec.target] and history.height == 4 * 300
    assert history[spec.time_column].is_sorted() and history[spec.id_column].n_unique() == history.height


def test_realism_overrides_scale_the_story_and_unknown_names_are_named() -> None:
    short = synth.realism_scenario("inversion", batches=12, rows=100)
    assert (short.batches, short.rows) == (12, 100)
    flip = next(e for e in short.events if isinstance(e, synth.LabelFlip))
    assert flip.from_batch == 6 and all(e.ramp_batches == 12 for e in short.events if e is not flip)
    with pytest.raises(InputError, match="unknown realism scenario 'default'"):
        synth.realism_scenario("default")
    with pytest.raises(InputError, match="inversion"):
        synth.get_scenario("inversoin")


def test_default_spec_names_only_columns_and_task_and_leaves_every_policy_at_its_default() -> None:
    scenario = synth.realism_scenario("regression-unicode")
    spec = synth.default_spec(scenario, name="amounts")
    required = {"name", "task", "target", "id_column", "time_column", "features"}
    assert spec.model_fields_set == required
    assert spec == ModelSpec.model_validate(spec.model_dump(include=required))
    assert (spec.task, spec.target, spec.id_column, spec.time_column) == (
        "regression",
        "amount",
        "loan.id",
        "Applied At",
    )
    binary = synth.default_spec(synth.realism_scenario("stable"))
    assert (binary.task, binary.target, binary.features.all) == ("binary", "default", list(synth.FEATURES))


def test_spec_for_also_tunes_a_regression_spec_in_target_units() -> None:
    scenario = synth.realism_scenario("regression-unicode")
    spec = synth.spec_for(scenario)
    assert parse_spec(spec.to_yaml()) == spec  # the written file loads back
    assert spec.task == "regression" and spec.features == synth.default_spec(scenario).features
    assert spec.gates.non_inferiority_margin == 0.05 * synth.AMOUNT_NOISE_SD
    assert spec.shadow.equivalence_margin == 0.02 * synth.AMOUNT_NOISE_SD**2
    assert spec.window.last_batches == 2


@pytest.mark.parametrize(("name", "change"), list(CHANGES.items()))
def test_after_each_realism_change_the_old_rule_is_clearly_worse_than_the_new(name: str, change: int) -> None:
    """Known truth: on the last batch, the rule in force before the change against the rule in force."""
    scenario = synth.realism_scenario(name, rows=4_000).model_copy(update={"naming": "plain"})
    last = scenario.batches - 1
    before, now = synth.truth(scenario, change - 1), synth.truth(scenario, last)
    assert (before.concept, before.flip) == (0.0, 0.0) and (now.concept, now.flip) != (0.0, 0.0)
    features, labels = synth.generate_batch(scenario, last)
    y = labels[synth.columns_of(scenario).target].to_numpy()
    if scenario.task == "binary":
        old = synth.default_probability(features, before.concept, before.logit_shift, flip=before.flip)
        new = synth.default_probability(features, now.concept, now.logit_shift, flip=now.flip)
        assert auc(y, new) > auc(y, old) + 0.1
    else:
        old = synth.expected_amount(features, before.concept, before.logit_shift, flip=before.flip)
        new = synth.expected_amount(features, now.concept, now.logit_shift, flip=now.flip)
        assert np.sqrt(np.mean((y - old) ** 2)) > 2.5 * np.sqrt(np.mean((y - new) ** 2))


def test_stable_control_has_the_same_truth_in_every_batch() -> None:
    scenario = synth.realism_scenario("stable")
    first = synth.truth(scenario, 0)
    assert scenario.events == []
    for index in range(scenario.batches):
        state = synth.truth(scenario, index)
        assert (state.shifts, state.concept, state.logit_shift, state.flip) == ({}, 0.0, 0.0, 0.0)
    assert (first.shifts, first.categories) == ({}, {})


def test_coarse_time_batches_each_share_one_timestamp_a_period_apart() -> None:
    scenario = synth.realism_scenario("coarse-time", batches=6, rows=500)
    history = synth.history(scenario)
    stamps = history.group_by("ts", maintain_order=True).len()
    assert stamps["len"].to_list() == [500] * 6
    assert stamps["ts"].to_list() == [synth.truth(scenario, index).start for index in range(6)]
    assert stamps["ts"].diff().drop_nulls().unique().to_list() == [dt.timedelta(days=30)]
    spread = synth.history(scenario.model_copy(update={"timestamps": "spread"}))
    assert spread.drop("ts").equals(history.drop("ts"))  # only the timestamps differ


def test_hourly_small_has_one_row_an_hour_across_batches() -> None:
    scenario = synth.realism_scenario("hourly-small", batches=4)
    history = synth.history(scenario)
    assert history.height == 4 * 500
    assert history["ts"].diff().drop_nulls().unique().to_list() == [dt.timedelta(hours=1)]
    ramp = [synth.truth(synth.realism_scenario("hourly-small"), i).concept for i in (11, 12, 14, 17, 29)]
    assert ramp == [0.0, pytest.approx(1 / 6), pytest.approx(3 / 6), 1.0, 1.0]  # a gradual concept drift


def test_slow_cadence_batches_span_years_from_1984() -> None:
    scenario = synth.realism_scenario("slow-cadence")
    first, last = synth.truth(scenario, 0), synth.truth(scenario, scenario.batches - 1)
    assert first.start == dt.datetime(1984, 1, 1) and (first.end - first.start).days / 365.25 > 1.39
    assert last.end.year == 2025 and last.shifts["income"] == pytest.approx(1.0)
    frame, _ = synth.generate_batch(scenario, 3)
    assert frame["ts"].max() - frame["ts"].min() > dt.timedelta(days=500)


def test_regression_unicode_columns_and_categories_survive_parquet_and_training(tmp_path: Path) -> None:
    scenario = synth.realism_scenario("regression-unicode", batches=3, rows=2_000)
    written = synth.write_dataset(scenario, tmp_path)
    batch = pl.read_parquet(written.batches[0])
    for column in ("loan.id", "Applied At", "Annual Income", "Savings (€)", "region.name", "Income Band"):
        assert column in batch.columns
    assert set(batch["region.name"]) == set(synth.UNICODE_CATEGORIES["region"].values())
    assert {"Île-de-France", "Provence-Alpes-Côte d’Azur"} <= set(batch["region.name"])
    assert set(batch["Channel"]) == {"Web", "Agence", "Partenaire", "App mobile 📱"}
    assert set(batch["Income Band"]) == {band for _, band in synth.INCOME_BANDS}
    assert "40K - 60K €" in set(batch["Income Band"])
    spec = load_spec(written.spec)
    assert "Income Band" in spec.features.categorical and "Savings (€)" in spec.features.numeric
    # The names are only relabelled: the same draws as the plain scenario, band derived from income.
    plain, _ = synth.generate_batch(scenario.model_copy(update={"naming": "plain"}), 0)
    assert np.array_equal(batch["Annual Income"].to_numpy(), plain["income"].to_numpy())
    assert (
        batch["region.name"].to_list() == plain["region"].replace_strict(synth.UNICODE_CATEGORIES["region"]).to_list()
    )
    rich = batch.filter(pl.col("Annual Income").is_between(40_000, 60_000, closed="left"))
    assert set(rich["Income Band"]) == {"40K - 60K €"}
    # The loop's own trainer reads every odd name and unicode category (rows before the story's changes).
    frame = _rows(synth.realism_scenario("regression-unicode"), range(3))
    model = training.train(training.time_split(frame, spec), spec, nthread=1)
    predictions = training.predict(model.booster, model.encoder, frame)
    assert np.sqrt(np.mean((frame["amount"].to_numpy() - predictions) ** 2)) < 1.5 * synth.AMOUNT_NOISE_SD


def test_regression_target_follows_its_rule_with_known_noise() -> None:
    scenario = synth.realism_scenario("regression-unicode", rows=20_000).model_copy(update={"naming": "plain"})
    features, labels = synth.generate_batch(scenario, 0)
    amount = labels["amount"].to_numpy()
    expected = synth.expected_amount(features)
    assert labels.columns == ["id", "amount"] and labels["amount"].dtype == pl.Float64
    assert amount.min() >= 0 and np.array_equal(amount, np.round(amount, 2))
    assert abs((amount - expected).std() - synth.AMOUNT_NOISE_SD) < 5
    assert abs(amount.mean() - synth.AMOUNT_CENTER) < 20  # the rule's terms are centred
    # Irrelevant features do not enter it; the concept change negates utilization's effect.
    noise = features.with_columns(pl.col("loan_amount") * 3, pl.lit("web").alias("channel"))
    np.testing.assert_array_equal(synth.expected_amount(noise), expected)
    turned = synth.expected_amount(features, concept=1.0) - expected
    utilization = features["utilization"].to_numpy()
    np.testing.assert_allclose(turned, -2400.0 * (utilization - 0.5), atol=1e-9)


def test_inversion_makes_a_model_of_the_old_rule_rank_rows_backwards() -> None:
    scenario = synth.realism_scenario("inversion")
    spec = synth.default_spec(scenario)
    model = training.train(training.time_split(_rows(scenario, range(8, 12)), spec), spec, nthread=1)
    assert model.metrics["auc"] > 0.65  # on its holdout, before the change
    after = _rows(scenario, [13, 20])
    assert auc(after["default"].to_numpy(), training.predict(model.booster, model.encoder, after)) < 0.4
    before_rate, after_rate = (_rows(scenario, [index])["default"].mean() for index in (11, 12))
    assert abs(before_rate - after_rate) < 0.05  # the flip keeps the base rate: only the ranking turns


def test_inversion_features_drift_slowly_all_along() -> None:
    scenario = synth.realism_scenario("inversion")
    shifts = [synth.truth(scenario, index).shifts["income"] for index in (0, 11, 23)]
    assert shifts == [pytest.approx(0.6 / 24), pytest.approx(0.6 * 12 / 24), pytest.approx(0.6)]
    first, _ = synth.generate_batch(scenario, 0)
    assert _drifted(first, synth.generate_batch(scenario, 1)[0]) == []  # one batch to the next: too slow to see
    assert "income" in _drifted(first, synth.generate_batch(scenario, 23)[0])


def test_label_flip_follows_its_schedule_and_is_written_to_truth_only_when_scheduled(tmp_path: Path) -> None:
    event = synth.LabelFlip(strength=1.0, from_batch=1, ramp_batches=1)
    scenario = synth.Scenario(batches=4, rows=50, events=[event])
    assert [synth.truth(scenario, i).flip for i in range(4)] == [0.0, 0.5, 1.0, 1.0]
    frame, _ = synth.generate_batch(scenario, 0)
    np.testing.assert_allclose(synth.default_probability(frame, flip=0.5), 1 / (1 + np.exp(-synth.LOGIT_CENTER)))
    flipped = json.loads(synth.write_dataset(scenario, tmp_path / "flip").truth.read_text())
    assert [state["flip"] for state in flipped["batches"]] == [0.0, 0.5, 1.0, 1.0]
    plain = json.loads(synth.write_dataset(synth.fast_scenario(), tmp_path / "fast").truth.read_text())
    assert "flip" not in plain["batches"][0] and "timestamps" not in plain["scenario"]


def test_large_scenario_generates_a_200k_batch_quickly() -> None:
    scenario = synth.realism_scenario("large")
    started = time.perf_counter()
    features, labels = synth.generate_batch(scenario, 7)
    assert features.height == labels.height == 200_000
    assert time.perf_counter() - started < 3.0  # ~0.2 s; the whole 8-batch history takes ~2 s
    assert synth.truth(scenario, 7).concept == 1.0 and features["id"].n_unique() == 200_000


def test_synth_command_writes_a_realism_scenario_with_the_minimal_spec(tmp_path: Path) -> None:
    app = typer.Typer()
    app.command("synth")(synth_command.synth)
    app.command("other")(lambda: None)
    arguments = ["synth", str(tmp_path), "--scenario", "inversion", "--batches", "6", "--rows", "100", "--minimal-spec"]
    result = CliRunner().invoke(app, arguments)
    assert result.exit_code == 0, result.output
    assert "label flip" in result.stdout
    scenario = synth.realism_scenario("inversion", batches=6, rows=100)
    assert load_spec(tmp_path / "spec.yaml") == synth.default_spec(scenario)
