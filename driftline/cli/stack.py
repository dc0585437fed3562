"""The local stack: moto S3 (its data kept), a Prefect server (SQLite or PostgreSQL), a work pool, its workers.

Everything binds to loopback and keeps its state under ``settings.state_dir`` (``.driftline/``):

    .driftline/pids/<part>.json    pid and kernel start time of each process we started
    .driftline/pids/worker-process.json  the Prefect worker the supervisor runs at the moment
    .driftline/logs/<part>.log     its output (the last lines are shown when it fails to start)
    .driftline/prefect/            PREFECT_HOME: the SQLite database and profiles
    .driftline/mlflow/             the MLflow server of `up --mlflow`: mlflow.db and artifacts/ (kept by `down`)
    .driftline/s3/recording.jsonl  every write to the local S3, replayed and compacted on start (survives
                                   `down` and a SIGKILL; see driftline.cli.s3_server)
    .driftline/stack.json          endpoints and credentials the CLI uses while the stack is up

Each process runs in its own session (process group) so that ``down`` can stop it together with its
children: SIGTERM to the group, wait, then SIGKILL. Prefect 3.9's process worker starts each flow run in a
session of its own; ``down`` then stops any the worker left behind by their environment marker (below). A
pid is only signalled when its kernel start time still matches the one recorded, so a recycled pid is
never killed.

Resilience (issue #13):

- The worker part is ``python -m driftline.cli.supervisor worker``, which restarts the Prefect worker with
  capped backoff when it exits non-zero (see that module); ``down`` sends SIGTERM to the supervisor only
  (it forwards exactly one to its group), then SIGKILL to the group.
- ``up`` first stops stale processes of an earlier stack of the same state dir: recorded parts that are
  alive but do not answer their health check, and unrecorded processes marked as parts of this state dir
  (``DRIFTLINE_STACK_PART`` + ``DRIFTLINE_STATE_DIR`` in their environment, which flow runs inherit).
- Once the server answers, ``up`` marks flow runs of the pool that were left PENDING/RUNNING/CANCELLING by a
  stopped worker CRASHED and gives back deployment concurrency slots nobody holds
  (:func:`recover_abandoned_runs`; also :meth:`LocalStack.recover_abandoned_runs` for periodic checks).
- With ``DRIFTLINE_STACK_OWNER_PID`` set (e.g. to the pytest process), ``up`` also starts a detached
  watchdog that runs ``down`` when that process exits: ``up`` itself exits at once, so a parent-death
  signal on the stack's processes could not express "dies with its owner".
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
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from driftline.cli.mlflow_server import LocalMlflowServer
from driftline.cli.postgres import DatabaseChoice, LocalPostgres, choose_database
from driftline.cli.s3_server import LocalS3Server
from driftline.errors import InfrastructureError, InputError, StackError
from driftline.settings import Settings
from driftline.storage.store import S3Store

# The local S3 server accepts any credentials; fixed ones keep boto3 away from the user's AWS profile.
LOCAL_ACCESS_KEY_ID = "driftline-local"
LOCAL_SECRET_ACCESS_KEY = "driftline-local-secret"
WORKER_NAME = "driftline-local-worker"
# Start order; ``down`` stops them in reverse. Extra workers are ``worker-2`` ... ``worker-N``.
PARTS = ("s3", "postgres", "prefect-server", "mlflow", "worker")
SERVER_PARTS = ("s3", "postgres", "prefect-server", "mlflow")
OPTIONAL_PARTS = ("postgres", "mlflow")  # only in stacks that asked for them
WATCHDOG = "watchdog"
# Parts whose leader forwards SIGTERM to its group itself: signalling the group too would deliver two, and
# a second SIGTERM makes Prefect's worker SIGKILL itself.
# The server writes received events to its database in batches, at the latest every flush interval (5 s by
# default); readers of /api/events (the demo's timeline, `driftline events`, reconcile) see an event only
# then. One second keeps the batching and takes ~4 s off every wait on an event.
SERVER_TUNING = {"PREFECT_SERVER_SERVICES_EVENT_PERSISTER_FLUSH_INTERVAL": "1"}
LEADER_FORWARDS_SIGTERM = {"worker", WATCHDOG}
STOP_GRACE = {"worker": 20.0, "postgres": 30.0}
# PostgreSQL's SIGTERM is a "smart" shutdown that waits for every client; SIGINT is its fast, clean one.
STOP_SIGNAL = {"postgres": signal.SIGINT}
OWNER_PID_ENV = "DRIFTLINE_STACK_OWNER_PID"
PART_ENV = "DRIFTLINE_STACK_PART"
ABANDONED_MESSAGE = "driftline up: left running by a stopped worker"
# Flow-run states that hold a deployment concurrency slot (AwaitingConcurrencySlot is SCHEDULED: it holds none).
SLOT_HOLDING_STATES = ("PENDING", "RUNNING", "CANCELLING")
HEARTBEAT_EVENT = "prefect.flow-run.heartbeat"
TELEMETRY_OFF = {
    "DO_NOT_TRACK": "1",
    "WHYLOGS_NO_ANALYTICS": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "MLFLOW_DISABLE_TELEMETRY": "true",
}

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    return None


def worker_part(index: int) -> str:
    """Part name of the ``index``-th worker (1-based): ``worker``, ``worker-2``, ..."""
    return "worker" if index == 1 else f"worker-{index}"


def worker_name(index: int) -> str:
    """Name the ``index``-th worker registers under in the work pool."""
    return WORKER_NAME if index == 1 else f"{WORKER_NAME}-{index}"


def worker_index(part: str) -> int | None:
    """1 for ``worker``, N for ``worker-N``, None for other parts."""
    if part == "worker":
        return 1
    head, _, number = part.partition("-")
    if head == "worker" and number.isdigit() and int(number) >= 2:
        return int(number)
    return None


def worker_record(index: int) -> str:
    """File (under pids/) where the supervisor of worker ``index`` names the worker process it runs."""
    return "worker-process.json" if index == 1 else f"worker-process-{index}.json"


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
    database: dict | None = None
    """The Prefect server's database: kind (sqlite/postgresql), managed by the stack or not, where."""
    storage: dict | None = None
    """The local S3's persistence: server kind, data dir, log size, last restore."""

    @property
    def healthy(self) -> bool:
        parts_ok = all(part.healthy for part in self.parts)
        return parts_ok and (self.deep is None or bool(self.deep.get("ok")))

    def to_dict(self) -> dict:
        result: dict = {"healthy": self.healthy, "parts": {p.name: asdict(p) for p in self.parts}}
        if self.database is not None:
            result["database"] = self.database
        if self.storage is not None:
            result["storage"] = self.storage
        if self.deep is not None:
            result["deep"] = self.deep
        return result


