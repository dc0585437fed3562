"""Building a candidate: window -> train -> gates -> register -> place (shadow, champion or rejected).

Every step is a plain function over the store; the ``retrain`` flow orders them and acts on the results.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from typing import Any, Literal, Protocol

import numpy as np
import polars as pl

from driftline.data import profiling
from driftline.errors import ConflictError, InputError, ObjectNotFoundError
from driftline.loop import rules
from driftline.loop.cooldown import RetrainRequest
from driftline.models import registry, training, validation
from driftline.models.spec import ModelSpec
from driftline.statistics import performance
from driftline.storage import layout
from driftline.storage.store import ObjectStore

Decision = Literal["shadow", "champion", "rejected"]


def labelled_batch_ids(store: ObjectStore, model: str) -> list[str]:
    """Batches that have both features and labels and are not quarantined, in id order (default ids sort by
    arrival time)."""
    return _labelled_batches(store, model)[0]


def _labelled_batches(store: ObjectStore, model: str) -> tuple[list[str], list[str]]:
    """(usable labelled batch ids, labelled batch ids skipped because the batch is quarantined)."""
    keys = set(store.list(layout.batches_prefix(model)))
    features = {layout.batch_id_from_key(k) for k in keys}
    labelled = {
        key.rsplit("/", 1)[-1].removesuffix(".parquet")
        for key in store.list(layout.labels_prefix(model))
        if key.endswith(".parquet")
    }
    both = sorted(b for b in labelled if b in features)
    # A quarantined batch failed validation; training on it would fail (or learn from bad data) on every retrain.
    quarantined = [b for b in both if layout.batch_quarantine(model, b) in keys]
    return [b for b in both if b not in quarantined], quarantined


def select_window(batch_ids: list[str], spec: ModelSpec) -> list[str]:
    """The most recent ``window.last_batches`` labelled batches (all when unset)."""
    if spec.window.last_batches is None:
        return list(batch_ids)
    return list(batch_ids)[-spec.window.last_batches :]


def restrict_days(frame: pl.DataFrame, spec: ModelSpec) -> pl.DataFrame:
    """Keep rows within ``window.last_days`` of the newest event time (no-op when unset)."""
    if spec.window.last_days is None or frame.height == 0:
        return frame
    return restrict_days_from(frame, spec, frame.select(pl.col(spec.time_column).max()).item())


def restrict_days_from(frame: pl.DataFrame, spec: ModelSpec, newest: Any) -> pl.DataFrame:
    """``restrict_days`` given the window's newest event time (of every batch: a window on a cluster)."""
    if spec.window.last_days is None or frame.height == 0 or newest is None:
        return frame
    column = pl.col(spec.time_column)
    if isinstance(newest, int | float):
        return frame.filter(column >= newest - spec.window.last_days * 86400)
    return frame.filter(column >= newest - timedelta(days=spec.window.last_days))


def decide_placement(
    report: validation.GateReport, has_champion: bool, task: str = "binary", champion_degraded: bool = False
) -> tuple[Decision, list[str]]:
    """Where a new candidate goes: ``driftline.loop.rules.decide_placement``."""
    return rules.decide_placement(report, has_champion, task, champion_degraded)


@dataclass(frozen=True)
class ClusterWindow:
    """A window that stays in its parquet partitions: its rows are read, split and trained on a cluster.

    ``parts`` say where each batch's features and labels are (``distributed.WindowPart``); the task process
    holds only these, the lineage and the counts.
    """

    parts: list[Any]
    rows: int  # rows that train, early-stop or hold out (after ``restrict_days`` and zero onset weights)
    weighted: bool  # the rows carry ``rules.WEIGHT_COLUMN``


@dataclass(frozen=True)
class PreparedWindow:
    """The assembled training window and whether a drift-triggered retrain may use it yet."""

    data: training.TrainingData | None  # None: not enough labelled data yet (see ``shortfall``)
    frame: pl.DataFrame  # what trains: with a weight column favouring the onset (``rules.onset_weights``)
    rows_since_onset: int
    shortfall: str | None = None
    notes: list[str] = field(default_factory=list)  # e.g. labelled batches skipped because quarantined
    # Set when the rows stay on the cluster (``distributed.prepare_window``); ``frame`` is then empty.
    cluster: ClusterWindow | None = None

    @property
    def batch_ids(self) -> list[str]:
        return [batch.batch_id for batch in self.data.batches] if self.data is not None else []

    @property
    def rows(self) -> int:
        """Rows of the window that train, early-stop or hold out."""
        return self.cluster.rows if self.cluster is not None else self.frame.height

    @property
    def weighted(self) -> bool:
        return self.cluster.weighted if self.cluster is not None else rules.WEIGHT_COLUMN in self.frame.columns


