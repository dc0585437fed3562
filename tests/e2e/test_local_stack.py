"""The local stack end to end: `driftline up` -> stack-check through the worker -> its event -> `driftline down`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from driftline.cli import prefect_api
from driftline.cli.stack import _alive
from driftline.events import BATCH_PROFILED, DRIFT_DETECTED, STACK_CHECKED, model_resource_id
from tests.batches import example_batch, write_parquet
from tests.support import REPO, TELEMETRY_OFF, free_port

DRIFTLINE = str(Path(sys.executable).parent / "driftline")


@pytest.fixture(scope="module")
def stack_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    state = tmp_path_factory.mktemp("stack")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DRIFTLINE_", "PREFECT_"))},
        **TELEMETRY_OFF,
        "DRIFTLINE_STATE_DIR": str(state),
        "DRIFTLINE_PROJECT_DIR": str(REPO),
        "DRIFTLINE_S3_PORT": str(free_port()),
        "DRIFTLINE_PREFECT_PORT": str(free_port()),
        "DRIFTLINE_WORK_POOL": "driftline-process",
    }
    yield env
    # Whatever happened, leave nothing running.
    subprocess.run([DRIFTLINE, "down"], env=env, cwd=REPO, timeout=120, capture_output=True)


def _run(env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([DRIFTLINE, *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout)


def test_up_deep_status_event_and_down_leave_nothing_behind(
    stack_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> None:
    started = time.monotonic()
    up = _run(stack_env, "up")
    up_seconds = time.monotonic() - started
    assert up.returncode == 0, up.stderr + up.stdout
    print(f"driftline up took {up_seconds:.1f} s")

    pids = {
        part: json.loads((Path(stack_env["DRIFTLINE_STATE_DIR"]) / "pids" / f"{part}.json").read_text())["pid"]
        for part in ("s3", "prefect-server", "worker")
    }
    assert all(_alive(pid) for pid in pids.values())

    again = _run(stack_env, "up")
    assert again.returncode == 0, again.stderr
    assert "s3 already running" in again.stderr and "worker already running" in again.stderr

    status = _run(stack_env, "status", "--json", "--deep")
    assert status.returncode == 0, status.stderr + status.stdout
    report = json.loads(status.stdout)
    assert report["healthy"] is True
    assert {name: part["healthy"] for name, part in report["parts"].items()} == {
        "s3": True,
        "prefect-server": True,
        "worker": True,
    }
    assert report["deep"]["state"] == "COMPLETED"

    api_url = f"http://127.0.0.1:{stack_env['DRIFTLINE_PREFECT_PORT']}/api"
    events = prefect_api.find_events(api_url, [STACK_CHECKED])
    assert report["deep"]["event_id"] in {event["id"] for event in events}

    _ingest_through_the_automation_reaches_drift_detected(stack_env, api_url, tmp_path_factory.mktemp("batches"))

    down = _run(stack_env, "down", timeout=120)
    assert down.returncode == 0, down.stderr
    assert "worker stopped" in down.stderr or "worker killed" in down.stderr
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in pids.values()) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_alive(pid) for pid in pids.values())
    assert _run(stack_env, "down").returncode == 0
    assert _run(stack_env, "status").returncode == 3


def _ingest_through_the_automation_reaches_drift_detected(env: dict[str, str], api_url: str, folder: Path) -> None:
    """model create -> ingest (event -> automation -> profile-batch on the worker) -> drift.detected."""
    created = _run(env, "model", "create", "configs/example.yaml")
    assert created.returncode == 0, created.stderr
    reference = write_parquet(example_batch(1, rows=5_000), folder / "reference.parquet")
    shifted = write_parquet(example_batch(2, rows=5_000, income_shift=0.3), folder / "shifted.parquet")
    broken = write_parquet(example_batch(3, rows=100).drop("income"), folder / "broken.parquet")

    refused = _run(env, "ingest", "example", str(broken), "--batch-id", "broken")
    assert refused.returncode == 2 and "missing column(s): 'income'" in refused.stderr

    first = _run(env, "ingest", "example", str(reference), "--batch-id", "b1", "--json", timeout=180)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["outcome"] == BATCH_PROFILED

    second = _run(env, "ingest", "example", str(shifted), "--batch-id", "b2", "--json", timeout=180)
    assert second.returncode == 1, second.stderr  # exit 1: the batch drifted
    outcome = json.loads(second.stdout)
    assert outcome["payload"]["drift"] is True

    detected = prefect_api.find_events(api_url, [DRIFT_DETECTED], [model_resource_id("example")])
    assert [event["payload"]["batch_id"] for event in detected] == ["b2"]
    assert detected[0]["payload"]["top_features"] == ["income"]
    # The run was created by the automation from prefect.yaml, and published its artifacts.
    runs = httpx.post(f"{api_url}/flow_runs/filter", json={"flow_runs": {"tags": {"all_": ["driftline"]}}}).json()
    assert any((run.get("created_by") or {}).get("type") == "AUTOMATION" for run in runs)
    artifacts = httpx.post(f"{api_url}/artifacts/filter", json={"artifacts": {"key": {"any_": ["drift-example"]}}})
    assert any("income" in str(artifact["data"]) for artifact in artifacts.json())
