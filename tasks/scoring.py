"""Tasks of score-batch: who scores (champion, shadow, guarded previous champion), the scoring itself,
prediction drift and the operational metrics."""

from __future__ import annotations

from typing import Any

import polars as pl
from prefect import Task, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State, TaskRun

from driftline.errors import IntegrityError
from driftline.loop import drift_checks
from driftline.models import registry, scoring
from driftline.models.spec import ModelSpec
from driftline.settings import Settings
from driftline.storage import layout
from tasks.common import artifact_key, store


@task(cache_policy=NO_CACHE)
def scoring_roles(model: str) -> dict[str, str]:
    """role -> version for this batch: the champion, a shadow candidate, and a previous champion under guard."""
    roles: dict[str, str] = {}
    for alias in ("champion", "shadow", "previous"):
        state = registry.read_alias(store(), model, alias)
        if state is not None and state.version is not None:
            roles[alias] = state.version
    return roles


@task(cache_policy=NO_CACHE)
def is_scored(model: str, batch_id: str) -> bool:
    """Whether the batch's scoring summary is stored (the champion has scored it)."""
    return store().exists(layout.scoring_summary(model, batch_id))


@task(retries=2, retry_delay_seconds=[2, 10], cache_policy=NO_CACHE)
def load_batch(spec: ModelSpec, batch_id: str) -> pl.DataFrame:
    """Read the batch once for every model that scores it."""
    return scoring.read_batch(store(), spec, batch_id)


def retry_unless_corrupt(task: Task[Any, Any], task_run: TaskRun, state: State[Any]) -> bool:
    """Retry transient failures only: a booster that fails its integrity check does not heal."""
    return not isinstance(state.data, IntegrityError)


def failure_of(state: State[Any]) -> BaseException:
    """The exception a failed or crashed task state holds (one made from its message if it holds none)."""
    error = state.result(raise_on_failure=False)
    return error if isinstance(error, BaseException) else RuntimeError(str(state.message or state.name))


@task(retries=2, retry_delay_seconds=[2, 10], retry_condition_fn=retry_unless_corrupt, cache_policy=NO_CACHE)
def score_version(spec: ModelSpec, batch: pl.DataFrame, batch_id: str, version: str, role: str) -> scoring.ScoredBatch:
    """Predict the batch with one version and store the predictions."""
    return scoring.score(store(), spec, batch, batch_id, version, role, Settings().nthread)


@task(cache_policy=NO_CACHE)
def record_scoring_failure(model: str, batch_id: str, version: str, role: str, error: str) -> str:
    """Keep the failure of a non-champion model; the champion's output stands."""
    return scoring.record_failure(store(), model, batch_id, version, role, error)


@task(cache_policy=NO_CACHE)
def write_scoring_summary(
    model: str, batch_id: str, scored: list[scoring.ScoredBatch], failed: dict[str, tuple[str, str]]
) -> str:
    """Operational facts per version (rows, latency percentiles, failures); the shadow test reads p99."""
    return scoring.write_summary(store(), model, batch_id, scored, failed)


@task(retries=2, retry_delay_seconds=[2, 10], cache_policy=NO_CACHE)
def check_prediction_drift(
    spec: ModelSpec, batch: pl.DataFrame, batch_id: str, version: str
) -> drift_checks.PredictionDriftCheck:
    """The champion's predictions of the batch against those on its holdout, joined to the drift report."""
    onset = scoring.event_time_min(batch, spec)
    return drift_checks.check_prediction_drift(store(), spec, batch_id, version, drift_onset=onset)


@task(cache_policy=NO_CACHE)
def publish_scoring_artifact(
    model: str,
    batch_id: str,
    scored: list[scoring.ScoredBatch],
    failed: dict[str, tuple[str, str]],
    prediction: drift_checks.PredictionDriftCheck,
) -> None:
    """Operational metrics of the batch per model as a table (latest batch per model in the UI)."""
    rows = scoring.metrics_table(scoring.summarize(scored, failed))
    drift = "not checked" if not prediction.checked else ("drift" if prediction.drift else "no drift")
    description = f"Scoring of batch {batch_id} ({model}): {len(failed)} failure(s); predictions: {drift}"
    create_table_artifact(key=artifact_key("scoring", model), table=rows, description=description)
