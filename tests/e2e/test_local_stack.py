"""The local stack end to end, in order: `driftline up` -> deployments through the worker, triggered by real
events and automations -> `driftline down` leaves nothing behind. One stack for the module (it takes ~25 s)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from driftline.cli import prefect_api
from driftline.cli.stack import LOCAL_ACCESS_KEY_ID, LOCAL_SECRET_ACCESS_KEY, _alive
from driftline.events import prefect_http
from driftline.events.records import (
    BATCH_PROFILED,
    CANDIDATE_REGISTERED,
    DRIFT_DETECTED,
    STACK_CHECKED,
    model_resource_id,
    new_event,
)
from driftline.models import registry
from driftline.storage import layout
from driftline.storage.store import S3Store
from tests.batches import example_batch, example_labels, example_spec, parquet_bytes, write_parquet
from tests.e2e.ui_checks import check_prefect_ui
from tests.support import Receiver, local_stack, run_driftline, stack_environment, webhook_receiver

ACTIVE_STATES = ["SCHEDULED", "PENDING", "RUNNING", "CANCELLING", "PAUSED"]


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    """The alert webhook: a real HTTP server on loopback, known to `driftline up` by its setting."""
    with webhook_receiver() as state:
        yield state


@pytest.fixture(scope="module")
def stack_env(tmp_path_factory: pytest.TempPathFactory, receiver: Receiver) -> Iterator[dict[str, str]]:
    env = stack_environment(
        tmp_path_factory.mktemp("stack"),
        DRIFTLINE_ALERT_WEBHOOK_URL=receiver.url,
        DRIFTLINE_STACK_OWNER_PID=str(os.getpid()),  # a killed test run takes its stack with it
    )
    with local_stack(env):
        yield env


@pytest.fixture(scope="module")
def api_url(stack_env: dict[str, str]) -> str:
    return f"http://127.0.0.1:{stack_env['DRIFTLINE_PREFECT_PORT']}/api"


@pytest.fixture(scope="module")
def s3(stack_env: dict[str, str]) -> S3Store:
    return S3Store(
        "driftline",
        endpoint_url=f"http://127.0.0.1:{stack_env['DRIFTLINE_S3_PORT']}",
        access_key_id=LOCAL_ACCESS_KEY_ID,
        secret_access_key=LOCAL_SECRET_ACCESS_KEY,
    )


_run = run_driftline


def _pids(env: dict[str, str]) -> dict[str, int]:
    folder = Path(env["DRIFTLINE_STATE_DIR"]) / "pids"
    return {
        part: json.loads((folder / f"{part}.json").read_text())["pid"] for part in ("s3", "prefect-server", "worker")
    }


def test_1_up_is_idempotent_and_the_deep_status_runs_a_flow_through_the_worker(
    stack_env: dict[str, str], api_url: str
) -> None:
    assert all(_alive(pid) for pid in _pids(stack_env).values())
    again = _run(stack_env, "up")
    assert again.returncode == 0, again.stderr
    assert "s3 already running" in again.stderr and "worker already running" in again.stderr

    status = _run(stack_env, "status", "--json", "--deep")
    assert status.returncode == 0, status.stderr + status.stdout
    report = json.loads(status.stdout)
    assert {name: part["healthy"] for name, part in report["parts"].items()} == {
        "s3": True,
        "prefect-server": True,
        "worker": True,
    }
    assert report["database"]["kind"] == "sqlite"
    assert report["deep"]["state"] == "COMPLETED"
    events = prefect_api.find_events(api_url, [STACK_CHECKED])
    assert report["deep"]["event_id"] in {event["id"] for event in events}


def test_2_ingest_through_the_automation_reaches_drift_detected(
    stack_env: dict[str, str], api_url: str, tmp_path: Path
) -> None:
    """model create -> ingest (event -> automation -> profile-batch on the worker) -> drift.detected."""
    created = _run(stack_env, "model", "create", "configs/example.yaml")
    assert created.returncode == 0, created.stderr
    reference = write_parquet(example_batch(1, rows=5_000), tmp_path / "reference.parquet")
    shifted = write_parquet(example_batch(2, rows=5_000, income_shift=0.3), tmp_path / "shifted.parquet")
    broken = write_parquet(example_batch(3, rows=100).drop("income"), tmp_path / "broken.parquet")

    refused = _run(stack_env, "ingest", "example", str(broken), "--batch-id", "broken")
    assert refused.returncode == 2 and "missing column(s): 'income'" in refused.stderr

    first = _run(stack_env, "ingest", "example", str(reference), "--batch-id", "b1", "--json", timeout=180)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["outcome"] == BATCH_PROFILED

    second = _run(stack_env, "ingest", "example", str(shifted), "--batch-id", "b2", "--json", timeout=180)
    assert second.returncode == 1, second.stderr  # exit 1: the batch drifted
    assert json.loads(second.stdout)["payload"]["drift"] is True

    # drift.detected is sent after batch.profiled; the server persists events every ~5 s, so poll.
    detected = _wait_for(
        lambda: prefect_api.find_events(api_url, [DRIFT_DETECTED], [model_resource_id("example")]),
        "the drift.detected event to be stored",
        timeout=30,
    )
    assert [event["payload"]["batch_id"] for event in detected] == ["b2"]
    assert detected[0]["payload"]["top_features"] == ["income"]
    runs = httpx.post(f"{api_url}/flow_runs/filter", json={"flow_runs": {"tags": {"all_": ["driftline"]}}}).json()
    assert any((run.get("created_by") or {}).get("type") == "AUTOMATION" for run in runs)
    artifacts = httpx.post(f"{api_url}/artifacts/filter", json={"artifacts": {"key": {"any_": ["drift-example"]}}})
    assert any("income" in str(artifact["data"]) for artifact in artifacts.json())


def _add_labelled_batch(s3: S3Store, name: str, i: int) -> None:
    frame = example_batch(i, rows=3_000)
    s3.create(layout.batch_data(name, f"b{i:03d}"), parquet_bytes(frame))
    s3.create(layout.batch_labels(name, f"b{i:03d}"), parquet_bytes(example_labels(frame, i)))


def _labelled_model(s3: S3Store, name: str) -> None:
    spec = example_spec(name)
    spec = spec.model_copy(
        update={
            "gates": spec.gates.model_copy(update={"max_p99_latency_ms": 1000.0, "min_throughput_rows_per_s": 100.0})
        }
    )
    s3.put(layout.model_spec(name), spec.to_yaml().encode())
    for i in range(1, 4):
        _add_labelled_batch(s3, name, i)


def _wait_until_retrains_settle(api_url: str, timeout: float = 300) -> None:
    deployment = httpx.get(f"{api_url}/deployments/name/retrain/retrain").json()["id"]
    query = {
        "deployments": {"id": {"any_": [deployment]}},
        "flow_runs": {"state": {"type": {"any_": ACTIVE_STATES}}},
    }
    deadline = time.monotonic() + timeout
    quiet_since = None
    while time.monotonic() < deadline:
        active = httpx.post(f"{api_url}/flow_runs/filter", json=query).json()
        if active:
            quiet_since = None
        elif quiet_since is None:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since > 5:
            return
        time.sleep(1)
    raise AssertionError(f"retrain runs still active after {timeout} s")


def test_3_retrain_bootstraps_by_hand_and_a_drift_storm_builds_one_candidate_per_model(
    stack_env: dict[str, str], api_url: str, s3: S3Store
) -> None:
    """With two workers polling the pool: every run is submitted once and every decision taken once."""
    scaled = _run(stack_env, "up", "--workers", "2")
    assert scaled.returncode == 0 and "worker-2 started" in scaled.stderr, scaled.stderr
    try:
        _drift_storm(stack_env, api_url, s3)
    finally:
        one = _run(stack_env, "up", "--workers", "1")  # the rest of the module runs on one worker, as before
        assert one.returncode == 0 and "worker-2 stopped" in one.stderr, one.stderr
    submitted = _all_events(api_url, "prefect.worker.submitted-flow-run")
    by_worker: dict[str, int] = {}
    runs: list[str] = []
    for event in submitted:
        worker = event["resource"]["prefect.resource.id"]
        by_worker[worker] = by_worker.get(worker, 0) + 1
        runs += [
            r["prefect.resource.id"] for r in event.get("related", []) if r.get("prefect.resource.role") == "flow-run"
        ]
    print(f"flow runs submitted per worker: {by_worker}")
    assert set(by_worker) <= {
        "prefect.worker.process.driftline-local-worker",
        "prefect.worker.process.driftline-local-worker-2",
    }, by_worker
    assert len(runs) == len(set(runs)) == len(submitted), "a flow run was submitted by more than one worker"
    for model in ("storm-a", "storm-b"):
        resource = [model_resource_id(model)]
        registered = [
            e["payload"]["version"] for e in prefect_api.find_events(api_url, [CANDIDATE_REGISTERED], resource)
        ]
        assert registered and len(registered) == len(set(registered)), (model, registered)


def _drift_storm(stack_env: dict[str, str], api_url: str, s3: S3Store) -> None:
    status = json.loads(_run(stack_env, "status", "--json").stdout)
    assert status["parts"]["worker"]["healthy"] and status["parts"]["worker-2"]["healthy"], status
    _labelled_model(s3, "storm-a")
    _labelled_model(s3, "storm-b")
    manual = _run(stack_env, "retrain", "storm-a", "--wait", "--json", timeout=400)
    assert manual.returncode == 0, manual.stderr + manual.stdout
    outcome = json.loads(manual.stdout)
    assert outcome["candidate"]["decision"] == "champion"
    champion = outcome["candidate"]["version"]
    _wait_until_retrains_settle(api_url)  # the example model's drift from test 2 may still be retraining
    _add_labelled_batch(s3, "storm-a", 4)  # news since the champion trained (else a drift retrain waits)

    for _ in range(5):
        for model, reference in (("storm-a", champion), ("storm-b", None)):
            payload = {
                "batch_id": "b003",
                "score": 0.5,
                "reference_version": reference,
                "drift_onset": None,
                "kind": "input",
            }
            prefect_http.PrefectEventSink(s3, api_url).publish(new_event(model, DRIFT_DETECTED, payload))
    # Automations create runs within seconds, slower when SQLite is busy: wait for the outcome, then
    # for every queued duplicate to finish, and only then count.
    _wait_for(
        lambda: (
            len(registry.list_version_ids(s3, "storm-a")) >= 2 and len(registry.list_version_ids(s3, "storm-b")) >= 1
        ),
        "one candidate per model",
    )
    _wait_until_retrains_settle(api_url)

    a = registry.describe_model(s3, "storm-a")
    b = registry.describe_model(s3, "storm-b")
    assert [v["status"] for v in a["versions"]] == ["champion", "shadow"], a
    assert a["versions"][1]["trigger"].startswith("drift:")
    assert [v["status"] for v in b["versions"]] == ["champion"], b  # no champion yet: bootstrap
    models = _run(stack_env, "models", "storm-a", "--json")
    assert json.loads(models.stdout)["aliases"]["shadow"] == a["versions"][1]["version"]
    lineage = _run(stack_env, "lineage", "storm-a", a["versions"][1]["version"], "--json")
    assert json.loads(lineage.stdout)["lineage"]["parent_champion"] == champion
    doctor = _run(stack_env, "doctor", "storm-a", "--json")
    assert doctor.returncode == 0 and json.loads(doctor.stdout)["healthy"] is True


@pytest.mark.timeout(1200)
def test_4_demo_fast_reaches_a_promotion_through_the_automations_and_rollback_restores(
    stack_env: dict[str, str], api_url: str, s3: S3Store, receiver: Receiver
) -> None:
    """`driftline demo --fast`: covariate drift, then a concept drift only labels reveal, then a promotion."""
    started = time.monotonic()
    demo = _run(stack_env, "demo", "--fast", "--json", "--model", "demo", timeout=900)
    print(f"driftline demo --fast took {time.monotonic() - started:.0f} s")
    assert demo.returncode == 0, demo.stderr[-4000:] + demo.stdout[-2000:]
    summary = json.loads(demo.stdout)
    assert summary["promoted"] is True
    events = summary["events"]
    for name in (
        "driftline.batch.profiled",
        "driftline.drift.detected",
        "driftline.performance.degraded",
        "driftline.candidate.registered",
        "driftline.shadow.decided",
        "driftline.model.promoted",
    ):
        assert events.get(name, 0) >= 1, (name, events)
    assert any(v["verdict"] == "promote" for v in summary["verdicts"]), summary["verdicts"]
    stored = prefect_api.find_events(api_url, ["driftline.performance.degraded"], [model_resource_id("demo")])
    assert stored and stored[0]["payload"]["kind"] == "performance"
    # ... and the loop answered it: the promoted version was trained after the drop was announced (the
    # retrain trigger runs once per model per minute, so the input-drift event of the same minute may be
    # the one that started it).
    metadata = registry.read_metadata(s3, "demo", summary["promoted_version"])
    assert datetime.fromisoformat(metadata["created_at"]) > datetime.fromisoformat(stored[0]["occurred"])
    metric = summary["champion_metric"]
    # Known truth: the concept drift hurts the old champion; the promoted candidate does better on the same rows.
    assert metric["before_drift"] > metric["after_drift_served"], metric
    assert metric["promoted_same_batches"] > metric["replaced_champion_same_batches"], metric
    # Every step after ingestion ran as a deployment started by an automation, not by the demo.
    flows = {run["flow"] for run in summary["ui"]["runs"]}
    assert {"profile-batch", "score-batch", "shadow-evaluate", "retrain", "promote"} <= flows, flows

    # The alert automations `driftline up` applied: one notification per alerting event, at the receiver.
    alerting = prefect_api.find_events(
        api_url,
        ["driftline.drift.detected", "driftline.performance.degraded", "driftline.model.promoted"],
        [model_resource_id("demo")],
    )
    assert alerting

    def notified(event_id: str) -> int:
        return sum(1 for _, body in receiver.about("demo") if f"event id: {event_id}" in body.get("body", ""))

    _wait_for(lambda: all(notified(e["id"]) for e in alerting) or None, "a notification per alerting event", 60)
    assert [notified(e["id"]) for e in alerting] == [1] * len(alerting)

    # The read commands see what the loop did; a rollback by hand restores the champion it replaced.
    promoted = summary["promoted_version"]
    described = registry.describe_model(s3, "demo")
    assert described["aliases"]["champion"] == promoted
    previous = described["aliases"]["previous"]
    shadow = json.loads(_run(stack_env, "shadow", "demo", "--json").stdout)
    assert {"candidate", "n", "estimate", "lower", "upper", "verdict"} <= set(shadow)
    monitor = json.loads(_run(stack_env, "monitor", "demo", "--json").stdout)
    assert any(s["kind"] == "promotion" and s["version"] == promoted for s in monitor["switches"])
    rolled = _run(stack_env, "rollback", "demo")
    assert rolled.returncode == 0, rolled.stderr
    assert registry.read_alias(s3, "demo", "champion").version == previous


def _all_events(api_url: str, name: str) -> list[dict]:
    """Every stored event called ``name``, following the API's pages of 50."""
    page = httpx.post(f"{api_url}/events/filter", json={"filter": {"event": {"name": [name]}}, "limit": 50}).json()
    events = list(page["events"])
    while page.get("next_page"):
        page = httpx.get(page["next_page"]).json()
        events += page["events"]
    return events


