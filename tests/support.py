"""Test helpers that start real services on free loopback ports (no mocks)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from driftline.cli.stack import SERVER_TUNING
from driftline.cli.supervisor import parent_death_signal

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
TELEMETRY_OFF = {
    "DO_NOT_TRACK": "1",
    "WHYLOGS_NO_ANALYTICS": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "MLFLOW_DISABLE_TELEMETRY": "true",
}
DRIFTLINE = str(BIN / "driftline")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def _serve(
    what: str,
    command: list[str],
    log_path: Path,
    healthy: Callable[[], bool],
    *,
    timeout: float,
    stop: signal.Signals = signal.SIGTERM,
    grace: float = 15.0,
    **popen: Any,
) -> Iterator[subprocess.Popen]:
    """Run ``command`` in its own session (killed with pytest, even a killed pytest) until ``healthy()``; stop
    it with ``stop`` on exit (SIGKILL after ``grace`` seconds). Its output goes to ``log_path``, whose tail
    is the error when it exits or is not healthy within ``timeout`` seconds."""
    log = log_path.open("wb")
    process = subprocess.Popen(
        command,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        preexec_fn=parent_death_signal(stop),
        **popen,
    )
    try:
        deadline = time.monotonic() + timeout
        while not healthy():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not start:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.2)
        yield process
    finally:
        os.killpg(process.pid, stop)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


@contextmanager
def moto_server() -> Iterator[str]:
    """A real moto S3 server over HTTP on a free port; yields its endpoint URL."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@contextmanager
def postgres_server(timeout: float = 60.0) -> Iterator[str]:
    """A real PostgreSQL (the stack's own :class:`LocalPostgres`) on a free port; yields its asyncpg URL.

    Its directory is made here, not under pytest's tmp dir: as root the server runs as the ``postgres`` user,
    who cannot enter pytest's private ``/tmp/pytest-of-root``.
    """
    from driftline.cli.postgres import LocalPostgres

    state_dir = Path(tempfile.mkdtemp(prefix="driftline-test-pg-"))
    state_dir.chmod(0o755)
    postgres = LocalPostgres(state_dir, "127.0.0.1", free_port())
    postgres.initialize()
    try:
        # SIGINT: PostgreSQL's fast shutdown
        with _serve(
            "PostgreSQL",
            postgres.command(),
            state_dir / "postgres.log",
            postgres.healthy,
            timeout=timeout,
            stop=signal.SIGINT,
            grace=30.0,
            user=postgres.run_as,
            cwd="/",
        ):
            postgres.ensure_database()
            yield postgres.url
    finally:
        shutil.rmtree(state_dir, ignore_errors=True)


@contextmanager
def prefect_server(home: Path, timeout: float = 120.0, database_url: str | None = None) -> Iterator[str]:
    """A real Prefect server (SQLite under ``home``, or ``database_url``) on a free port; yields its API URL."""
    port = free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    env = {**os.environ, **TELEMETRY_OFF, "PREFECT_HOME": str(home), "PREFECT_UI_API_URL": api_url}
    env.pop("PREFECT_API_URL", None)
    env.pop("PREFECT_SERVER_DATABASE_CONNECTION_URL", None)
    env.update(SERVER_TUNING)  # as the local stack's server: events readable after ~1 s, not 5
    if database_url is not None:
        env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = database_url

    def healthy() -> bool:
        try:
            return httpx.get(f"{api_url}/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    # SIGTERM lets `prefect server start` stop uvicorn.
    command = [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port), "--analytics-off"]
    with _serve("Prefect server", command, home / "server.log", healthy, timeout=timeout, env=env):
        yield api_url


@contextmanager
def mlflow_server(home: Path, timeout: float = 120.0) -> Iterator[str]:
    """A real MLflow tracking server (SQLite and artifacts under ``home``) on a free loopback port; yields its URL.

    It runs from the virtualenv `make mlflow-server` makes (the stack's own :class:`LocalMlflowServer`).
    """
    from driftline.cli.mlflow_server import LocalMlflowServer
    from driftline.settings import Settings

    venv = Settings().mlflow_venv  # DRIFTLINE_MLFLOW_VENV, as the local stack reads it
    server = LocalMlflowServer(home, "127.0.0.1", free_port(), venv if venv.is_absolute() else REPO / venv)
    if not server.executable.is_file():
        raise RuntimeError(f"no MLflow server at {server.executable}: run `make mlflow-server` (make test does)")
    env = {**os.environ, **TELEMETRY_OFF, **server.env()}
    env.pop("MLFLOW_TRACKING_URI", None)
    with _serve(
        "MLflow server", server.command(), home / "mlflow.log", server.healthy, timeout=timeout, env=env, cwd=home
    ):
        yield server.url


@dataclass
class Receiver:
    """A webhook endpoint on loopback that records every JSON body POSTed to it, with its arrival time."""

    url: str
    received: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def about(self, model: str) -> list[tuple[float, dict[str, Any]]]:
        with self.lock:
            return [(at, body) for at, body in self.received if f"model: {model}\n" in body.get("body", "")]


@contextmanager
def webhook_receiver() -> Iterator[Receiver]:
    """A real HTTP server on a free loopback port that records the notifications it receives."""
    state = Receiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            with state.lock:
                state.received.append((time.monotonic(), json.loads(body)))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            return None

    with serve_http(Handler) as port:
        state.url = f"http://127.0.0.1:{port}/hooks/driftline"
        yield state


@contextmanager
def serve_http(handler: type[BaseHTTPRequestHandler]) -> Iterator[int]:
    """Serve ``handler`` on a free loopback port in a thread; yields the port."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_port
    finally:
        server.shutdown()
        server.server_close()


def stack_environment(state: Path, **settings: str) -> dict[str, str]:
    """Environment of a local stack of its own: this process's minus any DRIFTLINE_/PREFECT_ setting, telemetry
    off, a fresh state dir, free ports; ``settings`` add or override ``DRIFTLINE_*`` variables."""
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DRIFTLINE_", "PREFECT_"))},
        **TELEMETRY_OFF,
        "DRIFTLINE_STATE_DIR": str(state),
        "DRIFTLINE_PROJECT_DIR": str(REPO),
        "DRIFTLINE_S3_PORT": str(free_port()),
        "DRIFTLINE_PREFECT_PORT": str(free_port()),
        "DRIFTLINE_POSTGRES_PORT": str(free_port()),
        "DRIFTLINE_WORK_POOL": "driftline-process",
        **settings,
    }


@contextmanager
def reachable_directory(prefix: str) -> Iterator[Path]:
    """A fresh directory other system users can enter (pytest's own are private to root): the stack's
    PostgreSQL runs as the ``postgres`` user when tests run as root."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def run_driftline(env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """The `driftline` CLI of this venv, run from the repository with ``env``."""
    return subprocess.run([DRIFTLINE, *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout)


@contextmanager
def local_stack(env: dict[str, str]) -> Iterator[dict[str, str]]:
    """`driftline up` with ``env``; `driftline down` afterwards whatever happened, leaving nothing running."""
    started = time.monotonic()
    try:
        up = run_driftline(env, "up")
        assert up.returncode == 0, up.stderr + up.stdout
        print(f"driftline up took {time.monotonic() - started:.1f} s")
        yield env
    finally:
        subprocess.run([DRIFTLINE, "down"], env=env, cwd=REPO, timeout=120, capture_output=True)