class ClusterTrainer(Protocol):
    """Trains a ``ClusterWindow`` where its rows are (``distributed.ClusterWindowTrainer``)."""

    def train(
        self, spec: ModelSpec, nthread: int, progress: Callable[[str], None]
    ) -> tuple[HoldoutSplit, training.TrainedModel]:
        """The split's holdout (brought here) and notes, and the model trained on the rest."""
        ...

    def profile(self, columns: list[str]) -> Any:
        """A whylogs profile of the window's ``columns`` (when a batch's stored profile is missing)."""
        ...


class HoldoutSplit(Protocol):
    holdout: pl.DataFrame
    notes: tuple[str, ...]


def window_batch_ids(store: ObjectStore, spec: ModelSpec) -> tuple[list[str], list[str]]:
    """The batch ids ``prepare_window`` assembles and its notes (quarantined labelled batches skipped).

    Raises:
        InputError: no labelled batches.
    """
    usable, quarantined = _labelled_batches(store, spec.name)
    notes = [
        f"skipped labelled batch {b!r}: quarantined ({layout.batch_quarantine(spec.name, b)})" for b in quarantined
    ]
    ids = select_window(usable, spec)
    if not ids:
        raise InputError(
            f"model {spec.name!r} has no labelled batches yet; store labels with "
            f"`driftline labels {spec.name} <file.parquet> --batch-id <id>`"
        )
    return ids, notes


def prepare_window(store: ObjectStore, spec: ModelSpec, request: RetrainRequest) -> PreparedWindow:
    """Assemble the labelled window the spec asks for.

    Raises:
        InputError: too little labelled data for a manual retrain. A drift-triggered one gets an empty
            window with the ``shortfall`` instead, so that it waits for labels rather than failing.
    """
    usable, quarantined = _labelled_batches(store, spec.name)
    notes = [
        f"skipped labelled batch {b!r}: quarantined ({layout.batch_quarantine(spec.name, b)})" for b in quarantined
    ]
    try:
        ids = select_window(usable, spec)
        if not ids:
            raise InputError(
                f"model {spec.name!r} has no labelled batches yet; store labels with "
                f"`driftline labels {spec.name} <file.parquet> --batch-id <id>`"
            )
        data = training.assemble_window(store, spec, ids)
    except InputError as error:
        if request.trigger == "manual":
            raise
        return PreparedWindow(None, pl.DataFrame(), 0, shortfall=str(error), notes=notes)
    frame = restrict_days(data.frame, spec)
    onset = request.drift_onset if request.trigger == "drift" else None
    weighted = rules.onset_weights(frame, spec, onset, request.drift_kind)
    return PreparedWindow(data, weighted, rules.rows_since(frame, spec, onset), notes=notes)


@dataclass(frozen=True)
class Candidate:
    """A trained, validated and registered candidate, before any alias moved."""

    model: str
    version: str
    decision: Decision
    reasons: list[str]
    gate_report: validation.GateReport
    metrics: dict[str, float]
    reference_key: str
    training_rows: int
    parent_champion: str | None
    timings: dict[str, float] = field(default_factory=dict)

    def event_payload(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "decision": self.decision,
            "metrics": self.metrics,
            "gates_passed": self.gate_report.passed,
            "gate_summary": self.gate_report.summary(),
            "parent_champion": self.parent_champion,
            "metadata_key": layout.model_metadata(self.model, self.version),
        }


def _champion_predictor(store: ObjectStore, model: str) -> tuple[str | None, Callable[[pl.DataFrame], Any] | None]:
    state = registry.read_alias(store, model, "champion")
    if state is None or state.version is None:
        return None, None
    booster_bytes, metadata = registry.load_model(store, model, state.version)
    booster = training.load_booster(booster_bytes)
    encoder = training.FeatureEncoder.from_dict(metadata["encoder"])
    return state.version, lambda frame: training.predict(booster, encoder, frame)


