"""Optional mirror of the registry in MLflow: every version a run and a registered model version, aliases followed.

driftline's S3 registry decides; MLflow only shows what it decided, to teams that already look there. A mirror
pass reads what S3 says (versions, their status, the aliases) and what MLflow has (runs tagged with a driftline
version, model versions by run), adds what is missing and moves MLflow's aliases and tags to match:

    driftline alias   MLflow alias    tags
    champion          champion        model version ``driftline.status``: champion, shadow, retired, rejected,
    shadow            challenger      candidate; registered model ``driftline.<alias>``: the driftline version
    previous          previous

Each pass is whole and idempotent, so any later pass repairs what an earlier one missed. A pass that fails (MLflow
down or refusing; after ``DRIFTLINE_MLFLOW_ATTEMPTS`` tries with doubling waits) records
``mlflow/<model>/pending.json``; the next pass, from any flow run of the model or ``driftline doctor``, re-tries
and removes it once MLflow is in sync. Callers never see an exception from MLflow: :func:`export_from_settings`
returns a :class:`MirrorReport`, so no decision waits for or depends on MLflow.

The model is written by MLflow's own XGBoost flavor (``mlflow.xgboost.save_model(..., model_format="ubj")``: the
booster's UBJ file and an ``MLmodel``, no pickle), and the UBJ file is then overwritten with driftline's exact
bytes so its sha256 is the one in the S3 registry (tag ``driftline.model_sha256``). MLflow users load it with
``mlflow.xgboost.load_model("models:/<model>@champion")``; the feature encoding it expects is in the run's
``driftline_metadata.json``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from driftline.errors import InputError, IntegrityError, ObjectNotFoundError
from driftline.models import registry
from driftline.settings import Settings, redact_url, redact_urls
from driftline.storage import layout
from driftline.storage.store import ObjectStore

logger = logging.getLogger(__name__)

# driftline alias -> MLflow alias. "challenger" is MLflow's documented name for the model under test.
ALIASES = {"champion": "champion", "shadow": "challenger", "previous": "previous"}
TAG = "driftline."
EXPORTED_TAG = "driftline.exported"  # set last: a run without it was cut off mid-export and is redone
MODEL_DIR = "model"
MAX_WAIT_SECONDS = 30.0
# MLflow's documented limits: 100 params and 1000 metrics per log_batch; values up to 6000 (params) and
# 8000 (tags) characters (older servers 5000: the lower bound is used).
_BATCH_PARAMS = 100
_PARAM_CHARS = 6000
_TAG_CHARS = 5000


@dataclass(frozen=True)
class Target:
    """Where one model is mirrored: tracking server, experiment and registered model names, retry bounds."""

    tracking_uri: str
    experiment: str
    registered_model: str
    attempts: int = 3
    timeout: float = 10.0

    @classmethod
    def from_settings(cls, settings: Settings, model: str) -> Target | None:
        """The model's target, None when ``DRIFTLINE_MLFLOW_TRACKING_URI`` is unset (export off)."""
        if not settings.mlflow_tracking_uri:
            return None
        return cls(
            tracking_uri=settings.mlflow_tracking_uri,
            experiment=f"{settings.mlflow_experiment_prefix}{model}",
            registered_model=f"{settings.mlflow_model_prefix}{model}",
            attempts=settings.mlflow_attempts,
            timeout=settings.mlflow_timeout,
        )


@dataclass
class MirrorReport:
    """What one mirror pass did; ``ok`` False leaves a pending record that the next pass re-tries."""

    model: str
    tracking_uri: str  # passwords redacted
    registered_model: str
    ok: bool = False
    attempts: int = 0
    exported: list[str] = field(default_factory=list)  # driftline versions that became runs in this pass
    model_versions: dict[str, str] = field(default_factory=dict)  # driftline version -> MLflow version number
    aliases: dict[str, str | None] = field(default_factory=dict)  # MLflow alias -> driftline version
    errors: list[str] = field(default_factory=list)
    pending_since: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        if self.ok:
            named = ", ".join(f"{alias} {version}" for alias, version in self.aliases.items() if version) or "none"
            return (
                f"MLflow {self.tracking_uri}: {self.registered_model} in sync ({len(self.model_versions)} version(s), "
                f"{len(self.exported)} new; aliases: {named})"
            )
        return (
            f"MLflow {self.tracking_uri}: export of {self.model} pending since {self.pending_since} after "
            f"{self.attempts} attempt(s): {'; '.join(self.errors)}"
        )


