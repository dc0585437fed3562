"""Tasks of the retrain flow: thin wrappers over driftline.loop.cooldown / retraining / registry."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime
from importlib import metadata as package_metadata
from pathlib import Path

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from driftline.data import distributed
from driftline.errors import InfrastructureError, InputError, ObjectNotFoundError
from driftline.loop import cooldown, recheck, retraining, rules
from driftline.loop.cooldown import RetrainRequest
from driftline.loop.rules import Admission
from driftline.models.spec import ModelSpec
from driftline.reports import renderings
from driftline.settings import Settings
from driftline.storage.store import S3Store
from tasks.common import artifact_key, store
from tasks.mlflow_mirror import mirror_to_mlflow

PACKAGES = ("driftline", "xgboost", "polars", "whylogs", "prefect", "numpy", "pyarrow", "boto3")


@task(cache_policy=NO_CACHE)
def build_request(
    model: str,
    trigger: str,
    drift_event_id: str | None,
    drift_batch_id: str | None,
    drift_onset: str | None,
    reference_version: str | None,
    drift_kind: str | None = None,
) -> RetrainRequest | None:
    """The request this run serves; for a labels re-check, the pending one (None if nothing waits or it is
    stale). A drift request keeps the earliest onset of a pending one for the same reference."""
    if trigger == "labels":
        pending, stale = cooldown.waiting_request(store(), model)
        if stale:
            print(stale)
        return pending
    # Templated trigger parameters arrive as "" when the event lacks the field.
    drift_event_id, drift_batch_id, drift_onset, reference_version, drift_kind = (
        value or None for value in (drift_event_id, drift_batch_id, drift_onset, reference_version, drift_kind)
    )
    request = RetrainRequest(
        model=model,
        trigger="drift" if trigger == "drift" else "manual",
        requested_at=datetime.now(UTC).isoformat(),
        drift_event_id=drift_event_id,
        drift_batch_id=drift_batch_id,
        drift_onset=drift_onset,
        reference_version=reference_version,
        drift_kind=drift_kind if drift_kind in ("input", "performance", "prediction") else None,
    )
    if request.trigger == "drift":
        request = rules.keep_earliest_onset(request, cooldown.read_pending(store(), model))
    return request


@task(cache_policy=NO_CACHE)
def admit_retrain(spec: ModelSpec, request: RetrainRequest, rechecking: bool) -> Admission:
    """Admit the request (stale, duplicate, shadow slot) and create its claim (``cooldown.admit_and_claim``)."""
    return cooldown.admit_and_claim(store(), spec, request, rechecking=rechecking)


@task(cache_policy=NO_CACHE)
def champion_batches(model: str) -> list[str] | None:
    """The training batches of the current champion (None without one): a retrain on exactly those waits."""
    return recheck.champion_batches(store(), model)


def _dask_window_reason(spec: ModelSpec, settings: Settings) -> str | None:
    """Why the window stays in its parquet partitions on Dask (its batches' footer rows), None if it does not."""
    if not settings.dask_address and settings.dask_min_rows is None:
        return None  # Dask is off: not one extra request
    current = store()
    if not isinstance(current, S3Store):
        return None  # workers read S3 objects; a memory store's window is assembled here
    try:
        ids, _ = retraining.window_batch_ids(current, spec)
        parts, _, _ = distributed.locate_parts(current, spec, ids, _locate(settings))
    except (InputError, ObjectNotFoundError):
        return None  # retraining.prepare_window reports it as it always has
    if settings.dask_address:
        return distributed.dask_reason(0, settings)
    distributed.require_dask(f"DRIFTLINE_DASK_MIN_ROWS={settings.dask_min_rows}")
    return distributed.dask_reason(distributed.window_rows(parts, distributed.storage_options(settings)), settings)


def _locate(settings: Settings):
    return lambda key: distributed.s3_url(settings, key)


@task(retries=1, retry_delay_seconds=[5], cache_policy=NO_CACHE)
def prepare_window(spec: ModelSpec, request: RetrainRequest) -> retraining.PreparedWindow:
    """Assemble the labelled training window (on Dask, from its parquet partitions, above the Dask rule)."""
    settings = Settings()
    reason = _dask_window_reason(spec, settings)
    if reason is None:
        return retraining.prepare_window(store(), spec, request)
    get_run_logger().info("window on Dask from its parquet partitions: %s", reason)
    with distributed.dask_client(settings) as client:
        window, _ = distributed.prepare_window(
            client, store(), spec, request, _locate(settings), distributed.storage_options(settings)
        )
    return window


@task(cache_policy=NO_CACHE)
def wait_for_labels(request: RetrainRequest, reason: str) -> str:
    """Record the request; the labels trigger re-checks it when labels arrive."""
    return cooldown.record_pending(store(), request, reason)


@task(cache_policy=NO_CACHE)
def take_request(request: RetrainRequest) -> bool:
    """Claim the drift this run answers (False: another run already builds for it), then clear the wait."""
    if not cooldown.claim(store(), request, cooldown.answer_key(request)):
        return False
    cooldown.clear_pending(store(), request.model)
    return True


def _environment() -> dict:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = package_metadata.version(name)
        except package_metadata.PackageNotFoundError:
            versions[name] = None
    try:
        commit = (
            subprocess.run(
                ["git", "rev-parse", "HEAD"],
                capture_output=True,
                text=True,
                timeout=5,
                cwd=Path(__file__).resolve().parents[1],
            ).stdout.strip()
            or None
        )
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {"git_commit": commit, "package_versions": versions, "flow_run_id": flow_run.get_id()}


@task(cache_policy=NO_CACHE)
def build_candidate(
    spec: ModelSpec, request: RetrainRequest, window: retraining.PreparedWindow
) -> retraining.Candidate:
    """Train, run every gate, register the version (booster, metadata, reference profile); mirror it to MLflow."""
    candidate = _build_candidate(spec, request, window)
    mirror_to_mlflow(spec.name)
    return candidate


def _build_candidate(
    spec: ModelSpec, request: RetrainRequest, window: retraining.PreparedWindow
) -> retraining.Candidate:
    logger = get_run_logger()
    settings = Settings()
    arguments = {
        "nthread": settings.nthread,
        "environment": _environment(),
        "progress": lambda message: logger.info("%s", message),
    }
    if window.cluster is not None:
        logger.info("training on Dask from %d parquet partition(s)", len(window.cluster.parts))
        with distributed.dask_client(settings) as client:
            on_cluster = distributed.open_window(
                client, spec, request, window.cluster.parts, distributed.storage_options(settings)
            )
            if on_cluster.rows != window.cluster.rows:
                raise InfrastructureError(
                    f"model {spec.name!r}: the window has {on_cluster.rows} rows on Dask, "
                    f"{window.cluster.rows} when prepared; its batches changed meanwhile"
                )
            trainer = distributed.ClusterWindowTrainer(on_cluster)
            return retraining.build_candidate(store(), spec, request, window, cluster=trainer, **arguments)
    reason = distributed.dask_reason(window.frame.height, settings)
    if reason is None:
        return retraining.build_candidate(store(), spec, request, window, **arguments)
    logger.info("training on Dask: %s", reason)
    with distributed.dask_client(settings) as client:
        return retraining.build_candidate(
            store(), spec, request, window, train=distributed.dask_trainer(client), **arguments
        )


@task(cache_policy=NO_CACHE)
def place_candidate(spec: ModelSpec, candidate: retraining.Candidate) -> retraining.Placement:
    """Move the alias the decision calls for (compare-and-swap); MLflow's aliases follow."""
    placement = retraining.place_candidate(store(), spec, candidate)
    mirror_to_mlflow(spec.name)
    return placement


@task(cache_policy=NO_CACHE)
def publish_gate_report(candidate: retraining.Candidate) -> None:
    """The gate report as a markdown artifact, keyed per model."""
    title = f"Gates of {candidate.model} {candidate.version}: {candidate.decision}"
    markdown = renderings.gates_markdown(candidate, title)
    create_markdown_artifact(key=artifact_key("gates", candidate.model), markdown=markdown, description=title)
