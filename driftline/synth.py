"""A seeded, time-ordered credit-risk stream whose drift is scheduled, so every test knows the truth.

Rows look like loan applications: 12 numeric and 4 categorical features (``FEATURES``), an id, an event
time and a binary target ``default``. The label rule (``default_probability``) is known:

    logit = -1 + 3 debt_ratio + (2 - 4 c) utilization + 0.8 late_payments - 0.8 (ln income - 10)
            + 0.7 [employment = none]                                            (the base rule)
            + 0.25 (inquiries - 1) - 0.2 (ln savings - 8) - 0.004 (tenure_months - 120)
            + 0.3 ([housing = rent] - 0.4)                                         (small effects)
            + b                                                                    (prior drift)

``loan_amount``, ``monthly_spend``, ``txn_count`` and ``channel`` do not enter it at all. ``c`` is the
concept-drift strength: at 1 utilization's role flips, so a model trained before the change degrades
while every feature's distribution stays the same (only performance monitoring can see it).

A ``Scenario`` schedules events on batch indices: ``CovariateDrift`` moves one feature's distribution
(P(x) changes, P(y|x) does not), ``PriorDrift`` moves the base rate, ``ConceptDrift`` changes P(y|x).
Each may ramp in over several batches and may end. Two presets tell the demo's story: ``default``
(24 batches of 5,000 rows: input drift of income and channel at batch 8, a concept drift at 14 that the
features do not show) and ``fast`` (12 x 2,000, the same story at batches 4 and 7)::

    scenario = get_scenario("default", seed=7)
    features, labels = generate_batch(scenario, 3)        # polars frames; labels = id + default
    for tick in stream(scenario): ...                     # batches, and labels once their delay passed
    write_dataset(scenario, "out/")                       # history.parquet, batches/, labels/, spec.yaml

Determinism: every random draw comes from a generator seeded by (scenario seed, batch index, stream),
so a batch does not depend on which other batches were generated, and the same seed writes the same
bytes.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, Field, model_validator

from driftline.drift import DriftPolicy, DriftThresholds, Hysteresis
from driftline.errors import InputError
from driftline.spec import CooldownSpec, Features, GatesSpec, GuardSpec, ModelSpec, ShadowSpec, WindowSpec

ID_COLUMN = "id"
TIME_COLUMN = "ts"
TARGET = "default"
# Ids of batch i start at i * ID_STRIDE (the convention of the tests' example batches), so they never
# collide across batches; it bounds the rows of one batch.
ID_STRIDE = 10_000_000
DEFAULT_START = dt.datetime(2026, 1, 1)

Kind = Literal["log", "unit", "int", "count", "real"]


@dataclass(frozen=True)
class NumericFeature:
    """How a numeric feature is drawn and how a covariate shift moves it.

    A shift of ``s`` moves the feature by ``s`` of its own standard deviations (``sd``): log-normal
    features (``log``) on the log scale, the others additively, clipped to ``bounds`` and rounded for
    integer kinds (``int``, ``count``).
    """

    name: str
    kind: Kind
    sd: float
    bounds: tuple[float, float] = (-math.inf, math.inf)
    label_effect: str = "none"  # "base", "small" or "none": its role in the label rule (documentation)


@dataclass(frozen=True)
class CategoricalFeature:
    """A categorical feature's categories and their stationary probabilities."""

    name: str
    categories: tuple[str, ...]
    probabilities: tuple[float, ...]
    label_effect: str = "none"