# ---------------------------------------------------------------------------------------------- pure mapping
def _text(value: Any, limit: int) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def run_tags(model: str, version: str, metadata: dict[str, Any], metadata_location: str) -> dict[str, str]:
    """Tags of a version's run: what identifies it in driftline and why it was trained.

    ``mlflow.source.git.commit`` and ``mlflow.note.content`` are MLflow's own tags (shown by its UI).
    """
    lineage = metadata.get("lineage") or {}
    gates = metadata.get("gate_report") or {}
    reasons = metadata.get("decision_reasons") or []
    tags = {
        "driftline.model": model,
        "driftline.version": version,
        "driftline.trigger": metadata.get("trigger") or "manual",
        "driftline.decision": metadata.get("decision") or "",
        "driftline.drift_event_id": lineage.get("drift_event_id") or "",
        "driftline.spec_hash": lineage.get("spec_hash") or "",
        "driftline.parent_champion": lineage.get("parent_champion") or "",
        "driftline.model_sha256": metadata.get("model_sha256") or "",
        "driftline.metadata": metadata_location,
        "driftline.gates_passed": str(gates.get("passed")).lower() if gates else "",
        "driftline.flow_run_id": lineage.get("flow_run_id") or "",
        "mlflow.source.git.commit": lineage.get("git_commit") or "",
        "mlflow.note.content": f"driftline {model} {version}: {metadata.get('decision') or '?'}\n\n"
        + "\n".join(f"- {reason}" for reason in reasons),
    }
    return {key: _text(value, _TAG_CHARS) for key, value in tags.items() if value != ""}


def run_params(metadata: dict[str, Any]) -> dict[str, str]:
    """XGBoost params as they trained, and the window's size; values as MLflow stores them (text)."""
    lineage = metadata.get("lineage") or {}
    params = {str(key): value for key, value in (metadata.get("params") or {}).items()}
    params.update(
        {
            "best_iteration": metadata.get("best_iteration"),
            "refit_rounds": metadata.get("refit_rounds"),
            "training_rows": lineage.get("training_rows"),
            "training_batches": len(lineage.get("training_batches") or []),
            "task": metadata.get("task"),
        }
    )
    return {key: _text(value, _PARAM_CHARS) for key, value in params.items() if value is not None}


def run_metrics(metadata: dict[str, Any]) -> dict[str, float]:
    """Holdout metrics and the build's timings (``timings.<name>``, seconds); non-numeric values left out."""
    values = dict(metadata.get("metrics") or {})
    values.update({f"timings.{name}": value for name, value in (metadata.get("timings") or {}).items()})
    metrics = {}
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            continue
        metrics[str(name)] = float(value)
    return metrics


def alias_changes(desired: dict[str, str | None], current: dict[str, str]) -> tuple[dict[str, str], list[str]]:
    """MLflow alias moves that make ``current`` (alias -> version number) equal ``desired`` (None: no alias).

    Returns:
        (aliases to set -> version number, aliases to delete), both in ``ALIASES`` order.
    """
    to_set = {alias: number for alias, number in desired.items() if number is not None and current.get(alias) != number}
    to_delete = [alias for alias, number in desired.items() if number is None and alias in current]
    return to_set, to_delete


def desired_aliases(aliases: dict[str, str | None], numbers: dict[str, str]) -> dict[str, str | None]:
    """MLflow alias -> version number for driftline's aliases (None where driftline's is unset or not exported)."""
    return {
        mlflow_alias: numbers.get(version) if (version := aliases.get(ours)) else None
        for ours, mlflow_alias in ALIASES.items()
    }


def backoff(attempts: int) -> list[float]:
    """Waits between ``attempts`` tries: 1 s, 2 s, 4 s, ... at most ``MAX_WAIT_SECONDS``."""
    return [min(MAX_WAIT_SECONDS, 2.0**index) for index in range(max(0, attempts - 1))]


def _millis(moment: str | None) -> int | None:
    if not moment:
        return None
    try:
        return int(datetime.fromisoformat(moment).timestamp() * 1000)
    except ValueError:
        return None


