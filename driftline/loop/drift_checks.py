"""Drift checks of one batch: its inputs (profile-batch) and the champion's predictions of it (score-batch).

Input drift: reference -> DriftReport -> hysteresis -> trigger decision. Prediction drift: the profile of
the champion's predictions of the batch against the profile of its predictions on its own holdout
(stored beside the model when it was trained), joined to the batch's drift report as its ``prediction``
section.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import polars as pl

from driftline.data import profiling
from driftline.data.references import (
    Reference,
    ReferenceCache,
    establish_provisional,
    prepared_reference,
    resolve_reference,
)
from driftline.errors import ConflictError, ObjectNotFoundError
from driftline.loop import rules
from driftline.models import registry, scoring
from driftline.models.spec import ModelSpec
from driftline.reports.renderings import drift_json_bytes
from driftline.statistics import performance
from driftline.statistics.drift import DriftReport, compare_profiles
from driftline.storage import layout
from driftline.storage.store import ObjectStore, update_json


@dataclass(frozen=True)
class DriftCheck:
    """What one batch's drift check found and whether it should trigger a retrain."""

    model: str
    batch_id: str
    report: DriftReport
    report_key: str
    reference: Reference
    triggered: bool  # drift announced: a new episode, or one that grew (``rules.observe_drift``)
    reasons: list[str] = field(default_factory=list)
    duplicate: bool = False  # another run already stored this batch's report
    declared: bool = False  # drift declared (hysteresis met), announced or not

    def event_payload(self) -> dict:
        return {
            "batch_id": self.batch_id,
            "kind": "input",
            "score": round(self.report.score, 6),
            "top_features": self.report.drifted_features[:5],
            "report_key": self.report_key,
            "reference_key": self.reference.key,
            "reference_version": self.reference.version,
            # Every key the retrain trigger templates must be present: a missing one breaks the automation.
            "drift_onset": None,
        }


def champion_importances(store: ObjectStore, model: str, version: str | None) -> dict[str, float] | None:
    """The champion's gain importances from its metadata, None when unknown (uniform weights then)."""
    if version is None:
        return None
    try:
        metadata = json.loads(store.get(layout.model_metadata(model, version)))
    except ObjectNotFoundError:
        return None
    importances = metadata.get("importances") or metadata.get("metrics", {}).get("importances")
    return {str(k): float(v) for k, v in importances.items()} if importances else None


def check_batch_drift(
    store: ObjectStore, spec: ModelSpec, batch_id: str, cache: ReferenceCache | None = None
) -> DriftCheck:
    """Compare a profiled batch with the model's reference and decide whether drift is declared.

    With no reference yet, the batch becomes the provisional reference and is compared with itself
    (no drift, said in the reasons). The report is created with a conditional write; when it already
    exists (a repeated run), the stored one is returned with ``duplicate`` set and nothing is recorded.
    The reference is read through ``cache`` (the process's ``REFERENCE_CACHE`` by default): parsed
    and prepared once while its ETag and sha256 stay the same.
    """
    model = spec.name
    current_bytes = store.get(layout.batch_profile(model, batch_id))
    current = profiling.deserialize(current_bytes, layout.batch_profile(model, batch_id))
    reference = resolve_reference(store, model)
    notes: list[str] = []
    if reference is None:
        reference = establish_provisional(store, model, batch_id, current_bytes)
        if reference.established_by == batch_id:
            notes.append(f"no champion yet: batch {batch_id} is the provisional reference")
    report = compare_profiles(
        prepared_reference(store, reference.key, cache),
        current,
        numeric=spec.features.numeric,
        categorical=spec.features.categorical,
        weights=champion_importances(store, model, reference.version),
        policy=spec.drift,
    )
    report_key = layout.drift_report(model, batch_id)
    try:
        store.create(report_key, drift_json_bytes(report), content_type="application/json")
    except ConflictError:
        stored = DriftReport.from_dict(json.loads(store.get(report_key)))
        return DriftCheck(model, batch_id, stored, report_key, reference, False, ["report already stored"], True)
    declaration = observe_drift(store, spec, batch_id, report, reference.version)
    reasons = [*notes, *report.reasons, *declaration.reasons]
    return DriftCheck(
        model, batch_id, report, report_key, reference, declaration.announce, reasons, declared=declaration.declared
    )


def observe_drift(
    store: ObjectStore, spec: ModelSpec, batch_id: str, report: DriftReport, reference: str | None
) -> rules.DriftDeclaration:
    """Fold the batch's drift verdict into the model's drift watch (``rules.observe_drift``, compare-and-swap)."""
    declared: list[rules.DriftDeclaration] = []

    def fold(current: Any) -> dict[str, Any]:
        watch, declaration = rules.observe_drift(rules.DriftWatch.from_dict(current), batch_id, report, reference, spec)
        declared[:] = [declaration]
        return watch.to_dict()

    update_json(store, layout.drift_history(spec.name), lambda: rules.DriftWatch().to_dict(), fold)
    return declared[0]


