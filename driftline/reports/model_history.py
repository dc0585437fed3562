"""A model's life over its batches, read back from S3: drift, served metric, latency, switchovers.

What `driftline monitor` and the demo's summary show. Nothing here is recomputed from raw features:
drift comes from the stored reports, the served metric from the champion's stored predictions joined to
the labels, latency from the scoring summaries, switchovers from the registry's audit trail. Batches are
ordered by id (default ids are UTC times, so this is arrival order).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from driftline.errors import ObjectNotFoundError
from driftline.loop import drift_checks
from driftline.models import registry, scoring
from driftline.models.spec import ModelSpec
from driftline.statistics import metrics
from driftline.storage import layout
from driftline.storage.store import ObjectStore


@dataclass(frozen=True)
class BatchPoint:
    """One batch: what drifted, which version served it, how well, how fast."""

    batch_id: str
    rows: int | None = None
    input_drift: bool | None = None
    input_score: float | None = None
    prediction_drift: bool | None = None
    prediction_score: float | None = None
    champion: str | None = None
    metric: float | None = None
    labelled_rows: int = 0
    performance: dict[str, Any] | None = None  # the performance monitor after this batch: loss increase, bounds
    latency_ms: dict[str, float | None] = field(default_factory=dict)  # the champion's p50/p95/p99
    failures: int = 0


@dataclass(frozen=True)
class Switch:
    """A champion change, placed before the first batch the new champion served."""

    kind: str  # promotion | rollback | bootstrap
    version: str
    previous: str | None
    at: str
    reason: str
    batch_id: str | None


@dataclass(frozen=True)
class ModelHistory:
    model: str
    metric: str
    batches: list[BatchPoint]
    switches: list[Switch]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def metric_name(spec: ModelSpec) -> str:
    return "auc" if spec.task == "binary" else "rmse"


def _json(store: ObjectStore, key: str) -> dict[str, Any] | None:
    try:
        return json.loads(store.get(key))
    except ObjectNotFoundError:
        return None


def version_metric(store: ObjectStore, spec: ModelSpec, batch_id: str, version: str) -> tuple[float | None, int]:
    """(metric, labelled rows) of ``version``'s stored predictions of a batch, in any role; (None, 0) if unknown."""
    labels = scoring.read_labels(store, spec, batch_id)
    predictions = scoring.read_predictions(store, spec, batch_id, version)
    if labels is None or predictions is None:
        return None, 0
    joined = predictions.join(labels, on=spec.id_column, how="inner")
    y = joined.get_column(spec.target).to_numpy()
    if joined.height == 0 or (spec.task == "binary" and len(set(y.tolist())) < 2):
        return None, joined.height
    value = metrics.evaluate(spec.task, y, joined.get_column("prediction").to_numpy())[metric_name(spec)]
    return round(float(value), 5), joined.height


def served_metric(store: ObjectStore, spec: ModelSpec, batch_id: str, summary: dict[str, Any] | None = None):
    """(champion version, metric, labelled rows) of a batch from stored predictions and labels; None if unknown."""
    summary = summary if summary is not None else _json(store, layout.scoring_summary(spec.name, batch_id))
    if not summary:
        return None
    roles = {facts.get("role"): version for version, facts in summary.items() if isinstance(facts, dict)}
    champion = roles.get("champion")
    if champion is None:
        return None
    return (champion, *version_metric(store, spec, batch_id, champion))


def _batch_ids(store: ObjectStore, model: str) -> list[str]:
    ids = {layout.batch_id_from_key(key) for key in store.list(layout.batches_prefix(model))}
    return sorted(b for b in ids if b)


def _latency(facts: dict[str, Any] | None) -> dict[str, float | None]:
    facts = facts or {}
    return {name: facts.get(f"{name}_ms") for name in ("p50", "p95", "p99")}


def performance_points(store: ObjectStore, model: str, versions: set[str]) -> dict[str, dict[str, Any]]:
    """batch id -> the performance monitor's point after that batch (loss increase over the holdout and its
    bounds, tolerance, verdict), from the monitor state of each champion that served."""
    points: dict[str, dict[str, Any]] = {}
    for version in sorted(versions):
        state = _json(store, layout.performance_state(model, version))
        for point in (state or {}).get("history", []):
            keep = ("estimate", "lower", "upper", "tolerance", "verdict", "loss", "n")
            points[point["batch_id"]] = {key: point.get(key) for key in keep}
    return points


def collect_history(
    store: ObjectStore, spec: ModelSpec, last: int | None = None, *, read_all: bool = True
) -> ModelHistory:
    """Everything stored about the model's last ``last`` batches (all when None), oldest first.

    With ``read_all=False`` only the last ``last`` + 1 batches are read (cost bounded for a figure drawn on
    every run); the extra one tells which champion served just before them.
    """
    model = spec.name
    batch_ids = _batch_ids(store, model)
    if last is not None and not read_all:
        batch_ids = batch_ids[-(last + 1) :]
    points = []
    # Read once: every audit record is its own object, and both the monitors and the switches need them.
    moves = [r for r in registry.audit_trail(store, model) if r.get("alias") == "champion" and r.get("to")]
    champions = {r["to"] for r in moves}
    performance = performance_points(store, model, {v for v in champions if v})
    for batch_id in batch_ids:
        report = _json(store, layout.drift_report(model, batch_id)) or {}
        prediction = report.get("prediction") or drift_checks.read_prediction_drift(store, model, batch_id) or {}
        summary = _json(store, layout.scoring_summary(model, batch_id))
        served = served_metric(store, spec, batch_id, summary) if summary else None
        champion, metric, labelled = served if served else (None, None, 0)
        facts = (summary or {}).get(champion) if champion else None
        failures = sum(1 for f in (summary or {}).values() if isinstance(f, dict) and f.get("status") == "failed")
        points.append(
            BatchPoint(
                batch_id=batch_id,
                rows=(facts or {}).get("rows") or report.get("current_rows"),
                input_drift=report.get("drift"),
                input_score=report.get("score"),
                prediction_drift=prediction.get("drift"),
                prediction_score=prediction.get("score"),
                champion=champion,
                metric=metric,
                labelled_rows=labelled,
                performance=performance.get(batch_id),
                latency_ms=_latency(facts),
                failures=failures,
            )
        )
    switches = _switches(moves, points)
    if last is not None:
        # Trimmed after placing the switches, so the first listed batch is not taken for a switchover.
        points = points[-last:]
        shown = {point.batch_id for point in points}
        switches = [s for s in switches if s.batch_id in shown]
    return ModelHistory(model, metric_name(spec), points, switches)


def _switches(moves: list[dict[str, Any]], points: list[BatchPoint]) -> list[Switch]:
    """Champion moves from the audit trail, each placed at the first batch the new champion served after it."""
    changes: list[tuple[str, str]] = []
    serving = None
    for point in points:
        if point.champion and point.champion != serving:
            changes.append((point.batch_id, point.champion))
            serving = point.champion
    switches, cursor = [], 0
    for record in moves:
        reason = str(record.get("reason", ""))
        if reason.startswith("rollback"):
            kind = "rollback"
        else:
            kind = "bootstrap" if record.get("from") is None else "promotion"
        batch_id = None
        for index in range(cursor, len(changes)):
            if changes[index][1] == record["to"]:
                batch_id, cursor = changes[index][0], index + 1
                break
        switches.append(Switch(kind, record["to"], record.get("from"), str(record.get("at", "")), reason, batch_id))
    return switches