# ---------------------------------------------------------------------------------------------- MLflow side
def open_client(target: Target) -> Any:
    """An ``mlflow.MlflowClient`` for ``target``; its HTTP requests bounded by ``target.timeout``.

    MLflow's own retries (7 by default, minutes of backoff) are switched off unless the environment sets
    them: :func:`mirror` retries whole passes with its own bounded waits. Its telemetry is off too
    (driftline sends none; MLflow honours ``DO_NOT_TRACK`` only when it is exactly "true"), and so is its
    run-URL printing on stdout.

    Raises:
        InputError: MLflow is not installed.
    """
    defaults = {
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
        "MLFLOW_HTTP_REQUEST_TIMEOUT": str(max(1, round(target.timeout))),
        # Else every finished run prints its URL to stdout, into the output of `driftline doctor --json`.
        "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
    }
    for name, value in defaults.items():
        os.environ.setdefault(name, value)
    try:
        from mlflow import MlflowClient
    except ImportError as error:
        raise InputError(
            "DRIFTLINE_MLFLOW_TRACKING_URI is set but MLflow is not installed: install the extra "
            "(pip install 'driftline[mlflow]', or `make install`), or unset the setting"
        ) from error
    return MlflowClient(tracking_uri=target.tracking_uri, registry_uri=target.tracking_uri)


def _error_code(error: Exception) -> str | None:
    return getattr(error, "error_code", None)


def _experiment_id(client: Any, name: str, model: str) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    try:
        return client.create_experiment(name, tags={"driftline.model": model})
    except Exception as error:
        if _error_code(error) != "RESOURCE_ALREADY_EXISTS":
            raise
        return client.get_experiment_by_name(name).experiment_id  # another pass created it meanwhile


def _registered_model(client: Any, name: str, model: str) -> Any:
    try:
        return client.get_registered_model(name)
    except Exception as error:
        if _error_code(error) != "RESOURCE_DOES_NOT_EXIST":
            raise
    try:
        client.create_registered_model(
            name,
            tags={"driftline.model": model},
            description=f"Mirror of driftline model {model!r}: its S3 registry decides, this shows.",
        )
    except Exception as error:
        if _error_code(error) != "RESOURCE_ALREADY_EXISTS":
            raise
    return client.get_registered_model(name)


def _pages(search: Callable[[str | None], Any]) -> Iterable[Any]:
    token = None
    while True:
        page = search(token)
        yield from page
        token = getattr(page, "token", None)
        if not token:
            return


def _runs_by_version(client: Any, experiment_id: str, model: str) -> dict[str, list[Any]]:
    runs: dict[str, list[Any]] = {}
    query = f"tags.`driftline.model` = '{model}'"
    pages = _pages(lambda token: client.search_runs([experiment_id], query, max_results=1000, page_token=token))
    for run in pages:
        version = run.data.tags.get("driftline.version")
        if version:
            runs.setdefault(version, []).append(run)
    return runs


def _model_versions_by_run(client: Any, name: str) -> dict[str, Any]:
    found: dict[str, Any] = {}
    query = f"name = '{name}'"
    for model_version in _pages(lambda token: client.search_model_versions(query, max_results=1000, page_token=token)):
        # Oldest first wins: two passes racing on one version leave two; the first is the one aliases use.
        previous = found.get(model_version.run_id)
        if previous is None or int(model_version.version) < int(previous.version):
            found[model_version.run_id] = model_version
    return found


def save_model_dir(booster: bytes, metadata: dict[str, Any], path: Path) -> Path:
    """Write the version as an MLflow XGBoost model in ``path`` (``MLmodel`` + ``model.ubj``, no pickle).

    Returns:
        ``path``, whose ``model.ubj`` holds exactly ``booster``.
    """
    import mlflow.xgboost
    import xgboost

    from driftline.models import training

    mlflow.xgboost.save_model(
        training.load_booster(booster),
        str(path),
        model_format="ubj",
        # Given, so MLflow does not infer them by loading the model in a subprocess (seconds per export).
        pip_requirements=[f"xgboost=={xgboost.__version__}"],
        metadata={
            "driftline_model": metadata.get("model"),
            "driftline_version": metadata.get("version"),
            "model_sha256": metadata.get("model_sha256"),
            "feature_names": metadata.get("feature_names"),
        },
    )
    # The flavor re-serialises the booster; driftline's bytes keep the sha256 that the registry records.
    (path / "model.ubj").write_bytes(booster)
    return path