def _wait_for(probe, what: str, timeout: float = 240):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.fixture
def cpu_burners() -> Iterator[list[subprocess.Popen]]:
    """Two processes that keep both cores busy, as other work on a shared machine does."""
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        yield burners
    finally:
        for burner in burners:
            burner.kill()
            burner.wait(timeout=10)


@pytest.mark.timeout(1200)
def test_5_under_load_a_default_spec_bootstraps_a_champion_and_a_drift_builds_a_candidate(
    stack_env: dict[str, str], api_url: str, s3: S3Store, tmp_path: Path, cpu_burners: list[subprocess.Popen]
) -> None:
    """Two CPU burners share the 2 cores with the loop; the spec keeps its default (timing) gates."""
    started = time.monotonic()
    name = "loaded"
    s3.put(layout.model_spec(name), example_spec(name).to_yaml().encode())
    for i in range(1, 4):
        _add_labelled_batch(s3, name, i)
    boot = _run(stack_env, "retrain", name, "--wait", "--json", timeout=600)
    assert boot.returncode == 0, boot.stderr + boot.stdout
    assert json.loads(boot.stdout)["candidate"]["decision"] == "champion"
    champion = registry.read_alias(s3, name, "champion").version
    _add_labelled_batch(s3, name, 4)

    shifted = example_batch(5, rows=5_000, income_shift=0.4)
    ingest = _run(
        stack_env, "ingest", name, str(write_parquet(shifted, tmp_path / "b005.parquet")), "--batch-id", "b005",
        "--json", "--timeout", "600", timeout=700,
    )  # fmt: skip
    assert ingest.returncode == 1, ingest.stderr + ingest.stdout  # exit 1: drift
    assert json.loads(ingest.stdout)["payload"]["drift"] is True
    labels = _run(
        stack_env, "labels", name, str(write_parquet(example_labels(shifted, 5), tmp_path / "l005.parquet")),
        "--batch-id", "b005",
    )  # fmt: skip
    assert labels.returncode == 0, labels.stderr

    _wait_for(lambda: len(registry.list_version_ids(s3, name)) >= 2, "a drift-triggered candidate", timeout=600)
    _wait_until_retrains_settle(api_url, timeout=600)
    described = registry.describe_model(s3, name)
    assert described["aliases"]["champion"] == champion
    candidate = described["versions"][-1]
    assert candidate["trigger"].startswith("drift:"), candidate
    assert candidate["status"] == "shadow", described
    print(f"under load: bootstrap + drift -> candidate took {time.monotonic() - started:.0f} s")


