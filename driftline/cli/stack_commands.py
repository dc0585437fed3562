"""``driftline up | down | status``: the local stack (``driftline.cli.stack``)."""

from __future__ import annotations

import json
import time
import uuid
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from driftline.cli.context import JsonOption, console, load_settings, out, progress_printer, safe

if TYPE_CHECKING:
    from driftline.cli.stack import LocalStack


def _stack(quiet: bool = False, **overrides) -> LocalStack:
    from driftline.cli.stack import LocalStack

    settings = load_settings()
    if overrides:
        settings = settings.model_copy(update=overrides)
    return LocalStack(settings, progress=progress_printer(quiet))


def up(
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            min=1,
            max=16,
            help="Process workers to run on the pool (default DRIFTLINE_WORKERS, 1); fewer stops the extra ones.",
        ),
    ] = None,
    mlflow: Annotated[
        bool,
        typer.Option(
            "--mlflow",
            help="Also start a local MLflow server (data in .driftline/mlflow) and mirror the registry to it.",
        ),
    ] = False,
) -> None:
    """Start the local stack: moto S3, Prefect server, work pool, deployments, supervised worker(s).

    Idempotent: parts already running are kept. State, pid files, logs and stored objects live in .driftline/
    and survive `driftline down`. The Prefect server uses SQLite unless DRIFTLINE_PREFECT_DATABASE=postgresql
    (a PostgreSQL under .driftline/postgres, started and stopped with the stack) or
    DRIFTLINE_PREFECT_DATABASE_URL (an external PostgreSQL).

    Examples:
      driftline up && driftline status --deep
      driftline up --workers 2
      DRIFTLINE_PREFECT_DATABASE=postgresql driftline up
      driftline up --mlflow   (needs `make mlflow-server` once)
    """
    stack = _stack(**({"workers": workers} if workers is not None else {}), **({"mlflow": True} if mlflow else {}))
    actions = stack.up()
    console.print(
        f"[green]stack up[/green] in {actions.pop('seconds')} s: "
        + ", ".join(f"{part} {action}" for part, action in actions.items())
    )
    out.print(f"S3 endpoint   {safe(stack.s3_url)}  (bucket {stack.settings.s3_bucket})")
    out.print(f"Prefect UI    {safe(stack.prefect_url)}")
    out.print(f"Prefect API   {safe(stack.api_url)}")
    database = stack.describe_database()
    out.print(f"Database      {database['kind']} {safe(database['url'])}")
    if stack.mlflow_enabled():
        out.print(f"MLflow UI     {safe(stack.mlflow.url)}  (DRIFTLINE_MLFLOW_TRACKING_URI of the workers)")
    out.print("Stop with:    driftline down")


def down() -> None:
    """Stop exactly the processes `driftline up` started (SIGTERM, wait, SIGKILL). Safe to run twice."""
    outcome = _stack(quiet=True).down()
    console.print(", ".join(f"{part} {safe(result)}" for part, result in outcome.items()))


def status(
    json_output: JsonOption = False,
    deep: Annotated[
        bool,
        typer.Option(
            "--deep", help="Also run the stack-check deployment through the worker (S3 write/read + an event)."
        ),
    ] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the --deep flow run.")] = 120.0,
) -> None:
    """Health and URL of each part of the local stack; exit 3 if any part is unhealthy.

    Example:  driftline status --json
    """
    stack = _stack(quiet=True)
    result = stack.status()
    if deep and all(part.healthy for part in result.parts):
        result.deep = _deep_check(stack, timeout)
    elif deep:
        result.deep = {"ok": False, "detail": "skipped: a part of the stack is unhealthy"}
    if json_output:
        out.print_json(json.dumps(result.to_dict()))
    else:
        table = Table("part", "healthy", "url", "pid", "detail")
        for part in result.parts:
            table.add_row(
                part.name,
                "[green]yes[/green]" if part.healthy else "[red]no[/red]",
                safe(part.url or ""),
                str(part.pid or ""),
                safe(part.detail),
            )
        out.print(table)
        if result.database is not None:
            managed = "started by the stack" if result.database.get("managed") else "not started by the stack"
            out.print(f"database: {result.database['kind']} ({managed}) {safe(result.database.get('url', ''))}")
        if result.deep is not None:
            colour = "green" if result.deep.get("ok") else "red"
            out.print(f"[{colour}]deep check[/{colour}]: {safe(json.dumps(result.deep))}")
    if not result.healthy:
        raise typer.Exit(3)


def _deep_check(stack: LocalStack, timeout: float) -> dict:
    from driftline.cli import prefect_api
    from driftline.events.records import STACK_CHECKED, stack_check_resource_id

    nonce = f"check-{uuid.uuid4().hex[:12]}"
    started = time.monotonic()
    run = prefect_api.run_deployment_and_wait(stack.api_url, "stack-check/stack-check", {"nonce": nonce}, timeout)
    event = None
    if run.ok:
        event = prefect_api.wait_for_event(stack.api_url, STACK_CHECKED, stack_check_resource_id(nonce), 30)
    return {
        "ok": run.ok and event is not None,
        "flow_run": run.id,
        "state": run.state,
        "url": run.url,
        "event_id": event["id"] if event else None,
        "seconds": round(time.monotonic() - started, 2),
    }
