"""``driftline synth``: write a seeded drifting stream (``driftline.replay.synth``) to a directory.

Registered by the app as ``app.command("synth")(synth_command.synth)``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

console = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)


def synth(
    out_dir: Annotated[Path, typer.Argument(help="Directory to write (created if missing).")],
    scenario: Annotated[
        str,
        typer.Option(
            "--scenario",
            help="Preset story: default | fast, or one of the realism suite: slow-cadence | coarse-time | "
            "hourly-small | inversion | regression-unicode | tiny | large | stable.",
        ),
    ] = "default",
    seed: Annotated[int, typer.Option("--seed", min=0, help="Seed of every random draw.")] = 0,
    batches: Annotated[
        int | None, typer.Option("--batches", min=2, help="Number of batches (drift events scale with it).")
    ] = None,
    rows: Annotated[int | None, typer.Option("--rows", min=10, help="Rows per batch.")] = None,
    name: Annotated[str, typer.Option("--name", help="Model name written into spec.yaml.")] = "synth",
    minimal_spec: Annotated[
        bool,
        typer.Option("--minimal-spec", help="Write the minimal spec (columns and task; every policy at its default)."),
    ] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print what was written as JSON on stdout.")] = False,
) -> None:
    """Write a synthetic credit-risk stream with scheduled drift and known truth; no server needed.

    The default scenario: 24 daily batches of 5,000 rows (12 numeric + 4 categorical features); income
    and the channel mix drift at batch 8 (input drift), and at batch 14 the label rule changes while
    the features do not (concept drift: only performance monitoring sees it). --scenario fast tells the
    same story in 12 batches of 2,000 rows. The realism suite holds streams real users meet (e.g.
    --scenario inversion: the label rule inverts at batch 12 while features drift slowly); backtest
    those with --minimal-spec.

    Writes OUT_DIR/history.parquet (every row with its target, for `driftline backtest`),
    batches/bNNN.parquet and labels/bNNN.parquet (for `driftline ingest` / `driftline labels`),
    spec.yaml and truth.json (what drifts when). Same seed, same bytes.

    Example:  driftline synth data/ --scenario fast && driftline backtest data/history.parquet --spec data/spec.yaml
    """
    from driftline.replay import synth as synthetic  # polars, numpy: not for every `driftline --help`

    chosen = synthetic.get_scenario(scenario, seed=seed, batches=batches, rows=rows)
    started = time.perf_counter()
    written = synthetic.write_dataset(chosen, out_dir, name=name, spec="minimal" if minimal_spec else "tuned")
    seconds = time.perf_counter() - started
    if json_output:
        document = {
            "scenario": chosen.model_dump(mode="json"),
            "directory": str(written.directory),
            "history": str(written.history),
            "spec": str(written.spec),
            "truth": str(written.truth),
            "batches": [str(path) for path in written.batches],
            "labels": [str(path) for path in written.labels],
            "rows": written.rows,
        }
        out.print_json(json.dumps(document))
        return
    # markup=False: paths, names and categories are the user's text; rich would read "[x]" as a tag.
    out.print(
        f"scenario {chosen.name!r} (seed {chosen.seed}): {chosen.batches} batches x {chosen.rows:,} rows, "
        f"labels {chosen.label_delay} batch(es) late, written in {seconds:.2f} s",
        markup=False,
    )
    for event in chosen.events:
        out.print(f"  from batch {event.from_batch}: {_describe(event)}", markup=False)
    out.print(f"{written.history}  ({written.rows:,} rows with target, time-ordered)", markup=False)
    out.print(f"{written.directory / 'batches'}/  ({len(written.batches)} feature batches)", markup=False)
    out.print(f"{written.directory / 'labels'}/  ({len(written.labels)} label files)", markup=False)
    out.print(f"{written.spec}", markup=False)
    out.print(f"{written.truth}", markup=False)
    backtest_dir = written.directory / "backtest"
    out.print(f"Next:  driftline backtest {written.history} --spec {written.spec} --out {backtest_dir}", markup=False)


def _describe(event) -> str:
    """One line per scheduled drift event (a ``driftline.replay.synth`` event model)."""
    from driftline.replay import synth as synthetic

    if isinstance(event, synthetic.CovariateDrift):
        if event.feature in synthetic.CATEGORICAL:
            return f"covariate drift: {event.shift:.0%} of rows move to {event.feature}={event.category or 'last'}"
        return f"covariate drift: {event.feature} moves {event.shift:+g} sd"
    if isinstance(event, synthetic.PriorDrift):
        return f"prior drift: logit {event.logit_shift:+g}"
    if isinstance(event, synthetic.LabelFlip):
        return f"label flip (strength {event.strength:g}): every feature's effect changes sign, features do not"
    return f"concept drift (strength {event.strength:g}): utilization's role changes, features do not"