NUMERIC_FEATURES: tuple[NumericFeature, ...] = (
    NumericFeature("income", "log", 0.5, (0.0, math.inf), "base"),
    NumericFeature("debt_ratio", "unit", math.sqrt(10 / (49 * 8)), (0.0, 1.0), "base"),
    NumericFeature("age", "int", math.sqrt((62**2 - 1) / 12), (18, 100), "none"),
    NumericFeature("credit_lines", "count", 2.0, (0, math.inf), "none"),
    NumericFeature("late_payments", "count", math.sqrt(0.3), (0, math.inf), "base"),
    NumericFeature("utilization", "unit", math.sqrt(1 / 12), (0.0, 1.0), "base"),
    NumericFeature("savings", "log", 1.0, (0.0, math.inf), "small"),
    NumericFeature("tenure_months", "int", math.sqrt((241**2 - 1) / 12), (0, 600), "small"),
    NumericFeature("inquiries", "count", 1.0, (0, math.inf), "small"),
    NumericFeature("loan_amount", "log", 0.6, (0.0, math.inf), "none"),
    NumericFeature("monthly_spend", "real", math.sqrt(2) * 600, (0.0, math.inf), "none"),
    NumericFeature("txn_count", "count", 5.0, (0, math.inf), "none"),
)
CATEGORICAL_FEATURES: tuple[CategoricalFeature, ...] = (
    CategoricalFeature("region", ("north", "south", "east", "west"), (0.25, 0.25, 0.25, 0.25), "none"),
    CategoricalFeature("employment", ("salaried", "self", "none"), (0.7, 0.2, 0.1), "base"),
    CategoricalFeature("housing", ("rent", "own", "mortgage"), (0.4, 0.25, 0.35), "small"),
    CategoricalFeature("channel", ("web", "branch", "partner", "mobile"), (0.45, 0.2, 0.15, 0.2), "none"),
)
NUMERIC = tuple(f.name for f in NUMERIC_FEATURES)
CATEGORICAL = tuple(f.name for f in CATEGORICAL_FEATURES)
FEATURES = (*NUMERIC, *CATEGORICAL)
_NUMERIC_BY_NAME = {f.name: f for f in NUMERIC_FEATURES}
_CATEGORICAL_BY_NAME = {f.name: f for f in CATEGORICAL_FEATURES}


# ------------------------------------------------------------------------------------------ sampling


def _apply_numeric_shift(values: np.ndarray, feature: NumericFeature, shift: float) -> np.ndarray:
    if feature.kind == "log":
        return values * math.exp(shift * feature.sd)
    moved = np.clip(values + shift * feature.sd, *feature.bounds)
    if feature.kind in ("int", "count"):
        return np.rint(moved).astype(np.int64)
    return moved