# ---------------------------------------------------------------------------------------------- pure rules
@dataclass(frozen=True)
class RunSnapshot:
    """What the recovery rule needs to know about one flow run."""

    id: str
    name: str
    state_type: str
    last_seen: datetime | None
    """Newest of the state's timestamp and the run's last heartbeat event."""
    has_heartbeat: bool = False


def is_abandoned(run: RunSnapshot, worker_alive: bool, now: datetime, stale_after: timedelta) -> bool:
    """Whether a flow run can no longer be alive and should be marked CRASHED.

    Only PENDING, RUNNING and CANCELLING runs can be abandoned (they hold concurrency slots; SCHEDULED
    ones, AwaitingConcurrencySlot included, wait for a worker and are fine). Without our worker nothing can
    be executing them. With the worker alive, a run is abandoned when it has not been heard of for
    ``stale_after``: by heartbeat when it sends them; a RUNNING run without heartbeats may be a long
    training and is kept, a PENDING or CANCELLING one that long is stuck.

    Args:
        run: the run's state and when it was last heard of.
        worker_alive: the stack's worker is running and online.
        now: the current time (timezone-aware).
        stale_after: silence after which a run counts as gone while the worker is alive.

    Returns:
        True when the run should be set CRASHED.
    """
    if run.state_type not in SLOT_HOLDING_STATES:
        return False
    if not worker_alive:
        return True
    if run.last_seen is None:
        return False
    silent = now - run.last_seen > stale_after
    if run.state_type == "RUNNING" and not run.has_heartbeat:
        return False
    return silent


def is_stale_part(alive: bool, healthy: bool, age_seconds: float | None, startup_grace: float) -> bool:
    """A recorded part is stale when it is alive, not answering, and past the time it may take to start."""
    if not alive or healthy:
        return False
    return age_seconds is None or age_seconds >= startup_grace


def unrecorded_stack_processes(
    processes: Iterable[tuple[int, int, Mapping[str, str]]],
    parent_of: Mapping[int, int],
    state_dir: Path,
    recorded: set[int],
    own_pids: set[int],
) -> list[int]:
    """Pids marked as parts of the stack in ``state_dir`` that no live recorded part accounts for.

    A process is accounted for when it or an ancestor is a live recorded part, or it is in such a part's
    process group. Prefect 3.9's process worker starts each flow run in a session of its own, so a live
    worker's flow runs are recognised by ancestry, not by group; once their worker is gone they are orphans.

    Args:
        processes: ``(pid, process group id, environment)`` of candidate processes.
        parent_of: parent pid of every process (``/proc/<pid>/stat``).
        state_dir: the stack's resolved state directory.
        recorded: pids of the parts whose pid files are live (each also leads its process group).
        own_pids: this process and its ancestors, never touched.

    Returns:
        The pids to stop, in ascending order.
    """
    stale = []
    for pid, pgid, environ in processes:
        if pid in own_pids or pgid in recorded or PART_ENV not in environ:
            continue
        if environ.get("DRIFTLINE_STATE_DIR") != str(state_dir):
            continue
        ancestor, seen = pid, set()
        while ancestor > 1 and ancestor not in recorded and ancestor not in seen:
            seen.add(ancestor)
            ancestor = parent_of.get(ancestor, 0)
        if ancestor not in recorded:
            stale.append(pid)
    return sorted(stale)


