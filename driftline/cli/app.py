"""The ``driftline`` command line (typer). Exit codes: 0 ok, 1 a decision said no, 2 bad input, 3 infra down."""

from __future__ import annotations

import json
import sys
import time
import uuid
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from driftline.errors import DriftlineError, InputError
from driftline.settings import Settings

app = typer.Typer(
    name="driftline",
    help=(
        "Keep tabular models healthy in production: drift -> retrain -> gates -> shadow test -> promote or "
        "roll back, orchestrated by Prefect, state on S3.\n\n"
        "Start here:  driftline up   (local S3 + Prefect server + worker, ~15 s)\n\n"
        "Settings come from DRIFTLINE_* environment variables (see README, 'Environments')."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout.")]


def _settings() -> Settings:
    try:
        return Settings()
    except Exception as error:  # pydantic's ValidationError names the setting; keep its text
        raise InputError(f"invalid DRIFTLINE_* setting: {error}") from error


def _stack(quiet: bool = False):
    from driftline.cli.stack import LocalStack

    progress = (lambda message: None) if quiet else (lambda message: console.print(f"[dim]·[/dim] {message}"))
    return LocalStack(_settings(), progress=progress)


@app.command()
def up() -> None:
    """Start the local stack: moto S3, Prefect server (SQLite), work pool, deployments, one worker.

    Idempotent: parts already running are kept. State, pid files and logs live in .driftline/.

    Example:  driftline up && driftline status --deep
    """
    stack = _stack()
    actions = stack.up()
    console.print(
        f"[green]stack up[/green] in {actions.pop('seconds')} s: "
        + ", ".join(f"{part} {action}" for part, action in actions.items())
    )
    out.print(f"S3 endpoint   {stack.s3_url}  (bucket {stack.settings.s3_bucket})")
    out.print(f"Prefect UI    {stack.prefect_url}")
    out.print(f"Prefect API   {stack.api_url}")
    out.print("Stop with:    driftline down")


@app.command()
def down() -> None:
    """Stop exactly the processes `driftline up` started (SIGTERM, wait, SIGKILL). Safe to run twice."""
    outcome = _stack(quiet=True).down()
    console.print(", ".join(f"{part} {result}" for part, result in outcome.items()))


@app.command()
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
                part.url or "",
                str(part.pid or ""),
                part.detail,
            )
        out.print(table)
        if result.deep is not None:
            colour = "green" if result.deep.get("ok") else "red"
            out.print(f"[{colour}]deep check[/{colour}]: {json.dumps(result.deep)}")
    if not result.healthy:
        raise typer.Exit(3)


def _deep_check(stack, timeout: float) -> dict:
    from driftline.cli import prefect_api
    from driftline.events import STACK_CHECKED, stack_check_resource_id

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


def main() -> None:
    """Console-script entry point: map driftline errors to their exit codes and a one-line message."""
    try:
        # standalone_mode=False returns typer.Exit's code instead of raising it.
        result = app(standalone_mode=False)
    except DriftlineError as error:
        console.print(f"[red]error:[/red] {error}", markup=True, highlight=False)
        sys.exit(error.exit_code)
    except typer.Exit as done:
        sys.exit(done.exit_code)
    except typer.Abort:
        console.print("aborted")
        sys.exit(130)
    except Exception as error:
        import click

        if isinstance(error, click.ClickException):
            error.show()
            sys.exit(2)
        raise
    sys.exit(result if isinstance(result, int) else 0)


if __name__ == "__main__":
    main()
