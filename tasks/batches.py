"""Tasks over feature batches: load the spec, profile, quarantine, check drift, publish artifacts."""

from __future__ import annotations

from functools import partial

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from driftline.data import batches, distributed
from driftline.loop import drift_checks
from driftline.models.spec import ModelSpec, read_spec
from driftline.reports import renderings
from driftline.settings import Settings
from driftline.storage import layout
from tasks.common import artifact_key, store
from tasks.pictures import publish_picture


@task(retries=2, retry_delay_seconds=[1, 5], cache_policy=NO_CACHE)
def load_spec(model: str) -> ModelSpec:
    """Read and validate the model's spec from S3."""
    return read_spec(store(), model)


@task(retries=2, retry_delay_seconds=[2, 10], cache_policy=NO_CACHE)
def profile_batch_object(spec: ModelSpec, batch_id: str) -> batches.ProfiledBatch:
    """Download, validate and profile a stored batch (partitions on Dask when large); store its profile."""
    settings = Settings()
    if settings.dask_address is None and settings.dask_min_rows is None:
        return batches.profile_stored_batch(store(), spec, batch_id)
    # distributed.profile_batch_file applies the rule (distributed.use_dask) once the batch's rows are known.
    remote_url = distributed.s3_url(settings, layout.batch_data(spec.name, batch_id))
    profile = partial(distributed.profile_batch_file, settings=settings, remote_url=remote_url)
    return batches.profile_stored_batch(store(), spec, batch_id, profile=profile)


@task(cache_policy=NO_CACHE)
def quarantine_batch(model: str, batch_id: str, check: batches.BatchCheck) -> str:
    """Record why the batch was rejected."""
    return batches.quarantine(store(), model, batch_id, check)


@task(cache_policy=NO_CACHE)
def quarantine_misnamed_batch(model: str, key: str) -> str:
    """Record that a batch object's name is not a valid batch id, so it is skipped from then on."""
    return batches.quarantine_misnamed(store(), model, key)


@task(retries=2, retry_delay_seconds=[1, 5], cache_policy=NO_CACHE)
def check_drift(spec: ModelSpec, batch_id: str) -> drift_checks.DriftCheck:
    """Compare the batch's profile with the reference and decide on drift."""
    return drift_checks.check_batch_drift(store(), spec, batch_id)


@task(cache_policy=NO_CACHE)
def publish_drift_artifacts(check: drift_checks.DriftCheck) -> None:
    """A markdown report and a per-feature table, keyed per model (latest wins in the UI)."""
    title = f"Drift of batch {check.batch_id} ({check.model})"
    markdown = renderings.drift_check_markdown(check, title)
    create_markdown_artifact(key=artifact_key("drift", check.model), markdown=markdown, description=title)
    create_table_artifact(
        key=artifact_key("drift-table", check.model),
        table=renderings.drift_table_rows(check.report),
        description=title,
    )


@task(cache_policy=NO_CACHE)
def publish_drift_picture(check: drift_checks.DriftCheck) -> None:
    """The drift report's PNG beside its markdown and table (DRIFTLINE_UI_PICTURES says how)."""
    publish_picture(
        artifact_key("drift-plot", check.model),
        layout.drift_plot(check.model, check.batch_id),
        lambda: renderings.drift_png(check.report),
        f"Drift of batch {check.batch_id} ({check.model})",
    )
