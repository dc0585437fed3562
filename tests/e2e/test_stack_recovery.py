"""The local stack recovers by itself (issues #11, #13), end to end on one stack of its own (its Prefect server on
PostgreSQL), in order: runs a stopped worker left behind are crashed and their concurrency slots freed by
`driftline up`; a killed worker is restarted by its supervisor; stored models outlive `down`/`up` and a killed
S3 server; the stack goes away when the process that owns it dies."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from driftline.cli.stack import ABANDONED_MESSAGE, LOCAL_ACCESS_KEY_ID, LOCAL_SECRET_ACCESS_KEY, WORKER_NAME, _alive
from driftline.cli.supervisor import parent_death_signal
from driftline.errors import ConflictError
from driftline.models import registry
from driftline.storage import layout
from driftline.storage.store import S3Store
from tests.batches import example_batch, example_labels, example_spec, parquet_bytes, write_parquet
from tests.support import local_stack, reachable_directory, run_driftline, stack_environment

PARTS = ("s3", "postgres", "prefect-server", "worker", "watchdog")

pytestmark = pytest.mark.timeout(400)


@pytest.fixture(scope="module")
def owner() -> Iterator[subprocess.Popen]:
    """The process the stack belongs to: a stand-in for a test session, itself tied to pytest."""
    process = subprocess.Popen(["sleep", "3600"], preexec_fn=parent_death_signal())
    yield process
    process.kill()
    process.wait()


@pytest.fixture(scope="module")
def stack_env(owner: subprocess.Popen) -> Iterator[dict[str, str]]:
    # This stack's Prefect server runs on PostgreSQL (the loop's e2e stack on SQLite): `up`, recovery,
    # `down` and the owner watchdog are exercised on both databases.
    with reachable_directory("driftline-recovery-stack-") as state:
        env = stack_environment(
            state, DRIFTLINE_STACK_OWNER_PID=str(owner.pid), DRIFTLINE_PREFECT_DATABASE="postgresql"
        )
        with local_stack(env):
            yield env


@pytest.fixture(scope="module")
def api_url(stack_env: dict[str, str]) -> str:
    return f"http://127.0.0.1:{stack_env['DRIFTLINE_PREFECT_PORT']}/api"


_run = run_driftline


def _record(env: dict[str, str], name: str) -> dict[str, Any]:
    path = Path(env["DRIFTLINE_STATE_DIR"]) / "pids" / f"{name}.json"
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def _wait_for(probe: Callable[[], Any], what: str, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def _set_state(api_url: str, run_id: str, state_type: str) -> dict[str, Any]:
    """A state change through the server's full orchestration, as a worker proposes it (slots included)."""
    response = httpx.post(f"{api_url}/flow_runs/{run_id}/set_state", json={"state": {"type": state_type}})
    response.raise_for_status()
    return response.json()


def _run_info(api_url: str, run_id: str) -> dict[str, Any]:
    return httpx.get(f"{api_url}/flow_runs/{run_id}").json()


def _ever_running(api_url: str, run_id: str) -> bool:
    states = httpx.get(f"{api_url}/flow_run_states/", params={"flow_run_id": run_id}).json()
    return any(state["type"] == "RUNNING" for state in states)


def _no_run_active(api_url: str) -> bool:
    """No flow run pending or running: what a run writes after its events (the drift picture) is written."""
    body = {"flow_runs": {"state": {"type": {"any_": ["PENDING", "RUNNING", "CANCELLING"]}}}, "limit": 1}
    response = httpx.post(f"{api_url}/flow_runs/filter", json=body)
    response.raise_for_status()
    return response.json() == []


def _slots(api_url: str, deployment: dict[str, Any]) -> int:
    limit_id = deployment.get("concurrency_limit_id") or deployment["global_concurrency_limit"]["id"]
    return httpx.get(f"{api_url}/v2/concurrency_limits/{limit_id}").json()["active_slots"]


