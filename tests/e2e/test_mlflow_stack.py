"""`driftline up --mlflow`: the local stack with an MLflow server; a retrain through the worker shows up in it and
MLflow's champion alias matches `driftline models`; `driftline down` stops it and its data stays."""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from driftline.cli.stack import LOCAL_ACCESS_KEY_ID, LOCAL_SECRET_ACCESS_KEY, _alive
from driftline.storage import layout
from driftline.storage.store import S3Store
from tests.batches import example_batch, example_labels, example_spec, parquet_bytes
from tests.support import free_port, run_driftline, stack_environment


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, str], str]]:
    env = stack_environment(
        tmp_path_factory.mktemp("stack"),
        DRIFTLINE_MLFLOW_PORT=str(free_port()),
        DRIFTLINE_STACK_OWNER_PID=str(os.getpid()),  # a killed test run takes its stack with it
    )
    try:
        up = run_driftline(env, "up", "--mlflow")
        assert up.returncode == 0, up.stderr + up.stdout
        yield env, up.stdout
    finally:
        run_driftline(env, "down", timeout=120)


def test_up_with_mlflow_prints_its_url_and_a_retrain_through_the_worker_shows_up_in_mlflow(
    stack: tuple[dict[str, str], str],
) -> None:
    env, printed = stack
    url = f"http://127.0.0.1:{env['DRIFTLINE_MLFLOW_PORT']}"
    assert re.search(rf"MLflow UI\s+{re.escape(url)}", printed), printed
    status = json.loads(run_driftline(env, "status", "--json").stdout)
    assert status["parts"]["mlflow"]["healthy"] and status["parts"]["mlflow"]["url"] == url, status

    s3 = S3Store(
        "driftline",
        endpoint_url=f"http://127.0.0.1:{env['DRIFTLINE_S3_PORT']}",
        access_key_id=LOCAL_ACCESS_KEY_ID,
        secret_access_key=LOCAL_SECRET_ACCESS_KEY,
    )
    spec = example_spec("mirrored")
    relaxed = {"max_p99_latency_ms": 1000.0, "min_throughput_rows_per_s": 100.0}
    spec = spec.model_copy(update={"gates": spec.gates.model_copy(update=relaxed)})
    s3.put(layout.model_spec("mirrored"), spec.to_yaml().encode())
    for i in range(1, 4):
        frame = example_batch(i, rows=3_000)
        s3.create(layout.batch_data("mirrored", f"b{i:03d}"), parquet_bytes(frame))
        s3.create(layout.batch_labels("mirrored", f"b{i:03d}"), parquet_bytes(example_labels(frame, i)))
    retrained = run_driftline(env, "retrain", "mirrored", "--wait", "--json", timeout=400)
    assert retrained.returncode == 0, retrained.stderr + retrained.stdout

    models = json.loads(run_driftline(env, "models", "mirrored", "--json").stdout)
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=url, registry_uri=url)
    champion = client.get_model_version_by_alias("mirrored", "champion")
    assert champion.tags["driftline.version"] == models["aliases"]["champion"]
    runs = client.search_runs([client.get_experiment_by_name("driftline-mirrored").experiment_id])
    assert [run.data.tags["driftline.version"] for run in runs] == [models["aliases"]["champion"]]
    doctor = run_driftline(env, "doctor", "mirrored", "--json")
    assert doctor.returncode == 0 and json.loads(doctor.stdout)["mlflow"]["ok"], doctor.stdout + doctor.stderr

    pid = json.loads((Path(env["DRIFTLINE_STATE_DIR"]) / "pids" / "mlflow.json").read_text())["pid"]
    down = run_driftline(env, "down", timeout=120)
    assert down.returncode == 0 and "mlflow stopped" in down.stderr, down.stderr
    deadline = time.monotonic() + 10
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _alive(pid)
    assert (Path(env["DRIFTLINE_STATE_DIR"]) / "mlflow" / "mlflow.db").is_file()  # kept for the next `up --mlflow`
