"""The backtest replays a history through the loop's decisions; known truth from driftline.replay.synth."""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import typer
from typer.testing import CliRunner

from driftline.cli import backtest_command
from driftline.errors import InputError
from driftline.models.spec import Features, GuardSpec, ModelSpec, WindowSpec, load_spec
from driftline.replay import backtest, synth
from driftline.reports import backtest_report

SCENARIO = synth.default_scenario()
CONCEPT_DRIFT = next(e.from_batch for e in SCENARIO.events if isinstance(e, synth.ConceptDrift))


@pytest.fixture(scope="module")
def default_result(tmp_path_factory: pytest.TempPathFactory) -> backtest.BacktestResult:
    """The default story (input drift at 8, concept drift at 14) under the three policies."""
    history = synth.write_history(SCENARIO, tmp_path_factory.mktemp("default") / "history.parquet")
    frame, spec = backtest.load_history(history, synth.spec_for(SCENARIO))
    return backtest.run_backtest(frame, spec, batches=SCENARIO.batches, policies="never,periodic:1,drift")


# ------------------------------------------------------------------------------------------ policies


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("never", [("never", "never", 0)]),
        ("never, periodic:4 ,drift", [("never", "never", 0), ("periodic:4", "periodic", 4), ("drift", "drift", 0)]),
        (["periodic:01"], [("periodic:1", "periodic", 1)]),
    ],
)
def test_policies_parse(text, expected) -> None:
    assert [(p.name, p.kind, p.every) for p in backtest.parse_policies(text)] == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("sometimes", "bad policy 'sometimes'"),
        ("periodic:0", "bad policy 'periodic:0'"),
        ("periodic:x", "bad policy 'periodic:x'"),
        ("periodic", "bad policy 'periodic'"),
        ("never,never", "listed twice"),
        (" , ", "no policies"),
    ],
)
def test_bad_policies_are_named(text: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        backtest.parse_policies(text)


# ------------------------------------------------------------------------------------------ the story


def test_drift_policy_beats_never_after_the_concept_drift_at_a_fraction_of_periodic_retraining(
    default_result: backtest.BacktestResult,
) -> None:
    never, periodic, drift = (default_result.policies[name] for name in ("never", "periodic:1", "drift"))
    after_never = never.mean_metric_from(CONCEPT_DRIFT)
    after_drift = drift.mean_metric_from(CONCEPT_DRIFT)
    assert after_drift > after_never + 0.03, (after_drift, after_never)
    assert drift.mean_metric > never.mean_metric
    assert 1 <= drift.retrains < periodic.retrains
    assert drift.promotions >= 1 and never.retrains == never.promotions == 0
    # The concept drift is invisible to input drift: the performance monitor is what sees it.
    degraded = [o.batch for o in drift.per_batch if o.degraded]
    assert degraded and min(degraded) == CONCEPT_DRIFT + SCENARIO.label_delay
    assert not any(o.drift for o in never.per_batch if o.batch < 8)
    assert all(o.drift for o in never.per_batch if o.batch >= 8)  # income never returns: the old reference drifts


def test_never_keeps_the_first_champion_that_every_policy_starts_from(default_result: backtest.BacktestResult) -> None:
    first_served = default_result.first_served
    starts = {name: result.per_batch[0] for name, result in default_result.policies.items()}
    assert {(o.batch, o.version) for o in starts.values()} == {(first_served, starts["never"].version)}
    assert {o.version for o in default_result.policies["never"].per_batch} == {starts["never"].version}
    # Same model on the same batch: the same metric under every policy.
    assert len({o.metric for o in starts.values()}) == 1


def test_no_served_model_was_trained_on_labels_that_had_not_arrived(default_result: backtest.BacktestResult) -> None:
    delay = default_result.label_delay
    for result in default_result.policies.values():
        for outcome in result.per_batch:
            # A candidate trained after batch t saw the labels of batches <= t - delay only ...
            if outcome.retrained:
                assert outcome.candidate_trained_through <= outcome.batch - delay, (result.policy.name, outcome)
            # ... so the model serving a batch was trained after an earlier one.
            assert outcome.trained_through <= outcome.batch - 1 - delay, (result.policy.name, outcome)


def _alternating_history(batches: int = 10, rows: int = 1_500) -> pl.DataFrame:
    """x's effect on y flips sign every batch: only a model trained on batch t itself predicts batch t well."""
    rng = np.random.default_rng(4)
    frames = []
    for index in range(batches):
        x = rng.normal(size=rows)
        sign = 1.0 if index % 2 == 0 else -1.0
        y = (rng.random(rows) < 1 / (1 + np.exp(-4 * sign * x))).astype(np.int8)
        start = dt.datetime(2026, 1, 1) + dt.timedelta(days=index)
        frames.append(
            pl.DataFrame(
                {
                    "id": np.arange(rows) + index * rows,
                    "ts": [start + dt.timedelta(seconds=i) for i in range(rows)],
                    "x": x,
                    "noise": rng.normal(size=rows),
                    "y": y,
                }
            )
        )
    return pl.concat(frames)


@pytest.mark.parametrize(("delay", "served_sign"), [(0, "opposite"), (1, "same")])
def test_labels_are_used_only_after_their_delay(delay: int, served_sign: str) -> None:
    """Each batch's rule is the opposite of its neighbours'. Retraining after every batch on the last labelled
    batch, the model serving batch t learned batch t - 1 - delay: with delay 0 the opposite rule (AUC far
    below 0.5), with delay 1 the same rule (far above). Peeking one batch ahead would swap the two."""
    spec = ModelSpec(
        name="flip",
        task="binary",
        target="y",
        id_column="id",
        time_column="ts",
        features=Features(numeric=["x", "noise"]),
        window=WindowSpec(last_batches=1, min_labelled_rows=1_000),
        # Every new champion is worse than the one it replaced on the next batch: the guard would roll back.
        guard=GuardSpec(enabled=False),
    )
    result = backtest.run_backtest(
        _alternating_history(), spec, batches=10, policies="periodic:1", label_delay=delay, promotion="gates"
    )
    periodic = result.policies["periodic:1"]
    assert periodic.promotions >= 7
    if served_sign == "same":
        assert periodic.mean_metric > 0.7
    else:
        assert periodic.mean_metric < 0.3


def test_the_same_history_replays_to_the_same_decisions() -> None:
    scenario = synth.get_scenario("fast", rows=1_000)
    spec = synth.spec_for(scenario)
    frame = synth.history(scenario)
    runs = [backtest.run_backtest(frame, spec, batches=12, policies="periodic:2,drift").to_dict() for _ in range(2)]
    for run in runs:
        run.pop("seconds")
        for policy in run["policies"].values():
            policy.pop("train_seconds")
    assert runs[0] == runs[1]


def test_periodic_k_retrains_at_most_every_k_batches() -> None:
    scenario = synth.get_scenario("fast", rows=1_000)
    result = backtest.run_backtest(synth.history(scenario), synth.spec_for(scenario), batches=12, policies="periodic:3")
    retrained = [o.batch - result.first_served + 1 for o in result.policies["periodic:3"].per_batch if o.retrained]
    assert retrained and all(step % 3 == 0 for step in retrained)


def test_regression_with_epoch_seconds_is_judged_by_rmse() -> None:
    """y = 2x + noise, then y = -2x from batch 5: retraining lowers the RMSE that never-retraining keeps high."""
    rng = np.random.default_rng(9)
    rows, batches = 600, 10
    x = rng.normal(size=rows * batches)
    slope = np.where(np.arange(rows * batches) < 5 * rows, 2.0, -2.0)
    frame = pl.DataFrame(
        {
            "id": np.arange(rows * batches),
            "epoch": 1_767_225_600 + 60 * np.arange(rows * batches),
            "x": x,
            "y": slope * x + rng.normal(scale=0.3, size=rows * batches),
        }
    )
    spec = ModelSpec(
        name="slope",
        task="regression",
        target="y",
        id_column="id",
        time_column="epoch",
        features=Features(numeric=["x"]),
        window=WindowSpec(last_batches=1, min_labelled_rows=500, min_rows_since_drift=500),
    )
    result = backtest.run_backtest(frame, spec, batches=batches, policies="never,periodic:1", promotion="gates")
    assert result.metric == "rmse" and not result.higher_is_better
    never, periodic = result.policies["never"], result.policies["periodic:1"]
    assert periodic.mean_metric_from(7) < 0.5 < 2.0 < never.mean_metric_from(7)
    assert result.policies["periodic:1"].per_batch[0].start == str(1_767_225_600 + 60 * 2 * rows)


# ------------------------------------------------------------------------------------------ outputs


def test_json_follows_the_contract(default_result: backtest.BacktestResult, tmp_path: Path) -> None:
    paths = backtest_report.write_outputs(default_result, tmp_path)
    document = json.loads(paths["json"].read_text())
    assert document["metric"] == "auc"
    assert set(document["policies"]) == {"never", "periodic:1", "drift"}
    for policy in document["policies"].values():
        assert {"mean_metric", "retrains", "promotions", "per_batch"} <= set(policy)
        assert isinstance(policy["mean_metric"], float)
        assert isinstance(policy["retrains"], int) and isinstance(policy["promotions"], int)
        assert len(policy["per_batch"]) == SCENARIO.batches - default_result.first_served
        for row in policy["per_batch"]:
            assert {"batch", "metric", "version", "retrained"} <= set(row)
            assert isinstance(row["batch"], int) and isinstance(row["metric"], float)
            assert isinstance(row["version"], str) and isinstance(row["retrained"], bool)
    assert document == json.loads(json.dumps(default_result.to_dict()))
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    markdown = paths["markdown"].read_text()
    assert "## Did drift-triggered retraining pay?" in markdown and "Drift-triggered retraining paid" in markdown
    assert markdown.count("| b023 |") == 3


# ------------------------------------------------------------------------------------------ bad input


@pytest.fixture(scope="module")
def small_history(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("small")
    written = synth.write_dataset(synth.get_scenario("fast", rows=400), folder)
    return written.history, written.spec


def test_missing_columns_are_all_named(small_history: tuple[Path, Path], tmp_path: Path) -> None:
    history, spec_path = small_history
    pl.read_parquet(history).drop("income", "default").write_parquet(tmp_path / "broken.parquet")
    spec = load_spec(spec_path)
    with pytest.raises(InputError, match=r"missing column\(s\) 'income', 'default' \(target column\)"):
        backtest.load_history(tmp_path / "broken.parquet", spec)


def test_time_column_can_be_overridden_and_must_be_a_time(small_history: tuple[Path, Path], tmp_path: Path) -> None:
    history, spec_path = small_history
    spec = load_spec(spec_path)
    renamed = pl.read_parquet(history).rename({"ts": "event time"}).with_columns(pl.lit("x").alias("text"))
    renamed.write_parquet(tmp_path / "renamed.parquet")
    frame, used = backtest.load_history(tmp_path / "renamed.parquet", spec, time_column="event time")
    assert used.time_column == "event time" and frame.get_column("event time").is_sorted()
    with pytest.raises(InputError, match="time column 'text' is String"):
        backtest.load_history(tmp_path / "renamed.parquet", spec, time_column="text")


def test_too_few_rows_per_batch_is_refused(small_history: tuple[Path, Path]) -> None:
    history, spec_path = small_history
    frame, spec = backtest.load_history(history, load_spec(spec_path))
    with pytest.raises(InputError, match=r"rows per batch; each batch needs at least 200"):
        backtest.run_backtest(frame, spec, batches=40)
    with pytest.raises(InputError, match="leave no batch"):
        backtest.run_backtest(frame, spec, batches=4, warmup=3, label_delay=1)


def test_a_binary_target_must_be_0_or_1(small_history: tuple[Path, Path], tmp_path: Path) -> None:
    history, spec_path = small_history
    pl.read_parquet(history).with_columns(pl.col("default") * 2).write_parquet(tmp_path / "twos.parquet")
    with pytest.raises(InputError, match="binary target 'default' must be 0 or 1"):
        backtest.load_history(tmp_path / "twos.parquet", load_spec(spec_path))


# ------------------------------------------------------------------------------------------ command


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command("backtest")(backtest_command.backtest)
    app.command("other")(lambda: None)  # two commands, so the command name is required as in the real app
    return app


def test_backtest_command_writes_json_markdown_and_png(small_history: tuple[Path, Path], tmp_path: Path) -> None:
    history, spec_path = small_history
    args = ["backtest", str(history), "--spec", str(spec_path), "--batches", "12", "--out", str(tmp_path / "out")]
    result = CliRunner().invoke(_app(), [*args, "--policies", "never,drift", "--mark", "concept drift=7", "--json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert set(document["policies"]) == {"never", "drift"}
    assert {p.name for p in (tmp_path / "out").iterdir()} == {"backtest.json", "backtest.md", "backtest.png"}
    assert json.loads((tmp_path / "out" / "backtest.json").read_text()) == document


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--policies", "never,hourly"], "bad policy 'hourly'"),
        (["--batches", "40"], "rows per batch"),
        (["--time-col", "nope"], "missing column(s) 'nope' (time column)"),
        (["--promotion", "vote"], "--promotion must be shadow or gates"),
        (["--mark", "release"], "--mark 'release': use LABEL=BATCH"),
    ],
)
def test_backtest_command_names_bad_input(small_history: tuple[Path, Path], tmp_path: Path, extra, message) -> None:
    history, spec_path = small_history
    result = CliRunner().invoke(_app(), ["backtest", str(history), "--spec", str(spec_path), *extra])
    assert isinstance(result.exception, InputError), result.output
    assert message in str(result.exception) and result.exception.exit_code == 2


def test_backtest_help_teaches_with_an_example() -> None:
    result = CliRunner().invoke(_app(), ["backtest", "--help"])
    assert result.exit_code == 0 and "Example" in result.stdout and "driftline synth" in result.stdout


@pytest.mark.parametrize("name", ["coarse-time", "slow-cadence"])
def test_any_cadence_backtests_with_the_minimal_spec(name: str) -> None:
    """A whole batch at one timestamp, or batches spanning years: the default spec trains, gates and shadows."""
    scenario = synth.realism_scenario(name, batches=12, rows=600)
    spec = synth.default_spec(scenario, "cadence")
    result = backtest.run_backtest(synth.history(scenario), spec, batches=12, policies="never,drift,oracle")
    drift = result.policies["drift"]
    assert all(math.isfinite(outcome.metric) for outcome in drift.per_batch)
    assert not [e for o in drift.per_batch for e in o.events if "time budget" in e or "failed" in e]
    assert result.to_dict()["policies"]["oracle"]["retrains"] == len(drift.per_batch)
