"""The MLflow mirror's mapping (pure), its model files, and what a down MLflow leaves behind (fault injection).

The mirror against a real MLflow server is tested in tests/flows/test_mlflow_export.py.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from pydantic import ValidationError

from driftline.models import mlflow_export
from driftline.models.mlflow_export import Target
from driftline.settings import Settings
from driftline.storage import layout
from driftline.storage.store import MemoryStore

METADATA = {
    "model": "example",
    "version": "v20261203t101500-ab12",
    "created_at": "2026-12-03T10:15:00+00:00",
    "task": "binary",
    "trigger": "drift:5f0c",
    "decision": "shadow",
    "decision_reasons": ["gates passed", "champion exists: shadow test first"],
    "params": {"max_depth": 6, "eta": 0.1, "objective": "binary:logistic", "seed": 7},
    "best_iteration": 41,
    "refit_rounds": 42,
    "metrics": {"auc": 0.91, "logloss": 0.3, "rows": 3000, "flag": True, "broken": float("nan")},
    "timings": {"train_seconds": 1.5},
    "gate_report": {"passed": True, "gates": []},
    "model_sha256": "ab" * 32,
    "lineage": {
        "drift_event_id": "5f0c",
        "spec_hash": "c0ffee",
        "parent_champion": "v20261201t000000-0001",
        "training_rows": 12000,
        "training_batches": [{"batch_id": "b001"}, {"batch_id": "b002"}],
        "git_commit": "1234abcd",
        "flow_run_id": None,
    },
}


def test_run_tags_carry_the_drift_event_spec_hash_and_version_and_leave_out_what_is_unknown() -> None:
    tags = mlflow_export.run_tags("example", METADATA["version"], METADATA, "s3://b/models/example/x.json")
    assert tags["driftline.drift_event_id"] == "5f0c"
    assert tags["driftline.spec_hash"] == "c0ffee"
    assert tags["driftline.version"] == METADATA["version"]
    assert tags["driftline.decision"] == "shadow"
    assert tags["driftline.gates_passed"] == "true"
    assert tags["mlflow.source.git.commit"] == "1234abcd"
    assert "driftline.flow_run_id" not in tags  # None in the lineage: no empty tag
    assert "- champion exists: shadow test first" in tags["mlflow.note.content"]


def test_a_manual_retrain_has_no_drift_event_tag_and_long_values_are_cut_to_the_tag_limit() -> None:
    lineage = {**METADATA["lineage"], "drift_event_id": None}
    metadata = {**METADATA, "lineage": lineage, "decision_reasons": ["x" * 9000]}
    tags = mlflow_export.run_tags("example", "v1", metadata, "s3://b/k")
    assert "driftline.drift_event_id" not in tags
    assert all(len(value) <= 5000 for value in tags.values())


def test_params_are_the_xgboost_params_and_the_window_as_text() -> None:
    params = mlflow_export.run_params(METADATA)
    assert params["max_depth"] == "6" and params["objective"] == "binary:logistic"
    assert params["training_rows"] == "12000" and params["training_batches"] == "2"
    assert params["best_iteration"] == "41"


def test_metrics_are_the_numeric_holdout_metrics_and_timings() -> None:
    assert mlflow_export.run_metrics(METADATA) == {
        "auc": 0.91,
        "logloss": 0.3,
        "rows": 3000.0,
        "timings.train_seconds": 1.5,
    }


@pytest.mark.parametrize(
    ("aliases", "numbers", "current", "to_set", "to_delete"),
    [
        # bootstrap: the first champion
        ({"champion": "v1"}, {"v1": "1"}, {}, {"champion": "1"}, []),
        # a candidate in shadow is MLflow's challenger
        ({"champion": "v1", "shadow": "v2"}, {"v1": "1", "v2": "2"}, {"champion": "1"}, {"challenger": "2"}, []),
        # promotion: champion moves, previous follows, the challenger alias goes
        (
            {"champion": "v2", "previous": "v1"},
            {"v1": "1", "v2": "2"},
            {"champion": "1", "challenger": "2"},
            {"champion": "2", "previous": "1"},
            ["challenger"],
        ),
        # rollback: champion back to v1, v2 previous
        (
            {"champion": "v1", "previous": "v2"},
            {"v1": "1", "v2": "2"},
            {"champion": "2", "previous": "1"},
            {"champion": "1", "previous": "2"},
            [],
        ),
        # in sync: nothing to do
        ({"champion": "v1"}, {"v1": "1"}, {"champion": "1"}, {}, []),
        # an alias naming a version MLflow does not have (not exported) is removed, not guessed
        ({"champion": "v9"}, {"v1": "1"}, {"champion": "1"}, {}, ["champion"]),
    ],
)
def test_mlflow_aliases_follow_driftlines(aliases, numbers, current, to_set, to_delete) -> None:
    desired = mlflow_export.desired_aliases(aliases, numbers)
    assert set(desired) == {"champion", "challenger", "previous"}
    assert mlflow_export.alias_changes(desired, current) == (to_set, to_delete)


def test_backoff_doubles_and_is_bounded() -> None:
    assert mlflow_export.backoff(1) == []
    assert mlflow_export.backoff(3) == [1.0, 2.0]
    assert mlflow_export.backoff(10)[-1] == 30.0 and len(mlflow_export.backoff(10)) == 9


def test_the_model_is_logged_in_xgboosts_own_ubj_format_with_driftlines_exact_bytes(tmp_path: Path) -> None:
    import xgboost

    rng = np.random.default_rng(3)
    features = rng.normal(size=(200, 3))
    booster = xgboost.train(
        {"objective": "binary:logistic", "max_depth": 2, "nthread": 1},
        xgboost.DMatrix(features, label=(features[:, 0] > 0).astype(float)),
        num_boost_round=3,
    )
    raw = bytes(booster.save_raw("ubj"))
    metadata = {**METADATA, "model_sha256": hashlib.sha256(raw).hexdigest(), "feature_names": ["a", "b", "c"]}
    folder = mlflow_export.save_model_dir(raw, metadata, tmp_path / "model")
    assert (folder / "model.ubj").read_bytes() == raw
    mlmodel = yaml.safe_load((folder / "MLmodel").read_text())
    assert mlmodel["flavors"]["xgboost"]["model_format"] == "ubj"
    assert mlmodel["flavors"]["xgboost"]["data"] == "model.ubj"
    assert mlmodel["metadata"]["model_sha256"] == metadata["model_sha256"]
    files = {path.name for path in folder.rglob("*")}
    assert not any(name.endswith((".pkl", ".pickle", ".joblib")) for name in files), files
    assert "pickle" not in (folder / "MLmodel").read_text()
    loaded = xgboost.Booster()
    loaded.load_model(bytearray((folder / "model.ubj").read_bytes()))
    np.testing.assert_allclose(
        loaded.predict(xgboost.DMatrix(features)), booster.predict(xgboost.DMatrix(features)), rtol=0, atol=0
    )


class DownClient:
    """An MLflow whose every call fails as a refused connection does: the fault no real server shows on demand
    without timing (the flows tier points at a closed port for the real thing)."""

    def __init__(self) -> None:
        self.calls = 0

    def __getattr__(self, name: str):
        def fail(*args, **kwargs):
            self.calls += 1
            raise ConnectionError(f"{name}: [Errno 111] Connection refused")

        return fail


def _target(attempts: int = 3) -> Target:
    return Target("http://user:secret@127.0.0.1:9/", "driftline-example", "example", attempts=attempts)


def test_a_down_mlflow_is_retried_with_bounded_waits_then_recorded_as_pending() -> None:
    store = MemoryStore()
    waits: list[float] = []
    client = DownClient()
    report = mlflow_export.mirror(store, "example", _target(), client=client, sleep=waits.append)
    assert not report.ok and report.attempts == 3 and client.calls == 3
    assert waits == [1.0, 2.0]
    assert "Connection refused" in report.errors[0]
    pending = json.loads(store.get(layout.mlflow_pending("example")))
    assert pending["failed_passes"] == 1 and "Connection refused" in pending["last_error"]
    assert "secret" not in json.dumps(pending) and "secret" not in report.summary()  # passwords never stored
    # A second failing pass keeps when the trouble began and counts on.
    again = mlflow_export.mirror(store, "example", _target(1), client=DownClient(), sleep=waits.append)
    assert again.pending_since == pending["first_failed_at"]
    assert json.loads(store.get(layout.mlflow_pending("example")))["failed_passes"] == 2


def test_the_doctor_reports_a_mirror_that_stays_behind_as_a_problem_and_one_switched_off_as_a_warning() -> None:
    store = MemoryStore()
    mlflow_export.mirror(store, "example", _target(1), client=DownClient(), sleep=lambda _: None)
    on = Settings(mlflow_tracking_uri="http://127.0.0.1:9", mlflow_attempts=1)
    findings = mlflow_export.doctor(store, "example", on, client=DownClient())
    assert len(findings.problems) == 1 and "pending since" in findings.problems[0]
    assert "driftline's registry is unaffected" in findings.problems[0]
    off = mlflow_export.doctor(store, "example", Settings(mlflow_tracking_uri=None))
    assert not off.problems and "DRIFTLINE_MLFLOW_TRACKING_URI is unset" in off.warnings[0]


def test_export_is_off_without_a_tracking_uri() -> None:
    assert mlflow_export.export_from_settings(MemoryStore(), "example", Settings(mlflow_tracking_uri="")) is None
    assert Target.from_settings(Settings(mlflow_tracking_uri=" "), "example") is None


def test_mlflow_settings_are_validated() -> None:
    target = Target.from_settings(
        Settings(mlflow_tracking_uri="http://127.0.0.1:5350/", mlflow_model_prefix="team-a-"), "example"
    )
    assert target == Target("http://127.0.0.1:5350", "driftline-example", "team-a-example", 3, 10.0)
    assert Settings(mlflow_tracking_uri="file:///tmp/mlruns").mlflow_tracking_uri == "file:///tmp/mlruns"
    with pytest.raises(ValidationError, match="mlflow_model_prefix"):
        Settings(mlflow_model_prefix="a/b")
    with pytest.raises(ValidationError, match="mlflow_attempts"):
        Settings(mlflow_attempts=0)
