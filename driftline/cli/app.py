"""The ``driftline`` command line (typer): registers the command modules and maps errors to exit codes.

Exit codes: 0 ok, 1 a decision said no, 2 bad input, 3 infra down. Each command group lives in its own module
and shares ``driftline.cli.context`` (consoles, settings, store):

    stack_commands    up, down, status
    model_commands    model create, models, lineage, doctor, monitor
    data_commands     ingest, labels
    loop_commands     retrain, shadow, promote, rollback
    adhoc_commands    profile, drift (no server needed)
    demo_command      demo
    alerts            alerts apply | show
    synth_command     synth
    backtest_command  backtest
"""

from __future__ import annotations

import sys

import typer

from driftline.cli import (
    adhoc_commands,
    alerts,
    backtest_command,
    data_commands,
    demo_command,
    loop_commands,
    model_commands,
    stack_commands,
    synth_command,
)
from driftline.cli.context import console, safe
from driftline.errors import DriftlineError

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


def _register_commands() -> None:
    """Every command, in the order `driftline --help` lists them (typer needs each signature, hence the imports
    at the top)."""
    app.command()(stack_commands.up)
    app.command()(stack_commands.down)
    app.command()(stack_commands.status)
    app.add_typer(model_commands.model_app, name="model")
    app.command()(data_commands.ingest)
    app.command()(data_commands.labels)
    app.command()(loop_commands.retrain)
    app.command()(model_commands.models)
    app.command()(model_commands.lineage)
    app.command()(model_commands.doctor)
    app.command("shadow")(loop_commands.shadow_status)
    app.command("promote")(loop_commands.promote_command)
    app.command("rollback")(loop_commands.rollback_command)
    app.command()(adhoc_commands.profile)
    app.command()(adhoc_commands.drift)
    app.command()(model_commands.monitor)
    app.command()(demo_command.demo)
    app.add_typer(alerts.app, name="alerts")
    app.command("synth")(synth_command.synth)
    app.command("backtest")(backtest_command.backtest)


_register_commands()


def run(args: list[str] | None = None) -> int:
    """Run the CLI (``args``, default ``sys.argv[1:]``); map driftline errors to their exit code and one line.

    The message is printed without markup and with URL passwords redacted: an error quotes paths,
    columns, spec keys and endpoints, which are the user's text, not rich markup.
    """
    try:
        # standalone_mode=False returns typer.Exit's code instead of raising it.
        result = app(args=args, prog_name="driftline", standalone_mode=False)
    except DriftlineError as error:
        console.print(f"[red]error:[/red] {safe(error)}", highlight=False)
        return error.exit_code
    except typer.Exit as done:
        return done.exit_code
    except typer.Abort:
        console.print("aborted")
        return 130
    except Exception as error:
        import click

        if isinstance(error, click.ClickException):
            error.show()
            return 2
        raise
    return result if isinstance(result, int) else 0


def main() -> None:
    """Console-script entry point."""
    sys.exit(run())


if __name__ == "__main__":
    main()