def build_candidate(
    store: ObjectStore,
    spec: ModelSpec,
    request: RetrainRequest,
    window: PreparedWindow,
    *,
    nthread: int,
    environment: dict[str, Any],
    progress: Callable[[str], None] = lambda _: None,
    train: Callable[[training.Split, ModelSpec, int], training.TrainedModel] = training.train,
    cluster: ClusterTrainer | None = None,
) -> Candidate:
    """Train on the window, run every gate, and register the version with its lineage and reference.

    Args:
        environment: lineage facts the domain cannot know (git commit, package versions, flow run id).
        train: ``training.train``, or ``distributed.dask_trainer(client)`` to boost on a Dask cluster
            (same encoding, params, rounds and seed; the gates run here on the holdout either way).
        cluster: for a window left on a cluster (``window.cluster``): splits and trains it there and
            brings the holdout here (``distributed.ClusterWindowTrainer``).

    Raises:
        InputError: a window left on a cluster without a ``cluster`` to train it.
    """
    model = spec.name
    timings: dict[str, float] = {}
    started = time.monotonic()
    split: HoldoutSplit
    if window.cluster is not None:
        if cluster is None:
            raise InputError(f"model {model!r}: the window is on a Dask cluster; pass the cluster to train it")
        split, trained = cluster.train(spec, nthread, progress)
    else:
        local_split = training.time_split(window.frame, spec)
        progress(
            f"training on {local_split.train.height} rows, early stopping on {local_split.early_stop.height}, "
            f"then the final model on both ({local_split.train.height + local_split.early_stop.height} rows)"
        )
        trained = train(local_split, spec, nthread)
        split = local_split
    timings["train_seconds"] = round(time.monotonic() - started, 3)
    booster_bytes = training.model_bytes(trained.booster)

    mark = time.monotonic()
    parent, champion = _champion_predictor(store, model)
    # Training predicted the holdout for its metrics; the gates and the baseline reuse those predictions.
    holdout_predictions = trained.holdout_predictions
    if holdout_predictions is not None and holdout_predictions.shape[0] != split.holdout.height:
        holdout_predictions = None
    progress(f"gates on {split.holdout.height} holdout rows (champion: {parent or 'none'})")
    report = validation.evaluate_gates(
        spec=spec,
        holdout=split.holdout,
        candidate=lambda frame: training.predict(trained.booster, trained.encoder, frame),
        champion=champion,
        candidate_features=list(trained.encoder.features),
        model_bytes=len(booster_bytes),
        seed=spec.xgboost.seed,
        candidate_prediction=holdout_predictions,
    )
    report = dataclasses.replace(report, notes=[*window.notes, *split.notes, *trained.notes])
    timings["gates_seconds"] = round(time.monotonic() - mark, 3)
    decision, reasons = decide_placement(
        report, has_champion=parent is not None, task=spec.task, champion_degraded=rules.answers_drop(request)
    )

    version = registry.new_version_id()
    mark = time.monotonic()
    reference_key = layout.reference_profile(model, version)
    store.create(reference_key, profiling.serialize(_reference_profile(store, spec, window, cluster)))
    baseline = _holdout_baseline(store, spec, version, trained, split.holdout, holdout_predictions)
    metadata = {
        "task": spec.task,
        "trigger": request.lineage_trigger,
        "decision": decision,
        "decision_reasons": reasons,
        "request": request.to_dict(),
        "lineage": {
            "training_batches": [asdict(batch) for batch in window.data.batches],
            "unlabelled_batches": list(window.data.unlabelled),
            "training_rows": window.rows,
            # The onset the window's weights favour (``rules.onset_weights``), None when unweighted.
            "favours_onset": request.drift_onset if window.weighted else None,
            "reference_profile": reference_key,
            "drift_event_id": request.drift_event_id,
            "parent_champion": parent,
            "spec_hash": spec.content_hash(),
            **environment,
        },
        "params": trained.params,
        "best_iteration": trained.best_iteration,
        "refit_rounds": trained.refit_rounds,
        "metrics": trained.metrics,
        "importances": trained.importances,
        "encoder": trained.encoder.to_dict(),
        "feature_names": list(trained.encoder.features),
        "gate_report": report.to_dict(),
        # What performance and prediction-drift monitoring compare the version with once it serves.
        "baseline": baseline.to_dict() if baseline else None,
        "timings": {**timings, "total_seconds": round(time.monotonic() - started, 3)},
    }
    registry.register_version(store, model, version, booster_bytes, metadata)
    timings["register_seconds"] = round(time.monotonic() - mark, 3)
    return Candidate(
        model=model,
        version=version,
        decision=decision,
        reasons=reasons,
        gate_report=report,
        metrics=trained.metrics,
        reference_key=reference_key,
        training_rows=window.rows,
        parent_champion=parent,
        timings=timings,
    )