# ---------------------------------------------------------------------------------------------- run recovery
@dataclass
class RecoveryReport:
    """What :func:`recover_abandoned_runs` did."""

    crashed: list[str] = field(default_factory=list)
    slots_released: dict[str, int] = field(default_factory=dict)
    """Concurrency limit name -> slots given back because no active run held them."""

    def summary(self) -> str:
        text = f"{len(self.crashed)} abandoned flow run(s) marked CRASHED"
        if self.slots_released:
            text += "; released " + ", ".join(f"{n} slot(s) of {name}" for name, n in self.slots_released.items())
        return text


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _api(method: str, url: str, body: object = None) -> object:
    from driftline.events.prefect_http import request

    response = request(method, url, json=body)
    if response.status_code >= 400:
        raise StackError(f"Prefect API {method} {url} answered {response.status_code}: {response.text[:500]}")
    return response.json() if response.content else None


def recover_abandoned_runs(
    api_url: str,
    work_pool: str,
    *,
    worker_alive: bool,
    stale_after: timedelta = timedelta(minutes=10),
    now: datetime | None = None,
) -> RecoveryReport:
    """Mark flow runs of ``work_pool``'s deployments that nothing runs any more CRASHED; free their slots.

    Which runs: :func:`is_abandoned`. Each is forced to CRASHED (``POST /flow_runs/{id}/set_state``,
    ``force``), whose orchestration (``ReleaseFlowConcurrencySlots``, also in the forced policy) releases its
    deployment concurrency slot, falling back to the limit itself when the server lost the lease (leases
    live in memory and do not survive a restart). Then every deployment limit (``deployment:<id>``) whose
    ``active_slots`` exceeds the runs still holding one is set back to that count.

    Raises:
        StackError: the API refused a call; InfrastructureError when it cannot be reached.
    """
    now = now or datetime.now(UTC)
    base = api_url.rstrip("/")
    query = {
        "work_pools": {"name": {"any_": [work_pool]}},
        "flow_runs": {"state": {"type": {"any_": list(SLOT_HOLDING_STATES)}}, "deployment_id": {"is_null_": False}},
        "limit": 200,
    }
    runs = _api("POST", f"{base}/flow_runs/filter", query) or []
    heartbeats: dict[str, datetime] = {}
    if worker_alive and runs:
        heartbeats = _last_heartbeats(base, [run["id"] for run in runs], now)
    report = RecoveryReport()
    for run in runs:
        state = run.get("state") or {}
        seen = [t for t in (_parse_time(state.get("timestamp")), heartbeats.get(run["id"])) if t is not None]
        snapshot = RunSnapshot(
            id=run["id"],
            name=run.get("name", ""),
            state_type=state.get("type", run.get("state_type") or ""),
            last_seen=max(seen) if seen else None,
            has_heartbeat=run["id"] in heartbeats,
        )
        if not is_abandoned(snapshot, worker_alive, now, stale_after):
            continue
        body = {"state": {"type": "CRASHED", "name": "Crashed", "message": ABANDONED_MESSAGE}, "force": True}
        result = _api("POST", f"{base}/flow_runs/{run['id']}/set_state", body) or {}
        if result.get("status") == "ACCEPT":
            report.crashed.append(snapshot.name or snapshot.id)
    deployments = _api("POST", f"{base}/deployments/filter", {"work_pools": {"name": {"any_": [work_pool]}}}) or []
    for deployment in deployments:
        limit_id = deployment.get("concurrency_limit_id") or (deployment.get("global_concurrency_limit") or {}).get(
            "id"
        )
        if not limit_id:
            continue
        limit = _api("GET", f"{base}/v2/concurrency_limits/{limit_id}") or {}
        holding = _api(
            "POST",
            f"{base}/flow_runs/count",
            {
                "deployments": {"id": {"any_": [deployment["id"]]}},
                "flow_runs": {"state": {"type": {"any_": list(SLOT_HOLDING_STATES)}}},
            },
        )
        active = int(limit.get("active_slots") or 0)
        if active > int(holding or 0):
            _api("PATCH", f"{base}/v2/concurrency_limits/{limit_id}", {"active_slots": int(holding or 0)})
            report.slots_released[limit.get("name", str(limit_id))] = active - int(holding or 0)
    return report


