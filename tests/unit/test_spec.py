"""ModelSpec: defaults that fit any cadence, and YAML that reads back."""

from __future__ import annotations

import pytest

from driftline.spec import ModelSpec, SpecError, parse_spec

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