def _export_run(client: Any, store: ObjectStore, model: str, version: str, experiment_id: str, stale: list[Any]) -> Any:
    """Log ``version`` as a finished run (tags, params, metrics, artifacts, model); returns the run."""
    for run in stale:  # cut off before EXPORTED_TAG by an earlier pass: start again
        client.delete_run(run.info.run_id)
    booster, metadata = registry.load_model(store, model, version)
    started = _millis(metadata.get("created_at"))
    location = store.location(layout.model_metadata(model, version))
    tags = run_tags(model, version, metadata, location)
    run = client.create_run(experiment_id, start_time=started, tags=tags, run_name=version)
    run_id = run.info.run_id
    from mlflow.entities import Metric, Param

    params = [Param(key, value) for key, value in run_params(metadata).items()]
    stamp = started or int(time.time() * 1000)
    metrics = [Metric(key, value, stamp, 0) for key, value in run_metrics(metadata).items()]
    for start in range(0, max(len(params), 1), _BATCH_PARAMS):
        client.log_batch(run_id, metrics=metrics if start == 0 else [], params=params[start : start + _BATCH_PARAMS])
    with tempfile.TemporaryDirectory(prefix="driftline-mlflow-") as folder:
        root = Path(folder)
        documents = {
            "gate_report.json": metadata.get("gate_report") or {},
            "lineage.json": metadata.get("lineage") or {},
            "driftline_metadata.json": metadata,
        }
        for name, document in documents.items():
            (root / name).write_text(json.dumps(document, indent=2, sort_keys=True, default=str))
        save_model_dir(booster, metadata, root / MODEL_DIR)
        client.log_artifacts(run_id, str(root))
    client.set_tag(run_id, EXPORTED_TAG, "true")
    client.set_terminated(run_id, "FINISHED")
    return client.get_run(run_id)


def _sync(client: Any, store: ObjectStore, model: str, target: Target, report: MirrorReport) -> None:
    """One pass: export what MLflow lacks, then tags and aliases. MLflow errors propagate (the pass is re-tried);
    a version whose stored booster is missing or corrupt is skipped and listed in ``report.errors``."""
    described = registry.describe_model(store, model)
    experiment_id = _experiment_id(client, target.experiment, model)
    registered = _registered_model(client, target.registered_model, model)
    runs = _runs_by_version(client, experiment_id, model)
    by_run = _model_versions_by_run(client, target.registered_model)
    numbers: dict[str, str] = {}
    for summary in described["versions"]:  # oldest first: MLflow's version numbers follow driftline's order
        version, status = summary["version"], summary["status"]
        complete = sorted(
            (run for run in runs.get(version, []) if run.data.tags.get(EXPORTED_TAG) == "true"),
            key=lambda run: run.info.start_time or 0,
        )
        if complete:
            run = complete[0]
        else:
            try:
                run = _export_run(client, store, model, version, experiment_id, runs.get(version, []))
            except (ObjectNotFoundError, IntegrityError) as error:
                report.errors.append(f"{version} not exported: {error}")
                continue
            report.exported.append(version)
        model_version = by_run.get(run.info.run_id)
        if model_version is None:
            model_version = client.create_model_version(
                target.registered_model,
                source=f"{run.info.artifact_uri}/{MODEL_DIR}",
                run_id=run.info.run_id,
                tags={"driftline.version": version, "driftline.status": status},
                description=f"driftline {model} {version} ({summary['trigger']})",
            )
        elif (model_version.tags or {}).get("driftline.status") != status:
            client.set_model_version_tag(target.registered_model, model_version.version, "driftline.status", status)
        numbers[version] = str(model_version.version)
    desired = desired_aliases(described["aliases"], numbers)
    to_set, to_delete = alias_changes(desired, dict(registered.aliases or {}))
    for alias, number in to_set.items():
        client.set_registered_model_alias(target.registered_model, alias, number)
    for alias in to_delete:
        client.delete_registered_model_alias(target.registered_model, alias)
    tags = registered.tags or {}
    for ours, mlflow_alias in ALIASES.items():
        key, value = f"driftline.{mlflow_alias}", described["aliases"].get(ours)
        if value and tags.get(key) != value:
            client.set_registered_model_tag(target.registered_model, key, value)
        elif not value and key in tags:
            client.delete_registered_model_tag(target.registered_model, key)
    report.model_versions = numbers
    report.aliases = {
        mlflow_alias: described["aliases"].get(ours) if desired[mlflow_alias] else None
        for ours, mlflow_alias in ALIASES.items()
    }


# ---------------------------------------------------------------------------------------------- pending record
def read_pending(store: ObjectStore, model: str) -> dict[str, Any] | None:
    """The model's pending export (a pass that failed), None when MLflow was in sync after the last pass."""
    try:
        return json.loads(store.get(layout.mlflow_pending(model)))
    except ObjectNotFoundError:
        return None