def sample_features(
    seed: int | Sequence[int],
    rows: int,
    *,
    start: dt.datetime = DEFAULT_START,
    spacing: dt.timedelta = dt.timedelta(seconds=1),
    id_offset: int = 0,
    shifts: Mapping[str, float] | None = None,
    categories: Mapping[str, str] | None = None,
) -> pl.DataFrame:
    """One batch of features: ``id``, ``ts`` and every feature of ``FEATURES``, in that order.

    The first eight features are drawn first from ``default_rng(seed)`` in the order the tests' example
    batches always used, so those columns keep their values for a given seed; the others come from a
    second stream, and drift moves values with a third, so a drift never changes the undrifted draws.

    Args:
        seed: seed (or entropy sequence) of the batch.
        rows: rows in the batch.
        start: event time of the first row; row ``j`` happens at ``start + j * spacing``.
        spacing: time between consecutive rows.
        id_offset: first id; ids are consecutive.
        shifts: covariate shift per feature: numeric features move by that many of their standard
            deviations (``NumericFeature``); categorical ones send that share of rows to one category.
        categories: the category a categorical shift sends rows to (default: the feature's last category).

    Raises:
        InputError: an unknown feature or category, a share outside [0, 1], or a bad row count.
    """
    if rows < 1 or rows > ID_STRIDE:
        raise InputError(f"rows per batch must be between 1 and {ID_STRIDE:,}, got {rows}")
    shifts = dict(shifts or {})
    categories = dict(categories or {})
    unknown = sorted((set(shifts) | set(categories)) - set(FEATURES))
    if unknown:
        raise InputError(f"unknown synthetic feature(s) {unknown}; known: {', '.join(FEATURES)}")
    entropy = [seed] if isinstance(seed, int) else list(seed)
    base = np.random.default_rng(entropy)
    extra = np.random.default_rng([*entropy, 1])
    values: dict[str, np.ndarray] = {
        "income": base.lognormal(10, 0.5, rows),
        "debt_ratio": base.beta(2, 5, rows),
        "age": base.integers(18, 80, rows),
        "credit_lines": base.poisson(4, rows),
        "late_payments": base.poisson(0.3, rows),
        "utilization": base.uniform(0, 1, rows),
        "region": base.choice(["north", "south", "east", "west"], rows),
        "employment": base.choice(["salaried", "self", "none"], rows, p=[0.7, 0.2, 0.1]),
        "savings": extra.lognormal(8, 1.0, rows),
        "tenure_months": extra.integers(0, 241, rows),
        "inquiries": extra.poisson(1.0, rows),
        "loan_amount": extra.lognormal(9.5, 0.6, rows),
        "monthly_spend": extra.gamma(2.0, 600.0, rows),
        "txn_count": extra.poisson(25, rows),
    }
    for feature in CATEGORICAL_FEATURES[2:]:
        values[feature.name] = extra.choice(list(feature.categories), rows, p=list(feature.probabilities))
    if any(shifts.values()):
        moved = np.random.default_rng([*entropy, 3])
        for name in FEATURES:  # a fixed order, so the draws do not depend on the mapping's order
            amount = shifts.get(name, 0.0)
            if not amount:
                continue
            if name in _NUMERIC_BY_NAME:
                values[name] = _apply_numeric_shift(values[name], _NUMERIC_BY_NAME[name], amount)
                continue
            feature = _CATEGORICAL_BY_NAME[name]
            target = categories.get(name, feature.categories[-1])
            if target not in feature.categories:
                raise InputError(f"feature {name!r} has no category {target!r}; it has {list(feature.categories)}")
            if not 0.0 <= amount <= 1.0:
                raise InputError(f"a categorical shift is a share of rows in [0, 1]; {name!r} got {amount}")
            values[name] = np.where(moved.random(rows) < amount, target, values[name])
    step_us = spacing // dt.timedelta(microseconds=1)
    times = np.datetime64(start, "us") + np.arange(rows, dtype=np.int64) * np.timedelta64(step_us, "us")
    return pl.DataFrame(
        {
            ID_COLUMN: np.arange(rows, dtype=np.int64) + id_offset,
            TIME_COLUMN: times,
            **{name: values[name] for name in FEATURES},
        }
    )


def default_probability(frame: pl.DataFrame, concept: float = 0.0, logit_shift: float = 0.0) -> np.ndarray:
    """The true probability of default of each row (the label rule in the module docstring).

    Args:
        frame: rows with every feature of ``FEATURES``.
        concept: concept-drift strength ``c`` (1: utilization's role is flipped).
        logit_shift: prior drift ``b`` added to the logit (moves the base rate).

    Raises:
        InputError: a feature column is missing.
    """
    missing = [name for name in FEATURES if name not in frame.columns]
    if missing:
        raise InputError(f"frame lacks synthetic feature column(s) {missing}")

    def column(name: str) -> np.ndarray:
        return frame.get_column(name).to_numpy()

    logit = (
        -1.0
        + 3.0 * column("debt_ratio")
        + (2.0 - 4.0 * concept) * column("utilization")
        + 0.8 * column("late_payments")
        - 0.8 * (np.log(column("income")) - 10.0)
        + np.where(column("employment") == "none", 0.7, 0.0)
        + 0.25 * (column("inquiries") - 1.0)
        - 0.2 * (np.log(column("savings")) - 8.0)
        - 0.004 * (column("tenure_months") - 120.0)
        + 0.3 * (np.where(column("housing") == "rent", 1.0, 0.0) - 0.4)
        + logit_shift
    )
    return 1.0 / (1.0 + np.exp(-logit))


def sample_labels(
    frame: pl.DataFrame, seed: int | Sequence[int], concept: float = 0.0, logit_shift: float = 0.0
) -> pl.DataFrame:
    """Labels of ``frame`` (``id`` and ``default`` as int8), drawn from ``default_probability``."""
    rng = np.random.default_rng(seed)
    probability = default_probability(frame, concept, logit_shift)
    label = (rng.random(frame.height) < probability).astype(np.int8)
    return pl.DataFrame({ID_COLUMN: frame.get_column(ID_COLUMN), TARGET: label})


