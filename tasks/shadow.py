"""Tasks of shadow-evaluate and promote: thin wrappers over driftline.loop.evaluation / promotion."""

from __future__ import annotations

from datetime import UTC, datetime

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from driftline.loop import evaluation, promotion, recheck
from driftline.models import registry
from driftline.models.spec import ModelSpec, read_spec
from driftline.reports import renderings
from driftline.reports.model_history import collect_history
from driftline.settings import Settings
from driftline.storage import layout
from tasks.common import artifact_key, store
from tasks.mlflow_mirror import mirror_to_mlflow
from tasks.pictures import publish_picture


@task(cache_policy=NO_CACHE)
def evaluate_labelled_batch(spec: ModelSpec, batch_id: str) -> evaluation.Evaluation:
    """Fold the batch into the running shadow test and guard."""
    return evaluation.evaluate_batch(store(), spec, batch_id, datetime.now(UTC))


@task(cache_policy=NO_CACHE)
def recheck_waiting_retrain(spec: ModelSpec) -> recheck.Recheck:
    """The labels re-check of the drift retrain that waits for labels (``recheck.recheck_waiting``): due when a
    retrain run would build a candidate now."""
    settings = Settings()
    # A window above the Dask rule is assembled on the cluster by the retrain run, never read here.
    on_dask = bool(settings.dask_address) or settings.dask_min_rows is not None
    return recheck.recheck_waiting(store(), spec, read_window=not on_dask)


@task(cache_policy=NO_CACHE)
def publish_shadow_artifact(result: evaluation.Evaluation) -> None:
    """Running estimate and bounds of the shadow test (table over batches, markdown summary)."""
    state, verdict = result.shadow_state, result.shadow_verdict
    if state is None or verdict is None:
        return
    title = f"Shadow test of {state.candidate} vs {state.champion} ({state.model}): {verdict.verdict}"
    markdown = renderings.shadow_markdown(verdict, title)
    create_markdown_artifact(key=artifact_key("shadow", state.model), markdown=markdown, description=title)
    publish_picture(
        artifact_key("shadow-plot", state.model),
        layout.shadow_plot(state.model, state.candidate),
        lambda: renderings.bounds_png(state.history, title),
        title,
    )
    rows = renderings.shadow_table_rows(state)
    create_table_artifact(key=artifact_key("shadow-bounds", state.model), table=rows, description=title)


@task(retries=2, retry_delay_seconds=[2, 10], cache_policy=NO_CACHE)
def fold_champion_performance(spec: ModelSpec, batch_id: str) -> tuple[evaluation.PerformanceUpdate | None, str | None]:
    """Fold the batch into the champion's performance monitor (None and a note when there is nothing to watch)."""
    return evaluation.fold_champion_performance(store(), spec, batch_id, datetime.now(UTC))


@task(retries=2, retry_delay_seconds=[2, 10], cache_policy=NO_CACHE)
def record_performance_announcement(model: str, champion: str, event_id: str) -> None:
    """The degradation is announced: keep the event id so no later run announces it again."""
    evaluation.record_announcement(store(), model, champion, event_id)


@task(cache_policy=NO_CACHE)
def publish_performance_artifact(update: evaluation.PerformanceUpdate) -> None:
    """The champion's performance monitor: markdown summary, a table of its history, the monitor figure."""
    state, verdict = update.state, update.verdict
    title = f"Performance of champion {state.champion} ({state.model}): {verdict.verdict}"
    markdown = renderings.performance_markdown(state, verdict, title)
    create_markdown_artifact(key=artifact_key("performance", state.model), markdown=markdown, description=title)
    rows = renderings.performance_table_rows(state)
    create_table_artifact(key=artifact_key("performance-history", state.model), table=rows, description=title)
    publish_picture(
        artifact_key("monitor", state.model),
        layout.monitor_plot(state.model, update.batch_id),
        lambda: _monitor_png(state.model),
        f"Monitor of {state.model} after batch {update.batch_id}",
    )


def _monitor_png(model: str) -> bytes:
    """`driftline monitor --png` over the model's last DRIFTLINE_UI_MONITOR_BATCHES batches."""
    spec = read_spec(store(), model)
    history = collect_history(store(), spec, last=Settings().ui_monitor_batches, read_all=False)
    return renderings.history_png(history.to_dict())


@task(cache_policy=NO_CACHE)
def promote_version(spec: ModelSpec, version: str, reason: str) -> promotion.Switchover:
    """Compare-and-swap the champion alias, then open the guard against the replaced champion."""
    switch = promotion.promote(store(), spec.name, version, reason)
    evaluation.start_guard(store(), spec, switch.champion, switch.previous, datetime.now(UTC))
    mirror_to_mlflow(spec.name)
    return switch


@task(cache_policy=NO_CACHE)
def retire_candidate(model: str, candidate: str, reason: str) -> bool:
    """The shadow test ended without a promotion: free the shadow slot (if it still names the candidate)."""
    cleared = registry.clear_alias_if(store(), model, "shadow", candidate, reason)
    mirror_to_mlflow(model)
    return cleared


@task(cache_policy=NO_CACHE)
def roll_back(spec: ModelSpec, reason: str) -> promotion.Switchover:
    """Restore the previous champion."""
    switch = promotion.rollback(store(), spec.name, reason)
    mirror_to_mlflow(spec.name)
    return switch


@task(cache_policy=NO_CACHE)
def current_shadow(model: str) -> str | None:
    state = registry.read_alias(store(), model, "shadow")
    return state.version if state else None
