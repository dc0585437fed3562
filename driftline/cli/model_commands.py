"""``driftline model create``, ``models``, ``lineage``, ``doctor``, ``monitor``: a model's spec and what S3
holds about it (versions, lineage, integrity, its history over batches)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from driftline.cli.context import JsonOption, console, out, remote, safe
from driftline.errors import InfrastructureError

model_app = typer.Typer(help="Model specs: create or update the spec a model runs under.", no_args_is_help=True)


@model_app.command("create")
def model_create(
    spec_file: Annotated[Path, typer.Argument(help="Model spec YAML, e.g. configs/example.yaml.")],
) -> None:
    """Validate a spec and store it at models/<name>/spec.yaml (replacing the spec in force).

    Example:  driftline model create configs/example.yaml
    """
    from driftline.errors import ObjectNotFoundError
    from driftline.models.spec import load_spec
    from driftline.storage import layout

    spec = load_spec(spec_file)
    _, store = remote()
    key = layout.model_spec(spec.name)
    text = spec_file.read_bytes()
    try:
        previous = store.get(key)
    except ObjectNotFoundError:
        previous = None
    if previous == text:
        console.print(f"model [bold]{safe(spec.name)}[/bold]: spec unchanged at {safe(store.location(key))}")
        return
    store.put(key, text, content_type="application/yaml")
    verb = "created" if previous is None else "updated"
    console.print(f"model [bold]{safe(spec.name)}[/bold] {verb}: {safe(store.location(key))}")
    from driftline.loop.rules import time_settings

    for note in time_settings(spec):
        console.print(f"[yellow]note[/yellow]: {safe(note)}")
    console.print(f"next: driftline ingest {safe(spec.name)} <batch.parquet>")


def models(
    model: Annotated[str, typer.Argument(help="Model name.")],
    json_output: JsonOption = False,
) -> None:
    """Versions, aliases and status of a model.

    Example:  driftline models example --json
    """
    from driftline.models import registry
    from driftline.storage.layout import validate_name

    _, store = remote()
    document = registry.describe_model(store, validate_name(model, "model"))
    if json_output:
        out.print_json(json.dumps(document))
        return
    out.print(" ".join(f"{alias}={safe(version or '-')}" for alias, version in document["aliases"].items()))
    table = Table("version", "created", "status", "metrics", "trigger")
    for version in document["versions"]:
        metrics = ", ".join(f"{k} {v:.4f}" for k, v in version["metrics"].items())
        table.add_row(
            *(safe(cell) for cell in (version["version"], version["created_at"][:19], version["status"])),
            safe(metrics),
            safe(version["trigger"]),
        )
    out.print(table)


def lineage(
    model: Annotated[str, typer.Argument(help="Model name.")],
    version: Annotated[str, typer.Argument(help="Version id (see `driftline models`).")],
    json_output: JsonOption = False,
) -> None:
    """The chain from drift event to alias moves for one version.

    Example:  driftline lineage example v20261126t101500-3fa2
    """
    from driftline.loop import retraining
    from driftline.storage.layout import validate_name

    _, store = remote()
    document = retraining.lineage(store, validate_name(model, "model"), validate_name(version, "version"))
    if json_output:
        out.print_json(json.dumps(document, default=str))
        return
    drift = document["drift"]
    lineage_ = document["lineage"] or {}
    out.print(
        f"[bold]{safe(model)} {safe(version)}[/bold] created {safe(document['created_at'])} "
        f"({safe(document['trigger'])})"
    )
    if drift["event_id"]:
        out.print(
            safe(
                f"  drift event {drift['event_id']} on batch {drift['batch_id']}: score {drift['score']}, "
                f"features {drift['drifted_features']}"
            )
        )
    batches = [b["batch_id"] for b in lineage_.get("training_batches", [])]
    out.print(
        safe(f"  trained on {lineage_.get('training_rows')} rows from {len(batches)} batches: {', '.join(batches)}")
    )
    out.print(
        safe(
            f"  parent champion {lineage_.get('parent_champion')}; spec {str(lineage_.get('spec_hash'))[:12]}; "
            f"git {str(lineage_.get('git_commit'))[:12]}"
        )
    )
    out.print(
        safe(f"  metrics {document['metrics']}; gates passed: {document['gates']}; decision {document['decision']}")
    )
    for move in document["alias_moves"]:
        out.print(safe(f"  {move['at']}: {move['alias']} {move['from']} -> {move['to']} ({move['reason']})"))


def doctor(
    model: Annotated[str, typer.Argument(help="Model name.")],
    json_output: JsonOption = False,
) -> None:
    """Registry and outbox integrity: aliases name intact versions, no orphans, no event stuck in the outbox.

    Exit 1 when a problem is found (warnings such as orphans alone exit 0).

    Example:  driftline doctor example --json
    """
    from driftline.events.prefect_http import PrefectEventSink
    from driftline.events.sink import DOCTOR_LOOKBACK, outbox_health
    from driftline.models import registry
    from driftline.models.spec import missing_spec_problem
    from driftline.storage.layout import validate_name

    settings, store = remote()
    report = registry.doctor(store, validate_name(model, "model"))
    document = report.to_dict()
    spec_problem = missing_spec_problem(store, model)
    if spec_problem is not None:
        document["problems"].insert(0, spec_problem)
        document["healthy"] = False
    sink = PrefectEventSink(store, settings.prefect_api_url)
    now = datetime.now(UTC)
    since = now - DOCTOR_LOOKBACK
    records = sink.outbox(model, since)
    seen: set[str] | None = None
    check_error: str | None = None
    if records and settings.prefect_api_url:
        try:
            seen = sink.stored([r.event_id for r in records], since)
        except InfrastructureError as error:
            check_error = str(error)
    health = outbox_health(records, now, seen, check_error)
    document["outbox"] = health.to_dict()
    document["warnings"].extend(health.warnings)
    document["problems"].extend(health.problems)
    if not health.healthy:
        document["healthy"] = False
    _mlflow().add_doctor_findings(document, settings, store, model)
    if json_output:
        out.print_json(json.dumps(document))
    else:
        verdict = "[green]healthy[/green]" if document["healthy"] else "[red]problems[/red]"
        out.print(f"{safe(model)}: {verdict}, {report.checked_versions} version(s), {len(records)} outbox event(s)")
        for problem in document["problems"]:
            out.print(f"[red]problem[/red]: {safe(problem)}")
        for warning in document["warnings"]:
            out.print(f"[yellow]warning[/yellow]: {safe(warning)}")
    if not document["healthy"]:
        raise typer.Exit(1)


def monitor(
    model: Annotated[str, typer.Argument(help="Model name.")],
    last: Annotated[int | None, typer.Option(min=1, help="Only the last N batches.")] = None,
    png: Annotated[Path | None, typer.Option("--png", help="Also write the plot to this PNG file.")] = None,
    json_output: JsonOption = False,
) -> None:
    """One view of a model over its batches: input and prediction drift, the served metric with the
    performance monitor's bounds, latency p50/p95/p99, failures, and promotions/rollbacks as markers.

    Read from S3 only (drift reports, predictions joined to labels, scoring summaries, the audit trail);
    no Prefect server needed.

    Example:  driftline monitor example --last 30 --png monitor.png
    """
    from driftline.models.spec import read_spec
    from driftline.reports import renderings
    from driftline.reports.model_history import collect_history
    from driftline.storage.layout import validate_name

    validate_name(model, "model")
    _, store = remote()
    spec = read_spec(store, model)
    history = collect_history(store, spec, last=last)
    document = history.to_dict()
    if png is not None:
        png.write_bytes(renderings.history_png(document))
        console.print(f"wrote {safe(png)}")
    if json_output:
        out.print_json(json.dumps(document, default=str))
        return
    switches = {s.batch_id: s for s in history.switches if s.batch_id}
    table = Table(title=f"{safe(model)}: {len(history.batches)} batches", min_width=100)
    for column in ("batch", "rows", "input drift", "pred drift", "champion", history.metric, "loss +", "p99 ms"):
        table.add_column(column)

    def score(flag: bool | None, value: float | None) -> str:
        if value is None:
            return "-"
        return f"[red]{value:.2f}[/red]" if flag else f"{value:.2f}"

    for point in history.batches:
        if point.batch_id in switches:
            switch = switches[point.batch_id]
            table.add_row(
                f"[bold]{safe(switch.kind)}[/bold]", "", "", "", safe(switch.version), "", "", "", style="green"
            )
        perf = point.performance or {}
        loss = perf.get("estimate")
        degraded = perf.get("verdict") == "degraded"
        table.add_row(
            safe(point.batch_id),
            str(point.rows or "-"),
            score(point.input_drift, point.input_score),
            score(point.prediction_drift, point.prediction_score),
            safe(point.champion or "-"),
            f"{point.metric:.4f}" if point.metric is not None else "-",
            ("-" if loss is None else (f"[red]{loss:+.3f}[/red]" if degraded else f"{loss:+.3f}")),
            f"{point.latency_ms.get('p99'):.2f}" if point.latency_ms.get("p99") is not None else "-",
        )
    out.print(table)
    out.print(
        "loss + : the performance monitor's estimate of the champion's per-row loss over its holdout loss "
        "(red: proven above tolerance); bounds in --json and --png"
    )


def _mlflow():
    """The MLflow mirror's CLI hooks (imported when used: most commands never need them)."""
    from driftline.cli import mlflow_mirror

    return mlflow_mirror
