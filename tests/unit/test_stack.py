"""Local-stack behaviour that needs no running stack: ports, idempotent down, settings resolution, exit codes."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from driftline.cli.stack import LocalStack, port_is_free, resolve_settings
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
    assert "s3_port" in result.stderr