@pytest.mark.timeout(900)
def test_6_an_ingest_while_the_server_is_down_is_kept_and_announced_once_it_is_back(
    stack_env: dict[str, str], api_url: str, s3: S3Store, tmp_path: Path
) -> None:
    """Objects first, event in the S3 outbox; watch-batches re-sends the outbox and profiles what waits."""
    name = "outage"
    s3.put(layout.model_spec(name), example_spec(name).to_yaml().encode())
    server = _pids(stack_env)["prefect-server"]
    os.kill(server, 15)
    _wait_for(lambda: not _alive(server), "the Prefect server to stop", timeout=60)

    batch = write_parquet(example_batch(11, rows=2_000), tmp_path / "o1.parquet")
    ingest = _run(stack_env, "ingest", name, str(batch), "--batch-id", "o1", "--no-wait", "--json")
    assert ingest.returncode == 0, ingest.stderr + ingest.stdout
    queued = json.loads(ingest.stdout)
    assert queued["announced"] is False and "outbox" in ingest.stderr
    assert s3.exists(layout.batch_data(name, "o1"))
    doctor = _run(stack_env, "doctor", name, "--json")
    backlog = json.loads(doctor.stdout)["outbox"]
    assert backlog["not_confirmed"] == [f"driftline.batch.arrived {queued['event_id']}"], backlog

    up = _run(stack_env, "up")
    assert up.returncode == 0, up.stderr + up.stdout
    _wait_for(lambda: s3.exists(layout.batch_profile(name, "o1")), "the batch to be profiled", timeout=300)
    _wait_for(
        lambda: prefect_http.seen_event_ids(api_url, [queued["event_id"]], datetime.fromisoformat(queued["at"])),
        "the outbox event to reach the server",
        timeout=300,
    )
    doctor = _run(stack_env, "doctor", name, "--json")
    assert doctor.returncode == 0, doctor.stdout
    assert json.loads(doctor.stdout)["outbox"]["not_on_server"] == []