# ------------------------------------------------------------------------------------------ scenario


class _Event(BaseModel):
    model_config = ConfigDict(extra="forbid")

    from_batch: int = Field(ge=0, description="First batch index the event affects.")
    until_batch: int | None = Field(
        default=None, ge=1, description="Batch index from which the event is over (None: it lasts)."
    )
    ramp_batches: int = Field(
        default=0, ge=0, description="Batches over which the event grows linearly to its full size (0: at once)."
    )

    def weight(self, index: int) -> float:
        """Share of the event's full size in force at batch ``index``."""
        if index < self.from_batch or (self.until_batch is not None and index >= self.until_batch):
            return 0.0
        return min(1.0, (index - self.from_batch + 1) / (self.ramp_batches + 1))


class CovariateDrift(_Event):
    """One feature's distribution moves; the label rule does not (P(x) changes, P(y|x) does not)."""

    kind: Literal["covariate"] = "covariate"
    feature: str = Field(description="Feature that moves (one of synth.FEATURES).")
    shift: float = Field(
        description="Numeric: location shift in the feature's standard deviations (log scale for log-normal "
        "features). Categorical: share of rows sent to `category`, in [0, 1]."
    )
    category: str | None = Field(
        default=None, description="Categorical only: the category that gains rows (default: its last category)."
    )


class PriorDrift(_Event):
    """The base rate moves: a constant is added to the label rule's logit."""

    kind: Literal["prior"] = "prior"
    logit_shift: float = Field(description="Added to every row's logit (+0.5 multiplies the odds of default by 1.65).")


class ConceptDrift(_Event):
    """The label rule changes while the features do not: utilization's coefficient goes 2 -> 2 - 4 x strength."""

    kind: Literal["concept"] = "concept"
    strength: float = Field(default=1.0, gt=0, le=1, description="1 flips utilization's role (+2 -> -2).")


Event = Annotated[CovariateDrift | PriorDrift | ConceptDrift, Field(discriminator="kind")]