def test_1_up_crashes_runs_a_stopped_worker_left_and_a_queued_retrain_then_starts(
    stack_env: dict[str, str], api_url: str
) -> None:
    # The worker goes away as in a crash or `down` mid-run, while runs hold both retrain slots (limit 2).
    supervisor = _record(stack_env, "worker")["pid"]
    os.kill(supervisor, signal.SIGTERM)
    _wait_for(lambda: not _alive(supervisor), "the worker to stop", 30)
    deployment = httpx.get(f"{api_url}/deployments/name/retrain/retrain").json()

    def new_run() -> str:
        body = {"parameters": {"model": "no-such-model", "trigger": "manual"}}
        response = httpx.post(f"{api_url}/deployments/{deployment['id']}/create_flow_run", json=body)
        response.raise_for_status()
        return response.json()["id"]

    stuck = [new_run(), new_run()]
    for run_id in stuck:
        assert _set_state(api_url, run_id, "PENDING")["status"] == "ACCEPT"
    assert _set_state(api_url, stuck[0], "RUNNING")["status"] == "ACCEPT"
    assert _slots(api_url, deployment) == 2
    queued = new_run()
    _set_state(api_url, queued, "PENDING")
    assert _run_info(api_url, queued)["state"]["name"] == "AwaitingConcurrencySlot"

    # A restart of the whole stack: the server forgets its leases, the database keeps the runs.
    down = _run(stack_env, "down", timeout=120)
    assert down.returncode == 0, down.stderr
    started = time.monotonic()
    up = _run(stack_env, "up")
    assert up.returncode == 0, up.stderr + up.stdout
    print(f"second driftline up took {time.monotonic() - started:.1f} s")
    print(next(line for line in up.stderr.splitlines() if "abandoned" in line))
    # Ours, and any watch-batches run the stopped worker had in hand.
    recovered = re.search(r"(\d+) abandoned flow run\(s\) marked CRASHED", up.stderr)
    assert recovered and int(recovered.group(1)) >= 2, up.stderr
    assert f"runs {recovered.group(1)} recovered" in up.stderr, up.stderr

    for run_id in stuck:
        state = _run_info(api_url, run_id)["state"]
        assert (state["type"], state["message"]) == ("CRASHED", ABANDONED_MESSAGE)
    # The queued run and a new one get slots and start (they fail: the model does not exist).
    fresh = new_run()
    for run_id in (fresh, queued):
        _wait_for(lambda run_id=run_id: _ever_running(api_url, run_id), f"run {run_id} to start", 120)
    assert _run_info(api_url, queued)["state"]["type"] not in {"SCHEDULED", "PENDING"}


def test_2_a_killed_worker_is_restarted_by_its_supervisor(stack_env: dict[str, str], api_url: str) -> None:
    supervisor = _record(stack_env, "worker")["pid"]
    worker = _record(stack_env, "worker-process")["pid"]
    killed_at = datetime.now(UTC)
    os.kill(worker, signal.SIGKILL)

    def restarted() -> int | None:
        pid = _record(stack_env, "worker-process").get("pid")
        return pid if pid and pid != worker and _alive(pid) else None

    new_worker = _wait_for(restarted, "the supervisor to start a new worker", 60)

    def heartbeat_since_kill() -> bool:
        workers = httpx.post(f"{api_url}/work_pools/driftline-process/workers/filter", json={}).json()
        return any(
            w["name"] == WORKER_NAME
            and w["status"] == "ONLINE"
            and datetime.fromisoformat(w["last_heartbeat_time"].replace("Z", "+00:00")) > killed_at
            for w in workers
        )

    _wait_for(heartbeat_since_kill, "the restarted worker to be online", 120)
    assert _alive(supervisor) and _record(stack_env, "worker")["pid"] == supervisor
    status = json.loads(_run(stack_env, "status", "--json").stdout)
    assert status["parts"]["worker"]["healthy"] is True
    assert f"worker pid {new_worker}" in status["parts"]["worker"]["detail"]
    log = (Path(stack_env["DRIFTLINE_STATE_DIR"]) / "logs" / "worker.log").read_text()
    assert "worker exited with code -9" in log

    # `up` on a healthy stack finds nothing stale and keeps every process, the new worker included.
    again = _run(stack_env, "up")
    assert again.returncode == 0, again.stderr
    assert "stale" not in again.stderr and "worker already running" in again.stderr, again.stderr
    assert _record(stack_env, "worker-process")["pid"] == new_worker and _alive(new_worker)


def _store(env: dict[str, str]) -> S3Store:
    return S3Store(
        "driftline",
        endpoint_url=f"http://127.0.0.1:{env['DRIFTLINE_S3_PORT']}",
        access_key_id=LOCAL_ACCESS_KEY_ID,
        secret_access_key=LOCAL_SECRET_ACCESS_KEY,
    )


def _snapshot(store: S3Store) -> dict[str, tuple[str, str]]:
    """key -> (sha256, ETag) of every object in the bucket."""
    return {key: (info.sha256, info.etag) for key in store.list("") for info in [store.info(key)]}