# ------------------------------------------------------------------------------------- prediction drift
@dataclass(frozen=True)
class PredictionDriftCheck:
    """The champion's predictions of one batch against its predictions on its own holdout.

    ``section`` is what joined the batch's drift report (``prediction``); ``stored_key`` where it is
    stored: the drift report, or ``drift/<model>/_prediction/<batch_id>.json`` when the batch was scored
    before its report existed. ``checked`` is False (with the reason in ``notes``) when the spec turns the
    check off or the champion predates holdout prediction profiles.
    """

    model: str
    batch_id: str
    version: str
    checked: bool
    drift: bool = False
    triggered: bool = False
    section: dict[str, Any] | None = None
    stored_key: str | None = None
    reference_key: str | None = None
    drift_onset: str | None = None
    duplicate: bool = False
    notes: tuple[str, ...] = ()

    def event_payload(self) -> dict[str, Any]:
        section = self.section or {}
        return {
            "batch_id": self.batch_id,
            "kind": "prediction",
            "score": section.get("score"),
            "statistic": section.get("statistic"),
            "threshold": section.get("threshold"),
            "top_features": ["prediction"],
            "report_key": self.stored_key,
            "reference_key": self.reference_key,
            "reference_version": self.version,
            # Every key the retrain trigger templates must be present: a missing one breaks the automation.
            "drift_onset": self.drift_onset,
        }


def _plain(value: Any) -> Any:
    """JSON-safe copy: non-finite floats become None (conditional JSON writes refuse NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _report_missing() -> dict[str, Any]:
    raise ObjectNotFoundError("drift report vanished while its prediction section was being added")


def check_prediction_drift(
    store: ObjectStore,
    spec: ModelSpec,
    batch_id: str,
    version: str,
    drift_onset: str | None = None,
    cache: ReferenceCache | None = None,
) -> PredictionDriftCheck:
    """Compare the champion's stored predictions of a batch with its holdout predictions; store the result.

    The result joins the batch's drift report as its ``prediction`` section (compare-and-swap); a batch
    scored before its report exists gets ``drift/<model>/_prediction/<batch_id>.json`` instead. A second
    check of the same batch and version is a ``duplicate`` and never triggers again. Statistic, threshold
    and noise floor are those of the spec's ``drift`` policy for numeric features; hysteresis does not
    apply (it belongs to input drift).

    Args:
        drift_onset: the batch's earliest event time, carried by a drift event.
        cache: where the holdout prediction profile is kept prepared (the process's by default).
    """
    model = spec.name
    policy = spec.performance.prediction_drift

    def skipped(note: str) -> PredictionDriftCheck:
        return PredictionDriftCheck(model, batch_id, version, checked=False, notes=(note,))

    if not policy.enabled:
        return skipped("prediction drift is off (performance.prediction_drift.enabled: false)")
    baseline = performance.baseline_from_metadata(registry.read_metadata(store, model, version))
    if baseline is None or baseline.prediction_profile is None:
        return skipped(
            f"champion {version} has no holdout prediction profile (registered before prediction monitoring): "
            "prediction drift not checked"
        )
    predictions = scoring.read_predictions(store, spec, batch_id, version)
    if predictions is None or predictions.height == 0:
        return skipped(f"no predictions of {version} for batch {batch_id}: prediction drift not checked")
    reference_key = baseline.prediction_profile
    reference = prepared_reference(store, reference_key, cache)
    current = profiling.profile_frame(predictions.select(pl.col("prediction").cast(pl.Float64)))
    report = compare_profiles(reference, current, numeric=["prediction"], policy=spec.drift)
    feature = report.features["prediction"]
    section = _plain(
        {
            "version": version,
            "drift": report.drift,
            "score": feature.value,  # the statistic's value (one feature: no importance mass to share)
            "statistic": feature.statistic,
            "threshold": feature.threshold,
            "floor": feature.floor,
            "verdict": feature.verdict,
            "reasons": report.reasons,
            "n_reference": feature.n_reference,
            "n_current": feature.n_current,
            "statistics": feature.statistics,
            "quantiles": feature.quantiles,
            "reference_key": reference_key,
            "checked_at": datetime.now(UTC).isoformat(),
        }
    )
    report_key = layout.drift_report(model, batch_id)
    duplicate = False
    if store.exists(report_key):
        seen: list[bool] = []

        def join(current_report: dict[str, Any]) -> dict[str, Any]:
            seen[:] = [(current_report.get("prediction") or {}).get("version") == version]
            return current_report if seen[0] else {**current_report, "prediction": section}

        update_json(store, report_key, _report_missing, join)
        duplicate, stored_key = seen[0], report_key
    else:
        stored_key = layout.prediction_drift(model, batch_id)
        try:
            store.create(stored_key, json.dumps(section).encode(), content_type="application/json")
        except ConflictError:
            duplicate = True
    return PredictionDriftCheck(
        model,
        batch_id,
        version,
        checked=True,
        drift=report.drift,
        triggered=report.drift and policy.trigger_retrain and not duplicate,
        section=section,
        stored_key=stored_key,
        reference_key=reference_key,
        drift_onset=drift_onset,
        duplicate=duplicate,
        notes=("already checked by another run: not announced again",) if duplicate else (),
    )


def read_prediction_drift(store: ObjectStore, model: str, batch_id: str) -> dict[str, Any] | None:
    """A batch's prediction-drift section, from its drift report or the stand-alone object; None if unchecked."""
    try:
        section = json.loads(store.get(layout.drift_report(model, batch_id))).get("prediction")
    except ObjectNotFoundError:
        section = None
    if section:
        return section
    try:
        return json.loads(store.get(layout.prediction_drift(model, batch_id)))
    except ObjectNotFoundError:
        return None