def _holdout_baseline(
    store: ObjectStore,
    spec: ModelSpec,
    version: str,
    trained: training.TrainedModel,
    holdout: pl.DataFrame,
    predictions: np.ndarray | None = None,
) -> performance.Baseline | None:
    """The holdout's per-row loss facts, and the profile of the holdout predictions stored beside the model.

    ``predictions`` are the candidate's on ``holdout`` when already made (None predicts here). None when
    the holdout is too small to say anything (fewer than two rows).
    """
    if holdout.height < 2:
        return None
    if predictions is None:
        predictions = training.predict(trained.booster, trained.encoder, holdout)
    predictions = np.asarray(predictions, dtype=np.float64)
    key = layout.holdout_prediction_profile(spec.name, version)
    store.create(key, profiling.serialize(profiling.profile_frame(pl.DataFrame({"prediction": predictions}))))
    y = holdout.get_column(spec.target).cast(pl.Float64).to_numpy()
    return performance.baseline_of(spec.task, y, predictions, prediction_profile=key)


def _reference_profile(
    store: ObjectStore, spec: ModelSpec, window: PreparedWindow, cluster: ClusterTrainer | None = None
):
    """Merge of the training batches' stored profiles; the window's own rows when one is missing."""
    keys = [layout.batch_profile(spec.name, batch.batch_id) for batch in window.data.batches]
    try:
        return profiling.merge(profiling.deserialize(store.get(key), key) for key in keys)
    except ObjectNotFoundError:
        if window.cluster is not None and cluster is not None:
            return cluster.profile(spec.batch_columns)
        return profiling.profile_frame(window.frame.select(spec.batch_columns))


@dataclass(frozen=True)
class Placement:
    """What alias moves a candidate caused."""

    decision: Decision
    moved: list[str]
    reasons: list[str]


def place_candidate(store: ObjectStore, spec: ModelSpec, candidate: Candidate) -> Placement:
    """Move the alias the decision calls for, by compare-and-swap.

    Raises:
        ConflictError: another writer moved the alias meanwhile (the version stays registered, unnamed).
    """
    model, version = spec.name, candidate.version
    if candidate.decision == "rejected":
        return Placement("rejected", [], candidate.reasons)
    if candidate.decision == "champion":
        current = registry.read_alias(store, model, "champion")
        if current is not None and current.version is not None:
            raise ConflictError(
                f"model {model!r} got champion {current.version} while {version} was training; "
                f"{version} stays registered without an alias"
            )
        registry.move_alias(store, model, "champion", version, expected=current, reason=candidate.reasons[0])
        return Placement("champion", ["champion"], candidate.reasons)
    shadow = registry.read_alias(store, model, "shadow")
    if shadow is not None and shadow.version is not None and not spec.cooldown.supersede_shadow:
        raise ConflictError(
            f"candidate {shadow.version} entered shadow while {version} was training and "
            "cooldown.supersede_shadow is false"
        )
    reason = candidate.reasons[0]
    if shadow is not None and shadow.version is not None:
        reason += f"; supersedes {shadow.version}"
    registry.move_alias(store, model, "shadow", version, expected=shadow, reason=reason)
    return Placement("shadow", ["shadow"], candidate.reasons)


def lineage(store: ObjectStore, model: str, version: str) -> dict[str, Any]:
    """The chain from drift event to the version's aliases (`driftline lineage`)."""
    metadata = registry.read_metadata(store, model, version)
    trail = [r for r in registry.audit_trail(store, model) if version in (r.get("to"), r.get("from"))]
    drift = None
    request = metadata.get("request") or {}
    if request.get("drift_batch_id"):
        try:
            drift = json.loads(store.get(layout.drift_report(model, request["drift_batch_id"])))
        except ObjectNotFoundError:
            drift = None
    return {
        "model": model,
        "version": version,
        "created_at": metadata.get("created_at"),
        "trigger": metadata.get("trigger"),
        "decision": metadata.get("decision"),
        "drift": {
            "event_id": request.get("drift_event_id"),
            "batch_id": request.get("drift_batch_id"),
            "score": drift.get("score") if drift else None,
            "drifted_features": drift.get("drifted_features") if drift else None,
        },
        "lineage": metadata.get("lineage"),
        "metrics": metadata.get("metrics"),
        "gates": (metadata.get("gate_report") or {}).get("passed"),
        "gate_summary": metadata.get("decision_reasons"),
        "alias_moves": trail,
        "model_sha256": metadata.get("model_sha256"),
    }
