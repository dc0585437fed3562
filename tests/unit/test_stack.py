"""Local-stack behaviour that needs no running stack: ports, idempotent down, settings resolution, exit codes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from driftline.cli.context import resolve_settings
from driftline.cli.stack import (
    LocalStack,
    RunSnapshot,
    _alive,
    _start_time,
    is_abandoned,
    is_stale_part,
    port_is_free,
    unrecorded_stack_processes,
)
from driftline.cli.supervisor import restart_decision, watch_owner
from driftline.errors import InputError, StackError
from driftline.settings import Settings
from tests.support import REPO, free_port

DRIFTLINE = str(Path(sys.executable).parent / "driftline")


def _settings(tmp_path: Path, **overrides) -> Settings:
    values = {
        "state_dir": tmp_path / "state",
        "project_dir": REPO,
        "s3_port": free_port(),
        "prefect_port": free_port(),
    }
    values.update(overrides)
    return Settings(**values)


def test_port_taken_by_another_process_is_an_error_naming_port_and_setting(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        assert not port_is_free("127.0.0.1", port)
        stack = LocalStack(_settings(tmp_path, s3_port=port))
        with pytest.raises(StackError, match=rf"port {port} .*DRIFTLINE_S3_PORT"):
            stack.up()
    # Nothing was left behind by the failed start.
    assert all(stack.running_pid(part) is None for part in ("s3", "prefect-server", "worker"))


def test_prefect_port_taken_stops_the_s3_server_it_already_started(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        stack = LocalStack(_settings(tmp_path, prefect_port=port))
        with pytest.raises(StackError, match="DRIFTLINE_PREFECT_PORT"):
            stack.up()
    assert stack.running_pid("s3") is None
    assert not (tmp_path / "state" / "pids" / "s3.json").exists()


def test_missing_prefect_yaml_is_named(tmp_path: Path) -> None:
    with pytest.raises(StackError, match="prefect.yaml"):
        LocalStack(_settings(tmp_path, project_dir=tmp_path)).up()


def test_alert_webhook_that_does_not_fit_its_kind_fails_before_anything_starts(tmp_path: Path) -> None:
    settings = _settings(tmp_path, alert_webhook_url="https://hooks.example.com/x", alert_webhook_kind="slack")
    stack = LocalStack(settings)
    with pytest.raises(InputError, match="alerts: DRIFTLINE_ALERT_WEBHOOK_URL is not a Slack incoming webhook"):
        stack.up()
    assert not (tmp_path / "state" / "pids").exists()


def test_down_with_nothing_running_is_fine_twice(tmp_path: Path) -> None:
    stack = LocalStack(_settings(tmp_path))
    assert stack.down() == {"worker": "not running", "prefect-server": "not running", "s3": "not running"}
    assert stack.down()["s3"] == "not running"


def test_stale_pid_file_of_a_recycled_pid_is_not_trusted(tmp_path: Path) -> None:
    stack = LocalStack(_settings(tmp_path))
    pid_file = tmp_path / "state" / "pids" / "s3.json"
    pid_file.parent.mkdir(parents=True)
    # Our own pid is alive but its start time does not match the record: it is not our server.
    pid_file.write_text(json.dumps({"pid": __import__("os").getpid(), "start_time": 1}))
    assert stack.running_pid("s3") is None
    assert stack.down()["s3"] == "not running"


def test_cli_uses_the_local_stack_only_where_settings_are_unset(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "stack.json").write_text(
        json.dumps(
            {
                "s3_endpoint_url": "http://127.0.0.1:5250",
                "aws_access_key_id": "k",
                "aws_secret_access_key": "s",
                "prefect_api_url": "http://127.0.0.1:4250/api",
            }
        )
    )
    resolved = resolve_settings(Settings(state_dir=state))
    assert resolved.s3_endpoint_url == "http://127.0.0.1:5250"
    assert resolved.prefect_api_url == "http://127.0.0.1:4250/api"
    explicit = resolve_settings(Settings(state_dir=state, s3_endpoint_url="https://minio.example:9000"))
    assert explicit.s3_endpoint_url == "https://minio.example:9000"
    assert explicit.aws_access_key_id is None
    assert resolve_settings(Settings(state_dir=tmp_path / "none")).s3_endpoint_url is None


def test_status_with_the_stack_down_exits_3_and_names_the_endpoints(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    env = {
        "PATH": str(Path(sys.executable).parent),
        "DRIFTLINE_STATE_DIR": str(settings.state_dir),
        "DRIFTLINE_S3_PORT": str(settings.s3_port),
        "DRIFTLINE_PREFECT_PORT": str(settings.prefect_port),
    }
    result = subprocess.run([DRIFTLINE, "status", "--json"], capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 3, result.stderr
    report = json.loads(result.stdout)
    assert report["healthy"] is False
    assert report["parts"]["s3"]["url"] == f"http://127.0.0.1:{settings.s3_port}"
    assert report["parts"]["prefect-server"]["healthy"] is False


def test_bad_setting_exits_2_naming_the_setting(tmp_path: Path) -> None:
    env = {"PATH": str(Path(sys.executable).parent), "DRIFTLINE_S3_PORT": "not-a-port"}
    result = subprocess.run([DRIFTLINE, "status"], capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 2
    assert "s3_port" in result.stderr.lower()  # the field or its variable, DRIFTLINE_S3_PORT


# ---------------------------------------------------------------------------------------------- issue #13
NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
STALE_AFTER = timedelta(minutes=10)


@pytest.mark.parametrize(
    ("state_type", "seconds_ago", "has_heartbeat", "worker_alive", "abandoned"),
    [
        # No worker of ours: nothing can be executing a run that holds a slot.
        ("RUNNING", 5, False, False, True),
        ("PENDING", 5, False, False, True),
        ("CANCELLING", 5, False, False, True),
        # Waiting runs (AwaitingConcurrencySlot is SCHEDULED) and finished ones are never touched.
        ("SCHEDULED", 3600, False, False, False),
        ("PAUSED", 3600, False, False, False),
        ("COMPLETED", 3600, False, False, False),
        ("CRASHED", 3600, False, False, False),
        # Worker alive: only silence counts.
        ("RUNNING", 5, True, True, False),
        ("RUNNING", 3600, True, True, True),
        ("RUNNING", 3600, False, True, False),  # a long training without heartbeats is kept
        ("PENDING", 60, False, True, False),
        ("PENDING", 3600, False, True, True),
        ("CANCELLING", 3600, False, True, True),
        ("PENDING", None, False, True, False),
    ],
)
def test_a_run_is_abandoned_only_when_nothing_can_be_running_it(
    state_type: str, seconds_ago: int | None, has_heartbeat: bool, worker_alive: bool, abandoned: bool
) -> None:
    last_seen = None if seconds_ago is None else NOW - timedelta(seconds=seconds_ago)
    run = RunSnapshot("id", "name", state_type, last_seen, has_heartbeat)
    assert is_abandoned(run, worker_alive, NOW, STALE_AFTER) is abandoned


@pytest.mark.parametrize(
    ("alive", "healthy", "age", "stale"),
    [
        (True, True, 9999.0, False),
        (True, False, 5.0, False),  # still starting: the existing wait handles it
        (True, False, 130.0, True),
        (True, False, None, True),
        (False, False, 130.0, False),
    ],
)
def test_a_recorded_part_is_stale_when_alive_silent_and_past_its_startup_time(
    alive: bool, healthy: bool, age: float | None, stale: bool
) -> None:
    assert is_stale_part(alive, healthy, age, startup_grace=120.0) is stale


def test_unrecorded_processes_of_this_state_dir_are_stale_and_nothing_else(tmp_path: Path) -> None:
    mine = {"DRIFTLINE_STACK_PART": "worker", "DRIFTLINE_STATE_DIR": str(tmp_path)}
    processes = [
        (10, 10, mine),  # an orphaned flow run of this state dir (its worker is gone, init adopted it)
        (11, 7, mine),  # the worker, in the group of the live recorded supervisor 7
        (15, 15, mine),  # a flow run of that worker, in a session of its own
        (12, 12, {**mine, "DRIFTLINE_STATE_DIR": str(tmp_path / "other")}),  # another stack's
        (13, 13, {"DRIFTLINE_STATE_DIR": str(tmp_path)}),  # a CLI with the setting exported, not a part
        (14, 14, mine),  # ourselves
        (9, 9, mine),  # a server whose pid file was lost
    ]
    parent_of = {10: 1, 11: 7, 15: 11, 12: 1, 13: 1, 14: 3, 9: 1, 7: 1}
    assert unrecorded_stack_processes(processes, parent_of, tmp_path, recorded={7}, own_pids={14}) == [9, 10]


@pytest.mark.parametrize(
    ("exit_code", "uptime", "failures", "stopping", "restart", "delay", "next_failures"),
    [
        (1, 5.0, 0, False, True, 1.0, 1),
        (1, 5.0, 1, False, True, 2.0, 2),
        (-9, 5.0, 3, False, True, 8.0, 4),  # SIGKILLed
        (1, 5.0, 10, False, True, 30.0, 11),  # capped
        (1, 600.0, 10, False, True, 1.0, 1),  # ran long enough: the count starts again
        (0, 5.0, 4, False, False, 0.0, 0),  # a clean exit is not a failure
        (1, 5.0, 2, True, False, 0.0, 2),  # told to stop
    ],
)
def test_the_worker_restarts_with_capped_backoff_until_told_to_stop(
    exit_code: int, uptime: float, failures: int, stopping: bool, restart: bool, delay: float, next_failures: int
) -> None:
    decision = restart_decision(exit_code, uptime, failures, stopping)
    assert (decision.restart, decision.delay, decision.failures) == (restart, delay, next_failures)


def _wait(predicate, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


def test_supervisor_restarts_a_failing_command_and_sigterm_reaches_it_exactly_once(tmp_path: Path) -> None:
    starts, terms = tmp_path / "starts", tmp_path / "terms"
    child = (
        "import os, signal, sys, time\n"
        f"open({str(starts)!r}, 'a').write('x')\n"
        "def on_term(*_):\n"
        f"    open({str(terms)!r}, 'a').write('t')\n"
        "    time.sleep(0.5)\n"  # a second SIGTERM would land here and be counted
        "    sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, on_term)\n"
        f"time.sleep(0.2 if os.path.getsize({str(starts)!r}) < 2 else 60)\n"
        "sys.exit(3)\n"
    )
    supervisor = subprocess.Popen(
        [sys.executable, "-m", "driftline.cli.supervisor", "worker", "--state-dir", str(tmp_path), "--"]
        + [sys.executable, "-c", child],
        cwd=REPO,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
    )
    try:
        # First run fails at once, restarted after 1 s; the second one stays up.
        assert _wait(lambda: starts.exists() and starts.stat().st_size == 2)
        record = tmp_path / "pids" / "worker-process.json"
        assert _wait(lambda: record.exists() and json.loads(record.read_text())["pid"] > 0)
        time.sleep(0.5)  # let the child install its handler
        supervisor.send_signal(signal.SIGTERM)
        assert supervisor.wait(20) == 0
        assert terms.read_text() == "t"
        assert not record.exists()
    finally:
        if supervisor.poll() is None:
            os.killpg(supervisor.pid, signal.SIGKILL)
            supervisor.wait()


def test_a_child_with_the_parent_death_signal_dies_with_its_parent(tmp_path: Path) -> None:
    script = (
        "import subprocess, sys, time\n"
        "from driftline.cli.supervisor import parent_death_signal\n"
        "child = subprocess.Popen(['sleep', '60'], preexec_fn=parent_death_signal())\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    assert _alive(child)
    parent.kill()
    parent.wait()
    assert _wait(lambda: not _alive(child), timeout=5)


def test_watch_owner_calls_back_once_the_owner_exits() -> None:
    owner = subprocess.Popen(["sleep", "60"])
    called = threading.Event()
    watcher = threading.Thread(target=watch_owner, args=(owner.pid, called.set, 0.1), daemon=True)
    watcher.start()
    time.sleep(0.3)
    assert not called.is_set()
    owner.kill()
    assert called.wait(5)
    owner.wait()


def test_up_stops_unrecorded_processes_of_its_state_dir(tmp_path: Path) -> None:
    stack = LocalStack(_settings(tmp_path))
    marked = {**os.environ, "DRIFTLINE_STACK_PART": "worker", "DRIFTLINE_STATE_DIR": str(stack.state_dir)}
    orphan = subprocess.Popen(["sleep", "60"], env=marked, start_new_session=True)
    other = subprocess.Popen(["sleep", "60"], env={**marked, "DRIFTLINE_STATE_DIR": str(tmp_path / "x")})
    try:
        report = stack.stop_stale_processes()
        assert report == [f"stale process {orphan.pid} (sleep 60) stopped"]
        assert orphan.wait(5) == -signal.SIGTERM
        assert other.poll() is None
    finally:
        for process in (orphan, other):
            process.kill()
            process.wait()


def test_up_stops_a_recorded_server_that_is_alive_but_not_answering(tmp_path: Path) -> None:
    stack = LocalStack(_settings(tmp_path, startup_timeout=0.5))
    wedged = subprocess.Popen(["sleep", "60"], start_new_session=True)  # nothing listens on the S3 port
    record = {"pid": wedged.pid, "start_time": _start_time(wedged.pid), "command": ["moto_server"]}
    (stack.state_dir / "pids").mkdir(parents=True)
    (stack.state_dir / "pids" / "s3.json").write_text(json.dumps(record))
    try:
        time.sleep(0.6)  # past the startup timeout: no longer "still starting"
        assert stack.stop_stale_processes() == [f"stale s3 pid {wedged.pid} (alive but not answering) stopped"]
        assert _wait(lambda: not _alive(wedged.pid), timeout=5)  # `_stop` reaps its own children
        assert not (stack.state_dir / "pids" / "s3.json").exists()
    finally:
        wedged.kill()
        wedged.wait()


def test_an_owner_pid_that_is_not_a_running_process_fails_before_anything_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gone = subprocess.Popen(["true"])
    gone.wait()
    monkeypatch.setenv("DRIFTLINE_STACK_OWNER_PID", str(gone.pid))
    stack = LocalStack(_settings(tmp_path))
    with pytest.raises(InputError, match=rf"DRIFTLINE_STACK_OWNER_PID={gone.pid} is not a running process"):
        stack.up()
    assert not (tmp_path / "state" / "pids").exists()
