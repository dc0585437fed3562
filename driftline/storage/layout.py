"""Every object key driftline uses is built here and nowhere else (docs/architecture.md section 3).

Keys are logical: the store adds the configured prefix. Names are validated before they become part
of a key, so a name can never escape its prefix (no ``/``, no ``..``).
"""

from __future__ import annotations

import hashlib
import re

from driftline.errors import InvalidNameError

NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")


def validate_name(value: str, kind: str = "name") -> str:
    """Return ``value`` if it is a valid model, batch or version name.

    Args:
        value: the candidate name.
        kind: what the name is for ("model", "batch id", "version"), used in the error.

    Returns:
        The name, unchanged.

    Raises:
        InvalidNameError: naming the value and the rule it breaks.
    """
    if not is_valid_name(value):
        raise InvalidNameError(
            f"invalid {kind} {value!r}: use 1-63 characters of a-z, 0-9, '.', '_', '-', "
            "starting with a letter or digit, without '..'"
        )
    return value


def _model(model: str) -> str:
    return validate_name(model, "model")


def model_spec(model: str) -> str:
    return f"models/{_model(model)}/spec.yaml"


def batch_data(model: str, batch_id: str) -> str:
    return f"datasets/{_model(model)}/batches/{validate_name(batch_id, 'batch id')}.parquet"


def batches_prefix(model: str) -> str:
    return f"datasets/{_model(model)}/batches/"


def batch_quarantine(model: str, batch_id: str) -> str:
    """Why a batch was rejected; its presence also stops the batch from being picked up again."""
    return f"datasets/{_model(model)}/batches/{validate_name(batch_id, 'batch id')}.rejected.json"


def batch_name_from_key(key: str) -> str | None:
    """The name ``<name>`` of a ``datasets/<model>/batches/<name>.parquet`` key, valid batch id or not, else None.

    Only direct children of a model's batches folder are batches: ``batches/sub/x.parquet`` is not batch
    ``x`` (another tool's folder would otherwise collide with, or pose as, a real batch).
    """
    parts = key.split("/")
    if len(parts) != 4 or parts[0] != "datasets" or parts[2] != "batches" or not parts[3].endswith(".parquet"):
        return None
    return parts[3].removesuffix(".parquet")


def is_valid_name(value: str) -> bool:
    """Whether ``validate_name`` would accept ``value``."""
    return isinstance(value, str) and bool(NAME_PATTERN.fullmatch(value)) and ".." not in value


def batch_id_from_key(key: str) -> str | None:
    """The batch id of a ``datasets/<model>/batches/<id>.parquet`` key; None for other keys and invalid ids."""
    name = batch_name_from_key(key)
    return name if name is not None and is_valid_name(name) else None


def misnamed_batch_id(key: str) -> str:
    """A valid batch id standing for ``key``, a batch object whose name is not one (``k-<sha256 prefix>``).

    Its quarantine record then lives at a valid key (``batch_quarantine(model, misnamed_batch_id(key))``)
    and keeps the original key inside it; the same key always maps to the same id, so it is recorded once.
    """
    return "k-" + hashlib.sha256(key.encode()).hexdigest()[:16]


def models_prefix() -> str:
    return "models/"


def model_from_spec_key(key: str) -> str | None:
    """The model of a ``models/<model>/spec.yaml`` key, else None."""
    parts = key.split("/")
    if len(parts) == 3 and parts[0] == "models" and parts[2] == "spec.yaml":
        return parts[1]
    return None


def batch_labels(model: str, batch_id: str) -> str:
    return f"datasets/{_model(model)}/labels/{validate_name(batch_id, 'batch id')}.parquet"


def labels_prefix(model: str) -> str:
    return f"datasets/{_model(model)}/labels/"


def batch_profile(model: str, batch_id: str) -> str:
    return f"profiles/{_model(model)}/batches/{validate_name(batch_id, 'batch id')}.bin"


PROVISIONAL_REFERENCE = "provisional"


def batch_profiles_prefix(model: str) -> str:
    return f"profiles/{_model(model)}/batches/"


def reference_profile(model: str, version: str) -> str:
    return f"profiles/{_model(model)}/reference/{validate_name(version, 'version')}.bin"


def drift_report(model: str, batch_id: str) -> str:
    return f"drift/{_model(model)}/{validate_name(batch_id, 'batch id')}.json"


def drift_plot(model: str, batch_id: str) -> str:
    """The drift report as a PNG (what the Prefect UI shows beside the markdown)."""
    return f"drift/{_model(model)}/{validate_name(batch_id, 'batch id')}.png"


