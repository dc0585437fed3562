"""`driftline up --mlflow` refuses what cannot work before starting anything; settings resolution picks its URL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from driftline.cli.context import resolve_settings
from driftline.cli.stack import LocalStack
from driftline.errors import InputError, StackError
from driftline.settings import Settings
from tests.support import REPO, free_port


def _settings(tmp_path: Path, **overrides) -> Settings:
    values = {
        "state_dir": tmp_path / "state",
        "project_dir": REPO,
        "s3_port": free_port(),
        "prefect_port": free_port(),
        "mlflow_port": free_port(),
        "mlflow": True,
        "mlflow_tracking_uri": None,
    }
    values.update(overrides)
    return Settings(**values)


def test_up_with_mlflow_but_no_server_virtualenv_names_the_make_target_and_starts_nothing(tmp_path: Path) -> None:
    stack = LocalStack(_settings(tmp_path, mlflow_venv=tmp_path / "missing-venv"))
    with pytest.raises(StackError, match=r"make mlflow-server"):
        stack.up()
    assert all(stack.running_pid(part) is None for part in ("s3", "prefect-server", "mlflow", "worker"))


def test_up_with_mlflow_refuses_an_explicit_tracking_uri_elsewhere(tmp_path: Path) -> None:
    stack = LocalStack(_settings(tmp_path, mlflow_tracking_uri="http://mlflow.example:5000"))
    with pytest.raises(InputError, match="DRIFTLINE_MLFLOW_TRACKING_URI"):
        stack.up()
    assert stack.running_pid("s3") is None


def test_the_stack_runs_its_workers_with_the_local_tracking_uri_and_cli_commands_find_it(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    stack = LocalStack(settings)
    assert stack.child_env()["DRIFTLINE_MLFLOW_TRACKING_URI"] == f"http://127.0.0.1:{settings.mlflow_port}"
    without = LocalStack(_settings(tmp_path, mlflow=False)).child_env()
    assert without.get("DRIFTLINE_MLFLOW_TRACKING_URI") != stack.mlflow.url
    state = tmp_path / "state"
    state.mkdir()
    (state / "stack.json").write_text(
        json.dumps(
            {
                "s3_endpoint_url": "http://127.0.0.1:5250",
                "aws_access_key_id": "k",
                "aws_secret_access_key": "s",
                "prefect_api_url": "http://127.0.0.1:4250/api",
                "mlflow_tracking_uri": "http://127.0.0.1:5350",
            }
        )
    )
    assert resolve_settings(Settings(state_dir=state)).mlflow_tracking_uri == "http://127.0.0.1:5350"
    explicit_off = Settings(state_dir=state, mlflow_tracking_uri="")
    assert resolve_settings(explicit_off).mlflow_tracking_uri is None
