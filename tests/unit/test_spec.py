"""ModelSpec: defaults that fit any cadence, and YAML that reads back."""

from __future__ import annotations

import re

import pytest

from driftline.models.spec import ModelSpec, SpecError, load_spec, parse_spec

MINIMAL = {
    "name": "m",
    "target": "y",
    "id_column": "id",
    "time_column": "ts",
    "features": {"numeric": ["x"], "categorical": ["Income Band"]},
}


@pytest.mark.parametrize("task", ["binary", "regression"])
def test_a_written_spec_reads_back(task: str) -> None:
    spec = ModelSpec.model_validate({**MINIMAL, "task": task})
    again = parse_spec(spec.to_yaml(), "spec.yaml")
    assert again.to_yaml() == spec.to_yaml()
    assert again.features.categorical == ["Income Band"]


def test_a_metric_gate_of_the_other_task_is_still_refused_when_a_user_sets_it() -> None:
    with pytest.raises(SpecError, match=r"gates.min_auc does not apply to a regression model"):
        parse_spec(
            "name: m\ntask: regression\ntarget: y\nid_column: id\ntime_column: ts\n"
            "features: {numeric: [x]}\ngates: {min_auc: 0.7}\n"
        )


def test_defaults_carry_no_clock() -> None:
    """A batch may span minutes or years: no default budget or cooldown is a duration."""
    spec = ModelSpec.model_validate({**MINIMAL, "task": "binary"})
    assert spec.shadow.max_days is None and spec.shadow.max_batches is not None
    assert spec.cooldown.seconds is None
    assert spec.window.last_days is None and spec.window.last_batches is not None


def _yaml(**overrides: object) -> str:
    import yaml

    return yaml.safe_dump({**MINIMAL, "task": "binary", **overrides}, sort_keys=False)


def test_the_minimal_spec_has_the_columns_a_batch_and_a_labels_file_need() -> None:
    spec = parse_spec(_yaml())
    assert spec.batch_columns == ["id", "ts", "x", "Income Band"]
    assert spec.labels_columns == ["id", "y"]
    assert spec.features.all == ["x", "Income Band"]


def test_every_problem_of_a_spec_is_listed_with_its_key_path() -> None:
    text = (
        "name: m\ntask: binary\nid_column: id\ntime_column: ts\nfeatures: {numeric: [x]}\n"
        "drift: {treshold: 0.1}\nshadow: {alpha: 0.9}\n"
    )
    with pytest.raises(SpecError) as caught:
        parse_spec(text, "models/m/spec.yaml")
    message = str(caught.value)
    assert message.startswith("models/m/spec.yaml: invalid model spec")
    assert "  target: required key is missing" in message
    assert "  drift.treshold: unknown key" in message
    assert "  shadow.alpha:" in message


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        ({"name": "My Model"}, "must match [a-z0-9][a-z0-9._-]{0,62}"),
        ({"name": "a..b"}, "without '..'"),
        ({"target": "id"}, "target, id_column and time_column must differ"),
        ({"target": "x"}, "target 'x' is also listed as a feature"),
        ({"features": {"numeric": [], "categorical": []}}, "at least one numeric or categorical feature"),
        ({"features": {"numeric": ["x", "x"]}}, "feature 'x' is listed twice"),
        ({"features": {"numeric": ["x"], "categorical": [""]}}, "a feature name is empty"),
        ({"slices": ["x"]}, "slices ['x'] must be categorical features"),
        ({"xgboost": {"params": {"nthread": 4}}}, "set threads with DRIFTLINE_NTHREAD"),
        ({"gates": {"max_rmse": 0.3}}, "gates.max_rmse does not apply to a binary model"),
    ],
    ids=[
        "bad name",
        "dots in name",
        "target is the id",
        "target is a feature",
        "no features",
        "feature twice",
        "empty feature name",
        "numeric slice",
        "threads in the spec",
        "regression gate on binary",
    ],
)
def test_a_spec_that_contradicts_itself_is_refused_naming_the_problem(overrides: dict, problem: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec(_yaml(**overrides))
    assert problem in str(caught.value)


def test_a_key_given_twice_is_refused_with_both_lines() -> None:
    text = _yaml() + "drift: {top_k: 2}\ndrift: {top_k: 3}\n"
    first = text.splitlines().index("drift: {top_k: 2}") + 1
    with pytest.raises(
        SpecError, match=re.escape(f"spec.yaml: duplicate key 'drift' on line {first + 1} (first on line {first})")
    ):
        parse_spec(text, "spec.yaml")


@pytest.mark.parametrize(
    ("text", "problem"),
    [("[a, b]", "a model spec is a YAML mapping, got list"), ("name: [unclosed", "not valid YAML")],
    ids=["a list", "broken YAML"],
)
def test_text_that_is_not_a_yaml_mapping_is_refused(text: str, problem: str) -> None:
    with pytest.raises(SpecError, match=re.escape(f"spec.yaml: {problem}")):
        parse_spec(text, "spec.yaml")


def test_a_yaml_merge_key_may_override_on_purpose() -> None:
    """Only a key repeated by hand is refused: ``<<`` merges a mapping whose keys the section may override."""
    spec = parse_spec(_yaml() + "drift: {<<: {top_k: 2, score_threshold: 0.3}, top_k: 4}\n")
    assert spec.drift.top_k == 4 and spec.drift.score_threshold == 0.3


def test_loading_a_missing_spec_file_names_the_file(tmp_path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(SpecError, match=re.escape(f"{missing}: no such file")):
        load_spec(missing)
    written = tmp_path / "spec.yaml"
    written.write_text(_yaml())
    assert load_spec(written) == parse_spec(_yaml())


def test_the_content_hash_is_stable_and_changes_with_the_spec() -> None:
    spec = parse_spec(_yaml())
    assert spec.content_hash() == parse_spec(spec.to_yaml()).content_hash()
    assert len(spec.content_hash()) == 64
    assert parse_spec(_yaml(target="label")).content_hash() != spec.content_hash()