def monitor_plot(model: str, batch_id: str) -> str:
    """`driftline monitor`'s figure as drawn after labelled batch ``batch_id`` (for the Prefect UI)."""
    return f"monitor/{_model(model)}/{validate_name(batch_id, 'batch id')}.png"


def drift_history(model: str) -> str:
    """Recent batch verdicts for hysteresis ('_' cannot start a batch id, so no report collides)."""
    return f"drift/{_model(model)}/_history.json"


def model_booster(model: str, version: str) -> str:
    return f"models/{_model(model)}/versions/{validate_name(version, 'version')}/model.ubj"


def model_metadata(model: str, version: str) -> str:
    return f"models/{_model(model)}/versions/{validate_name(version, 'version')}/metadata.json"


def holdout_prediction_profile(model: str, version: str) -> str:
    """whylogs profile of a version's predictions on its own holdout (the prediction-drift reference)."""
    return f"models/{_model(model)}/versions/{validate_name(version, 'version')}/holdout_predictions.bin"


def versions_prefix(model: str) -> str:
    return f"models/{_model(model)}/versions/"


ALIASES = ("champion", "shadow", "previous")


def alias(model: str, name: str) -> str:
    if name not in ALIASES:
        raise InvalidNameError(f"invalid alias {name!r}: one of {', '.join(ALIASES)}")
    return f"models/{_model(model)}/aliases/{name}.json"


def predictions(model: str, batch_id: str, version: str) -> str:
    return (
        f"predictions/{_model(model)}/{validate_name(batch_id, 'batch id')}/{validate_name(version, 'version')}.parquet"
    )


def predictions_prefix(model: str, batch_id: str) -> str:
    return f"predictions/{_model(model)}/{validate_name(batch_id, 'batch id')}/"


def scoring_failure(model: str, batch_id: str, version: str) -> str:
    """Why a model failed to score a batch (the champion's output is unaffected)."""
    return (
        f"predictions/{_model(model)}/{validate_name(batch_id, 'batch id')}/"
        f"{validate_name(version, 'version')}.failed.json"
    )


def scoring_summary(model: str, batch_id: str) -> str:
    """Operational facts of a scored batch per version: rows, seconds, latency p50/p95/p99, failures."""
    return f"predictions/{_model(model)}/{validate_name(batch_id, 'batch id')}/_summary.json"


def prediction_drift(model: str, batch_id: str) -> str:
    """Prediction drift of a batch scored before its drift report existed ('_' cannot start a batch id)."""
    return f"drift/{_model(model)}/_prediction/{validate_name(batch_id, 'batch id')}.json"


def performance_state(model: str, version: str) -> str:
    """The performance monitor of champion ``version`` (its loss against its holdout loss)."""
    return f"performance/{_model(model)}/{validate_name(version, 'version')}/state.json"


def guard_state(model: str, version: str) -> str:
    """The post-promotion guard of champion ``version`` against the champion it replaced."""
    return f"guard/{_model(model)}/{validate_name(version, 'version')}/state.json"


def shadow_plot(model: str, version: str) -> str:
    return f"shadow/{_model(model)}/{validate_name(version, 'version')}/bounds.png"


def shadow_state(model: str, version: str) -> str:
    return f"shadow/{_model(model)}/{validate_name(version, 'version')}/state.json"


def outbox_event(model: str, event_id: str) -> str:
    return f"events/{_model(model)}/{validate_name(event_id, 'event id')}.json"


def outbox_prefix(model: str) -> str:
    return f"events/{_model(model)}/"


def audit_prefix(model: str) -> str:
    return f"audit/{_model(model)}/"


def retrain_claim(model: str, key: str) -> str:
    """Idempotency key of one drift-triggered retrain (created once; a second claim conflicts)."""
    return f"retrain/{_model(model)}/claims/{validate_name(key, 'retrain key')}.json"


def retrain_pending(model: str) -> str:
    """A drift-triggered retrain waiting for enough labels since the drift onset."""
    return f"retrain/{_model(model)}/pending.json"


def mlflow_pending(model: str) -> str:
    """The model's MLflow export that failed and waits to be re-tried (``driftline.models.mlflow_export``)."""
    return f"mlflow/{_model(model)}/pending.json"


def audit_record(model: str, record_id: str) -> str:
    return f"audit/{_model(model)}/{validate_name(record_id, 'audit record id')}.json"


def stack_check_probe(nonce: str) -> str:
    """Scratch object the stack-check flow writes and reads back to prove the S3 path works."""
    return f"_stack-check/{validate_name(nonce, 'stack-check nonce')}.json"
