"""``driftline demo``: the whole loop on the local stack with a live timeline (``driftline.cli.demo``).

Registered by the app as ``app.command("demo")(demo_command.demo)``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from driftline.cli.context import JsonOption, console, out, progress_printer


def demo(
    fast: Annotated[
        bool,
        typer.Option(
            "--fast",
            help="A short scenario: 10 batches of 2,000 rows (3-6 min on 2 cores; the default story 4-7 min).",
        ),
    ] = False,
    batches: Annotated[int | None, typer.Option(min=6, help="Number of batches (default: the scenario's).")] = None,
    rows: Annotated[int | None, typer.Option(min=500, help="Rows per batch (default: the scenario's).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the synthetic stream (same seed, same data).")] = 7,
    model: Annotated[
        str | None, typer.Option(help="Model name (default: the spec's name, or name-2, -3 ... if it has data).")
    ] = None,
    spec: Annotated[Path, typer.Option(help="Spec the demo model starts from.")] = Path("configs/example.yaml"),
    settle_timeout: Annotated[
        float, typer.Option(help="Seconds to wait after the stream for the loop to reach a promotion.")
    ] = 600.0,
    json_output: JsonOption = False,
) -> None:
    """Run the whole loop on the local stack and print a live timeline of its events.

    Brings the stack up if needed, creates a model from the example spec, bootstraps a champion, then
    streams synthetic batches (covariate drift, then a concept drift the features do not show) and
    their labels one batch late. Everything after each upload happens through Prefect automations:
    profile -> drift -> retrain -> gates -> shadow test -> promotion. Exit 0 when a candidate was
    promoted after the drift, 1 otherwise. The stack stays up: `driftline down` stops it.

    Example:  driftline demo --fast
    """
    from driftline.cli.demo import DemoOptions, print_summary, run_demo

    options = DemoOptions(
        spec_path=spec, model=model, fast=fast, batches=batches, rows=rows, seed=seed, settle_timeout=settle_timeout
    )
    summary = run_demo(options, console, progress=progress_printer())
    if json_output:
        out.print_json(json.dumps(summary.to_dict(), default=str))
    else:
        print_summary(summary, out)
    if not summary.promoted:
        raise typer.Exit(1)