def _last_heartbeats(base: str, run_ids: list[str], now: datetime) -> dict[str, datetime]:
    """Newest heartbeat event per flow run of the last day (runs that send none are absent)."""
    from driftline.cli import prefect_api

    events = prefect_api.find_events(
        base,
        [HEARTBEAT_EVENT],
        [f"prefect.flow-run.{run_id}" for run_id in run_ids],
        since=now - timedelta(days=1),
        limit=50,
        newest_first=True,
    )
    newest: dict[str, datetime] = {}
    for event in events:
        run_id = event["resource"]["prefect.resource.id"].removeprefix("prefect.flow-run.")
        occurred = _parse_time(event.get("occurred"))
        if occurred is not None and (run_id not in newest or occurred > newest[run_id]):
            newest[run_id] = occurred
    return newest


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
        # Every flow run is a fresh process: with no cached bytecode for driftline/, flows/ and tasks/ each
        # would compile them again (site-packages is compiled at install).
        env.pop("PYTHONDONTWRITEBYTECODE", None)
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
        if self.mlflow_enabled():
            env["DRIFTLINE_MLFLOW_TRACKING_URI"] = self.mlflow.url
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

    # ------------------------------------------------------------------ database
    @property
    def database(self) -> DatabaseChoice:
        """SQLite, a PostgreSQL this stack runs, or an external one (see driftline.cli.postgres)."""
        return choose_database(self.settings)

    @property
    def postgres(self) -> LocalPostgres:
        return LocalPostgres(self.state_dir, self.settings.host, self.settings.postgres_port)

    @property
    def mlflow(self) -> LocalMlflowServer:
        venv = self.settings.mlflow_venv
        return LocalMlflowServer(
            self.state_dir / "mlflow",
            self.settings.host,
            self.settings.mlflow_port,
            venv if venv.is_absolute() else self.project_dir / venv,
        )

    def mlflow_enabled(self) -> bool:
        """The stack runs an MLflow server: asked for (`up --mlflow`) or started by an earlier `up --mlflow`."""
        return self.settings.mlflow or self.running_pid("mlflow") is not None

    @property
    def s3_server(self) -> LocalS3Server:
        return LocalS3Server(self.state_dir / "s3", self.settings.host, self.settings.s3_port, self.bin_dir)

    def describe_database(self) -> dict:
        return self.database.describe(self.state_dir, self.postgres.address)

    def _database_url(self) -> str | None:
        choice = self.database
        if choice.kind == "sqlite":
            return None
        return choice.url if choice.url else self.postgres.url

    # ------------------------------------------------------------------ process bookkeeping
    def _worker_command(self, index: int) -> list[str]:
        return [
            sys.executable,
            "-m",
            "driftline.cli.supervisor",
            "worker",
            "--state-dir",
            str(self.state_dir),
            "--record",
            worker_record(index),
            "--",
            str(self.bin_dir / "prefect"),
            "worker",
            "start",
            "--pool",
            self.settings.work_pool,
            "--type",
            "process",
            "--name",
            worker_name(index),
        ]

    def _commands(self) -> dict[str, list[str]]:
        host = self.settings.host
        return {
            "s3": self.s3_server.command(),
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
            "worker": self._worker_command(1),
        }

    def _command(self, part: str) -> list[str]:
        index = worker_index(part)
        if index is not None:
            return self._worker_command(index)
        if part == "postgres":
            return self.postgres.command()
        if part == "mlflow":
            return self.mlflow.command()
        return self._commands()[part]

    def worker_parts(self) -> list[str]:
        """Worker parts that have a pid file (running or not), in order: worker, worker-2, ..."""
        folder = self.state_dir / "pids"
        found = {
            index
            for path in (folder.glob("worker*.json") if folder.is_dir() else ())
            if (index := worker_index(path.stem)) is not None
        }
        return [worker_part(i) for i in sorted(found | {1})]

    def _all_parts(self) -> list[str]:
        workers = self.worker_parts()
        return [*SERVER_PARTS, *workers]

    def _watchdog_command(self, owner_pid: int) -> list[str]:
        return [
            sys.executable,
            "-m",
            "driftline.cli.supervisor",
            "watch-owner",
            "--state-dir",
            str(self.state_dir),
            "--owner-pid",
            str(owner_pid),
        ]

    def _ports(self) -> dict[str, tuple[int, str]]:
        return {
            "s3": (self.settings.s3_port, "DRIFTLINE_S3_PORT"),
            "postgres": (self.settings.postgres_port, "DRIFTLINE_POSTGRES_PORT"),
            "prefect-server": (self.settings.prefect_port, "DRIFTLINE_PREFECT_PORT"),
            "mlflow": (self.settings.mlflow_port, "DRIFTLINE_MLFLOW_PORT"),
        }

    def _record(self, part: str) -> dict:
        try:
            return json.loads(self._pid_file(part).read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    def running_pid(self, part: str) -> int | None:
        """The pid of ``part`` if we started it and it is still that same process."""
        record = self._record(part)
        if not record:
            return None
        pid = int(record.get("pid", 0))
        if pid <= 0 or not _alive(pid):
            return None
        if record.get("start_time") is not None and _start_time(pid) != record["start_time"]:
            return None
        return pid

    def worker_process_pid(self, index: int = 1) -> int | None:
        """The Prefect worker the supervisor runs right now (it changes when the worker is restarted)."""
        try:
            record = json.loads((self.state_dir / "pids" / worker_record(index)).read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None
        pid = int(record.get("pid", 0))
        if pid <= 0 or not _alive(pid) or _start_time(pid) != record.get("start_time"):
            return None
        return pid

    def _start(
        self, part: str, command: list[str] | None = None, *, user: str | None = None, env: dict[str, str] | None = None
    ) -> subprocess.Popen:
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
                command or self._command(part),
                cwd=self.project_dir,
                env={**self.child_env(), **(env or {}), PART_ENV: part},
                user=user,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        record = {"pid": process.pid, "start_time": _start_time(process.pid), "command": process.args}
        if part == "prefect-server":
            record["database"] = self.database.kind
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

    def _stop(self, part: str, grace: float | None = None) -> str:
        pid = self.running_pid(part)
        path = self._pid_file(part)
        if pid is None:
            path.unlink(missing_ok=True)
            return "not running"
        if pid == os.getpid():  # the watchdog stopping the stack it watches
            path.unlink(missing_ok=True)
            return "stopping"
        grace = STOP_GRACE.get("worker" if worker_index(part) else part, 10.0) if grace is None else grace
        with contextlib.suppress(ProcessLookupError):
            if worker_index(part) is not None or part in LEADER_FORWARDS_SIGTERM:
                os.kill(pid, signal.SIGTERM)
            else:
                os.killpg(pid, STOP_SIGNAL.get(part, signal.SIGTERM))
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

    def postgres_healthy(self) -> bool:
        return self.postgres.healthy()

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
        owner = self._owner_pid()  # a bad DRIFTLINE_STACK_OWNER_PID fails before anything starts
        self._check_mlflow()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        actions: dict[str, str] = {}
        processes: dict[str, subprocess.Popen | None] = {}
        stale = self.stop_stale_processes()
        if stale:
            actions["stale"] = f"{len(stale)} stopped"
        database = self.database
        managed_postgres = database.kind == "postgresql" and database.managed
        try:
            self._check_server_database(database)
            if managed_postgres and self.postgres.initialize():
                self.progress(f"created a PostgreSQL cluster in {self.postgres.data_dir}")
            # The Prefect server takes ~9 s on a fresh database: start the servers, then wait for them.
            for part in SERVER_PARTS:
                if part == "postgres" and not managed_postgres or part == "mlflow" and not self.mlflow_enabled():
                    continue
                if self.running_pid(part) is not None:
                    actions[part] = "already running"
                    processes[part] = None
                    continue
                if part == "prefect-server" and managed_postgres:
                    # The server migrates its schema on start: the database must exist by then.
                    self._wait_healthy("postgres", processes["postgres"], self.postgres_healthy)
                    if self.postgres.ensure_database():
                        self.progress("created the prefect database")
                self.progress(f"starting {part}")
                envs = {"s3": self.s3_server.env, "prefect-server": self._server_env, "mlflow": self.mlflow.env}
                part_env = envs.get(part)
                processes[part] = self._start(
                    part,
                    user=self.postgres.run_as if part == "postgres" else None,
                    env=part_env() if part_env else None,
                )
                actions[part] = "started"
            # The S3 server restores its recording before it listens: healthy means restored.
            self._wait_healthy("s3", processes["s3"], self.s3_healthy)
            self.progress(f"S3 (moto) healthy at {self.s3_url}")
            if processes["s3"] is not None:
                self.s3_server.after_start(self.s3_url, self.progress)  # "restored N objects from ... in X s"
            if self.store().create_bucket():
                self.progress(f"created bucket {self.settings.s3_bucket}")
            if managed_postgres:
                self._wait_healthy("postgres", processes["postgres"], self.postgres_healthy)
                self.progress(f"PostgreSQL healthy at {self.settings.host}:{self.settings.postgres_port}")
            self._wait_healthy("prefect-server", processes["prefect-server"], self.prefect_healthy)
            self.progress(f"Prefect server healthy at {self.prefect_url} ({database.kind})")
            if "mlflow" in processes:
                self._wait_healthy("mlflow", processes["mlflow"], self.mlflow.healthy)
                self.progress(f"MLflow healthy at {self.mlflow.url} (data in {self.mlflow.data_dir})")
                if processes["mlflow"] is not None:
                    self._restart_workers_for_mlflow(actions)
            # Before the worker starts: runs left by a stopped worker would hold concurrency slots forever.
            recovery = self.recover_abandoned_runs()
            self.progress(recovery.summary())
            if recovery.crashed or recovery.slots_released:
                actions["runs"] = f"{len(recovery.crashed)} recovered"
            self._prefect_cli(["work-pool", "create", self.settings.work_pool, "--type", "process", "--overwrite"])
            self._launch_engine_directly()
            self.progress(f"work pool {self.settings.work_pool} ready")
            self._prefect_cli(["--no-prompt", "deploy", "--all"])
            self.progress("deployments applied from prefect.yaml")
            actions["alerts"] = self._apply_alerts()
            self._start_workers(actions)
            if owner is not None:
                actions[WATCHDOG] = self._ensure_watchdog(owner)
        except BaseException:
            # A half-started stack is worse than none: stop what this call started, keep the logs.
            for part, action in actions.items():
                if action == "started":
                    self._stop(part)
            raise
        self._write_state()
        actions["seconds"] = f"{time.monotonic() - started:.1f}"
        return actions

    def _check_mlflow(self) -> None:
        """`up --mlflow` needs the server's virtualenv and must not fight an explicitly set tracking URI."""
        if not self.settings.mlflow:
            return
        if self.settings.mlflow_tracking_uri and self.settings.mlflow_tracking_uri != self.mlflow.url:
            raise InputError(
                "DRIFTLINE_MLFLOW_TRACKING_URI is set while `driftline up --mlflow` starts a local MLflow server at "
                f"{self.mlflow.url}: unset the setting to use the local one, or drop --mlflow to use yours"
            )
        self.mlflow.check_installed()

    def _restart_workers_for_mlflow(self, actions: dict[str, str]) -> None:
        """Workers started before the MLflow server lack its URI in their environment: start them again."""
        for part in self.worker_parts():
            if self.running_pid(part) is not None:
                actions[part] = f"{self._stop(part)} (restarted for MLflow)"

    def _check_server_database(self, database: DatabaseChoice) -> None:
        """A running Prefect server must be on the database the settings ask for (no silent switch)."""
        pid = self.running_pid("prefect-server")
        if pid is None:
            return
        running_on = self._record("prefect-server").get("database", "sqlite")
        if running_on != database.kind:
            raise StackError(
                f"the Prefect server (pid {pid}) runs on {running_on}, but the settings ask for {database.kind} "
                f"({database.reason}); run `driftline down` first, then `driftline up`"
            )

    def _server_env(self) -> dict[str, str]:
        url = self._database_url()
        if url is None:
            return dict(SERVER_TUNING)
        return {**SERVER_TUNING, "PREFECT_SERVER_DATABASE_CONNECTION_URL": url}

    def _start_workers(self, actions: dict[str, str]) -> None:
        """Run ``settings.workers`` supervised workers; stop extra ones an earlier ``up --workers`` started."""
        wanted = self.settings.workers
        for part in self.worker_parts():
            index = worker_index(part) or 1
            if index > wanted and self.running_pid(part) is not None:
                actions[part] = f"{self._stop(part)} (DRIFTLINE_WORKERS={wanted})"
        started: dict[int, subprocess.Popen | None] = {}
        for index in range(1, wanted + 1):
            part, name = worker_part(index), worker_name(index)
            supervisor = self.running_pid(part)
            if supervisor is not None:
                actions[part] = "already running"
                started[index] = None
                if name not in self.online_workers():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(supervisor, signal.SIGUSR1)  # the server is back: skip the restart backoff
            else:
                self.progress(f"starting {part}")
                started[index] = self._start(part)
                actions[part] = "started"
        for index, process in started.items():
            name = worker_name(index)
            self._wait_healthy(worker_part(index), process, lambda name=name: name in self.online_workers())
            self.progress(f"worker {name} online in pool {self.settings.work_pool} (supervised)")

    # ------------------------------------------------------------------ resilience
    def recover_abandoned_runs(self, stale_after: timedelta = timedelta(minutes=10)) -> RecoveryReport:
        """Crash the pool's runs that nothing runs any more and free their slots (safe to call any time).

        The worker counts as alive when its supervisor runs and a worker process exists or is online (a
        worker that outlived a server restart may still have flow runs in hand); then only runs silent
        for ``stale_after`` are touched (see :func:`is_abandoned`).
        """
        online = None
        worker_alive = False
        for part in self.worker_parts():
            index = worker_index(part) or 1
            if self.running_pid(part) is None:
                continue
            if self.worker_process_pid(index) is not None:
                worker_alive = True
                break
            online = self.online_workers() if online is None else online
            if worker_name(index) in online:
                worker_alive = True
                break
        return recover_abandoned_runs(
            self.api_url, self.settings.work_pool, worker_alive=worker_alive, stale_after=stale_after
        )

    def stop_stale_processes(self) -> list[str]:
        """Stop what an earlier stack in this state dir left behind; returns one line per process stopped.

        Stale are recorded parts that are alive but do not answer (past the startup timeout), a worker
        not run by the supervisor (an older stack), and unrecorded processes marked as parts of this state
        dir in their environment (e.g. flow runs or servers whose pid file was lost).
        """
        done: list[str] = []
        checks = {
            "s3": self.s3_healthy,
            "postgres": self.postgres_healthy,
            "prefect-server": self.prefect_healthy,
            "mlflow": self.mlflow.healthy,
        }
        for part in self._all_parts():
            pid = self.running_pid(part)
            if pid is None:
                continue
            if worker_index(part) is not None:
                stale = "driftline.cli.supervisor" not in " ".join(self._record(part).get("command") or [])
                why = "not supervised (started by an older driftline)"
            else:
                stale = is_stale_part(True, checks[part](), _age(pid), self.settings.startup_timeout)
                why = "alive but not answering"
            if stale:
                outcome = self._stop(part)
                done.append(f"stale {part} pid {pid} ({why}) {outcome}")
        done.extend(self._stop_unrecorded())
        for line in done:
            self.progress(line)
        return done

    def _stop_unrecorded(self) -> list[str]:
        """Stop processes marked as parts of this state dir that no live part accounts for (orphans)."""
        recorded = {pid for part in (*self._all_parts(), WATCHDOG) if (pid := self.running_pid(part)) is not None}
        candidates = _processes()
        parents = _parents() if candidates else {}
        return [
            f"stale process {pid} ({_cmdline(pid)[:80]}) {_terminate(pid)}"
            for pid in unrecorded_stack_processes(candidates, parents, self.state_dir, recorded, _ancestors())
        ]

    def _owner_pid(self) -> int | None:
        value = os.environ.get(OWNER_PID_ENV, "").strip()
        if not value:
            return None
        try:
            pid = int(value)
        except ValueError as error:
            raise InputError(f"{OWNER_PID_ENV} must be a process id, got {value!r}") from error
        if pid <= 1 or not _alive(pid):
            raise InputError(f"{OWNER_PID_ENV}={pid} is not a running process")
        return pid

    def _ensure_watchdog(self, owner: int) -> str:
        command = self._watchdog_command(owner)
        if self.running_pid(WATCHDOG) is not None:
            if self._record(WATCHDOG).get("command") == command:
                return f"already watching owner {owner}"
            self._stop(WATCHDOG)
        self._start(WATCHDOG, command)
        self.progress(f"watchdog started: the stack stops when process {owner} exits")
        return f"started (owner pid {owner})"

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

    def _launch_engine_directly(self) -> None:
        """Give the process pool an explicit engine command (the default of its ``command`` variable).

        Without one, Prefect's process worker starts a workspace supervisor per flow run, a Python process
        that imports Prefect, runs the pull steps and then execs ``python -m prefect.engine``, which imports
        Prefect again: ~2.5 s of CPU more per run on 2 cores. With a command the engine is started directly
        and runs the deployment's pull steps itself (set_working_directory, all this project has).
        """
        url = f"{self.api_url}/work_pools/{self.settings.work_pool}"
        pool = _api("GET", url)
        if not isinstance(pool, dict):
            raise StackError(f"Prefect API GET {url} answered no work pool")
        template = pool.get("base_job_template") or {}
        command = (template.get("variables") or {}).get("properties", {}).get("command")
        if command is None:
            raise StackError(f"work pool {self.settings.work_pool}'s base job template has no `command` variable")
        command["default"] = f"{self.bin_dir / 'python'} -m prefect.engine"
        _api("PATCH", url, {"base_job_template": template})

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
            "workers": [worker_name(i) for i in range(1, self.settings.workers + 1)],
            "database": self.describe_database(),
            "mlflow_tracking_uri": self.mlflow.url if self.mlflow_enabled() else None,
        }
        self.state_file.write_text(json.dumps(state, indent=2))

    def down(self) -> dict[str, str]:
        """Stop the parts this stack started (watchdog, then worker first); safe when nothing runs."""
        outcome = {}
        if self._pid_file(WATCHDOG).exists():
            outcome[WATCHDOG] = self._stop(WATCHDOG)
        workers = self.worker_parts()
        outcome.update({part: self._stop(part) for part in reversed(workers)})
        for part in reversed(SERVER_PARTS):
            if part in OPTIONAL_PARTS and not self._pid_file(part).exists():
                continue  # not part of this stack (SQLite, no --mlflow): nothing to report
            outcome[part] = self._stop(part)
        # Flow runs run in sessions of their own (Prefect 3.9): any the worker left behind go too.
        orphans = self._stop_unrecorded()
        if orphans:
            outcome["orphans"] = f"{len(orphans)} stopped"
        for part in workers:
            (self.state_dir / "pids" / worker_record(worker_index(part) or 1)).unlink(missing_ok=True)
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
                log_mb = self.s3_server.describe()["log_bytes"] / 1e6
                s3_detail = (
                    f"bucket {self.settings.s3_bucket} present; data {self.s3_server.data_dir} ({log_mb:.1f} MB)"
                )
            except Exception as error:  # the status reports any fault instead of raising it
                s3_ok, s3_detail = False, str(error)
        server_ok = self.prefect_healthy()
        online = self.online_workers() if server_ok else []
        try:
            database = self.describe_database()
        except InputError as error:
            database = {"kind": "invalid", "managed": False, "url": "", "reason": str(error)}
        parts = [PartStatus("s3", s3_ok, self.s3_url, s3_pid, s3_detail)]
        if database.get("managed") or self.running_pid("postgres") is not None:
            postgres_ok = self.postgres_healthy()
            parts.append(
                PartStatus(
                    "postgres",
                    postgres_ok,
                    database.get("url") or None,
                    self.running_pid("postgres"),
                    f"accepting connections, data in {self.postgres.data_dir}" if postgres_ok else "not answering",
                )
            )
        running_on = self._record("prefect-server").get("database") or database["kind"]
        parts.append(
            PartStatus(
                "prefect-server",
                server_ok,
                self.prefect_url,
                self.running_pid("prefect-server"),
                f"api/health ok, database {running_on}" if server_ok else "not answering",
            )
        )
        if self.mlflow_enabled() or self._pid_file("mlflow").exists():
            mlflow_ok = self.mlflow.healthy()
            detail = f"health ok, data in {self.mlflow.data_dir}" if mlflow_ok else "not answering"
            parts.append(PartStatus("mlflow", mlflow_ok, self.mlflow.url, self.running_pid("mlflow"), detail))
        configured = [worker_part(i) for i in range(1, self.settings.workers + 1)]
        running = [part for part in self.worker_parts() if self.running_pid(part) is not None]
        for part in dict.fromkeys([*configured, *running]):
            index = worker_index(part) or 1
            name = worker_name(index)
            worker_ok = name in online
            worker_process = self.worker_process_pid(index)
            parts.append(
                PartStatus(
                    part,
                    worker_ok,
                    None,
                    self.running_pid(part),
                    (f"{name} online in pool {self.settings.work_pool}" if worker_ok else f"{name} not online")
                    + (f"; supervised, worker pid {worker_process}" if worker_process else ""),
                )
            )
        return StackStatus(parts=parts, database=database, storage=self.s3_server.describe())


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


def _age(pid: int) -> float | None:
    """Seconds since ``pid`` started, None where /proc is missing."""
    started = _start_time(pid)
    try:
        uptime = float(Path("/proc/uptime").read_text().split()[0])
    except (FileNotFoundError, IndexError, ValueError):
        return None
    if started is None:
        return None
    return uptime - started / os.sysconf("SC_CLK_TCK")


def _processes() -> list[tuple[int, int, dict[str, str]]]:
    """``(pid, process group, environment)`` of every process we may read (our own user's)."""
    found = []
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else ():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        try:
            raw = (entry / "environ").read_bytes()
            pgid = os.getpgid(pid)
        except (OSError, ProcessLookupError):
            continue
        if b"DRIFTLINE_STACK_PART=" not in raw:
            continue
        pairs = (item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item)
        found.append((pid, pgid, {k.decode(errors="replace"): v.decode(errors="replace") for k, v in pairs}))
    return found


def _parent(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def _parents() -> dict[int, int]:
    """Parent pid of every process."""
    return {int(entry.name): _parent(int(entry.name)) for entry in Path("/proc").iterdir() if entry.name.isdigit()}


def _ancestors() -> set[int]:
    pids, pid = set(), os.getpid()
    while pid > 1 and pid not in pids:
        pids.add(pid)
        pid = _parent(pid)
    return pids


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"


def _terminate(pid: int, grace: float = 10.0) -> str:
    """SIGTERM one process, wait, SIGKILL it; the outcome as `down` reports it."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return "gone"
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.1)
    if not _alive(pid):
        return "stopped"
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    return "killed"


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
