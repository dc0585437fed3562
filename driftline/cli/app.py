"""The ``driftline`` command line (typer). Exit codes: 0 ok, 1 a decision said no, 2 bad input, 3 infra down."""

from __future__ import annotations

import json
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from driftline.cli.context import load_settings, remote
from driftline.errors import DriftlineError, InfrastructureError, InputError
from driftline.settings import Settings, redact_urls

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


def _safe(value: object) -> str:
    """User-controlled text (paths, columns, names, notes, errors) for a rich string: passwords in URLs
    redacted, brackets escaped so that rich shows them instead of reading them as markup."""
    return escape(redact_urls(str(value)))


def _settings() -> Settings:
    return load_settings()


def _stack(quiet: bool = False, **overrides):
    from driftline.cli.stack import LocalStack

    progress = (lambda message: None) if quiet else (lambda message: console.print(f"[dim]·[/dim] {_safe(message)}"))
    settings = _settings()
    if overrides:
        settings = settings.model_copy(update=overrides)
    return LocalStack(settings, progress=progress)


@app.command()
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
    """
    stack = _stack(**({"workers": workers} if workers is not None else {}))
    actions = stack.up()
    console.print(
        f"[green]stack up[/green] in {actions.pop('seconds')} s: "
        + ", ".join(f"{part} {action}" for part, action in actions.items())
    )
    out.print(f"S3 endpoint   {_safe(stack.s3_url)}  (bucket {stack.settings.s3_bucket})")
    out.print(f"Prefect UI    {_safe(stack.prefect_url)}")
    out.print(f"Prefect API   {_safe(stack.api_url)}")
    database = stack.describe_database()
    out.print(f"Database      {database['kind']} {_safe(database['url'])}")
    out.print("Stop with:    driftline down")


@app.command()
def down() -> None:
    """Stop exactly the processes `driftline up` started (SIGTERM, wait, SIGKILL). Safe to run twice."""
    outcome = _stack(quiet=True).down()
    console.print(", ".join(f"{part} {_safe(result)}" for part, result in outcome.items()))


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
                _safe(part.url or ""),
                str(part.pid or ""),
                _safe(part.detail),
            )
        out.print(table)
        if result.database is not None:
            managed = "started by the stack" if result.database.get("managed") else "not started by the stack"
            out.print(f"database: {result.database['kind']} ({managed}) {_safe(result.database.get('url', ''))}")
        if result.deep is not None:
            colour = "green" if result.deep.get("ok") else "red"
            out.print(f"[{colour}]deep check[/{colour}]: {_safe(json.dumps(result.deep))}")
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


# --------------------------------------------------------------------------------------------- models
model_app = typer.Typer(help="Model specs: create or update the spec a model runs under.", no_args_is_help=True)
app.add_typer(model_app, name="model")


def _remote():
    return remote()


@model_app.command("create")
def model_create(
    spec_file: Annotated[Path, typer.Argument(help="Model spec YAML, e.g. configs/example.yaml.")],
) -> None:
    """Validate a spec and store it at models/<name>/spec.yaml (replacing the spec in force).

    Example:  driftline model create configs/example.yaml
    """
    from driftline import layout
    from driftline.errors import ObjectNotFoundError
    from driftline.spec import load_spec

    spec = load_spec(spec_file)
    _, store = _remote()
    key = layout.model_spec(spec.name)
    text = spec_file.read_bytes()
    try:
        previous = store.get(key)
    except ObjectNotFoundError:
        previous = None
    if previous == text:
        console.print(f"model [bold]{_safe(spec.name)}[/bold]: spec unchanged at {_safe(store.location(key))}")
        return
    store.put(key, text, content_type="application/yaml")
    verb = "created" if previous is None else "updated"
    console.print(f"model [bold]{_safe(spec.name)}[/bold] {verb}: {_safe(store.location(key))}")
    from driftline.loop import time_settings

    for note in time_settings(spec):
        console.print(f"[yellow]note[/yellow]: {_safe(note)}")
    console.print(f"next: driftline ingest {_safe(spec.name)} <batch.parquet>")


# --------------------------------------------------------------------------------------------- batches
@app.command()
def ingest(
    model: Annotated[str, typer.Argument(help="Model name (its spec must exist: driftline model create).")],
    file: Annotated[Path, typer.Argument(help="Features batch: parquet with the id, time and feature columns.")],
    batch_id: Annotated[
        str | None, typer.Option("--batch-id", help="Batch id (default: UTC time + random suffix).")
    ] = None,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Wait until the batch is profiled.")] = True,
    check: Annotated[
        bool, typer.Option("--check/--no-check", help="Validate against the spec before uploading.")
    ] = True,
    timeout: Annotated[float, typer.Option(help="Seconds to wait with --wait.")] = 300.0,
    json_output: JsonOption = False,
) -> None:
    """Upload a features batch; the profile-batch automation validates, profiles and drift-checks it.

    The upload is announced with a driftline.batch.arrived event. Exit 1 when the batch drifted or
    was rejected.

    Example:  driftline ingest example data/batch-001.parquet --batch-id b001
    """
    from driftline.batches import check_batch_file, default_batch_id
    from driftline.cli import prefect_api
    from driftline.cli.uploads import submit_batch
    from driftline.events import BATCH_PROFILED, BATCH_REJECTED, model_resource_id
    from driftline.layout import validate_name
    from driftline.prefect_http import PrefectEventSink
    from driftline.spec import read_spec

    validate_name(model, "model")
    batch_id = validate_name(batch_id, "batch id") if batch_id else default_batch_id()
    if not file.is_file():
        raise InputError(f"{file}: no such file")
    settings, store = _remote()
    spec = read_spec(store, model)
    if check:
        result = check_batch_file(file, spec)
        if not result.ok:
            raise InputError(result.message() + "\n(use --no-check to upload anyway and let the flow quarantine it)")
    # Objects first: a Prefect server that is away does not lose the batch; its event waits in the S3
    # outbox and watch-batches re-sends it (and profiles the batch) within a minute of the server's return.
    try:
        api_url: str | None = prefect_api.check_server(settings.prefect_api_url)
    except InfrastructureError as error:
        api_url, unreachable = None, str(error)
    else:
        unreachable = "it did not take the event"
    started = datetime.now(UTC)
    key, event_id, announced = submit_batch(
        PrefectEventSink(store, api_url), model, batch_id, file.read_bytes(), queue_if_unreachable=True
    )
    console.print(f"uploaded {_safe(file)} -> {_safe(store.location(key))}")
    outcome: dict = {
        "model": model,
        "batch_id": batch_id,
        "key": key,
        "event_id": event_id,
        "announced": announced,
        "at": started.isoformat(),
    }
    if announced:
        console.print(f"announced driftline.batch.arrived ({_safe(event_id)})")
    else:
        console.print(
            f"[yellow]warning[/yellow]: the Prefect server is unreachable ({_safe(unreachable)}); "
            f"driftline.batch.arrived ({_safe(event_id)}) waits in the S3 outbox and watch-batches re-sends it "
            "within a minute of the server's return (`driftline doctor` shows the backlog)"
        )
        if wait:
            raise InfrastructureError(
                f"batch {batch_id!r} is stored ({key}) but cannot be profiled now: the Prefect server is "
                "unreachable; start it (`driftline up`) and it is profiled within a minute, or use --no-wait"
            )
    if wait:
        console.print("waiting for profile-batch ...")
        event = prefect_api.wait_for_payload(
            api_url, [BATCH_PROFILED, BATCH_REJECTED], model_resource_id(model), "batch_id", batch_id, timeout, started
        )
        if event is None:
            raise InfrastructureError(
                f"no profile-batch outcome for {batch_id!r} within {timeout:.0f} s; is the worker running "
                "(`driftline status`)?"
            )
        outcome["outcome"] = event["event"]
        outcome["payload"] = event["payload"]
    if json_output:
        out.print_json(json.dumps(outcome))
    elif wait:
        payload = outcome["payload"]
        if outcome["outcome"] == BATCH_REJECTED:
            out.print(f"[red]rejected[/red]: {_safe('; '.join(payload.get('problems', [])))}")
        else:
            verdict = "[red]drift[/red]" if payload.get("drift") else "[green]no drift[/green]"
            out.print(f"profiled {payload.get('rows')} rows: {verdict}, score {payload.get('score'):.2f}")
            out.print(f"report: {_safe(payload.get('report_key'))}")
    if wait and (outcome["outcome"] == BATCH_REJECTED or outcome["payload"].get("drift")):
        raise typer.Exit(1)


@app.command()
def labels(
    model: Annotated[str, typer.Argument(help="Model name.")],
    file: Annotated[Path, typer.Argument(help="Parquet with the spec's id and target columns.")],
    batch_id: Annotated[str, typer.Option("--batch-id", help="The features batch these labels belong to.")],
) -> None:
    """Store ground truth for a batch and announce it (driftline.labels.arrived).

    Labels may arrive long after the batch. They are joined to the batch's rows by id; ids that are not
    in the batch are an error. A drift-triggered retrain waiting for labels is re-checked.

    Example:  driftline labels example labels-b001.parquet --batch-id b001
    """
    import polars as pl

    from driftline.cli import prefect_api
    from driftline.cli.uploads import submit_labels
    from driftline.layout import validate_name
    from driftline.prefect_http import PrefectEventSink
    from driftline.spec import read_spec

    validate_name(model, "model")
    validate_name(batch_id, "batch id")
    settings, store = _remote()
    spec = read_spec(store, model)
    try:
        frame = pl.read_parquet(file, glob=False)  # a path, never a pattern: 'g[1].parquet' is one file
    except FileNotFoundError as error:
        raise InputError(f"{file}: no such file") from error
    except Exception as error:
        raise InputError(f"{file}: not a readable parquet file ({error})") from error
    api_url = prefect_api.check_server(settings.prefect_api_url)
    key, rows, share = submit_labels(PrefectEventSink(store, api_url), spec, batch_id, frame, str(file))
    console.print(f"stored {rows} labels ({share:.0%} of the batch) -> {_safe(store.location(key))}")
    console.print("announced driftline.labels.arrived")


@app.command()
def retrain(
    model: Annotated[str, typer.Argument(help="Model name.")],
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Wait for the run and print its outcome.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait with --wait.")] = 1800.0,
    json_output: JsonOption = False,
) -> None:
    """Run the retrain deployment now (manual trigger: no cooldown, waits for no labels).

    With no champion yet, a candidate that passes the absolute gates becomes champion (bootstrap);
    otherwise it enters shadow when every gate passes. Exit 1 when the candidate was rejected.

    Example:  driftline retrain example --wait
    """
    from driftline.cli import prefect_api
    from driftline.layout import validate_name

    validate_name(model, "model")
    settings, _ = _remote()
    if not wait:
        run = prefect_api.run_deployment_and_wait(
            settings.prefect_api_url, "retrain/retrain", {"model": model, "trigger": "manual"}, timeout=0
        )
        console.print(f"started {_safe(run.name)}: {_safe(run.url)}")
        return
    console.print(f"running retrain/retrain for {model} (timeout {timeout:.0f} s) ...")
    run = prefect_api.run_deployment_and_wait(
        settings.prefect_api_url, "retrain/retrain", {"model": model, "trigger": "manual"}, timeout=timeout
    )
    from driftline.events import CANDIDATE_REGISTERED, CANDIDATE_REJECTED

    outcome = None
    deadline = time.monotonic() + (15 if run.ok else 0)  # the server persists events every ~5 s
    while True:
        events = prefect_api.events_of_flow_run(
            settings.prefect_api_url, run.id, [CANDIDATE_REGISTERED, CANDIDATE_REJECTED]
        )
        outcome = events[-1] if events else None
        if outcome is not None or time.monotonic() > deadline:
            break
        time.sleep(1)
    document = {
        "flow_run": run.id,
        "state": run.state,
        "url": run.url,
        "seconds": round(run.seconds, 1),
        "outcome": outcome["event"] if outcome else None,
        "candidate": outcome["payload"] if outcome else None,
    }
    if json_output:
        out.print_json(json.dumps(document, default=str))
    else:
        out.print(f"{_safe(run.name)}: {_safe(run.state)} in {run.seconds:.0f} s ({_safe(run.url)})")
        if outcome:
            payload = outcome["payload"]
            out.print(f"{_safe(payload['version'])}: {_safe(payload['decision'])}; metrics {_safe(payload['metrics'])}")
            out.print(f"gates: {_safe(payload['gate_summary'])}")
        else:
            out.print("no candidate was built (duplicate, shadow busy or waiting for labels: see the run's logs)")
    if not run.ok:
        raise InfrastructureError(f"retrain run {run.name} ended {run.state}; see {run.url}")
    if outcome and outcome["event"] == CANDIDATE_REJECTED:
        raise typer.Exit(1)


@app.command()
def models(
    model: Annotated[str, typer.Argument(help="Model name.")],
    json_output: JsonOption = False,
) -> None:
    """Versions, aliases and status of a model.

    Example:  driftline models example --json
    """
    from driftline import registry
    from driftline.layout import validate_name

    _, store = _remote()
    document = registry.describe_model(store, validate_name(model, "model"))
    if json_output:
        out.print_json(json.dumps(document))
        return
    out.print(" ".join(f"{alias}={_safe(version or '-')}" for alias, version in document["aliases"].items()))
    table = Table("version", "created", "status", "metrics", "trigger")
    for version in document["versions"]:
        metrics = ", ".join(f"{k} {v:.4f}" for k, v in version["metrics"].items())
        table.add_row(
            *(_safe(cell) for cell in (version["version"], version["created_at"][:19], version["status"])),
            _safe(metrics),
            _safe(version["trigger"]),
        )
    out.print(table)


@app.command()
def lineage(
    model: Annotated[str, typer.Argument(help="Model name.")],
    version: Annotated[str, typer.Argument(help="Version id (see `driftline models`).")],
    json_output: JsonOption = False,
) -> None:
    """The chain from drift event to alias moves for one version.

    Example:  driftline lineage example v20261126t101500-3fa2
    """
    from driftline import retraining
    from driftline.layout import validate_name

    _, store = _remote()
    document = retraining.lineage(store, validate_name(model, "model"), validate_name(version, "version"))
    if json_output:
        out.print_json(json.dumps(document, default=str))
        return
    drift = document["drift"]
    lineage_ = document["lineage"] or {}
    out.print(
        f"[bold]{_safe(model)} {_safe(version)}[/bold] created {_safe(document['created_at'])} "
        f"({_safe(document['trigger'])})"
    )
    if drift["event_id"]:
        out.print(
            _safe(
                f"  drift event {drift['event_id']} on batch {drift['batch_id']}: score {drift['score']}, "
                f"features {drift['drifted_features']}"
            )
        )
    batches = [b["batch_id"] for b in lineage_.get("training_batches", [])]
    out.print(
        _safe(f"  trained on {lineage_.get('training_rows')} rows from {len(batches)} batches: {', '.join(batches)}")
    )
    out.print(
        _safe(
            f"  parent champion {lineage_.get('parent_champion')}; spec {str(lineage_.get('spec_hash'))[:12]}; "
            f"git {str(lineage_.get('git_commit'))[:12]}"
        )
    )
    out.print(
        _safe(f"  metrics {document['metrics']}; gates passed: {document['gates']}; decision {document['decision']}")
    )
    for move in document["alias_moves"]:
        out.print(_safe(f"  {move['at']}: {move['alias']} {move['from']} -> {move['to']} ({move['reason']})"))


@app.command()
def doctor(
    model: Annotated[str, typer.Argument(help="Model name.")],
    json_output: JsonOption = False,
) -> None:
    """Registry and outbox integrity: aliases name intact versions, no orphans, no event stuck in the outbox.

    Exit 1 when a problem is found (warnings such as orphans alone exit 0).

    Example:  driftline doctor example --json
    """
    from driftline import registry
    from driftline.event_sink import DOCTOR_LOOKBACK, outbox_health
    from driftline.layout import validate_name
    from driftline.prefect_http import PrefectEventSink
    from driftline.spec import missing_spec_problem

    settings, store = _remote()
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
    if json_output:
        out.print_json(json.dumps(document))
    else:
        verdict = "[green]healthy[/green]" if document["healthy"] else "[red]problems[/red]"
        out.print(f"{_safe(model)}: {verdict}, {report.checked_versions} version(s), {len(records)} outbox event(s)")
        for problem in document["problems"]:
            out.print(f"[red]problem[/red]: {_safe(problem)}")
        for warning in document["warnings"]:
            out.print(f"[yellow]warning[/yellow]: {_safe(warning)}")
    if not document["healthy"]:
        raise typer.Exit(1)


@app.command("shadow")
def shadow_status(
    model: Annotated[str, typer.Argument(help="Model name.")],
    json_output: JsonOption = False,
) -> None:
    """The running shadow test: candidate, paired rows, estimate and anytime-valid bounds, verdict.

    The estimate is the mean per-row loss difference (candidate minus champion): negative is better.

    Example:  driftline shadow example --json
    """
    from driftline import evaluation, layout, registry, shadow
    from driftline.layout import validate_name
    from driftline.spec import parse_spec

    settings, store = _remote()
    model = validate_name(model, "model")
    candidate = registry.read_alias(store, model, "shadow")
    document: dict = {"candidate": None, "n": 0, "estimate": None, "lower": None, "upper": None, "verdict": None}
    if candidate is not None and candidate.version is not None:
        document["candidate"] = candidate.version
        state = evaluation.read_shadow_state(store, model, candidate.version)
        if state is None:
            document.update(verdict="continue", reasons=["no labelled rows scored by both models yet"])
        else:
            spec = parse_spec(store.get(layout.model_spec(model)), layout.model_spec(model))
            # The test's clock is event time: it stands where the last folded batch left it.
            verdict = shadow.decide(state, spec.shadow, datetime.fromisoformat(state.updated_at))
            document.update(verdict.to_dict())
            document.update(
                candidate=state.candidate,
                champion=state.champion,
                started_at=state.started_at,
                history=state.history,
                latency_p99_ms=state.latency_p99_ms,
            )
    if json_output:
        out.print_json(json.dumps(document, default=str))
        return
    if document["candidate"] is None:
        out.print(f"{_safe(model)}: no candidate in shadow")
        return

    def fmt(value):
        return "-" if value is None else f"{value:.5f}"

    out.print(
        f"{_safe(model)}: candidate {_safe(document['candidate'])} vs champion {_safe(document.get('champion', '?'))}: "
        f"[bold]{_safe(document['verdict'])}[/bold] after {document['n']:,} paired rows"
    )
    out.print(
        f"  mean loss difference {fmt(document['estimate'])}, "
        f"anytime-valid interval [{fmt(document['lower'])}, {fmt(document['upper'])}]"
    )
    for reason in document.get("reasons", []):
        out.print(f"  - {_safe(reason)}")


@app.command("promote")
def promote_command(
    model: Annotated[str, typer.Argument(help="Model name.")],
    version: Annotated[str, typer.Argument(help="Version to make champion (see `driftline models`).")],
) -> None:
    """Make a version champion now (compare-and-swap); the replaced champion becomes `previous`.

    Needed when the spec says `promotion: manual`; also lets a person overrule the shadow test.

    Example:  driftline promote example v20261126t101500-3fa2
    """
    from driftline import evaluation, layout
    from driftline.cli import prefect_api
    from driftline.events import MODEL_PROMOTED, new_event
    from driftline.layout import validate_name
    from driftline.promotion import promote
    from driftline.spec import parse_spec

    settings, store = _remote()
    model, version = validate_name(model, "model"), validate_name(version, "version")
    spec = parse_spec(store.get(layout.model_spec(model)), layout.model_spec(model))
    switch = promote(store, model, version, "manual: driftline promote")
    evaluation.start_guard(store, spec, switch.champion, switch.previous, datetime.now(UTC))
    console.print(f"{_safe(model)}: champion {_safe(switch.previous or '-')} -> [bold]{_safe(switch.champion)}[/bold]")
    _announce(settings, store, new_event(model, MODEL_PROMOTED, switch.to_dict()), prefect_api)


@app.command("rollback")
def rollback_command(
    model: Annotated[str, typer.Argument(help="Model name.")],
    to: Annotated[str | None, typer.Option("--to", help="Version to restore (default: the previous champion).")] = None,
) -> None:
    """Restore the previous champion (or --to VERSION); the demoted one becomes `previous`.

    Example:  driftline rollback example
    """
    from driftline.cli import prefect_api
    from driftline.events import MODEL_ROLLED_BACK, new_event
    from driftline.layout import validate_name
    from driftline.promotion import rollback

    settings, store = _remote()
    model = validate_name(model, "model")
    switch = rollback(store, model, "manual: driftline rollback", to=validate_name(to, "version") if to else None)
    console.print(
        f"{_safe(model)}: champion {_safe(switch.previous)} -> [bold]{_safe(switch.champion)}[/bold] (rolled back)"
    )
    _announce(settings, store, new_event(model, MODEL_ROLLED_BACK, switch.to_dict()), prefect_api)


def _announce(settings, store, record, prefect_api) -> None:
    """Send an event; the alias already moved, so an unreachable server only delays the announcement."""
    from driftline.prefect_http import PrefectEventSink

    sink = PrefectEventSink(store, settings.prefect_api_url)
    try:
        prefect_api.check_server(settings.prefect_api_url)
        sink.publish(record)
    except InfrastructureError as error:
        sink.keep(record)
        console.print(f"[yellow]event kept in the outbox, not sent[/yellow]: {_safe(error)}")


@app.command()
def profile(
    file: Annotated[Path, typer.Argument(help="Parquet file to profile.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Where to write the whylogs profile (.bin).")],
    chunk_rows: Annotated[int, typer.Option(min=1000, help="Rows per streamed chunk (bounds memory).")] = 250_000,
) -> None:
    """Profile a parquet file with whylogs, streamed in chunks; no server needed.

    Example:  driftline profile data/reference.parquet -o reference.bin
    """
    import time as clock

    import pyarrow.parquet as pq
    from rich.progress import Progress

    from driftline import profiling

    schema = profiling.parquet_schema(file)
    total = pq.ParquetFile(str(file)).metadata.num_rows  # pyarrow opens the path itself: no glob
    profiler = profiling.Profiler(schema)
    started = clock.perf_counter()
    with Progress(console=console, transient=True) as progress:
        bar = progress.add_task(f"profiling {_safe(file.name)}", total=total)
        for chunk in profiling.iter_parquet_chunks(file, chunk_rows):
            profiler.update(chunk)
            progress.update(bar, advance=chunk.height)
    data = profiling.serialize(profiler.view())
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_bytes(data)
    seconds = clock.perf_counter() - started
    console.print(
        f"{profiler.rows:,} rows x {len(profiler.kinds)} columns in {seconds:.2f} s "
        f"({profiler.rows / max(seconds, 1e-9):,.0f} rows/s) -> {_safe(output)} ({len(data) / 1024:.0f} KiB)"
    )
    if profiler.skipped:
        console.print(f"[yellow]skipped[/yellow] (no sketch for these types): {_safe(profiler.skipped)}")


@app.command()
def drift(
    reference: Annotated[Path, typer.Argument(help="Reference whylogs profile (.bin).")],
    current: Annotated[Path, typer.Argument(help="Current whylogs profile (.bin).")],
    json_output: JsonOption = False,
    png: Annotated[Path | None, typer.Option("--png", help="Also write a PNG of the report.")] = None,
    markdown: Annotated[Path | None, typer.Option("--markdown", help="Also write the markdown report.")] = None,
    spec_file: Annotated[
        Path | None, typer.Option("--spec", help="Use a spec's features and drift policy (default: all columns).")
    ] = None,
    exclude: Annotated[
        list[str] | None,
        typer.Option("--exclude", help="Column to leave out (repeatable), e.g. ids and timestamps, which always move."),
    ] = None,
) -> None:
    """Compare two profiles; no server needed. Exit 0 no drift, 1 drift.

    Without --spec every shared column is compared, with its kind inferred; leave out ids and
    timestamps with --exclude.

    Example:  driftline drift reference.bin today.bin --exclude id --exclude ts --png drift.png
    """
    from driftline import profiling, reports
    from driftline.drift import compare_profiles
    from driftline.spec import load_spec

    reference_view = profiling.read_profile(reference)
    current_view = profiling.read_profile(current)
    options: dict = {}
    if spec_file is not None:
        spec = load_spec(spec_file)
        options = {
            "numeric": spec.features.numeric,
            "categorical": spec.features.categorical,
            "policy": spec.drift,
        }
    if not options:
        from driftline.drift import infer_kind

        shared = sorted(set(reference_view.get_columns()) & set(current_view.get_columns()) - set(exclude or []))
        kinds = {name: infer_kind(reference_view, name) for name in shared}
        options = {
            "numeric": [name for name, kind in kinds.items() if kind == "numeric"],
            "categorical": [name for name, kind in kinds.items() if kind == "categorical"],
        }
    report = compare_profiles(reference_view, current_view, **options)
    if png is not None:
        png.write_bytes(reports.drift_png(report))
        console.print(f"wrote {_safe(png)}")
    if markdown is not None:
        markdown.write_text(reports.drift_markdown(report))
        console.print(f"wrote {_safe(markdown)}")
    if json_output:
        out.print_json(json.dumps(reports.drift_json(report)))
    else:
        table = Table("feature", "statistic", "value", "threshold", "floor", "verdict")
        for row in reports.drift_table_rows(report):
            colour = {"drift": "red", "possible": "yellow", "none": "green"}[row["verdict"]]
            table.add_row(
                _safe(row["feature"]),
                row["statistic"],
                f"{row['value']:.4f}",
                f"{row['threshold']:.4f}",
                f"{row['floor']:.4f}",
                f"[{colour}]{row['verdict']}[/{colour}]",
            )
        out.print(table)
        for warning in report.warnings:
            out.print(f"[yellow]warning[/yellow]: {_safe(warning)}")
        for reason in report.reasons:
            if reason not in report.warnings:  # warnings lead the reasons: shown once, as warnings
                out.print(f"- {_safe(reason)}")
    if report.drift:
        raise typer.Exit(1)


@app.command()
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
    from driftline import reports
    from driftline.layout import validate_name
    from driftline.model_history import collect_history
    from driftline.spec import read_spec

    validate_name(model, "model")
    _, store = _remote()
    spec = read_spec(store, model)
    history = collect_history(store, spec, last=last)
    document = history.to_dict()
    if png is not None:
        png.write_bytes(reports.history_png(document))
        console.print(f"wrote {_safe(png)}")
    if json_output:
        out.print_json(json.dumps(document, default=str))
        return
    switches = {s.batch_id: s for s in history.switches if s.batch_id}
    table = Table(title=f"{_safe(model)}: {len(history.batches)} batches", min_width=100)
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
                f"[bold]{_safe(switch.kind)}[/bold]", "", "", "", _safe(switch.version), "", "", "", style="green"
            )
        perf = point.performance or {}
        loss = perf.get("estimate")
        degraded = perf.get("verdict") == "degraded"
        table.add_row(
            _safe(point.batch_id),
            str(point.rows or "-"),
            score(point.input_drift, point.input_score),
            score(point.prediction_drift, point.prediction_score),
            _safe(point.champion or "-"),
            f"{point.metric:.4f}" if point.metric is not None else "-",
            ("-" if loss is None else (f"[red]{loss:+.3f}[/red]" if degraded else f"{loss:+.3f}")),
            f"{point.latency_ms.get('p99'):.2f}" if point.latency_ms.get("p99") is not None else "-",
        )
    out.print(table)
    out.print(
        "loss + : the performance monitor's estimate of the champion's per-row loss over its holdout loss "
        "(red: proven above tolerance); bounds in --json and --png"
    )


@app.command()
def demo(
    fast: Annotated[
        bool, typer.Option("--fast", help="A short scenario: 10 batches of 2,000 rows (~5 min instead of ~14).")
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
    summary = run_demo(options, console, progress=lambda message: console.print(f"[dim]·[/dim] {_safe(message)}"))
    if json_output:
        out.print_json(json.dumps(summary.to_dict(), default=str))
    else:
        print_summary(summary, out)
    if not summary.promoted:
        raise typer.Exit(1)


def _register_commands() -> None:
    """Commands that live in their own modules (imported here, not at their call, since typer needs the signature)."""
    from driftline.cli import alerts, backtest_command, synth_command

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
        console.print(f"[red]error:[/red] {_safe(error)}", highlight=False)
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
