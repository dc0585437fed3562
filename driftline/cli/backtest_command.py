"""``driftline backtest``: replay a history through the loop's decisions per policy (``driftline.replay.backtest``).

Registered by the app as ``app.command("backtest")(backtest_command.backtest)``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from driftline.errors import InputError

console = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)


def backtest(
    data: Annotated[Path, typer.Argument(help="Time-ordered history (parquet): id, time, features and target.")],
    spec_file: Annotated[Path, typer.Option("--spec", help="Model spec naming the columns and every policy.")],
    time_col: Annotated[
        str | None, typer.Option("--time-col", help="Time column to order and cut by (default: the spec's).")
    ] = None,
    batches: Annotated[int, typer.Option("--batches", min=2, help="Cut the history into N equal-count batches.")] = 24,
    policies: Annotated[
        str,
        typer.Option(
            "--policies",
            help="Comma-separated: never, periodic:K (every K batches), drift (the loop as deployed), oracle (XGBoost "
            "defaults retrained every batch and served directly: the yardstick).",
        ),
    ] = "never,periodic:1,drift,oracle",
    label_delay: Annotated[
        int, typer.Option("--label-delay", min=0, help="Batches after its arrival at which a batch's labels arrive.")
    ] = 1,
    warmup: Annotated[
        int | None,
        typer.Option("--warmup", min=1, help="Batches the first champion trains on (default: the spec's window)."),
    ] = None,
    promotion: Annotated[
        str,
        typer.Option(
            "--promotion", help="shadow: gates then the shadow test, as deployed; gates: promote once gates pass."
        ),
    ] = "shadow",
    out_dir: Annotated[Path, typer.Option("--out", help="Where backtest.json, .md and .png go.")] = Path("backtest"),
    nthread: Annotated[int, typer.Option("--nthread", min=1, help="XGBoost threads (models do not change).")] = 1,
    mark: Annotated[
        list[str] | None,
        typer.Option("--mark", help="Label a batch in the plot, LABEL=BATCH (repeatable), e.g. 'release=12'."),
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the JSON document on stdout.")] = False,
) -> None:
    """Replay a history through the loop's decisions under each retraining policy; no server needed.

    The history is cut by time into --batches equal-count batches. A first champion trains on the first
    few; then, batch after batch, the model in service is scored, input drift is checked against its
    reference, labels arrive --label-delay batches late and feed the performance monitor and the shadow
    test, and each policy decides whether to retrain: never, periodic:K, or drift (the spec's: input
    drift with hysteresis, or a performance drop). Candidates pass the same gates and shadow test as in
    production. No label is used before it arrives.

    Writes OUT/backtest.json, backtest.md (tables; did drift retraining pay?) and backtest.png (metric
    per batch and policy, retrains and promotions marked; --mark labels known events). Exit 2 on bad
    input.

    Example:

      driftline synth data/

      driftline backtest data/history.parquet --spec data/spec.yaml --out data/backtest

      driftline backtest data/history.parquet --spec data/spec.yaml --policies never,periodic:4,drift --mark drift=14
    """
    from driftline.models.spec import load_spec
    from driftline.replay import backtest as replay
    from driftline.reports import backtest_report

    if promotion not in ("shadow", "gates"):
        raise InputError(f"--promotion must be shadow or gates, got {promotion!r}")
    chosen = replay.parse_policies(policies)
    marks = _marks(mark or [], batches)
    spec = load_spec(spec_file)
    frame, spec = replay.load_history(data, spec, time_column=time_col)
    console.print(
        f"{frame.height:,} rows of {data} in {batches} batches; policies {', '.join(p.name for p in chosen)}; "
        f"labels {label_delay} batch(es) late; promotion by {promotion}",
        markup=False,  # the path and policy names are the user's text, not rich markup
    )
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task("backtest", total=None)

        def progress(done: int, total: int, message: str) -> None:
            bar.update(task, completed=done, total=total, description=escape(message))

        result = replay.run_backtest(
            frame,
            spec,
            batches=batches,
            policies=chosen,
            label_delay=label_delay,
            warmup=warmup,
            promotion=promotion,  # type: ignore[arg-type]
            nthread=nthread,
            progress=progress,
        )
    paths = backtest_report.write_outputs(result, out_dir, marks=marks)
    if json_output:
        out.print_json(json.dumps(result.to_dict()))
    else:
        table = Table("policy", f"mean {result.metric}", "retrains", "promotions", "train + gates (s)")
        for name, policy in result.policies.items():
            table.add_row(
                escape(name),
                f"{policy.mean_metric:.4f}",
                str(policy.retrains),
                str(policy.promotions),
                f"{policy.train_seconds:.1f}",
            )
        out.print(table)
        for line in backtest_report.summary_lines(result):
            out.print(line, markup=False)
    console.print(
        f"backtest of {result.batches} batches in {result.seconds:.1f} s -> " + ", ".join(map(str, paths.values())),
        markup=False,
    )


def _marks(items: list[str], batches: int) -> dict[str, int]:
    marks = {}
    for item in items:
        label, _, batch = item.rpartition("=")
        if not label or not batch.strip().isdigit() or int(batch) >= batches:
            raise InputError(f"--mark {item!r}: use LABEL=BATCH with a batch index below {batches}, e.g. 'release=12'")
        marks[label.strip()] = int(batch)
    return marks
