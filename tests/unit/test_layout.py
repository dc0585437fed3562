from __future__ import annotations

import pytest

from driftline.errors import InvalidNameError
from driftline.storage import layout


@pytest.mark.parametrize("name", ["a", "credit-risk", "m.v2", "0abc", "x_y", "a" * 63, "2026-11-26t10.00"])
def test_valid_names_are_accepted(name: str) -> None:
    assert layout.validate_name(name) == name


@pytest.mark.parametrize(
    "name",
    ["", "A", "Credit", "-lead", ".hidden", "_x", "a/b", "../etc", "a..b", "a b", "a" * 64, "é", "a\n"],
)
def test_invalid_names_are_refused_with_the_value_named(name: str) -> None:
    with pytest.raises(InvalidNameError) as raised:
        layout.validate_name(name, "model")
    assert repr(name) in str(raised.value)
    assert "model" in str(raised.value)


def test_keys_follow_the_documented_layout() -> None:
    assert layout.model_spec("m") == "models/m/spec.yaml"
    assert layout.batch_data("m", "b1") == "datasets/m/batches/b1.parquet"
    assert layout.batch_labels("m", "b1") == "datasets/m/labels/b1.parquet"
    assert layout.batch_profile("m", "b1") == "profiles/m/batches/b1.bin"
    assert layout.reference_profile("m", "v1") == "profiles/m/reference/v1.bin"
    assert layout.drift_report("m", "b1") == "drift/m/b1.json"
    assert layout.model_booster("m", "v1") == "models/m/versions/v1/model.ubj"
    assert layout.model_metadata("m", "v1") == "models/m/versions/v1/metadata.json"
    assert layout.alias("m", "champion") == "models/m/aliases/champion.json"
    assert layout.predictions("m", "b1", "v1") == "predictions/m/b1/v1.parquet"
    assert layout.shadow_state("m", "v1") == "shadow/m/v1/state.json"
    assert layout.outbox_event("m", "01abc") == "events/m/01abc.json"
    assert layout.audit_record("m", "01abc") == "audit/m/01abc.json"
    assert layout.performance_state("m", "v1") == "performance/m/v1/state.json"
    assert layout.holdout_prediction_profile("m", "v1") == "models/m/versions/v1/holdout_predictions.bin"
    assert layout.prediction_drift("m", "b1") == "drift/m/_prediction/b1.json"


def test_every_key_builder_validates_every_name() -> None:
    with pytest.raises(InvalidNameError, match="batch id"):
        layout.batch_data("m", "../../x")
    with pytest.raises(InvalidNameError, match="version"):
        layout.model_booster("m", "v1/../../champion")
    with pytest.raises(InvalidNameError, match="model"):
        layout.drift_report("M", "b")
    with pytest.raises(InvalidNameError, match="version"):
        layout.performance_state("m", "../v1")
    with pytest.raises(InvalidNameError, match="batch id"):
        layout.prediction_drift("m", "_history")
    with pytest.raises(InvalidNameError, match="alias"):
        layout.alias("m", "king")
