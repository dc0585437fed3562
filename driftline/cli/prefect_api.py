"""Thin use of the Prefect API from the shell: run a deployment and wait, read events and flow runs.

Built on ``driftline.events.prefect_http`` (the retried request; sending events is its ``PrefectEventSink``).
Prefect is imported inside the functions: ``driftline --help`` and the ad-hoc commands stay fast and
work without a server.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import httpx

from driftline.errors import InfrastructureError
from driftline.events.prefect_http import filter_events, request, require_api_url
from driftline.reports.run_timing import RunTiming

T = TypeVar("T")


def poll(check: Callable[[], T | None], timeout: float, every: float) -> T | None:
    """Call ``check`` until it returns something other than None (returned), at least once; None once
    ``timeout`` seconds have passed. The one wait loop of the shell's waits."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found is not None:
            return found
        if time.monotonic() > deadline:
            return None
        time.sleep(every)


@dataclass(frozen=True)
class FlowRunOutcome:
    """Where a flow run ended up."""

    id: str
    name: str
    state: str
    url: str
    seconds: float

    @property
    def ok(self) -> bool:
        return self.state == "COMPLETED"


def check_server(api_url: str | None) -> str:
    """Return the API URL if the server answers its health check, else raise ``InfrastructureError``."""
    url = require_api_url(api_url)
    try:
        response = httpx.get(f"{url}/health", timeout=5)
    except httpx.HTTPError as error:
        raise InfrastructureError(f"Prefect API {url} is unreachable ({error}); is `driftline up` running?") from error
    if response.status_code != 200:
        raise InfrastructureError(f"Prefect API {url}/health answered {response.status_code}")
    return url


def run_deployment_and_wait(
    api_url: str | None, name: str, parameters: dict[str, Any], timeout: float = 300.0
) -> FlowRunOutcome:
    """Create a run of deployment ``flow/deployment`` and wait until it is final or ``timeout`` passes."""
    url = check_server(api_url)
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    started = time.monotonic()
    with temporary_settings(updates={PREFECT_API_URL: url}):
        flow_run = run_deployment(name=name, parameters=parameters, timeout=timeout, poll_interval=1, as_subflow=False)
    state = flow_run.state.type.value if flow_run.state else "UNKNOWN"
    ui = url.removesuffix("/api")
    return FlowRunOutcome(
        id=str(flow_run.id),
        name=flow_run.name,
        state=state,
        url=f"{ui}/runs/flow-run/{flow_run.id}",
        seconds=time.monotonic() - started,
    )


def find_events(
    api_url: str | None,
    names: list[str],
    resource_ids: list[str] | None = None,
    since: datetime | None = None,
    limit: int = 50,
    newest_first: bool = False,
) -> list[dict[str, Any]]:
    """Events the server stored, filtered by name and resource id, oldest first (the API caps a page at 50)."""
    url = require_api_url(api_url)
    since = since or datetime.now(UTC) - timedelta(days=1)
    body: dict[str, Any] = {
        "filter": {
            "occurred": {"since": since.isoformat(), "until": (datetime.now(UTC) + timedelta(minutes=5)).isoformat()},
            "event": {"name": names},
            "order": "DESC" if newest_first else "ASC",
        },
        "limit": limit,
    }
    if resource_ids:
        body["filter"]["resource"] = {"id": resource_ids}
    return filter_events(url, body)


def wait_for_event(
    api_url: str | None, name: str, resource_id: str, timeout: float = 30.0, since: datetime | None = None
) -> dict[str, Any] | None:
    """Poll until an event with ``name`` on ``resource_id`` is stored; None after ``timeout``."""

    def newest() -> dict[str, Any] | None:
        events = find_events(api_url, [name], [resource_id], since=since)
        return events[-1] if events else None

    return poll(newest, timeout, every=0.5)


def wait_for_payload(
    api_url: str | None,
    names: list[str],
    resource_id: str,
    key: str,
    value: str,
    timeout: float,
    since: datetime,
) -> dict[str, Any] | None:
    """Poll until one of ``names`` on ``resource_id`` has ``payload[key] == value``; None after ``timeout``."""

    def matching() -> dict[str, Any] | None:
        events = find_events(api_url, names, [resource_id], since=since - timedelta(seconds=5), newest_first=True)
        return next((event for event in events if str(event.get("payload", {}).get(key)) == value), None)

    return poll(matching, timeout, every=1.0)


def events_of_flow_run(api_url: str | None, flow_run_id: str, names: list[str]) -> list[dict[str, Any]]:
    """Events with ``names`` emitted from inside a flow run (Prefect relates them to the run), oldest first."""
    url = require_api_url(api_url)
    body = {
        "filter": {
            "occurred": {
                "since": (datetime.now(UTC) - timedelta(days=1)).isoformat(),
                "until": (datetime.now(UTC) + timedelta(minutes=5)).isoformat(),
            },
            "event": {"name": names},
            "related": {"id": [f"prefect.flow-run.{flow_run_id}"]},
            "order": "ASC",
        },
        "limit": 50,
    }
    return filter_events(url, body)


def wait_for_flow_run_event(
    api_url: str | None, flow_run_id: str, names: list[str], timeout: float
) -> dict[str, Any] | None:
    """Poll until the flow run has emitted one of ``names`` (the latest is returned); None after ``timeout``."""

    def latest() -> dict[str, Any] | None:
        events = events_of_flow_run(api_url, flow_run_id, names)
        return events[-1] if events else None

    return poll(latest, timeout, every=1.0)