def _listening(pid: int) -> set[str]:
    """Local addresses (``ip:port``) the process listens on, read from /proc (no extra tools needed)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        target = os.readlink(fd) if fd.is_symlink() else ""
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = set()
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != "0A" or fields[9] not in inodes:  # 0A: LISTEN
                continue
            address, port = fields[1].split(":")
            if width == 8:
                ip = ".".join(str(int(address[i : i + 2], 16)) for i in (6, 4, 2, 0))
            else:
                ip = "::1" if address == "0" * 24 + "01000000" else address
            found.add(f"{ip}:{int(port, 16)}")
    return found


def test_7_every_server_listens_on_loopback_only_and_no_secret_or_telemetry_leaks(
    stack_env: dict[str, str], api_url: str
) -> None:
    pids = _pids(stack_env)
    addresses = {part: _listening(pid) for part, pid in pids.items()}
    assert addresses["s3"] == {f"127.0.0.1:{stack_env['DRIFTLINE_S3_PORT']}"}, addresses
    assert f"127.0.0.1:{stack_env['DRIFTLINE_PREFECT_PORT']}" in addresses["prefect-server"], addresses
    for part, listening in addresses.items():
        assert all(a.startswith(("127.", "::1:")) for a in listening), (part, listening)

    status = _run(stack_env, "status", "--json", "--deep")
    assert status.returncode == 0, status.stderr + status.stdout
    event_id = json.loads(status.stdout)["deep"]["event_id"]
    checked = [e for e in prefect_api.find_events(api_url, [STACK_CHECKED]) if e["id"] == event_id]
    telemetry = {name: (value or "").lower() for name, value in checked[0]["payload"]["telemetry"].items()}
    assert telemetry == {"DO_NOT_TRACK": "1", "WHYLOGS_NO_ANALYTICS": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}

    # The local secret never reaches a log file, a flow-run log, an event or an artifact.
    secret = LOCAL_SECRET_ACCESS_KEY
    logs = Path(stack_env["DRIFTLINE_STATE_DIR"]) / "logs"
    for log in logs.glob("*"):
        assert secret not in log.read_text(errors="replace"), log
    run_logs = httpx.post(f"{api_url}/logs/filter", json={"limit": 200}).text
    page = httpx.post(f"{api_url}/events/filter", json={"limit": 50}).json()
    pages = [json.dumps(page["events"])]
    while page.get("next_page") and len(pages) < 40:
        page = httpx.get(page["next_page"]).json()
        pages.append(json.dumps(page["events"]))
    events = "".join(pages)
    artifacts = httpx.post(f"{api_url}/artifacts/filter", json={"limit": 200}).text
    assert len(run_logs) > 1000 and len(events) > 1000 and len(artifacts) > 1000
    for where, text in (("flow-run logs", run_logs), ("events", events), ("artifacts", artifacts)):
        assert secret not in text, where


def test_8_the_prefect_ui_in_a_browser_shows_the_drift_picture_the_triggers_and_the_events(
    api_url: str, tmp_path: Path
) -> None:
    """Headless Chromium on the stack's UI after the loop above: what a user opening it sees."""
    check_prefect_ui(api_url, tmp_path / "ui")


def test_9_down_stops_every_process_and_is_safe_twice(stack_env: dict[str, str]) -> None:
    pids = _pids(stack_env)
    down = _run(stack_env, "down", timeout=120)
    assert down.returncode == 0, down.stderr
    assert "worker stopped" in down.stderr or "worker killed" in down.stderr
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in pids.values()) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_alive(pid) for pid in pids.values())
    assert _run(stack_env, "down").returncode == 0
    assert _run(stack_env, "status").returncode == 3