class Scenario(BaseModel):
    """A drifting stream: how many batches, how big, when, and which drift happens when."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(default="custom", description="Name of the scenario (shown in outputs).")
    batches: int = Field(default=24, ge=2, le=100_000, description="Number of batches in the stream.")
    rows: int = Field(default=5_000, ge=10, le=ID_STRIDE, description="Rows per batch.")
    seed: int = Field(default=0, ge=0, description="Seed of every random draw.")
    start: dt.datetime = Field(default=DEFAULT_START, description="Event time of the first row (naive = UTC).")
    batch_period: dt.timedelta = Field(
        default=dt.timedelta(days=1), gt=dt.timedelta(0), description="Time one batch spans; batches follow on."
    )
    label_delay: int = Field(
        default=1, ge=0, description="Batches after its own arrival at which a batch's labels arrive."
    )
    events: list[Event] = Field(default_factory=list, description="Scheduled drift events.")

    @model_validator(mode="after")
    def _events_fit(self) -> Scenario:
        problems = []
        for number, event in enumerate(self.events):
            where = f"events[{number}] ({event.kind})"
            if event.from_batch >= self.batches:
                problems.append(f"{where}: from_batch {event.from_batch} >= batches {self.batches}")
            if event.until_batch is not None and event.until_batch <= event.from_batch:
                problems.append(f"{where}: until_batch {event.until_batch} <= from_batch {event.from_batch}")
            if isinstance(event, CovariateDrift):
                if event.feature not in FEATURES:
                    problems.append(f"{where}: unknown feature {event.feature!r}; known: {', '.join(FEATURES)}")
                elif event.feature in _CATEGORICAL_BY_NAME:
                    feature = _CATEGORICAL_BY_NAME[event.feature]
                    if event.category is not None and event.category not in feature.categories:
                        problems.append(f"{where}: {event.feature!r} has no category {event.category!r}")
                    if not 0.0 <= event.shift <= 1.0:
                        problems.append(f"{where}: a categorical shift is a share of rows in [0, 1], got {event.shift}")
                elif event.category is not None:
                    problems.append(f"{where}: category is for categorical features; {event.feature!r} is numeric")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def resized(self, batches: int) -> Scenario:
        """The same story told in ``batches`` batches: event positions scale with the length."""
        if batches == self.batches:
            return self
        scale = batches / self.batches

        def moved(event: _Event) -> _Event:
            start = min(batches - 1, round(event.from_batch * scale))
            until = None if event.until_batch is None else max(start + 1, round(event.until_batch * scale))
            return event.model_copy(
                update={"from_batch": start, "until_batch": until, "ramp_batches": round(event.ramp_batches * scale)}
            )

        return self.model_copy(update={"batches": batches, "events": [moved(event) for event in self.events]})


@dataclass(frozen=True)
class BatchTruth:
    """What is really going on in one batch."""

    index: int
    batch_id: str
    start: dt.datetime
    end: dt.datetime  # exclusive
    shifts: dict[str, float]  # covariate shift in force per feature (see CovariateDrift.shift)
    categories: dict[str, str]  # the category each categorical shift sends rows to
    concept: float  # concept-drift strength in force
    logit_shift: float  # prior drift in force
    labels_arrive: int  # index of the batch with which this batch's labels arrive

    def to_dict(self) -> dict:
        return {
            "index": self.index,
            "batch_id": self.batch_id,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "shifts": self.shifts,
            "categories": self.categories,
            "concept": self.concept,
            "logit_shift": self.logit_shift,
            "labels_arrive": self.labels_arrive,
        }


def batch_id(scenario: Scenario, index: int) -> str:
    """``b000``, ``b001``, ...: ids that sort in arrival order (wider when there are over 1,000 batches)."""
    width = max(3, len(str(scenario.batches - 1)))
    return f"b{index:0{width}d}"


def truth(scenario: Scenario, index: int) -> BatchTruth:
    """The drift in force at batch ``index`` (events add up)."""
    _check_index(scenario, index)
    shifts: dict[str, float] = {}
    categories: dict[str, str] = {}
    concept = logit_shift = 0.0
    for event in scenario.events:
        weight = event.weight(index)
        if not weight:
            continue
        if isinstance(event, CovariateDrift):
            shifts[event.feature] = shifts.get(event.feature, 0.0) + weight * event.shift
            if event.category is not None:
                categories[event.feature] = event.category
        elif isinstance(event, PriorDrift):
            logit_shift += weight * event.logit_shift
        else:
            concept += weight * event.strength
    start = scenario.start + index * scenario.batch_period
    return BatchTruth(
        index=index,
        batch_id=batch_id(scenario, index),
        start=start,
        end=start + scenario.batch_period,
        shifts=shifts,
        categories=categories,
        concept=concept,
        logit_shift=logit_shift,
        labels_arrive=index + scenario.label_delay,
    )


def _check_index(scenario: Scenario, index: int) -> None:
    if not 0 <= index < scenario.batches:
        raise InputError(f"scenario {scenario.name!r} has batches 0..{scenario.batches - 1}, not {index}")


def generate_batch(scenario: Scenario, index: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Features (id, ts, every feature) and labels (id, default) of batch ``index``.

    Raises:
        InputError: ``index`` outside the scenario.
    """
    state = truth(scenario, index)
    features = sample_features(
        [scenario.seed, index],
        scenario.rows,
        start=state.start,
        spacing=scenario.batch_period / scenario.rows,
        id_offset=index * ID_STRIDE,
        shifts=state.shifts,
        categories=state.categories,
    )
    labels = sample_labels(features, [scenario.seed, index, 2], state.concept, state.logit_shift)
    return features, labels


@dataclass(frozen=True)
class SynthBatch:
    """One generated batch with its truth."""

    truth: BatchTruth
    features: pl.DataFrame
    labels: pl.DataFrame

    @property
    def batch_id(self) -> str:
        return self.truth.batch_id


@dataclass(frozen=True)
class Tick:
    """One step of the stream: the batch arriving now (None once the stream has ended) and the batches
    whose labels arrive now (``label_delay`` batches after their own arrival)."""

    index: int
    batch: SynthBatch | None
    labelled: list[SynthBatch] = field(default_factory=list)