def flow_runs_since(api_url: str | None, since: datetime, page: int = 200) -> list[dict[str, Any]]:
    """Flow runs started at or after ``since``, oldest first: name, flow, state, seconds, model and batch_id
    parameters, UI URL."""
    url = require_api_url(api_url)
    runs: list[dict[str, Any]] = []
    while True:
        body = {
            "flow_runs": {"start_time": {"after_": since.isoformat()}},
            "sort": "START_TIME_ASC",
            "limit": page,
            "offset": len(runs),
        }
        batch = _post_json(f"{url}/flow_runs/filter", body)
        runs.extend(batch)
        if len(batch) < page:
            break
    names = _flow_names(url)
    ui = url.removesuffix("/api")
    return [
        {
            "name": run["name"],
            "flow": names.get(run["flow_id"], run["flow_id"]),
            "state": run.get("state_type"),
            "seconds": run.get("total_run_time"),
            "model": (run.get("parameters") or {}).get("model"),
            "batch_id": (run.get("parameters") or {}).get("batch_id"),
            "url": f"{ui}/runs/flow-run/{run['id']}",
        }
        for run in runs
    ]


def _post_json(url: str, body: dict[str, Any]) -> Any:
    response = request("POST", url, json=body)
    if response.status_code != 200:
        raise InfrastructureError(f"Prefect API {url} answered {response.status_code}: {response.text[:300]}")
    return response.json()


def _flow_names(url: str) -> dict[str, str]:
    return {flow["id"]: flow["name"] for flow in _post_json(f"{url}/flows/filter", {"limit": 200})}


def _timestamp(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def flow_run_timings(api_url: str | None, model: str, since: datetime) -> list[RunTiming]:
    """The finished flow runs of ``model`` started at or after ``since``, with the moments each entered
    Pending and Running (its state history) and its task runs' total run time; ``triggered_at`` is left to
    ``run_timing.with_triggers``."""
    url = require_api_url(api_url)
    runs: list[dict[str, Any]] = []
    while True:
        body = {
            "flow_runs": {"start_time": {"after_": since.isoformat()}, "state": {"type": {"any_": list(FINAL)}}},
            "sort": "START_TIME_ASC",
            "limit": 200,
            "offset": len(runs),
        }
        page = _post_json(f"{url}/flow_runs/filter", body)
        runs.extend(page)
        if len(page) < 200:
            break
    runs = [run for run in runs if (run.get("parameters") or {}).get("model") == model]
    # A subflow's run stands for a task run of its parent: its time goes to the subflow's own row.
    subflow_of = {run["parent_task_run_id"] for run in runs if run.get("parent_task_run_id")}
    task_seconds: dict[str, float] = {}
    subflow_seconds: dict[str, float] = {}
    ids = [run["id"] for run in runs]
    for start in range(0, len(ids), 100):
        offset = 0
        while True:
            body = {"flow_runs": {"id": {"any_": ids[start : start + 100]}}, "limit": 200, "offset": offset}
            page = _post_json(f"{url}/task_runs/filter", body)
            for task_run in page:
                began, ended = _timestamp(task_run.get("start_time")), _timestamp(task_run.get("end_time"))
                if began and ended and task_run.get("flow_run_id"):
                    flow_run = task_run["flow_run_id"]
                    into = subflow_seconds if task_run["id"] in subflow_of else task_seconds
                    into[flow_run] = into.get(flow_run, 0.0) + (ended - began).total_seconds()
            offset += len(page)
            if len(page) < 200:
                break
    names = _flow_names(url)
    timings = []
    for run in runs:
        response = request("GET", f"{url}/flow_run_states/?flow_run_id={run['id']}")
        states = response.json() if response.status_code == 200 else []
        first: dict[str, datetime] = {}
        for state in sorted(states, key=lambda item: item["timestamp"]):
            first.setdefault(state["type"], datetime.fromisoformat(state["timestamp"]))
        timings.append(
            RunTiming(
                flow=names.get(run["flow_id"], run["flow_id"]),
                created=datetime.fromisoformat(run["created"]),
                pending=first.get("PENDING"),
                running=first.get("RUNNING") or _timestamp(run.get("start_time")),
                ended=_timestamp(run.get("end_time")),
                task_seconds=task_seconds.get(run["id"], 0.0),
                parameters=run.get("parameters") or {},
                subflow=bool(run.get("parent_task_run_id")),
                subflow_seconds=subflow_seconds.get(run["id"], 0.0),
            )
        )
    return timings


ACTIVE_STATES = ("SCHEDULED", "PENDING", "RUNNING")
FINAL = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")


def active_flow_runs(api_url: str | None, page: int = 200) -> list[dict[str, Any]]:
    """Runs of deployments that are due or under way (SCHEDULED with a start time passed, PENDING, RUNNING):
    id, name, flow, state type and name, model parameter. Future scheduled runs are left out."""
    url = require_api_url(api_url)
    body = {
        "flow_runs": {
            "state": {"type": {"any_": list(ACTIVE_STATES)}},
            "deployment_id": {"is_null_": False},
            "expected_start_time": {"before_": datetime.now(UTC).isoformat()},
        },
        "sort": "EXPECTED_START_TIME_ASC",
        "limit": page,
    }
    runs = _post_json(f"{url}/flow_runs/filter", body)
    names = _flow_names(url) if runs else {}
    return [
        {
            "id": run["id"],
            "name": run["name"],
            "flow": names.get(run["flow_id"], run["flow_id"]),
            "state": run.get("state_type"),
            "state_name": run.get("state_name") or run.get("state_type"),
            "model": (run.get("parameters") or {}).get("model"),
        }
        for run in runs
    ]
