"""Backtest: replay a time-ordered history through the loop's own decisions, once per retraining policy.

The point is to show, on a user's own history, whether drift-triggered retraining pays and at what cost.
The history (one parquet: id, time, features and target, as the spec names them) is cut by time into
equal-count batches and replayed in memory, with no Prefect and no S3. It does not re-compose the loop: every
sequencing decision is a call into ``driftline.loop.rules`` (drift episodes, admission and claims, waiting
requests, readiness, the window that follows the change, placement) and the pure modules production uses
(``profiling``, ``drift``, ``training``, ``validation``, ``shadow``, ``guard``, ``performance``), in the order
production runs them; ``tests/flows/test_loop_parity.py`` checks that both decide the same, batch by batch.

Each step ``t`` of the replay is what production sees when batch ``t`` arrives:

1. the batch is checked for input drift against the champion's reference profile; an announced drift asks
   for a retrain (drift policy), which trains at once if its labels are in, or waits;
2. the champion scores it (its metric on the batch is what the report shows); a candidate in shadow and a
   previous champion under guard score it beside it;
3. the labels of batch ``t - label_delay`` arrive: they fold into the shadow test (promote / reject /
   inconclusive), the guard (rollback) and the champion's performance monitor (a degraded champion asks
   for a retrain), then the waiting request is re-checked; a periodic policy retrains here.

No label is used before it arrives. Policies: ``never`` (the first champion stays), ``periodic:K`` (a retrain
after every K served batches, through the gates and the shadow test; a new candidate supersedes one in
shadow), ``drift`` (the loop as deployed) and
``oracle`` (XGBoost's defaults retrained on the window after every batch and put in service directly: no
split, no gates, no shadow; what plain retraining reaches, the yardstick of the others). With
``promotion="shadow"`` a candidate that passes every gate enters shadow and is promoted on the shadow test's
verdict; with ``promotion="gates"`` it replaces the champion as soon as every gate passes.

Differences from production, on purpose: the timing gates (p99 latency, throughput) are skipped, so the
replay is deterministic and a loaded machine cannot change it; a promote verdict promotes even with
``promotion: manual``. A model is determined by its training batches (and the onset they favour), so
policies that train on the same window share it (its cost is still counted for each of them).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import polars as pl
import xgboost

from driftline.data import profiling
from driftline.errors import InputError
from driftline.loop import retraining, rules
from driftline.loop.cooldown import RetrainRequest
from driftline.models import scoring, training, validation
from driftline.models.spec import ModelSpec
from driftline.statistics import guard, metrics, performance, shadow
from driftline.statistics.drift import DriftReport, compare_profiles
from driftline.statistics.sequential import finite_or_none

if TYPE_CHECKING:
    from whylogs.core import DatasetProfileView

PolicyKind = Literal["never", "periodic", "drift", "oracle"]
Promotion = Literal["shadow", "gates"]
Progress = Callable[[int, int, str], None]
MIN_BATCH_ROWS = 200
DEFAULT_POLICIES = "never,periodic:1,drift,oracle"
# The oracle: XGBoost's own defaults (100 rounds of eta 0.3, depth 6) on every row of the window.
PLAIN_ROUNDS = 100
PLAIN_PARAMS: dict[str, Any] = {}
METRICS = {"binary": "auc", "regression": "rmse"}


# ----------------------------------------------------------------------------------------------- policies


@dataclass(frozen=True)
class Policy:
    """A retraining policy: ``never``, ``periodic:K`` or ``drift``."""

    name: str
    kind: PolicyKind
    every: int = 0  # periodic: retrain after every ``every`` served batches


def parse_policy(text: str) -> Policy:
    """Parse one policy name.

    Raises:
        InputError: not ``never``, ``drift`` or ``periodic:K`` with an integer K >= 1.
    """
    name = text.strip()
    if name in ("never", "drift", "oracle"):
        return Policy(name, name)  # type: ignore[arg-type]
    if name.startswith("periodic:"):
        every = name.removeprefix("periodic:")
        if every.isdigit() and int(every) >= 1:
            return Policy(f"periodic:{int(every)}", "periodic", int(every))
    raise InputError(
        f"bad policy {text!r}: use never, drift, oracle or periodic:K (K a whole number of batches >= 1, "
        "e.g. periodic:4)"
    )


def parse_policies(text: str | Sequence[str]) -> list[Policy]:
    """Parse a comma-separated list (or a sequence) of policy names, e.g. ``never,periodic:1,drift``.

    Raises:
        InputError: an empty list, a bad policy (named) or the same policy twice.
    """
    items = text.split(",") if isinstance(text, str) else list(text)
    items = [item for item in (i.strip() for i in items) if item]
    if not items:
        raise InputError("no policies given: use e.g. --policies never,periodic:1,drift")
    policies = [parse_policy(item) for item in items]
    names = [policy.name for policy in policies]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise InputError(f"policy {', '.join(repeated)} listed twice")
    return policies


# ----------------------------------------------------------------------------------------------- history


def load_history(path: str | Path, spec: ModelSpec, time_column: str | None = None) -> tuple[pl.DataFrame, ModelSpec]:
    """Read a history parquet with the spec's columns, sorted by (time, id).

    Args:
        path: parquet with the id, time, feature and target columns.
        spec: names the columns and the task.
        time_column: overrides ``spec.time_column``.

    Returns:
        The frame (only the spec's columns, rows without a time or target dropped) and the spec, with
        ``time_column`` set when overridden.

    Raises:
        InputError: unreadable file, missing columns (all named), a time column that is not a date/time or
            integer epoch, or a binary target that is not 0/1.
    """
    source = str(path)
    if time_column is not None and time_column != spec.time_column:
        try:
            spec = ModelSpec.model_validate({**spec.model_dump(), "time_column": time_column})
        except ValueError as error:
            raise InputError(f"--time-col {time_column!r}: {error}") from error
    schema = profiling.parquet_schema(path)
    required = [spec.id_column, spec.time_column, *spec.features.all, spec.target]
    missing = [column for column in required if column not in schema]
    if missing:
        roles = {spec.id_column: "id", spec.time_column: "time", spec.target: "target"}
        named = ", ".join(f"{c!r}" + (f" ({roles[c]} column)" if c in roles else "") for c in missing)
        raise InputError(f"{source}: missing column(s) {named}; it has {', '.join(map(repr, schema))}")
    time_dtype = schema[spec.time_column]
    if not (time_dtype.is_temporal() or time_dtype.is_integer()):
        raise InputError(
            f"{source}: time column {spec.time_column!r} is {time_dtype}; expected a date/time or integer epoch "
            "seconds (choose another with --time-col)"
        )
    frame = pl.read_parquet(path, columns=required, glob=False)
    frame = frame.drop_nulls([spec.time_column, spec.target]).filter(pl.col(spec.target).cast(pl.Float64).is_not_nan())
    if frame.height == 0:
        raise InputError(f"{source}: no row has both a time ({spec.time_column!r}) and a target ({spec.target!r})")
    try:
        target = frame.get_column(spec.target).cast(pl.Float64, strict=True)
    except pl.exceptions.PolarsError as error:
        raise InputError(f"{source}: target {spec.target!r} is {schema[spec.target]}, not numeric") from error
    if spec.task == "binary":
        bad = target.filter(~target.is_in([0.0, 1.0]))
        if bad.len():
            raise InputError(
                f"{source}: binary target {spec.target!r} must be 0 or 1; {bad.len()} row(s) are not, "
                f"e.g. {bad.unique().sort().head(5).to_list()}"
            )
    frame = frame.with_columns(target.alias(spec.target))
    frame = frame.with_columns(pl.col(c).cast(pl.String) for c in spec.features.categorical)
    return frame.sort([spec.time_column, spec.id_column], maintain_order=True), spec


@dataclass(frozen=True)
class Batch:
    """One replayed batch: rows ``[offset, offset + rows)`` of the time-ordered history."""

    index: int
    batch_id: str
    frame: pl.DataFrame
    y: np.ndarray
    start: Any  # first event time (the column's own type)
    end: Any  # last event time
    arrived: datetime  # when the batch is complete (its last event time, UTC)

    @property
    def rows(self) -> int:
        return self.frame.height


def _as_text(value: Any) -> str:
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def split_batches(frame: pl.DataFrame, spec: ModelSpec, batches: int) -> list[Batch]:
    """Cut the time-ordered rows into ``batches`` consecutive batches of equal count (sizes differ by one at most).

    Raises:
        InputError: fewer than 2 batches, or fewer than ``MIN_BATCH_ROWS`` rows per batch.
    """
    if batches < 2:
        raise InputError(f"--batches must be at least 2, got {batches}")
    rows = frame.height
    if rows // batches < MIN_BATCH_ROWS:
        raise InputError(
            f"{rows:,} rows in {batches} batches is {rows // batches:,} rows per batch; each batch needs at least "
            f"{MIN_BATCH_ROWS} rows to be scored and profiled (use fewer --batches)"
        )
    bounds = np.linspace(0, rows, batches + 1).round().astype(int)
    width = max(3, len(str(batches - 1)))
    out = []
    for index in range(batches):
        part = frame.slice(int(bounds[index]), int(bounds[index + 1] - bounds[index]))
        times = part.get_column(spec.time_column)
        out.append(
            Batch(
                index=index,
                batch_id=f"b{index:0{width}d}",
                frame=part,
                y=part.get_column(spec.target).to_numpy(),
                start=times.min(),
                end=times.max(),
                arrived=scoring.as_utc(times.max()),
            )
        )
    return out


# ----------------------------------------------------------------------------------------------- results


@dataclass(frozen=True)
class BatchOutcome:
    """One batch of one policy: the model in service, its metric, and what was decided after it."""

    batch: int
    batch_id: str
    start: str
    metric: float  # NaN when the batch cannot be scored (a binary batch with one class)
    version: str  # the model in service on this batch
    trained_through: int  # newest batch whose labels that model was trained on
    retrained: bool  # a candidate was trained after this batch
    promoted: bool  # a new champion serves from the next batch
    candidate: str | None = None  # the candidate trained after this batch
    candidate_trained_through: int | None = None  # newest batch whose labels the candidate was trained on
    drift: bool = False  # input drift declared (with hysteresis) on this batch
    degraded: bool = False  # the performance monitor said degraded after this batch's labels arrived
    events: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "batch": self.batch,
            "batch_id": self.batch_id,
            "start": self.start,
            "metric": finite_or_none(self.metric),
            "version": self.version,
            "trained_through": self.trained_through,
            "retrained": self.retrained,
            "promoted": self.promoted,
            "candidate": self.candidate,
            "candidate_trained_through": self.candidate_trained_through,
            "drift": self.drift,
            "degraded": self.degraded,
            "events": list(self.events),
        }


@dataclass(frozen=True)
class PolicyResult:
    """A policy's replay: per batch, and totals."""

    policy: Policy
    per_batch: list[BatchOutcome]
    retrains: int
    promotions: int
    train_seconds: float  # training + gates of every model this policy trained (shared ones counted too)
    rows_trained: int  # training rows of every model this policy trained
    rollbacks: int = 0
    decisions: list[tuple[int, str]] = field(default_factory=list)  # (batch, decision) in order

    @property
    def mean_metric(self) -> float:
        return _nanmean([outcome.metric for outcome in self.per_batch])

    def mean_metric_from(self, batch: int) -> float:
        """Mean metric over the batches from index ``batch`` on."""
        return _nanmean([outcome.metric for outcome in self.per_batch if outcome.batch >= batch])

    def to_dict(self) -> dict[str, Any]:
        return {
            "mean_metric": finite_or_none(self.mean_metric),
            "retrains": self.retrains,
            "promotions": self.promotions,
            "rollbacks": self.rollbacks,
            "train_seconds": round(self.train_seconds, 3),
            "rows_trained": self.rows_trained,
            "per_batch": [outcome.to_dict() for outcome in self.per_batch],
        }


@dataclass(frozen=True)
class BacktestResult:
    """Every policy's replay of the same batches."""

    metric: str
    task: str
    model: str
    batches: int
    rows: int
    first_served: int
    label_delay: int
    promotion: Promotion
    policies: dict[str, PolicyResult]
    seconds: float
    notes: list[str] = field(default_factory=list)

    @property
    def higher_is_better(self) -> bool:
        return self.metric == "auc"

    def to_dict(self) -> dict[str, Any]:
        """The JSON document (DESIGN section 8: ``metric`` and ``policies`` with their keys, plus context)."""
        return {
            "metric": self.metric,
            "task": self.task,
            "model": self.model,
            "batches": self.batches,
            "rows": self.rows,
            "first_served_batch": self.first_served,
            "label_delay": self.label_delay,
            "promotion": self.promotion,
            "seconds": round(self.seconds, 3),
            "notes": list(self.notes),
            "captured_share": finite_or_none(captured_share(self)),
            "policies": {name: result.to_dict() for name, result in self.policies.items()},
        }


def _nanmean(values: Sequence[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return float(np.mean(finite)) if finite else math.nan


# ----------------------------------------------------------------------------------------------- models


@dataclass(frozen=True)
class _Model:
    """A trained model, named after its newest training batch (and the onset its window favours)."""

    name: str
    window: tuple[int, ...]
    trained: training.TrainedModel | None  # None: training failed (``failure`` says why)
    holdout: pl.DataFrame
    reference: DatasetProfileView | None
    baseline: performance.Baseline | None
    seconds: float
    rows: int
    failure: str | None = None
    onset: str | None = None  # the drift onset the window's weights favour (None: unweighted)

    @property
    def newest(self) -> int:
        return self.window[-1]


class _Lab:
    """What every policy's replay shares: batches, their profiles, and models, predictions, gate reports and
    drift reports keyed by what determines them (so two policies doing the same thing compute it once)."""

    def __init__(self, batches: list[Batch], spec: ModelSpec, nthread: int) -> None:
        self.batches = batches
        self.spec = spec
        # The timing gates measure this machine, not the model: a replay must not depend on its load.
        self.gate_spec = spec.model_copy(
            update={
                "gates": spec.gates.model_copy(update={"max_p99_latency_ms": None, "min_throughput_rows_per_s": None})
            }
        )
        self.nthread = nthread
        self.profiles: dict[int, DatasetProfileView] = {}
        self.models: dict[tuple[Any, ...], _Model] = {}
        self.predictions: dict[tuple[str, int], np.ndarray] = {}
        self.gates: dict[tuple[str, str], tuple[validation.GateReport, float]] = {}
        self.drift: dict[tuple[str, int], DriftReport] = {}

    def profile(self, index: int) -> DatasetProfileView:
        if index not in self.profiles:
            self.profiles[index] = profiling.profile_frame(self.batches[index].frame.select(self.spec.batch_columns))
        return self.profiles[index]

    def window_frame(self, window: tuple[int, ...]) -> pl.DataFrame:
        return retraining.restrict_days(pl.concat([self.batches[i].frame for i in window]), self.spec)

    def model(self, window: tuple[int, ...], onset: str | None = None, kind: str | None = None) -> _Model:
        spec = self.spec
        whole = self.window_frame(window)
        frame = rules.onset_weights(whole, spec, onset, kind)
        weighted = onset if frame.height != whole.height or rules.WEIGHT_COLUMN in frame.columns else None
        key = (window, weighted, rules.onset_weight(spec, kind) if weighted else None)
        if key in self.models:
            return self.models[key]
        name = f"m{self.batches[window[-1]].batch_id.removeprefix('b')}"
        if weighted is not None:
            name += f"{'d' if kind == 'performance' else 'o'}{self._batch_at(weighted)}"
        started = time.perf_counter()
        try:
            split = training.time_split(frame, spec)
            trained = training.train(split, spec, self.nthread)
            holdout_prediction = training.predict(trained.booster, trained.encoder, split.holdout)
            baseline = performance.baseline_of(
                spec.task, split.holdout.get_column(spec.target).to_numpy(), holdout_prediction
            )
        except InputError as error:
            model = _Model(name, window, None, frame.head(0), None, None, time.perf_counter() - started, 0, str(error))
        else:
            reference = profiling.merge(self.profile(i) for i in window)
            seconds = time.perf_counter() - started
            rows = split.train.height + split.early_stop.height  # the final model trains on both
            model = _Model(name, window, trained, split.holdout, reference, baseline, seconds, rows, onset=weighted)
        self.models[key] = model
        return model

    def plain_model(self, window: tuple[int, ...]) -> _Model:
        """The oracle's model: XGBoost's own defaults on every row of the window, no split, no early stop."""
        key = ("plain", window)
        if key in self.models:
            return self.models[key]
        spec = self.spec
        frame = self.window_frame(window)
        started = time.perf_counter()
        encoder = training.FeatureEncoder.fit(frame, spec)
        params = {**training.training_params(spec, self.nthread), **PLAIN_PARAMS}
        params = {k: v for k, v in params.items() if k in ("objective", "eval_metric", "seed", "nthread")}
        matrix = xgboost.DMatrix(
            encoder.encode(frame),
            label=frame.get_column(spec.target).cast(pl.Float32).to_numpy(),
            feature_names=encoder.booster_names,
            feature_types=encoder.feature_types,
            enable_categorical=True,
            missing=np.nan,
        )
        booster = xgboost.train(params, matrix, num_boost_round=PLAIN_ROUNDS)
        trained = training.TrainedModel(booster, encoder, PLAIN_ROUNDS - 1, PLAIN_ROUNDS, {}, {}, 0.0, params)
        name = f"p{self.batches[window[-1]].batch_id.removeprefix('b')}"
        model = _Model(name, window, trained, frame.head(0), None, None, time.perf_counter() - started, frame.height)
        self.models[key] = model
        return model

    def _batch_at(self, onset: str) -> str:
        for batch in self.batches:
            if _as_text(batch.start) == onset:
                return batch.batch_id.removeprefix("b")
        return onset

    def predict(self, model: _Model, index: int) -> np.ndarray:
        key = (model.name, index)
        if key not in self.predictions:
            assert model.trained is not None
            self.predictions[key] = training.predict(
                model.trained.booster, model.trained.encoder, self.batches[index].frame, nthread=self.nthread
            )
        return self.predictions[key]

    def gate(self, candidate: _Model, champion: _Model | None) -> tuple[validation.GateReport, float]:
        key = (candidate.name, champion.name if champion else "")
        if key not in self.gates:
            assert candidate.trained is not None
            started = time.perf_counter()
            cand = candidate.trained
            champ = champion.trained if champion is not None else None
            report = validation.evaluate_gates(
                spec=self.gate_spec,
                holdout=candidate.holdout,
                candidate=lambda frame: training.predict(cand.booster, cand.encoder, frame),
                champion=None
                if champ is None
                else (lambda frame: training.predict(champ.booster, champ.encoder, frame)),
                candidate_features=list(cand.encoder.features),
                model_bytes=len(training.model_bytes(cand.booster)),
                seed=self.spec.xgboost.seed,
            )
            self.gates[key] = (report, time.perf_counter() - started)
        return self.gates[key]

    def drift_report(self, champion: _Model, index: int) -> DriftReport:
        key = (champion.name, index)
        if key not in self.drift:
            assert champion.reference is not None and champion.trained is not None
            self.drift[key] = compare_profiles(
                champion.reference,
                self.profile(index),
                numeric=self.spec.features.numeric,
                categorical=self.spec.features.categorical,
                weights=champion.trained.importances,
                policy=self.spec.drift,
            )
        return self.drift[key]

    def metric(self, model: _Model, index: int) -> float:
        batch = self.batches[index]
        try:
            return metrics.evaluate(self.spec.task, batch.y, self.predict(model, index))[METRICS[self.spec.task]]
        except InputError:  # a binary batch with a single class has no AUC
            return math.nan

    def labelled_window(self, newest: int) -> tuple[int, ...]:
        """The spec's training window when the labels of batches up to ``newest`` are in."""
        if newest < 0:
            return ()
        ids = retraining.select_window([b.batch_id for b in self.batches[: newest + 1]], self.spec)
        return tuple(int(batch_id.removeprefix("b")) for batch_id in ids)

    def rows_since(self, window: tuple[int, ...], onset: str | None) -> int:
        return rules.rows_since(self.window_frame(window), self.spec, onset) if window else 0


# ----------------------------------------------------------------------------------------------- replay


class _Replay:
    """One policy's walk through the batches: ``step`` once per served batch, then ``result``.

    Every sequencing decision is a call into ``driftline.loop.rules`` (or the pure modules it orders: shadow,
    guard, performance), in the order production runs them (see ``driftline.loop.rules``); this class only keeps
    the state production keeps on S3, in memory.
    """

    def __init__(self, lab: _Lab, policy: Policy, first: _Model, first_served: int, delay: int, promotion: Promotion):
        self.lab, self.policy, self.delay, self.promotion = lab, policy, delay, promotion
        self.spec = lab.spec
        self.first_served = first_served
        self.champion = first
        self.candidate: _Model | None = None
        self.shadow_state: shadow.ShadowState | None = None
        self.previous: _Model | None = None
        self.guard_state: guard.GuardState | None = None
        self.monitors: dict[str, performance.PerformanceState] = {}  # per champion, as production keeps them
        self.scored: dict[int, set[str]] = {}  # batch -> every model that scored it
        self.watch = rules.DriftWatch()
        self.claims: set[str] = set()
        self.pending: RetrainRequest | None = None
        self.labelled_through = first_served - 1 - delay  # newest batch whose labels are in
        self.retrains = self.promotions = self.rollbacks = self.rows_trained = 0
        self.train_seconds = 0.0
        self.outcomes: list[BatchOutcome] = []
        self.decisions: list[tuple[int, str]] = []  # (batch, decision): what the parity test compares

    def _decide(self, t: int, decision: str) -> None:
        self.decisions.append((t, decision))

    def step(self, t: int) -> None:
        lab, spec = self.lab, self.spec
        batch = lab.batches[t]
        events: list[str] = []
        self._trained: _Model | None = None
        self._promoted = False

        # 1. The batch arrives: drift against the champion's reference (oracle: no loop at all).
        declaration = None
        if self.policy.kind != "oracle":
            report = lab.drift_report(self.champion, t)
            self.watch, declaration = rules.observe_drift(self.watch, batch.batch_id, report, self.champion.name, spec)
            if declaration.declared:
                events.append(
                    f"input drift: {', '.join(report.drifted_features[:5])} (score {report.score:.2f})"
                    + ("" if declaration.announce else "; same episode, not announced again")
                )
            if declaration.announce:
                self._decide(t, f"drift announced on {batch.batch_id}")
                if self.policy.kind == "drift":
                    self._request(t, batch.batch_id, _as_text(batch.start), "input drift", events)

        # 2. It is scored: the champion's predictions are the output; shadow and guarded previous beside it.
        serving = self.champion
        metric = lab.metric(serving, t)
        scorers = {serving.name}
        for side in (self.candidate, self.previous):
            if side is not None:
                lab.predict(side, t)
                scorers.add(side.name)
        self.scored[t] = scorers

        # 3. Labels of an earlier batch arrive.
        labelled = t - self.delay
        degraded = False
        if labelled >= 0:
            self.labelled_through = labelled
            degraded = self._labels(t, labelled, events)
        if self.policy.kind == "periodic" and (t - self.first_served + 1) % self.policy.every == 0:
            self._periodic(t, events)
        elif self.policy.kind == "oracle":
            window = lab.labelled_window(self.labelled_through)
            if window and window != self.champion.window:
                model = lab.plain_model(window)
                self.retrains += 1
                self.rows_trained += model.rows
                self.train_seconds += model.seconds
                self._trained = model
                self.champion = model
                self.promotions += 1
                self._promoted = True

        trained = self._trained
        self.outcomes.append(
            BatchOutcome(
                batch=t,
                batch_id=batch.batch_id,
                start=_as_text(batch.start),
                metric=metric,
                version=serving.name,
                trained_through=serving.newest,
                retrained=trained is not None,
                promoted=self._promoted,
                candidate=trained.name if trained is not None else None,
                candidate_trained_through=trained.newest if trained is not None else None,
                drift=bool(declaration and declaration.declared),
                degraded=degraded,
                events=events,
            )
        )

    # --------------------------------------------------------------------------------------- labels

    def _labels(self, t: int, labelled: int, events: list[str]) -> bool:
        """As production: shadow-evaluate (shadow, guard, performance), then promote, then the retrains."""
        lab, spec = self.lab, self.spec
        batch = lab.batches[labelled]
        now = batch.arrived
        y = batch.y
        scorers = self.scored.get(labelled, set())
        # Shadow: the candidate and the champion it is compared with both scored the batch.
        to_promote = None
        if self.candidate is not None and self.candidate.name in scorers:
            candidate = self.candidate
            compared = self.shadow_state.champion if self.shadow_state else self.champion.name
            champion = self.champion if compared == self.champion.name else self.previous
            if champion is not None and champion.name in scorers:
                differences = shadow.paired_differences(
                    spec.task, y, lab.predict(candidate, labelled), lab.predict(champion, labelled)
                )
                state = self.shadow_state or shadow.start_shadow(spec.name, candidate.name, champion.name, now=now)
                self.shadow_state = shadow.fold_batch(state, differences, batch.batch_id, policy=spec.shadow, now=now)
                verdict = shadow.decide(self.shadow_state, spec.shadow, now)
                action = rules.shadow_action(verdict.verdict)
                if action != "continue":
                    self._decide(t, f"shadow {verdict.verdict}")
                if action == "promote":
                    to_promote = (candidate, verdict.reasons[0])
                elif action == "retire":
                    events.append(f"{candidate.name} {verdict.verdict} in shadow: {verdict.reasons[0]}")
                    self._clear_shadow()
        # Guard: the new champion against the one it replaced, on rows both scored.
        guarded = self.guard_state
        if guarded is not None and not guarded.closed and self.previous is not None:
            current, previous = self.champion, self.previous
            if {current.name, previous.name} <= scorers:
                differences = shadow.paired_differences(
                    spec.task, y, lab.predict(current, labelled), lab.predict(previous, labelled)
                )
                self.guard_state = guard.fold_batch(guarded, differences, batch.batch_id, policy=spec.guard, now=now)
                verdict = guard.decide_rollback(self.guard_state, spec.guard)
                if verdict.verdict == "rollback":
                    self._decide(t, "rollback")
                    events.append(f"rolled back {current.name} to {previous.name}: {verdict.reasons[0]}")
                    self.rollbacks += 1
                    self.champion, self.previous = previous, current
                    self._promoted = True
        # Performance: the champion's loss against its holdout (one monitor per champion, kept).
        degraded: tuple[str, str] | None = None
        champion = self.champion
        if spec.performance.enabled and champion.baseline is not None and champion.name in scorers:
            monitor = self.monitors.get(champion.name)
            if monitor is None:
                baseline = champion.baseline
                monitor = performance.start_monitor(
                    spec.name, champion.name, baseline.loss, baseline.rows, now, baseline_sd=baseline.loss_sd
                )
            losses = metrics.per_row_loss(spec.task, y, lab.predict(champion, labelled))
            monitor = performance.fold_batch(monitor, losses, batch.batch_id, spec.performance, now)
            verdict = performance.decide(monitor, spec.performance)
            monitor, announce = performance.mark_alerted(monitor, verdict, batch.batch_id, now)
            self.monitors[champion.name] = monitor
            if announce:
                since = verdict.since_batch_id or batch.batch_id
                degraded = (since, champion.name)
                self._decide(t, f"performance degraded since {since}")
                events.append(f"performance degraded since {since}: {verdict.reasons[0]}")
        # The promote flow acts on the shadow verdict once shadow-evaluate has finished.
        if to_promote is not None and self.candidate is to_promote[0]:
            self._promote(t, to_promote[0], now, f"shadow: {to_promote[1]}", events)
        # The retrain flow acts on the degraded champion's announcement, then re-checks the waiting request.
        if self.policy.kind == "drift":
            if degraded is not None:
                since, reference = degraded
                onset = _as_text(lab.batches[int(since.removeprefix("b"))].start)
                self._request(t, batch.batch_id, onset, "performance degraded", events, reference, "performance")
            if self.pending is not None:
                self._recheck(t, events)
        return degraded is not None

    # --------------------------------------------------------------------------------------- retrains

    def _request(
        self,
        t: int,
        batch_id: str,
        onset: str,
        why: str,
        events: list[str],
        reference: str | None = None,
        kind: str = "input",
    ) -> None:
        """A drift-triggered retrain request, as the retrain flow handles one (``driftline.loop.rules``)."""
        spec = self.spec
        request = RetrainRequest(
            spec.name,
            "drift",
            self.lab.batches[t].arrived.isoformat(),
            drift_batch_id=batch_id,
            drift_onset=onset,
            reference_version=reference or self.champion.name,
            drift_kind=kind,
        )
        request = rules.keep_earliest_onset(request, self.pending)
        shadow_version = self.candidate.name if self.candidate else None
        key = rules.request_key(request, spec)
        admission = rules.admit(
            request,
            spec,
            shadow_version=shadow_version,
            champion=self.champion.name,
            already_claimed=key in self.claims,
        )
        if admission.proceed and admission.key is not None:
            self.claims.add(admission.key)
        if not admission.proceed:
            events.append(f"{why}: no retrain now, {admission.reasons[0]}")
            self._decide(t, f"request {admission.outcome}")
            if rules.waits(request, admission):
                self.pending = request
            return
        self._ready_then_train(t, request, why, events)

    def _recheck(self, t: int, events: list[str]) -> None:
        assert self.pending is not None
        stale = rules.stale_pending(self.pending, self.champion.name)
        if stale:
            events.append(stale)
            self.pending = None
            return
        request = self.pending
        shadow_version = self.candidate.name if self.candidate else None
        admission = rules.admit(
            request, self.spec, shadow_version=shadow_version, champion=self.champion.name, rechecking=True
        )
        if admission.proceed:
            self._ready_then_train(t, request, "waiting drift", events)

    def _ready_then_train(self, t: int, request: RetrainRequest, why: str, events: list[str]) -> None:
        lab, spec = self.lab, self.spec
        window = lab.labelled_window(self.labelled_through)
        rows = sum(lab.batches[i].rows for i in window)
        shortfall = None
        if rows < spec.window.min_labelled_rows:
            shortfall = f"{rows} labelled row(s) < window.min_labelled_rows {spec.window.min_labelled_rows}"
        ready = rules.readiness(
            request,
            spec,
            window_batches=[lab.batches[i].batch_id for i in window],
            rows_since_onset=(since := lab.rows_since(window, request.drift_onset)),
            shortfall=shortfall,
            champion_batches=[lab.batches[i].batch_id for i in self.champion.window],
        )
        if not ready.ready:
            self.pending = request
            return
        self.pending = None
        model = lab.model(window, request.drift_onset, request.drift_kind)
        placed = self._train_and_place(t, model, why, events, rules.answers_drop(request))
        if placed == "rejected" and (again := rules.retry(request, since)):
            events.append(f"the drop stays proven: retried once {again.min_rows_since_onset} rows follow its onset")
            self.pending = again

    def _periodic(self, t: int, events: list[str]) -> None:
        # A schedule retrains on its schedule: a new candidate that passes the gates replaces the one in shadow.
        window = self.lab.labelled_window(self.labelled_through)
        rows = sum(self.lab.batches[i].rows for i in window)
        if rows < self.spec.window.min_labelled_rows or window == self.champion.window:
            return
        self._train_and_place(t, self.lab.model(window), "periodic", events)

    def _train_and_place(self, t: int, model: _Model, why: str, events: list[str], drop: bool = False) -> str:
        lab = self.lab
        self.retrains += 1
        self.rows_trained += model.rows
        self.train_seconds += model.seconds
        self._trained = model
        window = f"{lab.batches[model.window[0]].batch_id}-{lab.batches[model.window[-1]].batch_id}"
        weighted = f", favouring rows from {model.onset} on" if model.onset else ""
        self._decide(t, f"retrain on {window}{' from onset' if model.onset else ''}")
        if model.trained is None:
            events.append(f"{why} retrain of {model.name} failed: {model.failure}")
            self._decide(t, "retrain failed")
            return "failed"
        events.append(f"{why} retrain: {model.name} on {len(model.window)} batch(es) {window}{weighted}")
        report, seconds = lab.gate(model, self.champion)
        self.train_seconds += seconds
        decision, reasons = rules.decide_placement(
            report, has_champion=True, task=self.spec.task, champion_degraded=drop
        )
        self._decide(t, f"placed {decision}")
        if decision == "rejected":
            events.append(f"{model.name} rejected by the gates: {reasons[0]}")
            return decision
        if self.promotion == "gates":
            self._promote(t, model, lab.batches[t].arrived, "every gate passed", events)
            return decision
        if self.candidate is not None:
            events.append(f"{model.name} supersedes {self.candidate.name} in shadow")
        self._clear_shadow()
        self.candidate = model
        events.append(f"{model.name} enters shadow ({reasons[0]})")
        return decision

    def _promote(self, t: int, model: _Model, now: datetime, why: str, events: list[str]) -> None:
        self._decide(t, "promoted")
        previous = self.champion
        self.champion = model
        self.promotions += 1
        self._promoted = True
        self.previous = previous
        self.guard_state = (
            guard.start_guard(self.spec.name, model.name, previous.name, now=now) if self.spec.guard.enabled else None
        )
        self._clear_shadow()
        events.append(f"promoted {model.name}: {why}")

    def _clear_shadow(self) -> None:
        self.candidate = None
        self.shadow_state = None

    def result(self) -> PolicyResult:
        return PolicyResult(
            policy=self.policy,
            per_batch=list(self.outcomes),
            retrains=self.retrains,
            promotions=self.promotions,
            train_seconds=self.train_seconds,
            rows_trained=self.rows_trained,
            rollbacks=self.rollbacks,
            decisions=list(self.decisions),
        )


# ----------------------------------------------------------------------------------------------- run


def default_warmup(spec: ModelSpec, batches: int) -> int:
    """Batches the first champion trains on: the spec's window, at most a quarter of the history (>= 1)."""
    window = spec.window.last_batches or batches
    return max(1, min(window, batches // 4))


def run_backtest(
    frame: pl.DataFrame,
    spec: ModelSpec,
    *,
    batches: int,
    policies: Sequence[Policy] | str = DEFAULT_POLICIES,
    label_delay: int = 1,
    warmup: int | None = None,
    promotion: Promotion = "shadow",
    nthread: int = 1,
    progress: Progress | None = None,
) -> BacktestResult:
    """Replay ``frame`` (from ``load_history``) through every policy.

    The first champion trains on the first ``warmup`` batches once their labels are in, and serves from
    batch ``warmup + label_delay`` on; every policy starts from it.

    Args:
        frame: time-ordered rows with the spec's id, time, feature and target columns.
        spec: the model spec (columns, task and every policy the loop uses).
        batches: how many equal-count batches to cut the history into.
        policies: ``Policy`` objects or a comma-separated string such as ``never,periodic:1,drift``.
        label_delay: batches after its arrival at which a batch's labels can be used (0: right after it
            was scored).
        warmup: batches of the first champion's training window (default ``default_warmup``).
        promotion: ``shadow`` (the deployed loop) or ``gates`` (promote as soon as every gate passes).
        nthread: XGBoost threads (the models do not depend on it).
        progress: called with (steps done, steps in all, message).

    Raises:
        InputError: bad policies, too few rows per batch, a label delay or warm-up that leaves no batch to
            serve, or a first window that cannot be trained on.
    """
    started = time.perf_counter()
    chosen = parse_policies(policies) if isinstance(policies, str) else list(policies)
    if not chosen:
        raise InputError("no policies given: use e.g. --policies never,periodic:1,drift")
    if label_delay < 0:
        raise InputError(f"--label-delay must be >= 0 batches, got {label_delay}")
    if promotion not in ("shadow", "gates"):
        raise InputError(f"promotion must be shadow or gates, got {promotion!r}")
    cut = split_batches(frame, spec, batches)
    warm = default_warmup(spec, batches) if warmup is None else warmup
    first_served = warm + label_delay
    if warm < 1 or first_served >= batches:
        raise InputError(
            f"a warm-up of {warm} batch(es) and a label delay of {label_delay} leave no batch of the {batches} "
            "to serve: use more --batches, a shorter --warmup or --label-delay"
        )
    say = progress or (lambda done, total, message: None)
    total = 1 + len(chosen) * (batches - first_served)
    lab = _Lab(cut, spec, nthread)
    say(0, total, f"training the first champion on batches 0-{warm - 1}")
    window = tuple(range(warm))
    rows = sum(cut[i].rows for i in window)
    if rows < spec.window.min_labelled_rows:
        raise InputError(
            f"the first champion's {warm} warm-up batch(es) hold {rows:,} labelled rows < window.min_labelled_rows "
            f"{spec.window.min_labelled_rows:,}: use fewer --batches or a longer --warmup"
        )
    first = lab.model(window)
    if first.trained is None:
        raise InputError(f"cannot train the first champion on batches 0-{warm - 1}: {first.failure}")
    done = 1
    results: dict[str, PolicyResult] = {}
    for policy in chosen:
        start = lab.plain_model(window) if policy.kind == "oracle" else first
        replay = _Replay(lab, policy, start, first_served, label_delay, promotion)
        for t in range(first_served, batches):
            replay.step(t)
            done += 1
            say(done, total, f"{policy.name}: batch {cut[t].batch_id}")
        results[policy.name] = replay.result()
    notes = [
        f"first champion {first.name} trained on batches {cut[0].batch_id}-{cut[warm - 1].batch_id}, "
        f"serving from {cut[first_served].batch_id}",
        "timing gates (p99 latency, throughput) skipped so the replay is deterministic",
    ]
    return BacktestResult(
        metric=METRICS[spec.task],
        task=spec.task,
        model=spec.name,
        batches=batches,
        rows=frame.height,
        first_served=first_served,
        label_delay=label_delay,
        promotion=promotion,
        policies=results,
        seconds=time.perf_counter() - started,
        notes=notes,
    )


# ----------------------------------------------------------------------------------------------- figures


def captured_share(result: BacktestResult, policy: str = "drift") -> float | None:
    """Share of the gap between ``never`` and ``oracle`` (mean metric) that ``policy`` closes; None when a policy
    is missing or the oracle is no better than never (nothing to capture)."""
    chosen, never, oracle = (result.policies.get(name) for name in (policy, "never", "oracle"))
    if chosen is None or never is None or oracle is None:
        return None
    better = 1.0 if result.higher_is_better else -1.0
    gap = better * (oracle.mean_metric - never.mean_metric)
    if not math.isfinite(gap) or gap <= 0:
        return None
    return better * (chosen.mean_metric - never.mean_metric) / gap