def stream(scenario: Scenario) -> Iterator[Tick]:
    """Batches in arrival order, each batch's labels ``label_delay`` ticks later.

    After the last batch, ticks without a batch deliver the labels still owed, so every label arrives.
    Each batch is generated once.
    """
    waiting: dict[int, SynthBatch] = {}
    for index in range(scenario.batches + scenario.label_delay):
        batch = None
        if index < scenario.batches:
            features, labels = generate_batch(scenario, index)
            batch = SynthBatch(truth(scenario, index), features, labels)
            waiting[index] = batch
        due = index - scenario.label_delay
        labelled = [waiting.pop(due)] if due in waiting else []
        yield Tick(index, batch, labelled)


def history(scenario: Scenario) -> pl.DataFrame:
    """Every batch's features joined with its target, in time order (what ``driftline backtest`` replays)."""
    frames = []
    for index in range(scenario.batches):
        features, labels = generate_batch(scenario, index)
        frames.append(features.with_columns(labels.get_column(TARGET)))
    return pl.concat(frames)


def write_history(scenario: Scenario, path: str | Path) -> Path:
    """Write ``history(scenario)`` as one parquet file."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    history(scenario).write_parquet(target)
    return target


# ------------------------------------------------------------------------------------------ presets


def default_scenario(seed: int = 0) -> Scenario:
    """24 daily batches of 5,000 rows: stable until batch 8, where income (+0.6 sd, i.e. +35%) and the
    share of the mobile channel (30% of rows move there) drift; from batch 14 a concept drift that no
    feature shows (utilization's role flips)."""
    return Scenario(
        name="default",
        batches=24,
        rows=5_000,
        seed=seed,
        events=[
            CovariateDrift(feature="income", shift=0.6, from_batch=8),
            CovariateDrift(feature="channel", shift=0.3, category="mobile", from_batch=8),
            ConceptDrift(strength=1.0, from_batch=14),
        ],
    )


def fast_scenario(seed: int = 0) -> Scenario:
    """The default story, short: 12 batches of 2,000 rows; input drift at batch 4, concept drift at 7."""
    return Scenario(
        name="fast",
        batches=12,
        rows=2_000,
        seed=seed,
        events=[
            CovariateDrift(feature="income", shift=0.6, from_batch=4),
            CovariateDrift(feature="channel", shift=0.3, category="mobile", from_batch=4),
            ConceptDrift(strength=1.0, from_batch=7),
        ],
    )


SCENARIOS = {"default": default_scenario, "fast": fast_scenario}


def get_scenario(
    name: str = "default", *, seed: int | None = None, batches: int | None = None, rows: int | None = None
) -> Scenario:
    """A preset scenario, optionally with another seed, length (events scale with it) or batch size.

    Raises:
        InputError: unknown preset name or invalid overrides.
    """
    if name not in SCENARIOS:
        raise InputError(f"unknown scenario {name!r}; choose one of {', '.join(SCENARIOS)}")
    scenario = SCENARIOS[name](seed or 0)
    try:
        if batches is not None:
            if batches < 2:
                raise ValueError(f"batches must be at least 2, got {batches}")
            scenario = scenario.resized(batches)
        if rows is not None:
            scenario = Scenario.model_validate({**scenario.model_dump(), "rows": rows})
    except ValueError as error:  # pydantic's ValidationError is a ValueError and names the field
        raise InputError(f"scenario {name!r}: {error}") from error
    return scenario


# ------------------------------------------------------------------------------------------ spec


def spec_for(scenario: Scenario, name: str = "synth") -> ModelSpec:
    """A model spec for the scenario's columns, with policies sized in its batches.

    Columns, task and the drift section match ``configs/example.yaml``. The rest is tuned so the loop
    reacts to this stream within a few batches (``driftline backtest`` shows what each knob costs):

    * ``window``: train on the last 2 labelled batches; a drift-triggered retrain waits until 2 batches
      since the drift onset are labelled, so its window holds only rows from after the change;
    * ``gates.non_inferiority_margin`` 0.02 AUC: a candidate as good as the champion is not rejected for
      the noise between two models trained on different batches;
    * ``shadow``: tuned for one batch of rows; an equivalent candidate (within 0.01 log loss) is promoted,
      which re-baselines the drift reference after a covariate drift; inconclusive after 3 periods;
    * ``cooldown``: one drift retrain per reference and 4 periods; a new drift-triggered candidate
      supersedes one in shadow (fresher data beats a test begun before the change).
    """
    rows = scenario.rows
    period_days = scenario.batch_period / dt.timedelta(days=1)
    return ModelSpec(
        name=name,
        task="binary",
        target=TARGET,
        id_column=ID_COLUMN,
        time_column=TIME_COLUMN,
        features=Features(numeric=list(NUMERIC), categorical=list(CATEGORICAL)),
        drift=DriftPolicy(
            numeric_statistic="ks",
            categorical_statistic="hellinger",
            thresholds=DriftThresholds(ks=0.05, hellinger=0.05),
            missing_share_threshold=0.05,
            score_threshold=0.25,
            top_k=3,
            hysteresis=Hysteresis(k=1, m=1),
        ),
        window=WindowSpec(
            last_batches=2,
            min_labelled_rows=max(10, min(1_000, rows)),
            min_rows_since_drift=2 * rows,
        ),
        gates=GatesSpec(non_inferiority_margin=0.02),
        shadow=ShadowSpec(
            min_rows=max(30, min(1_000, rows // 2)),
            planned_rows=max(100, rows),
            max_days=3 * period_days,
            equivalence_margin=0.01,
        ),
        guard=GuardSpec(min_rows=max(30, min(1_000, rows // 2))),
        cooldown=CooldownSpec(seconds=round(4 * scenario.batch_period.total_seconds()), supersede_shadow=True),
    )


# ------------------------------------------------------------------------------------------ output


@dataclass(frozen=True)
class SynthOutput:
    """What ``write_dataset`` wrote."""

    directory: Path
    history: Path
    spec: Path
    truth: Path
    batches: list[Path]
    labels: list[Path]
    rows: int


def write_dataset(scenario: Scenario, directory: str | Path, name: str = "synth") -> SynthOutput:
    """Write the scenario to ``directory``.

    Files: ``history.parquet`` (every row with its target, time-ordered, for ``driftline backtest``),
    ``batches/<id>.parquet`` (id, ts, features) and ``labels/<id>.parquet`` (id, default) per batch,
    ``spec.yaml`` (``spec_for``) and ``truth.json`` (the scenario and each batch's ``BatchTruth``).
    """
    root = Path(directory)
    (root / "batches").mkdir(parents=True, exist_ok=True)
    (root / "labels").mkdir(parents=True, exist_ok=True)
    batch_paths: list[Path] = []
    label_paths: list[Path] = []
    frames = []
    for index in range(scenario.batches):
        features, labels = generate_batch(scenario, index)
        identifier = batch_id(scenario, index)
        batch_paths.append(root / "batches" / f"{identifier}.parquet")
        label_paths.append(root / "labels" / f"{identifier}.parquet")
        features.write_parquet(batch_paths[-1])
        labels.write_parquet(label_paths[-1])
        frames.append(features.with_columns(labels.get_column(TARGET)))
    history_path = root / "history.parquet"
    pl.concat(frames).write_parquet(history_path)
    spec_path = root / "spec.yaml"
    header = f"# Spec for the synthetic scenario {scenario.name!r} (seed {scenario.seed}), by driftline synth.\n"
    spec_path.write_text(header + spec_for(scenario, name).to_yaml())
    truth_path = root / "truth.json"
    document = {
        "scenario": scenario.model_dump(mode="json"),
        "batches": [truth(scenario, index).to_dict() for index in range(scenario.batches)],
    }
    truth_path.write_text(json.dumps(document, indent=2) + "\n")
    return SynthOutput(
        directory=root,
        history=history_path,
        spec=spec_path,
        truth=truth_path,
        batches=batch_paths,
        labels=label_paths,
        rows=scenario.batches * scenario.rows,
    )
