"""``driftline retrain``, ``shadow``, ``promote``, ``rollback``: run and steer the loop by hand."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import typer

from driftline.cli.context import JsonOption, console, out, remote, safe
from driftline.errors import InfrastructureError

if TYPE_CHECKING:
    from driftline.events.records import EventRecord
    from driftline.settings import Settings
    from driftline.storage.store import ObjectStore


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
    from driftline.storage.layout import validate_name

    validate_name(model, "model")
    settings, _ = remote()
    if not wait:
        run = prefect_api.run_deployment_and_wait(
            settings.prefect_api_url, "retrain/retrain", {"model": model, "trigger": "manual"}, timeout=0
        )
        console.print(f"started {safe(run.name)}: {safe(run.url)}")
        return
    console.print(f"running retrain/retrain for {model} (timeout {timeout:.0f} s) ...")
    run = prefect_api.run_deployment_and_wait(
        settings.prefect_api_url, "retrain/retrain", {"model": model, "trigger": "manual"}, timeout=timeout
    )
    from driftline.events.records import CANDIDATE_REGISTERED, CANDIDATE_REJECTED

    outcome = prefect_api.wait_for_flow_run_event(
        settings.prefect_api_url,
        run.id,
        [CANDIDATE_REGISTERED, CANDIDATE_REJECTED],
        timeout=15 if run.ok else 0,  # the server persists events every ~5 s
    )
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
        out.print(f"{safe(run.name)}: {safe(run.state)} in {run.seconds:.0f} s ({safe(run.url)})")
        if outcome:
            payload = outcome["payload"]
            out.print(f"{safe(payload['version'])}: {safe(payload['decision'])}; metrics {safe(payload['metrics'])}")
            out.print(f"gates: {safe(payload['gate_summary'])}")
        else:
            out.print("no candidate was built (duplicate, shadow busy or waiting for labels: see the run's logs)")
    if not run.ok:
        raise InfrastructureError(f"retrain run {run.name} ended {run.state}; see {run.url}")
    if outcome and outcome["event"] == CANDIDATE_REJECTED:
        raise typer.Exit(1)


def shadow_status(
    model: Annotated[str, typer.Argument(help="Model name.")],
    json_output: JsonOption = False,
) -> None:
    """The running shadow test: candidate, paired rows, estimate and anytime-valid bounds, verdict.

    The estimate is the mean per-row loss difference (candidate minus champion): negative is better.

    Example:  driftline shadow example --json
    """
    from driftline.loop import evaluation
    from driftline.storage.layout import validate_name

    _, store = remote()
    model = validate_name(model, "model")
    document = evaluation.read_shadow_status(store, model)
    if json_output:
        out.print_json(json.dumps(document, default=str))
        return
    if document["candidate"] is None:
        out.print(f"{safe(model)}: no candidate in shadow")
        return

    def fmt(value):
        return "-" if value is None else f"{value:.5f}"

    out.print(
        f"{safe(model)}: candidate {safe(document['candidate'])} vs champion {safe(document.get('champion', '?'))}: "
        f"[bold]{safe(document['verdict'])}[/bold] after {document['n']:,} paired rows"
    )
    out.print(
        f"  mean loss difference {fmt(document['estimate'])}, "
        f"anytime-valid interval [{fmt(document['lower'])}, {fmt(document['upper'])}]"
    )
    for reason in document.get("reasons", []):
        out.print(f"  - {safe(reason)}")


def promote_command(
    model: Annotated[str, typer.Argument(help="Model name.")],
    version: Annotated[str, typer.Argument(help="Version to make champion (see `driftline models`).")],
) -> None:
    """Make a version champion now (compare-and-swap); the replaced champion becomes `previous`.

    Needed when the spec says `promotion: manual`; also lets a person overrule the shadow test.

    Example:  driftline promote example v20261126t101500-3fa2
    """
    from driftline.events.records import MODEL_PROMOTED, new_event
    from driftline.loop import evaluation
    from driftline.loop.promotion import promote
    from driftline.models.spec import read_spec
    from driftline.storage.layout import validate_name

    settings, store = remote()
    model, version = validate_name(model, "model"), validate_name(version, "version")
    spec = read_spec(store, model)
    switch = promote(store, model, version, "manual: driftline promote")
    evaluation.start_guard(store, spec, switch.champion, switch.previous, datetime.now(UTC))
    console.print(f"{safe(model)}: champion {safe(switch.previous or '-')} -> [bold]{safe(switch.champion)}[/bold]")
    _announce(settings, store, new_event(model, MODEL_PROMOTED, switch.to_dict()))
    _mlflow().mirror_after_move(settings, store, model, console)


def rollback_command(
    model: Annotated[str, typer.Argument(help="Model name.")],
    to: Annotated[str | None, typer.Option("--to", help="Version to restore (default: the previous champion).")] = None,
) -> None:
    """Restore the previous champion (or --to VERSION); the demoted one becomes `previous`.

    Example:  driftline rollback example
    """
    from driftline.events.records import MODEL_ROLLED_BACK, new_event
    from driftline.loop.promotion import rollback
    from driftline.storage.layout import validate_name

    settings, store = remote()
    model = validate_name(model, "model")
    switch = rollback(store, model, "manual: driftline rollback", to=validate_name(to, "version") if to else None)
    console.print(
        f"{safe(model)}: champion {safe(switch.previous)} -> [bold]{safe(switch.champion)}[/bold] (rolled back)"
    )
    _announce(settings, store, new_event(model, MODEL_ROLLED_BACK, switch.to_dict()))
    _mlflow().mirror_after_move(settings, store, model, console)


def _mlflow():
    """The MLflow mirror's CLI hooks (imported when used: most commands never need them)."""
    from driftline.cli import mlflow_mirror

    return mlflow_mirror


def _announce(settings: Settings, store: ObjectStore, record: EventRecord) -> None:
    """Send an event; the alias already moved, so an unreachable server only delays the announcement."""
    from driftline.cli import prefect_api
    from driftline.events.prefect_http import PrefectEventSink

    sink = PrefectEventSink(store, settings.prefect_api_url)
    try:
        prefect_api.check_server(settings.prefect_api_url)
        sink.publish(record)
    except InfrastructureError as error:
        sink.keep(record)
        console.print(f"[yellow]event kept in the outbox, not sent[/yellow]: {safe(error)}")
