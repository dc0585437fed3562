"""The MLflow mirror against a real `mlflow server` (SQLite, artifacts on disk, loopback), flows run in-process.

A candidate's training shows up as a run and a registered model version; shadow is MLflow's challenger; a
promotion moves MLflow's champion alias to driftline's champion. An MLflow that does not answer changes no
decision, and `driftline doctor` catches the mirror up once it answers.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from driftline.models import mlflow_export, registry
from driftline.settings import Settings
from driftline.storage import layout
from driftline.storage.store import ObjectStore, open_store
from flows.promote import promote
from flows.retrain import retrain
from tests.batches import example_batch, example_labels, example_spec, parquet_bytes
from tests.support import free_port, mlflow_server, run_driftline

ROWS = 3_000


@pytest.fixture(scope="module")
def mlflow_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with mlflow_server(tmp_path_factory.mktemp("mlflow")) as url:
        yield url


@pytest.fixture
def store() -> ObjectStore:
    return open_store(Settings())


def _client(uri: str):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _add(store: ObjectStore, model: str, index: int, concept: float) -> None:
    frame = example_batch(index, rows=ROWS)
    store.create(layout.batch_data(model, f"b{index:03d}"), parquet_bytes(frame))
    store.create(layout.batch_labels(model, f"b{index:03d}"), parquet_bytes(example_labels(frame, index, concept)))


def _model(store: ObjectStore) -> str:
    name = f"m-{uuid.uuid4().hex[:8]}"
    spec = example_spec(name)
    spec = spec.model_copy(
        update={
            "gates": spec.gates.model_copy(update={"max_p99_latency_ms": 1000.0, "min_throughput_rows_per_s": 100.0}),
            "window": spec.window.model_copy(update={"last_batches": 4}),
        }
    )
    store.put(layout.model_spec(name), spec.to_yaml().encode())
    for i in range(1, 5):
        _add(store, name, i, concept=0.0)
    return name


def test_candidates_become_runs_and_model_versions_and_mlflows_champion_follows_a_promotion(
    store: ObjectStore, mlflow_uri: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DRIFTLINE_MLFLOW_TRACKING_URI", mlflow_uri)
    model = _model(store)
    first = retrain(model)
    assert first["outcome"] == "champion", first
    for i in range(5, 9):
        _add(store, model, i, concept=1.0)
    second = retrain(model)
    assert second["outcome"] == "shadow", second
    old, new = first["version"], second["version"]

    client = _client(mlflow_uri)
    registered = client.get_registered_model(model)
    assert registered.aliases == {"champion": "1", "challenger": "2"}
    assert registered.tags["driftline.champion"] == old and registered.tags["driftline.challenger"] == new
    experiment = client.get_experiment_by_name(f"driftline-{model}")
    runs = {run.data.tags["driftline.version"]: run for run in client.search_runs([experiment.experiment_id])}
    assert set(runs) == {old, new}
    metadata = registry.read_metadata(store, model, new)
    run = runs[new]
    assert run.info.status == "FINISHED" and run.info.run_name == new
    assert run.data.tags["driftline.spec_hash"] == metadata["lineage"]["spec_hash"]
    assert run.data.tags["driftline.parent_champion"] == old
    assert run.data.tags["driftline.model_sha256"] == metadata["model_sha256"]
    assert run.data.metrics["auc"] == pytest.approx(metadata["metrics"]["auc"])
    assert run.data.params["max_depth"] == str(metadata["params"]["max_depth"])
    artifacts = {item.path for item in client.list_artifacts(run.info.run_id)}
    assert {"gate_report.json", "lineage.json", "driftline_metadata.json", "model"} <= artifacts
    gates = json.loads(Path(client.download_artifacts(run.info.run_id, "gate_report.json", str(tmp_path))).read_text())
    assert gates == metadata["gate_report"]
    model_files = {Path(item.path).name for item in client.list_artifacts(run.info.run_id, "model")}
    assert {"MLmodel", "model.ubj"} <= model_files and not any(name.endswith(".pkl") for name in model_files)
    booster = Path(client.download_artifacts(run.info.run_id, "model/model.ubj", str(tmp_path)))
    assert hashlib.sha256(booster.read_bytes()).hexdigest() == metadata["model_sha256"]

    promoted = promote(model, new, "promote", manual=True)
    assert promoted["outcome"] == "promoted", promoted
    aliases = registry.describe_model(store, model)["aliases"]
    assert aliases == {"champion": new, "shadow": None, "previous": old}
    registered = client.get_registered_model(model)
    assert registered.aliases == {"champion": "2", "previous": "1"}
    assert registered.tags["driftline.champion"] == new and "driftline.challenger" not in registered.tags
    champion = client.get_model_version_by_alias(model, "champion")
    assert champion.tags["driftline.version"] == aliases["champion"]
    assert champion.tags["driftline.status"] == "champion"
    assert client.get_model_version(model, "1").tags["driftline.status"] == "retired"
    # MLflow's own loader reads the champion (its UBJ file, no pickle).
    import mlflow.xgboost

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_uri)
    (tmp_path / "loaded").mkdir()
    loaded = mlflow.xgboost.load_model(f"models:/{model}@champion", dst_path=str(tmp_path / "loaded"))
    assert loaded.num_features() == len(metadata["feature_names"])
    # Another pass changes nothing: no second run or model version for the same driftline version.
    again = mlflow_export.export_from_settings(store, model, Settings())
    assert again.ok and again.exported == [] and again.model_versions == {old: "1", new: "2"}


def test_an_unreachable_mlflow_changes_no_decision_and_doctor_catches_the_mirror_up(
    store: ObjectStore, mlflow_uri: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there: connections are refused
    monkeypatch.setenv("DRIFTLINE_MLFLOW_TRACKING_URI", closed)
    monkeypatch.setenv("DRIFTLINE_MLFLOW_ATTEMPTS", "2")
    model = _model(store)
    result = retrain(model)
    assert result["outcome"] == "champion", result
    assert registry.describe_model(store, model)["aliases"]["champion"] == result["version"]
    pending = mlflow_export.read_pending(store, model)
    assert pending is not None and pending["tracking_uri"] == closed, pending

    env = {
        **os.environ,
        "DRIFTLINE_MLFLOW_TRACKING_URI": mlflow_uri,
        "DRIFTLINE_STATE_DIR": str(tmp_path / "no-stack"),
    }
    down = run_driftline({**env, "DRIFTLINE_MLFLOW_TRACKING_URI": closed}, "doctor", model, "--json")
    assert down.returncode == 1, down.stdout + down.stderr
    assert any("MLflow" in problem for problem in json.loads(down.stdout)["problems"])
    doctor = run_driftline(env, "doctor", model, "--json")
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    document = json.loads(doctor.stdout)
    assert document["mlflow"]["ok"] and document["mlflow"]["exported"] == [result["version"]]
    assert any("was pending" in warning for warning in document["warnings"]), document["warnings"]
    assert mlflow_export.read_pending(store, model) is None
    assert _client(mlflow_uri).get_registered_model(model).aliases == {"champion": "1"}
