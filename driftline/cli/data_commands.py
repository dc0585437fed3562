"""``driftline ingest`` and ``driftline labels``: a features batch or its labels to S3, announced
(``driftline.cli.uploads``)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from driftline.cli.context import JsonOption, console, out, remote, safe
from driftline.errors import InfrastructureError, InputError


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
    from driftline.cli import prefect_api
    from driftline.cli.uploads import submit_batch
    from driftline.data.batches import check_batch_file, default_batch_id
    from driftline.events.prefect_http import PrefectEventSink
    from driftline.events.records import BATCH_PROFILED, BATCH_REJECTED, model_resource_id
    from driftline.models.spec import read_spec
    from driftline.storage.layout import validate_name

    validate_name(model, "model")
    batch_id = validate_name(batch_id, "batch id") if batch_id else default_batch_id()
    if not file.is_file():
        raise InputError(f"{file}: no such file")
    settings, store = remote()
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
    console.print(f"uploaded {safe(file)} -> {safe(store.location(key))}")
    outcome: dict = {
        "model": model,
        "batch_id": batch_id,
        "key": key,
        "event_id": event_id,
        "announced": announced,
        "at": started.isoformat(),
    }
    if announced:
        console.print(f"announced driftline.batch.arrived ({safe(event_id)})")
    else:
        console.print(
            f"[yellow]warning[/yellow]: the Prefect server is unreachable ({safe(unreachable)}); "
            f"driftline.batch.arrived ({safe(event_id)}) waits in the S3 outbox and watch-batches re-sends it "
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
            out.print(f"[red]rejected[/red]: {safe('; '.join(payload.get('problems', [])))}")
        else:
            verdict = "[red]drift[/red]" if payload.get("drift") else "[green]no drift[/green]"
            out.print(f"profiled {payload.get('rows')} rows: {verdict}, score {payload.get('score'):.2f}")
            out.print(f"report: {safe(payload.get('report_key'))}")
    if wait and (outcome["outcome"] == BATCH_REJECTED or outcome["payload"].get("drift")):
        raise typer.Exit(1)


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
    from driftline.events.prefect_http import PrefectEventSink
    from driftline.models.spec import read_spec
    from driftline.storage.layout import validate_name

    validate_name(model, "model")
    validate_name(batch_id, "batch id")
    settings, store = remote()
    spec = read_spec(store, model)
    try:
        frame = pl.read_parquet(file, glob=False)  # a path, never a pattern: 'g[1].parquet' is one file
    except FileNotFoundError as error:
        raise InputError(f"{file}: no such file") from error
    except Exception as error:
        raise InputError(f"{file}: not a readable parquet file ({error})") from error
    api_url = prefect_api.check_server(settings.prefect_api_url)
    key, rows, share = submit_labels(PrefectEventSink(store, api_url), spec, batch_id, frame, str(file))
    console.print(f"stored {rows} labels ({share:.0%} of the batch) -> {safe(store.location(key))}")
    console.print("announced driftline.labels.arrived")
