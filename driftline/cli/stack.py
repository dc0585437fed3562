"""The local stack: moto's S3 server, a Prefect server on SQLite, a process work pool and one worker.

Everything binds to loopback and keeps its state under ``settings.state_dir`` (``.driftline/``):

    .driftline/pids/<part>.json    pid and kernel start time of each process we started
    .driftline/logs/<part>.log     its output (the last lines are shown when it fails to start)
    .driftline/prefect/            PREFECT_HOME: the SQLite database and profiles
    .driftline/stack.json          endpoints and credentials the CLI uses while the stack is up

Each process runs in its own session (process group) so that ``down`` can stop it together with the
flow-run subprocesses a worker spawns: SIGTERM to the group, wait, then SIGKILL. A pid is only signalled
when its kernel start time still matches the one recorded, so a recycled pid is never killed.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx
from pydantic import SecretStr

from driftline.errors import InfrastructureError, InputError, StackError
from driftline.settings import Settings
from driftline.store import S3Store

# The local S3 server accepts any credentials; fixed ones keep boto3 away from the user's AWS profile.
LOCAL_ACCESS_KEY_ID = "driftline-local"
LOCAL_SECRET_ACCESS_KEY = "driftline-local-secret"
WORKER_NAME = "driftline-local-worker"
PARTS = ("s3", "prefect-server", "worker")
TELEMETRY_OFF = {
    "DO_NOT_TRACK": "1",
    "WHYLOGS_NO_ANALYTICS": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
}

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    return None


@dataclass
class PartStatus:
    """Health of one part of the stack."""

    name: str
    healthy: bool
    url: str | None = None
    pid: int | None = None
    detail: str = ""


@dataclass
class StackStatus:
    """Health of the whole stack; ``healthy`` when every part is."""

    parts: list[PartStatus] = field(default_factory=list)
    deep: dict | None = None

    @property
    def healthy(self) -> bool:
        parts_ok = all(part.healthy for part in self.parts)
        return parts_ok and (self.deep is None or bool(self.deep.get("ok")))

    def to_dict(self) -> dict:
        result: dict = {"healthy": self.healthy, "parts": {p.name: asdict(p) for p in self.parts}}
        if self.deep is not None:
            result["deep"] = self.deep
        return result


class LocalStack:
    """Start, stop and inspect the local stack described by ``settings``."""

    def __init__(self, settings: Settings, progress: Progress = _quiet) -> None:
        self.settings = settings
        self.progress = progress
        self.state_dir = settings.state_dir.resolve()
        self.project_dir = settings.project_dir.resolve()
        self.bin_dir = Path(sys.executable).parent

    # ------------------------------------------------------------------ addresses
    @property
    def s3_url(self) -> str:
        return f"http://{self.settings.host}:{self.settings.s3_port}"

    @property
    def prefect_url(self) -> str:
        return f"http://{self.settings.host}:{self.settings.prefect_port}"

    @property
    def api_url(self) -> str:
        return f"{self.prefect_url}/api"

    def _pid_file(self, part: str) -> Path:
        return self.state_dir / "pids" / f"{part}.json"

    def _log_file(self, part: str) -> Path:
        return self.state_dir / "logs" / f"{part}.log"

    @property
    def state_file(self) -> Path:
        return self.state_dir / "stack.json"

    # ------------------------------------------------------------------ environment
    def child_env(self) -> dict[str, str]:
        """Environment of every process of the stack (and of the flow runs the worker starts)."""
        env = dict(os.environ)
        env.update(TELEMETRY_OFF)
        env.update(
            {
                "PREFECT_HOME": str(self.state_dir / "prefect"),
                "PREFECT_API_URL": self.api_url,
                "PREFECT_UI_API_URL": self.api_url,
                "PREFECT_WORKER_QUERY_SECONDS": "1",
                "DRIFTLINE_S3_ENDPOINT_URL": self.s3_url,
                "DRIFTLINE_S3_BUCKET": self.settings.s3_bucket,
                "DRIFTLINE_S3_PREFIX": self.settings.s3_prefix,
                "DRIFTLINE_S3_REGION": self.settings.s3_region,
                "DRIFTLINE_AWS_ACCESS_KEY_ID": LOCAL_ACCESS_KEY_ID,
                "DRIFTLINE_AWS_SECRET_ACCESS_KEY": LOCAL_SECRET_ACCESS_KEY,
                "DRIFTLINE_PREFECT_API_URL": self.api_url,
                "DRIFTLINE_WORK_POOL": self.settings.work_pool,
                "DRIFTLINE_PROJECT_DIR": str(self.project_dir),
                "DRIFTLINE_STATE_DIR": str(self.state_dir),
                # The stack's Python, not whatever `python` is first on PATH, runs the flow runs.
                "PATH": f"{self.bin_dir}{os.pathsep}{env.get('PATH', '')}",
            }
        )
        return env

    def store(self) -> S3Store:
        return S3Store(
            self.settings.s3_bucket,
            prefix=self.settings.s3_prefix,
            endpoint_url=self.s3_url,
            region=self.settings.s3_region,
            access_key_id=LOCAL_ACCESS_KEY_ID,
            secret_access_key=LOCAL_SECRET_ACCESS_KEY,
            max_attempts=2,
            connect_timeout=2,
        )

    # ------------------------------------------------------------------ process bookkeeping
    def _commands(self) -> dict[str, list[str]]:
        host = self.settings.host
        return {
            "s3": [str(self.bin_dir / "moto_server"), "-H", host, "-p", str(self.settings.s3_port)],
            "prefect-server": [
                str(self.bin_dir / "prefect"),
                "server",
                "start",
                "--host",
                host,
                "--port",
                str(self.settings.prefect_port),
                "--analytics-off",
            ],
            "worker": [
                str(self.bin_dir / "prefect"),
                "worker",
                "start",
                "--pool",
                self.settings.work_pool,
                "--type",
                "process",
                "--name",
                WORKER_NAME,
            ],
        }

    def _ports(self) -> dict[str, tuple[int, str]]:
        return {
            "s3": (self.settings.s3_port, "DRIFTLINE_S3_PORT"),
            "prefect-server": (self.settings.prefect_port, "DRIFTLINE_PREFECT_PORT"),
        }

    def running_pid(self, part: str) -> int | None:
        """The pid of ``part`` if we started it and it is still that same process."""
        path = self._pid_file(part)
        try:
            record = json.loads(path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None
        pid = int(record.get("pid", 0))
        if pid <= 0 or not _alive(pid):
            return None
        if record.get("start_time") is not None and _start_time(pid) != record["start_time"]:
            return None
        return pid

    def _start(self, part: str) -> subprocess.Popen:
        if part in self._ports():
            port, setting = self._ports()[part]
            if not port_is_free(self.settings.host, port):
                raise StackError(
                    f"port {port} on {self.settings.host} is in use by another process; stop it or set "
                    f"{setting} to a free port"
                )
        log_path = self._log_file(part)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._pid_file(part).parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as log:
            log.write(f"\n--- driftline: starting {part} at {time.strftime('%Y-%m-%dT%H:%M:%S')}\n".encode())
            log.flush()
            process = subprocess.Popen(
                self._commands()[part],
                cwd=self.project_dir,
                env=self.child_env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        record = {"pid": process.pid, "start_time": _start_time(process.pid), "command": process.args}
        self._pid_file(part).write_text(json.dumps(record))
        return process

    def _wait_healthy(self, part: str, process: subprocess.Popen | None, check: Callable[[], bool]) -> None:
        deadline = time.monotonic() + self.settings.startup_timeout
        while time.monotonic() < deadline:
            if check():
                return
            if process is not None and process.poll() is not None:
                raise StackError(
                    f"{part} exited with code {process.returncode} while starting; last lines of "
                    f"{self._log_file(part)}:\n{tail(self._log_file(part))}"
                )
            time.sleep(0.25)
        self._stop(part)
        raise StackError(
            f"{part} did not become healthy within {self.settings.startup_timeout:.0f} s "
            f"(DRIFTLINE_STARTUP_TIMEOUT); last lines of {self._log_file(part)}:\n{tail(self._log_file(part))}"
        )

    def _stop(self, part: str, grace: float = 10.0) -> str:
        pid = self.running_pid(part)
        path = self._pid_file(part)
        if pid is None:
            path.unlink(missing_ok=True)
            return "not running"
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.1)
        outcome = "stopped"
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            outcome = "killed"
        # Children that outlived the leader (flow runs) still carry its process group id.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        _reap(pid)
        path.unlink(missing_ok=True)
        return outcome

    # ------------------------------------------------------------------ health checks
    def s3_healthy(self) -> bool:
        try:
            return httpx.get(f"{self.s3_url}/", timeout=2).status_code < 500
        except httpx.HTTPError:
            return False

    def prefect_healthy(self) -> bool:
        try:
            return httpx.get(f"{self.api_url}/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def online_workers(self) -> list[str]:
        try:
            response = httpx.post(
                f"{self.api_url}/work_pools/{self.settings.work_pool}/workers/filter", json={}, timeout=5
            )
        except httpx.HTTPError:
            return []
        if response.status_code != 200:
            return []
        return [w["name"] for w in response.json() if w.get("status") == "ONLINE"]

    # ------------------------------------------------------------------ public operations
    def up(self) -> dict[str, str]:
        """Start whatever is not running yet, deploy, and return what was done per part.

        Raises:
            StackError: a port is taken, a part does not start, or the deployment fails.
        """
        from driftline.cli.alerts import check_alerts

        started = time.monotonic()
        if not (self.project_dir / "prefect.yaml").is_file():
            raise StackError(
                f"no prefect.yaml in {self.project_dir}; run from the driftline project directory or set "
                "DRIFTLINE_PROJECT_DIR"
            )
        try:
            check_alerts(self.settings, self._alerts_dir)  # before starting anything: a bad setting fails fast
        except InputError as error:
            raise InputError(f"alerts: {error}") from error
        self.state_dir.mkdir(parents=True, exist_ok=True)
        actions: dict[str, str] = {}
        processes: dict[str, subprocess.Popen | None] = {}
        try:
            # The Prefect server takes ~9 s on a fresh database: start both servers, then wait for both.
            for part in ("s3", "prefect-server"):
                if self.running_pid(part) is not None:
                    actions[part] = "already running"
                    processes[part] = None
                else:
                    self.progress(f"starting {part}")
                    processes[part] = self._start(part)
                    actions[part] = "started"
            self._wait_healthy("s3", processes["s3"], self.s3_healthy)
            self.progress(f"S3 (moto) healthy at {self.s3_url}")
            if self.store().create_bucket():
                self.progress(f"created bucket {self.settings.s3_bucket}")
            self._wait_healthy("prefect-server", processes["prefect-server"], self.prefect_healthy)
            self.progress(f"Prefect server healthy at {self.prefect_url}")
            self._prefect_cli(["work-pool", "create", self.settings.work_pool, "--type", "process", "--overwrite"])
            self.progress(f"work pool {self.settings.work_pool} ready")
            self._prefect_cli(["--no-prompt", "deploy", "--all"])
            self.progress("deployments applied from prefect.yaml")
            actions["alerts"] = self._apply_alerts()
            if self.running_pid("worker") is not None:
                actions["worker"] = "already running"
            else:
                self.progress("starting worker")
                worker = self._start("worker")
                actions["worker"] = "started"
                self._wait_healthy("worker", worker, lambda: WORKER_NAME in self.online_workers())
            self.progress(f"worker {WORKER_NAME} online in pool {self.settings.work_pool}")
        except BaseException:
            # A half-started stack is worse than none: stop what this call started, keep the logs.
            for part, action in actions.items():
                if action == "started":
                    self._stop(part)
            raise
        self._write_state()
        actions["seconds"] = f"{time.monotonic() - started:.1f}"
        return actions

    @property
    def _alerts_dir(self) -> Path:
        return self.project_dir / "deployments" / "automations"

    def _apply_alerts(self) -> str:
        """Alert block and automations from deployments/automations/ (none without DRIFTLINE_ALERT_WEBHOOK_URL)."""
        from driftline.cli.alerts import apply_alerts

        try:
            report = apply_alerts(self.api_url, self.settings, self._alerts_dir)
        except InputError as error:
            raise InputError(f"alerts: {error}; fix it and run `driftline up` again") from error
        except InfrastructureError as error:
            raise StackError(f"alerts: applying them to {self.api_url} failed: {error}") from error
        self.progress(report.summary())
        if not report.enabled:
            return "off (DRIFTLINE_ALERT_WEBHOOK_URL unset, no alert automations)"
        return f"on ({len(report.automations)} automations -> {report.kind} webhook)"

    def _prefect_cli(self, args: list[str]) -> None:
        log_path = self._log_file("deploy")
        log_path.parent.mkdir(parents=True, exist_ok=True)
        command = [str(self.bin_dir / "prefect"), *args]
        with log_path.open("ab") as log:
            log.write(f"\n--- driftline: {' '.join(command)}\n".encode())
            log.flush()
            result = subprocess.run(
                command,
                cwd=self.project_dir,
                env=self.child_env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=max(self.settings.startup_timeout, 120),
            )
        if result.returncode != 0:
            raise StackError(
                f"`prefect {' '.join(args)}` failed with exit code {result.returncode}; last lines of "
                f"{log_path}:\n{tail(log_path)}"
            )

    def _write_state(self) -> None:
        state = {
            "s3_endpoint_url": self.s3_url,
            "s3_bucket": self.settings.s3_bucket,
            "s3_prefix": self.settings.s3_prefix,
            "aws_access_key_id": LOCAL_ACCESS_KEY_ID,
            "aws_secret_access_key": LOCAL_SECRET_ACCESS_KEY,
            "prefect_api_url": self.api_url,
            "prefect_ui_url": self.prefect_url,
            "work_pool": self.settings.work_pool,
        }
        self.state_file.write_text(json.dumps(state, indent=2))

    def down(self) -> dict[str, str]:
        """Stop the parts this stack started (worker first); safe when nothing runs."""
        outcome = {part: self._stop(part) for part in reversed(PARTS)}
        self.state_file.unlink(missing_ok=True)
        return outcome

    def status(self) -> StackStatus:
        """Health and URL of each part (no side effects)."""
        s3_pid = self.running_pid("s3")
        s3_ok = self.s3_healthy()
        s3_detail = "" if s3_ok else "not answering"
        if s3_ok:
            try:
                self.store().check()
                s3_detail = f"bucket {self.settings.s3_bucket} present"
            except Exception as error:  # the status reports any fault instead of raising it
                s3_ok, s3_detail = False, str(error)
        server_ok = self.prefect_healthy()
        workers = self.online_workers() if server_ok else []
        worker_pid = self.running_pid("worker")
        worker_ok = WORKER_NAME in workers
        return StackStatus(
            parts=[
                PartStatus("s3", s3_ok, self.s3_url, s3_pid, s3_detail),
                PartStatus(
                    "prefect-server",
                    server_ok,
                    self.prefect_url,
                    self.running_pid("prefect-server"),
                    "api/health ok" if server_ok else "not answering",
                ),
                PartStatus(
                    "worker",
                    worker_ok,
                    None,
                    worker_pid,
                    f"online in pool {self.settings.work_pool}" if worker_ok else "not online",
                ),
            ]
        )


def resolve_settings(settings: Settings | None = None) -> Settings:
    """Settings for CLI commands: unset endpoints fall back to the local stack when it is up.

    Explicit settings always win, so the same commands work against AWS, MinIO or a remote Prefect
    server by setting ``DRIFTLINE_S3_ENDPOINT_URL`` / ``DRIFTLINE_PREFECT_API_URL``.
    """
    settings = settings or Settings()
    state_file = settings.state_dir / "stack.json"
    try:
        state = json.loads(state_file.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return settings
    updates: dict = {}
    if settings.s3_endpoint_url is None and "s3_endpoint_url" not in settings.model_fields_set:
        updates["s3_endpoint_url"] = state["s3_endpoint_url"]
        if settings.aws_access_key_id is None:
            updates["aws_access_key_id"] = SecretStr(state["aws_access_key_id"])
            updates["aws_secret_access_key"] = SecretStr(state["aws_secret_access_key"])
    if settings.prefect_api_url is None and "prefect_api_url" not in settings.model_fields_set:
        updates["prefect_api_url"] = state["prefect_api_url"]
    return settings.model_copy(update=updates) if updates else settings


def port_is_free(host: str, port: int) -> bool:
    """Whether nothing listens on ``host:port`` (we bind to be sure, then release)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def tail(path: Path, lines: int = 20) -> str:
    try:
        content = path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return "(no log)"
    return "\n".join(content[-lines:])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours is dead for our purposes.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return True
    return state != "Z"


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def _start_time(pid: int) -> int | None:
    """Kernel start time of ``pid`` (clock ticks since boot), None where /proc is missing."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, IndexError):
        return None
    return int(fields[19])
