"""The synthetic stream: known truth, determinism, drift where (and only where) it is scheduled."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import typer
from typer.testing import CliRunner

from driftline import profiling, synth
from driftline.cli import synth_command
from driftline.drift import compare_profiles
from driftline.errors import InputError
from driftline.spec import load_spec
from driftline.training import auc
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
