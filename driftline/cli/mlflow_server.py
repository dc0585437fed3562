"""The local MLflow server of `driftline up --mlflow` (and of the tests): SQLite backend, artifacts on disk, loopback.

Full MLflow (its server needs Flask, SQLAlchemy, alembic, pandas, scikit-learn, ...) does not fit driftline's pins
(MLflow 3.17 wants pyarrow < 26 and importlib-metadata < 10; 3.18's mlflow-tracing is not published), so the
server runs from a virtualenv of its own, ``.venv-mlflow/`` (``make mlflow-server``, pinned in
``infra/mlflow/requirements.txt``); driftline itself talks to it with the client of ``mlflow-skinny``.

State lives under ``<state_dir>/mlflow/`` and survives ``driftline down``:

    mlflow.db      runs, registered models, aliases (SQLite)
    artifacts/     what clients upload through the server (``--artifacts-destination``; clients need no disk access)
"""

from __future__ import annotations

from pathlib import Path

import httpx

from driftline.errors import StackError

# MLflow honours DO_NOT_TRACK only when it is exactly "true"; its job runner (huey workers) is not needed here.
SERVER_ENV = {"MLFLOW_DISABLE_TELEMETRY": "true", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


class LocalMlflowServer:
    """Command, environment and health of one MLflow tracking server bound to ``host:port``."""

    def __init__(self, data_dir: Path, host: str, port: int, venv: Path) -> None:
        self.data_dir = data_dir
        self.host = host
        self.port = port
        self.venv = venv

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def executable(self) -> Path:
        return self.venv / "bin" / "mlflow"

    def check_installed(self) -> None:
        """Raises StackError naming the missing server and how to make it."""
        if not self.executable.is_file():
            raise StackError(
                f"no MLflow server at {self.executable}: run `make mlflow-server` (creates {self.venv} with the "
                "pinned MLflow), or set DRIFTLINE_MLFLOW_VENV to a virtualenv that has `mlflow` installed"
            )

    def command(self) -> list[str]:
        self.check_installed()
        return [
            str(self.executable),
            "server",
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--backend-store-uri",
            f"sqlite:///{self.data_dir / 'mlflow.db'}",
            "--artifacts-destination",
            str(self.data_dir / "artifacts"),
            "--workers",
            "1",
        ]

    def env(self) -> dict[str, str]:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return dict(SERVER_ENV)

    def healthy(self) -> bool:
        try:
            return httpx.get(f"{self.url}/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def describe(self) -> dict[str, str]:
        return {"url": self.url, "data_dir": str(self.data_dir), "server": str(self.executable)}