def _record_failure(store: ObjectStore, model: str, report: MirrorReport) -> str:
    pending = read_pending(store, model) or {}
    now = datetime.now(UTC).isoformat()
    since = pending.get("first_failed_at") or now
    record = {
        "model": model,
        "tracking_uri": report.tracking_uri,
        "registered_model": report.registered_model,
        "first_failed_at": since,
        "last_failed_at": now,
        "failed_passes": int(pending.get("failed_passes") or 0) + 1,
        "last_error": "; ".join(report.errors),
    }
    # Advisory (the next pass rewrites or removes it): last writer wins.
    body = json.dumps(record, sort_keys=True).encode()
    store.put(layout.mlflow_pending(model), body, content_type="application/json")
    return since


def mirror(
    store: ObjectStore,
    model: str,
    target: Target,
    *,
    client: Any = None,
    sleep: Callable[[float], None] = time.sleep,
) -> MirrorReport:
    """Make MLflow show what the S3 registry holds for ``model``; never raises for MLflow's sake.

    Args:
        client: an ``MlflowClient`` (default: :func:`open_client`).
        sleep: waits between attempts (:func:`backoff`).

    Returns:
        The report; when not ``ok``, ``mlflow/<model>/pending.json`` records the failure for the next pass
        and ``driftline doctor``. An ``ok`` pass removes it.
    """
    report = MirrorReport(model, redact_url(target.tracking_uri), target.registered_model)
    waits = backoff(target.attempts)
    for attempt in range(1, target.attempts + 1):
        report.attempts = attempt
        report.errors, report.exported = [], []
        try:
            _sync(client if client is not None else open_client(target), store, model, target, report)
        except InputError as error:  # MLflow missing or a setting wrong: another attempt cannot help
            report.errors = [str(error)]
            break
        except Exception as error:  # whatever MLflow or its transport raised: the mirror never fails a flow
            report.errors = [redact_urls(f"{type(error).__name__}: {error}")[:2000]]
            logger.warning("MLflow export of %s, attempt %s/%s: %s", model, attempt, target.attempts, report.errors[0])
            if attempt <= len(waits):
                sleep(waits[attempt - 1])
            continue
        break
    report.ok = not report.errors
    if report.ok:
        store.delete(layout.mlflow_pending(model))
    else:
        report.pending_since = _record_failure(store, model, report)
    return report


def export_from_settings(store: ObjectStore, model: str, settings: Settings | None = None) -> MirrorReport | None:
    """:func:`mirror` to ``DRIFTLINE_MLFLOW_TRACKING_URI``; None (and no MLflow import) when it is unset."""
    target = Target.from_settings(settings or Settings(), model)
    return None if target is None else mirror(store, model, target)


@dataclass
class DoctorFindings:
    """What ``driftline doctor`` adds about the MLflow mirror."""

    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    document: dict[str, Any] = field(default_factory=dict)


def doctor(store: ObjectStore, model: str, settings: Settings, *, client: Any = None) -> DoctorFindings:
    """Re-try a pending export (a whole pass when the mirror is on) and report what is still behind.

    A mirror that stays behind is a problem (MLflow shows stale aliases); driftline's own registry is
    unaffected either way. A pending record while the mirror is off is a warning.
    """
    findings = DoctorFindings()
    pending = read_pending(store, model)
    target = Target.from_settings(settings, model)
    key = store.location(layout.mlflow_pending(model))
    if target is None:
        findings.document = {"enabled": False, "pending": pending}
        if pending:
            findings.warnings.append(
                f"MLflow export pending since {pending.get('first_failed_at')} ({pending.get('last_error')}) but "
                f"DRIFTLINE_MLFLOW_TRACKING_URI is unset: set it and run `driftline doctor {model}` to re-try, "
                f"or delete {key}"
            )
        return findings
    report = mirror(store, model, target, client=client)
    findings.document = {"enabled": True, "was_pending": pending, **report.to_dict()}
    if not report.ok:
        findings.problems.append(
            f"{report.summary()}; driftline's registry is unaffected, the next flow run of {model} or "
            f"`driftline doctor {model}` re-tries ({key})"
        )
    elif pending:
        findings.warnings.append(
            f"MLflow export was pending since {pending.get('first_failed_at')} "
            f"({pending.get('failed_passes')} failed pass(es)); re-tried now: {report.summary()}"
        )
    return findings