def _settled(store: S3Store, api_url: str, model: str, batches: list[str]) -> dict[str, tuple[str, str]] | None:
    """The bucket's snapshot once every batch has its drift report and picture and nothing changed it while
    no run was active for a while; None before that.

    No run active is not enough: an event whose automation has not yet made its run (seconds, more on a busy
    machine) would write after the snapshot.
    """
    keys = set(store.list(f"drift/{model}/"))
    if not all({layout.drift_report(model, b), layout.drift_plot(model, b)} <= keys for b in batches):
        return None
    if not _no_run_active(api_url):
        return None
    first = _snapshot(store)
    time.sleep(15)  # longer than an automation's event-to-run lag on a loaded machine
    return first if _no_run_active(api_url) and _snapshot(store) == first else None


@pytest.mark.timeout(900)
def test_3_a_model_outlives_down_up_and_a_killed_s3_server(
    stack_env: dict[str, str], api_url: str, tmp_path: Path
) -> None:
    """Spec, batches, profiles, a champion version and its aliases are still there, byte for byte, and
    conditional writes still refuse what they refused before."""
    store = _store(stack_env)
    name = "kept"
    store.put(layout.model_spec(name), example_spec(name).to_yaml().encode())
    for i in range(1, 4):
        frame = example_batch(i, rows=3_000)
        store.create(layout.batch_data(name, f"b{i:03d}"), parquet_bytes(frame))
        store.create(layout.batch_labels(name, f"b{i:03d}"), parquet_bytes(example_labels(frame, i)))
    boot = _run(stack_env, "retrain", name, "--wait", "--json", timeout=400)
    assert boot.returncode == 0, boot.stderr + boot.stdout
    batch = write_parquet(example_batch(4, rows=3_000), tmp_path / "b004.parquet")
    ingest = _run(stack_env, "ingest", name, str(batch), "--batch-id", "b004", "--json", timeout=300)
    assert ingest.returncode in (0, 1), ingest.stderr  # profiled (1 would mean drift: fine here)
    champion = registry.read_alias(store, name, "champion").version
    # `ingest` returns on batch.profiled; profile-batch draws the drift picture after that event, and
    # watch-batches profiles b001..b003 (dropped straight into S3) within a minute or two.
    before = _wait_for(
        lambda: _settled(store, api_url, name, [f"b{i:03d}" for i in range(1, 5)]),
        "every batch's drift report and picture, and the loop at rest",
        400,
    )
    for kind in (f"models/{name}/versions/", f"models/{name}/aliases/", f"profiles/{name}/", f"datasets/{name}/"):
        assert any(key.startswith(kind) for key in before), (kind, sorted(before))

    down = _run(stack_env, "down", timeout=120)
    assert down.returncode == 0, down.stderr
    up = _run(stack_env, "up", timeout=300)
    assert up.returncode == 0, up.stderr + up.stdout
    assert _snapshot(store) == before
    assert registry.read_alias(store, name, "champion").version == champion

    s3_pid = _record(stack_env, "s3")["pid"]
    os.kill(s3_pid, signal.SIGKILL)
    _wait_for(lambda: not _alive(s3_pid), "the S3 server to die", 30)
    again = _run(stack_env, "up", timeout=300)
    assert again.returncode == 0, again.stderr + again.stdout
    assert "s3 started" in again.stderr, again.stderr
    assert _snapshot(store) == before
    models = json.loads(_run(stack_env, "models", name, "--json").stdout)
    assert models["aliases"]["champion"] == champion
    # Conditional writes: a create on a kept key and a replace with a stale ETag are refused.
    spec_key = layout.model_spec(name)
    with pytest.raises(ConflictError):
        store.create(spec_key, b"other")
    stale = store.info(spec_key).etag
    store.replace(spec_key, store.get(spec_key) + b"\n", stale)
    with pytest.raises(ConflictError):
        store.replace(spec_key, b"x", stale)
    status = json.loads(_run(stack_env, "status", "--json", "--deep").stdout)
    assert status["healthy"] is True and status["deep"]["state"] == "COMPLETED", status
    assert (status["database"]["kind"], status["database"]["managed"]) == ("postgresql", True)
    assert status["parts"]["postgres"]["healthy"] is True and "***" in status["database"]["url"]


def test_4_the_stack_stops_when_its_owner_dies(stack_env: dict[str, str], owner: subprocess.Popen) -> None:
    pids = {name: _record(stack_env, name)["pid"] for name in (*PARTS, "worker-process")}
    assert all(_alive(pid) for pid in pids.values()), pids
    owner.kill()
    owner.wait()
    _wait_for(lambda: not any(_alive(pid) for pid in pids.values()), "every stack process to exit", 60)
    assert not any((Path(stack_env["DRIFTLINE_STATE_DIR"]) / "pids").glob("*.json"))
    assert _run(stack_env, "status").returncode == 3
