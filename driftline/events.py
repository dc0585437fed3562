"""Event names and resource ids of driftline's Prefect events (docs/architecture.md section 6).

Pure data: emitting lives in ``tasks/`` (flows) and ``driftline/cli/`` (the shell).
"""

from __future__ import annotations

from driftline.layout import validate_name

BATCH_ARRIVED = "driftline.batch.arrived"
LABELS_ARRIVED = "driftline.labels.arrived"
BATCH_PROFILED = "driftline.batch.profiled"
BATCH_REJECTED = "driftline.batch.rejected"
DRIFT_DETECTED = "driftline.drift.detected"
PERFORMANCE_DEGRADED = "driftline.performance.degraded"
CANDIDATE_REGISTERED = "driftline.candidate.registered"
CANDIDATE_REJECTED = "driftline.candidate.rejected"
SHADOW_DECIDED = "driftline.shadow.decided"
MODEL_PROMOTED = "driftline.model.promoted"
MODEL_ROLLED_BACK = "driftline.model.rolled_back"
STACK_CHECKED = "driftline.stack.checked"

MODEL_EVENTS = (
    BATCH_ARRIVED,
    LABELS_ARRIVED,
    BATCH_PROFILED,
    BATCH_REJECTED,
    DRIFT_DETECTED,
    PERFORMANCE_DEGRADED,
    CANDIDATE_REGISTERED,
    CANDIDATE_REJECTED,
    SHADOW_DECIDED,
    MODEL_PROMOTED,
    MODEL_ROLLED_BACK,
)


def model_resource_id(model: str) -> str:
    """Resource id every model event carries, matched by triggers as ``driftline.model.*``."""
    return f"driftline.model.{validate_name(model, 'model')}"


def stack_check_resource_id(nonce: str) -> str:
    return f"driftline.stack-check.{validate_name(nonce, 'stack-check nonce')}"
