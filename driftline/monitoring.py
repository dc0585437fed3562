"""Input-drift check of one profiled batch: reference -> DriftReport -> hysteresis -> trigger decision."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from driftline import layout, profiling
from driftline.drift import DriftReport, compare_profiles, hysteresis_met
from driftline.errors import ConflictError, ObjectNotFoundError
from driftline.references import Reference, establish_provisional, record_verdict, resolve_reference
from driftline.reports import drift_json_bytes
from driftline.spec import ModelSpec
from driftline.store import ObjectStore


@dataclass(frozen=True)
class DriftCheck:
    """What one batch's drift check found and whether it should trigger a retrain."""

    model: str
    batch_id: str
    report: DriftReport
    report_key: str
    reference: Reference
    triggered: bool
    reasons: list[str] = field(default_factory=list)
    duplicate: bool = False  # another run already stored this batch's report

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


def check_batch_drift(store: ObjectStore, spec: ModelSpec, batch_id: str) -> DriftCheck:
    """Compare a profiled batch with the model's reference and decide whether drift is declared.

    With no reference yet, the batch becomes the provisional reference and is compared with itself
    (no drift, said in the reasons). The report is created with a conditional write; when it already
    exists (a repeated run), the stored one is returned with ``duplicate`` set and nothing is recorded.
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
    reference_view = profiling.deserialize(store.get(reference.key), reference.key)
    report = compare_profiles(
        reference_view,
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
    hysteresis = spec.drift.hysteresis
    history = record_verdict(store, model, batch_id, report.drift, keep=hysteresis.m)
    triggered = report.drift and hysteresis_met(history, hysteresis.k, hysteresis.m)
    reasons = [*notes, *report.reasons]
    if report.drift and not triggered:
        reasons.append(
            f"hysteresis: {sum(history[-hysteresis.m :])} of the last {hysteresis.m} batches drifted, "
            f"{hysteresis.k} needed"
        )
    return DriftCheck(model, batch_id, report, report_key, reference, triggered, reasons)
