"""Tasks of the retrain flow: thin wrappers over driftline.cooldown / retraining / registry."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime
from importlib import metadata as package_metadata
from pathlib import Path

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from driftline import cooldown, registry, retraining
from driftline.cooldown import Admission, RetrainRequest
from driftline.settings import Settings
from driftline.spec import ModelSpec
from tasks.common import artifact_key, store

PACKAGES = ("driftline", "xgboost", "polars", "whylogs", "prefect", "numpy", "pyarrow", "boto3")


@task(cache_policy=NO_CACHE)
def build_request(
    model: str,
    trigger: str,
    drift_event_id: str | None,
    drift_batch_id: str | None,
    drift_onset: str | None,
    reference_version: str | None,
) -> RetrainRequest | None:
    """The request this run serves; for a labels re-check, the pending one (None if nothing waits)."""
    if trigger == "labels":
        return cooldown.read_pending(store(), model)
    # Templated trigger parameters arrive as "" when the event lacks the field.
    drift_event_id, drift_batch_id, drift_onset, reference_version = (
        value or None for value in (drift_event_id, drift_batch_id, drift_onset, reference_version)
    )
    return RetrainRequest(
        model=model,
        trigger="drift" if trigger == "drift" else "manual",
        requested_at=datetime.now(UTC).isoformat(),
        drift_event_id=drift_event_id,
        drift_batch_id=drift_batch_id,
        drift_onset=drift_onset,
        reference_version=reference_version,
    )


@task(cache_policy=NO_CACHE)
def admit_retrain(spec: ModelSpec, request: RetrainRequest, rechecking: bool) -> Admission:
    """Claim the drift window (drift triggers) and check the shadow slot."""
    shadow = registry.read_alias(store(), spec.name, "shadow")
    claimed, key = None, None
    if request.trigger == "drift" and not rechecking:
        occurred = datetime.fromisoformat(request.requested_at)
        key = cooldown.idempotency_key(request.reference_version, occurred, spec.cooldown.seconds)
        claimed = cooldown.claim(store(), request, key)
    return cooldown.admit(
        request,
        claimed=claimed,
        shadow_version=shadow.version if shadow else None,
        supersede_shadow=spec.cooldown.supersede_shadow,
        key=key,
    )


@task(retries=1, retry_delay_seconds=[5], cache_policy=NO_CACHE)
def prepare_window(spec: ModelSpec, request: RetrainRequest) -> retraining.PreparedWindow:
    """Assemble the labelled training window."""
    return retraining.prepare_window(store(), spec, request)


@task(cache_policy=NO_CACHE)
def wait_for_labels(request: RetrainRequest, reason: str) -> str:
    """Record the request; the labels trigger re-checks it when labels arrive."""
    return cooldown.record_pending(store(), request, reason)


@task(cache_policy=NO_CACHE)
def clear_pending(model: str) -> None:
    """The pending request is served."""
    cooldown.clear_pending(store(), model)


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
    """Train, run every gate, register the version (booster, metadata, reference profile)."""
    logger = get_run_logger()
    return retraining.build_candidate(
        store(),
        spec,
        request,
        window,
        nthread=Settings().nthread,
        environment=_environment(),
        progress=lambda message: logger.info("%s", message),
    )


@task(cache_policy=NO_CACHE)
def place_candidate(spec: ModelSpec, candidate: retraining.Candidate) -> retraining.Placement:
    """Move the alias the decision calls for (compare-and-swap)."""
    return retraining.place_candidate(store(), spec, candidate)


@task(cache_policy=NO_CACHE)
def publish_gate_report(candidate: retraining.Candidate) -> None:
    """The gate report as a markdown artifact, keyed per model."""
    title = f"Gates of {candidate.model} {candidate.version}: {candidate.decision}"
    markdown = f"# {title}\n\n" + "\n".join(f"- {r}" for r in candidate.reasons) + "\n\n"
    markdown += candidate.gate_report.to_markdown()
    create_markdown_artifact(key=artifact_key("gates", candidate.model), markdown=markdown, description=title)
