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
while every feature's distribution stays the same (only performance monitoring can see it). A label
flip of strength ``f`` turns every feature's effect around the rule's stationary mean ``m``
(``logit -> m + (1 - 2 f) (logit - m)``): at 1 a model of the old rule ranks rows backwards.

A regression scenario (``task="regression"``) draws the target ``amount`` instead
(``expected_amount``, plus Gaussian noise of sd ``AMOUNT_NOISE_SD``)::

    amount = 2000 + 600 (ln income - 10) - 1200 (debt_ratio - 2/7) + 1200 (1 - 2 c) (utilization - 0.5)
             - 150 (late_payments - 0.3) + 250 ([employment = self] - 0.2) - 400 ([employment = none] - 0.1)
             + region effect (north -50, south -150, east +150, west +50) + 400 b      (floored at 0, cents)

A ``Scenario`` schedules events on batch indices: ``CovariateDrift`` moves one feature's distribution
(P(x) changes, P(y|x) does not), ``PriorDrift`` moves the base rate, ``ConceptDrift`` changes P(y|x),
``LabelFlip`` inverts it. Each may ramp in over several batches and may end. Two presets tell the
demo's story: ``default`` (24 batches of 5,000 rows: input drift of income and channel at batch 8, a
concept drift at 14 that the features do not show) and ``fast`` (12 x 2,000, the same story at batches
4 and 7). The realism suite (``REALISM``, ``realism_scenario``) holds the streams real users meet (slow
cadence, one timestamp per batch, hourly rows, an inverted label rule, a regression with unicode names,
tiny and large batches, and a stable control), to backtest with the minimal spec (``default_spec``)::

    scenario = get_scenario("default", seed=7)
    features, labels = generate_batch(scenario, 3)        # polars frames; labels = id + default
    for tick in stream(scenario): ...                     # batches, and labels once their delay passed
    write_dataset(scenario, "out/")                       # history.parquet, batches/, labels/, spec.yaml
    inverted = realism_scenario("inversion", seed=3)      # + default_spec(inverted): columns and task only
    write_dataset(inverted, "inv/", spec="minimal")       # spec.yaml holds only the required keys

Determinism: every random draw comes from a generator seeded by (scenario seed, batch index, stream),
so a batch does not depend on which other batches were generated, and the same seed writes the same
bytes. Events and the label rules always name the canonical features (``FEATURES``); a scenario's
``naming`` only changes how its columns and categories are written (``columns_of``).
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import polars as pl
import yaml
from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer, model_validator

from driftline.errors import InputError
from driftline.models.spec import CooldownSpec, Features, GatesSpec, GuardSpec, ModelSpec, ShadowSpec, WindowSpec
from driftline.statistics.drift import DriftPolicy, DriftThresholds, Hysteresis

ID_COLUMN = "id"
TIME_COLUMN = "ts"
TARGET = "default"
AMOUNT = "amount"  # the target of regression scenarios
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

# naming="unicode": the columns a user's export has (spaces, dots, capitals) and categories with accents,
# symbols and an emoji, plus a derived category. Keys are the canonical names; every feature is renamed.
UNICODE_COLUMNS: dict[str, str] = {
    ID_COLUMN: "loan.id",
    TIME_COLUMN: "Applied At",
    "income": "Annual Income",
    "debt_ratio": "debt.ratio",
    "age": "Age",
    "credit_lines": "Credit Lines",
    "late_payments": "late payments",
    "utilization": "Utilization",
    "savings": "Savings (€)",
    "tenure_months": "tenure.months",
    "inquiries": "Inquiries",
    "loan_amount": "Loan Amount",
    "monthly_spend": "Monthly Spend",
    "txn_count": "txn.count",
    "region": "region.name",
    "employment": "Employment Status",
    "housing": "Housing",
    "channel": "Channel",
}
UNICODE_CATEGORIES: dict[str, dict[str, str]] = {
    "region": {
        "north": "Hauts-de-France",
        "south": "Provence-Alpes-Côte d’Azur",
        "east": "Grand Est",
        "west": "Île-de-France",
    },
    "employment": {"salaried": "Salarié", "self": "Indépendant", "none": "Sans emploi"},
    "housing": {"rent": "Locataire", "own": "Propriétaire", "mortgage": "Prêt immobilier"},
    "channel": {"web": "Web", "branch": "Agence", "partner": "Partenaire", "mobile": "App mobile 📱"},
}
INCOME_BAND = "Income Band"  # a category derived from income (naming="unicode" only; no effect of its own)
INCOME_BANDS: tuple[tuple[float, str], ...] = (  # (upper bound of annual income, band)
    (15_000, "< 15K €"),
    (25_000, "15K - 25K €"),
    (40_000, "25K - 40K €"),
    (60_000, "40K - 60K €"),
    (math.inf, "≥ 60K €"),
)


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
        # Categorical features are drawn as category indices (choice(n) draws exactly as choice(categories)
        # does) and become strings once, in the frame: much faster than numpy string arrays.
        "region": base.choice(4, rows),  # uniform: no p, as ever (with p the draws would differ)
        "employment": base.choice(3, rows, p=[0.7, 0.2, 0.1]),
        "savings": extra.lognormal(8, 1.0, rows),
        "tenure_months": extra.integers(0, 241, rows),
        "inquiries": extra.poisson(1.0, rows),
        "loan_amount": extra.lognormal(9.5, 0.6, rows),
        "monthly_spend": extra.gamma(2.0, 600.0, rows),
        "txn_count": extra.poisson(25, rows),
    }
    for feature in CATEGORICAL_FEATURES[2:]:
        values[feature.name] = extra.choice(len(feature.categories), rows, p=list(feature.probabilities))
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
            values[name] = np.where(moved.random(rows) < amount, feature.categories.index(target), values[name])
    columns: dict[str, np.ndarray | pl.Series] = dict(values)
    for feature in CATEGORICAL_FEATURES:
        columns[feature.name] = pl.Series(feature.name, feature.categories, dtype=pl.String).gather(
            values[feature.name]
        )
    step_us = spacing // dt.timedelta(microseconds=1)
    times = np.datetime64(start, "us") + np.arange(rows, dtype=np.int64) * np.timedelta64(step_us, "us")
    return pl.DataFrame(
        {
            ID_COLUMN: np.arange(rows, dtype=np.int64) + id_offset,
            TIME_COLUMN: times,
            **{name: columns[name] for name in FEATURES},
        }
    )


# The label rule's mean logit over the undrifted features (-1 plus the means of its uncentred terms: debt
# ratio, utilization, late payments, employment); a label flip turns the rule around it, so the base rate
# stays about where it was.
LOGIT_CENTER = -1.0 + 3.0 * 2 / 7 + 2.0 * 0.5 + 0.8 * 0.3 + 0.7 * 0.1
AMOUNT_CENTER = 2000.0  # the regression rule's mean over the undrifted features (its terms are centred)
AMOUNT_NOISE_SD = 200.0  # sd of the regression target around expected_amount
AMOUNT_LEVEL_STEP = 400.0  # regression: a PriorDrift's logit_shift moves the expected amount by this much per unit
_REGION_AMOUNT = {"north": -50.0, "south": -150.0, "east": 150.0, "west": 50.0}


def _feature_column(frame: pl.DataFrame) -> Callable[[str], np.ndarray]:
    missing = [name for name in FEATURES if name not in frame.columns]
    if missing:
        raise InputError(f"frame lacks synthetic feature column(s) {missing}")

    def column(name: str) -> np.ndarray:
        return frame.get_column(name).to_numpy()

    return column


def default_probability(
    frame: pl.DataFrame, concept: float = 0.0, logit_shift: float = 0.0, *, flip: float = 0.0
) -> np.ndarray:
    """The true probability of default of each row (the label rule in the module docstring).

    Args:
        frame: rows with every feature of ``FEATURES``.
        concept: concept-drift strength ``c`` (1: utilization's role is flipped).
        logit_shift: prior drift ``b`` added to the logit (moves the base rate).
        flip: label-flip strength ``f`` (1: every feature's effect is negated around ``LOGIT_CENTER``).

    Raises:
        InputError: a feature column is missing.
    """
    column = _feature_column(frame)

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
    )
    if flip:  # only then, so an unflipped rule keeps its floating-point sums (and the presets their bytes)
        logit = LOGIT_CENTER + (1.0 - 2.0 * flip) * (logit - LOGIT_CENTER)
    logit = logit + logit_shift
    return 1.0 / (1.0 + np.exp(-logit))


def sample_labels(
    frame: pl.DataFrame,
    seed: int | Sequence[int],
    concept: float = 0.0,
    logit_shift: float = 0.0,
    *,
    flip: float = 0.0,
) -> pl.DataFrame:
    """Labels of ``frame`` (``id`` and ``default`` as int8), drawn from ``default_probability``."""
    rng = np.random.default_rng(seed)
    probability = default_probability(frame, concept, logit_shift, flip=flip)
    label = (rng.random(frame.height) < probability).astype(np.int8)
    return pl.DataFrame({ID_COLUMN: frame.get_column(ID_COLUMN), TARGET: label})


def expected_amount(
    frame: pl.DataFrame, concept: float = 0.0, logit_shift: float = 0.0, *, flip: float = 0.0
) -> np.ndarray:
    """The expected regression target ``amount`` of each row (the rule in the module docstring).

    Args:
        frame: rows with every feature of ``FEATURES``.
        concept: concept-drift strength ``c`` (1: utilization's effect is negated).
        logit_shift: prior drift ``b``: moves the level by ``b * AMOUNT_LEVEL_STEP``.
        flip: label-flip strength ``f`` (1: every feature's effect is negated around ``AMOUNT_CENTER``).

    Raises:
        InputError: a feature column is missing.
    """
    column = _feature_column(frame)
    employment = column("employment")
    region = column("region")
    amount = (
        AMOUNT_CENTER
        + 600.0 * (np.log(column("income")) - 10.0)
        - 1200.0 * (column("debt_ratio") - 2 / 7)
        + 1200.0 * (1.0 - 2.0 * concept) * (column("utilization") - 0.5)
        - 150.0 * (column("late_payments") - 0.3)
        + 250.0 * (np.where(employment == "self", 1.0, 0.0) - 0.2)
        - 400.0 * (np.where(employment == "none", 1.0, 0.0) - 0.1)
        + sum(np.where(region == name, effect, 0.0) for name, effect in _REGION_AMOUNT.items())
    )
    if flip:
        amount = AMOUNT_CENTER + (1.0 - 2.0 * flip) * (amount - AMOUNT_CENTER)
    return amount + AMOUNT_LEVEL_STEP * logit_shift


def sample_amounts(
    frame: pl.DataFrame,
    seed: int | Sequence[int],
    concept: float = 0.0,
    logit_shift: float = 0.0,
    *,
    flip: float = 0.0,
) -> pl.DataFrame:
    """Regression targets of ``frame`` (``id`` and ``amount``): ``expected_amount`` plus Gaussian noise of sd
    ``AMOUNT_NOISE_SD``, floored at 0 and rounded to cents."""
    rng = np.random.default_rng(seed)
    drawn = expected_amount(frame, concept, logit_shift, flip=flip) + rng.normal(0.0, AMOUNT_NOISE_SD, frame.height)
    return pl.DataFrame({ID_COLUMN: frame.get_column(ID_COLUMN), AMOUNT: np.round(np.maximum(drawn, 0.0), 2)})


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
    """The label rule changes while the features do not: utilization's coefficient goes 2 -> 2 - 4 x strength
    (regression: 1200 -> 1200 (1 - 2 x strength))."""

    kind: Literal["concept"] = "concept"
    strength: float = Field(default=1.0, gt=0, le=1, description="1 flips utilization's role (+2 -> -2).")


class LabelFlip(_Event):
    """The label rule inverts while the features do not: every feature's effect changes sign around the
    rule's mean (``LOGIT_CENTER``; ``AMOUNT_CENTER`` for regression), so a model of the old rule ranks rows
    backwards (AUC about 1 - its old AUC)."""

    kind: Literal["flip"] = "flip"
    strength: float = Field(
        default=1.0, gt=0, le=1, description="1 negates every feature effect; 0.5 removes them (a constant rule)."
    )


Event = Annotated[CovariateDrift | PriorDrift | ConceptDrift | LabelFlip, Field(discriminator="kind")]
# Scenario options added after the presets' outputs were published: left out of a dump at their defaults,
# so the presets' truth.json (and every other dump of them) keeps its bytes.
_LATER_OPTIONS = ("task", "timestamps", "naming")


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
    task: Literal["binary", "regression"] = Field(
        default="binary",
        description="binary: the target `default` (default_probability); regression: the target `amount` "
        "(expected_amount plus noise).",
    )
    timestamps: Literal["spread", "batch"] = Field(
        default="spread",
        description="spread: a batch's rows evenly over its period; batch: every row of a batch at its start "
        "(one extract per period, e.g. a monthly snapshot).",
    )
    naming: Literal["plain", "unicode"] = Field(
        default="plain",
        description="plain: FEATURES and their categories as they are; unicode: columns with spaces, dots and "
        "capitals, categories with accents and symbols, plus an `Income Band` category (UNICODE_COLUMNS).",
    )

    @model_serializer(mode="wrap")
    def _omit_later_options_at_default(self, handler: SerializerFunctionWrapHandler) -> dict:
        document = handler(self)
        for option in _LATER_OPTIONS:
            if getattr(self, option) == type(self).model_fields[option].default:
                document.pop(option, None)
        return document

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
    flip: float = 0.0  # label-flip strength in force

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
            "flip": self.flip,
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
    concept = logit_shift = flip = 0.0
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
        elif isinstance(event, ConceptDrift):
            concept += weight * event.strength
        else:
            flip += weight * event.strength
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
        flip=flip,
    )


def _check_index(scenario: Scenario, index: int) -> None:
    if not 0 <= index < scenario.batches:
        raise InputError(f"scenario {scenario.name!r} has batches 0..{scenario.batches - 1}, not {index}")


@dataclass(frozen=True)
class Columns:
    """The columns a scenario writes, by role (what a spec names)."""

    id: str
    time: str
    target: str
    numeric: tuple[str, ...]
    categorical: tuple[str, ...]

    @property
    def features(self) -> tuple[str, ...]:
        return (*self.numeric, *self.categorical)


def columns_of(scenario: Scenario) -> Columns:
    """The scenario's column names: ``FEATURES`` with ``id``/``ts``, or their ``UNICODE_COLUMNS`` names."""
    target = TARGET if scenario.task == "binary" else AMOUNT
    if scenario.naming == "plain":
        return Columns(ID_COLUMN, TIME_COLUMN, target, NUMERIC, CATEGORICAL)
    return Columns(
        UNICODE_COLUMNS[ID_COLUMN],
        UNICODE_COLUMNS[TIME_COLUMN],
        target,
        tuple(UNICODE_COLUMNS[name] for name in NUMERIC),
        (*(UNICODE_COLUMNS[name] for name in CATEGORICAL), INCOME_BAND),
    )


def _unicode_features(features: pl.DataFrame) -> pl.DataFrame:
    """The canonical batch with ``naming="unicode"``: renamed columns, relabelled categories, an income band."""
    upper_bounds = [bound for bound, _ in INCOME_BANDS[:-1]]
    bands = np.array([band for _, band in INCOME_BANDS])
    band = bands[np.searchsorted(upper_bounds, features.get_column("income").to_numpy(), side="right")]
    relabelled = features.with_columns(
        *(pl.col(name).replace_strict(mapping) for name, mapping in UNICODE_CATEGORIES.items()),
        pl.Series(INCOME_BAND, band, dtype=pl.String),
    )
    return relabelled.rename(UNICODE_COLUMNS)


def generate_batch(scenario: Scenario, index: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Features (id, time, every feature) and labels (id, target) of batch ``index``, named by ``columns_of``.

    Raises:
        InputError: ``index`` outside the scenario.
    """
    state = truth(scenario, index)
    spread = scenario.timestamps == "spread"
    features = sample_features(
        [scenario.seed, index],
        scenario.rows,
        start=state.start,
        spacing=scenario.batch_period / scenario.rows if spread else dt.timedelta(0),
        id_offset=index * ID_STRIDE,
        shifts=state.shifts,
        categories=state.categories,
    )
    draw = sample_labels if scenario.task == "binary" else sample_amounts
    labels = draw(features, [scenario.seed, index, 2], state.concept, state.logit_shift, flip=state.flip)
    if scenario.naming == "unicode":
        return _unicode_features(features), labels.rename({ID_COLUMN: UNICODE_COLUMNS[ID_COLUMN]})
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
    target = columns_of(scenario).target
    frames = []
    for index in range(scenario.batches):
        features, labels = generate_batch(scenario, index)
        frames.append(features.with_columns(labels.get_column(target)))
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


# ------------------------------------------------------------------------------------------ realism suite
# Streams a real user meets, each with known truth, to backtest the loop with the minimal spec
# (default_spec). Every one but `stable` holds a change after which a model trained before it is clearly
# worse than one trained after it, so a retrain can pay.


def _default_story(from_input: int, from_concept: int) -> list[Event]:
    """The presets' story: income (+0.6 sd) and the mobile channel (30% of rows) move, later utilization's
    role flips."""
    return [
        CovariateDrift(feature="income", shift=0.6, from_batch=from_input),
        CovariateDrift(feature="channel", shift=0.3, category="mobile", from_batch=from_input),
        ConceptDrift(strength=1.0, from_batch=from_concept),
    ]


def slow_cadence_scenario(seed: int = 0) -> Scenario:
    """30 batches of 500 rows, each spanning 511 days (1984 to 2026): incomes rise all along (+1 sd over the
    30 batches, a slow ramp); from batch 15 utilization's role flips (concept drift)."""
    return Scenario(
        name="slow-cadence",
        batches=30,
        rows=500,
        seed=seed,
        start=dt.datetime(1984, 1, 1),
        batch_period=dt.timedelta(days=511),
        events=[
            CovariateDrift(feature="income", shift=1.0, from_batch=0, ramp_batches=29),
            ConceptDrift(strength=1.0, from_batch=15),
        ],
    )


def coarse_time_scenario(seed: int = 0) -> Scenario:
    """The default story in 24 monthly extracts (30 days apart) of 2,000 rows whose rows all carry the
    extract's one timestamp: input drift at batch 8, concept drift at 14."""
    return Scenario(
        name="coarse-time",
        batches=24,
        rows=2_000,
        seed=seed,
        start=dt.datetime(2024, 1, 1),
        batch_period=dt.timedelta(days=30),
        timestamps="batch",
        events=_default_story(8, 14),
    )


def hourly_small_scenario(seed: int = 0) -> Scenario:
    """30 batches of 500 rows, one row an hour (a batch spans 500 hours, ~21 days); gradual drift: income
    ramps up over batches 10 to 19 (+0.8 sd) and utilization's role flips over batches 12 to 17."""
    return Scenario(
        name="hourly-small",
        batches=30,
        rows=500,
        seed=seed,
        batch_period=dt.timedelta(hours=500),
        events=[
            CovariateDrift(feature="income", shift=0.8, from_batch=10, ramp_batches=9),
            ConceptDrift(strength=1.0, from_batch=12, ramp_batches=5),
        ],
    )


def inversion_scenario(seed: int = 0) -> Scenario:
    """24 daily batches of 2,000 rows; at batch 12 the label rule inverts (a model of the old rule scores
    AUC ~0.25 after it), while income, savings, monthly spend and the mobile channel drift slowly all along
    (ramps over the 24 batches)."""
    return Scenario(
        name="inversion",
        batches=24,
        rows=2_000,
        seed=seed,
        events=[
            CovariateDrift(feature="income", shift=0.6, from_batch=0, ramp_batches=23),
            CovariateDrift(feature="savings", shift=-0.5, from_batch=0, ramp_batches=23),
            CovariateDrift(feature="monthly_spend", shift=0.5, from_batch=0, ramp_batches=23),
            CovariateDrift(feature="channel", shift=0.2, category="mobile", from_batch=0, ramp_batches=23),
            LabelFlip(strength=1.0, from_batch=12),
        ],
    )


def regression_unicode_scenario(seed: int = 0) -> Scenario:
    """A regression (target ``amount``) in 24 daily batches of 2,000 rows, with the user's column names
    (``Annual Income``, ``region.name``, ``loan.id``, ...) and unicode categories (``Île-de-France``,
    ``40K - 60K €``); at batch 8, 30% of rows move to the region Grand Est (input drift), from batch 14
    utilization's effect is negated (concept drift: the old model's RMSE triples)."""
    return Scenario(
        name="regression-unicode",
        batches=24,
        rows=2_000,
        seed=seed,
        task="regression",
        naming="unicode",
        events=[
            CovariateDrift(feature="region", shift=0.3, category="east", from_batch=8),
            ConceptDrift(strength=1.0, from_batch=14),
        ],
    )


def tiny_scenario(seed: int = 0) -> Scenario:
    """The default story in 24 daily batches of 200 rows: input drift at batch 8, concept drift at 14."""
    return Scenario(name="tiny", batches=24, rows=200, seed=seed, events=_default_story(8, 14))


def large_scenario(seed: int = 0) -> Scenario:
    """The default story in 8 daily batches of 200,000 rows: input drift at batch 2, concept drift at 3."""
    return Scenario(name="large", batches=8, rows=200_000, seed=seed, events=_default_story(2, 3))


def stable_scenario(seed: int = 0) -> Scenario:
    """The control: 24 daily batches of 2,000 rows and no drift at all, so a retrain cannot help."""
    return Scenario(name="stable", batches=24, rows=2_000, seed=seed)


REALISM: dict[str, Callable[[int], Scenario]] = {
    "slow-cadence": slow_cadence_scenario,
    "coarse-time": coarse_time_scenario,
    "hourly-small": hourly_small_scenario,
    "inversion": inversion_scenario,
    "regression-unicode": regression_unicode_scenario,
    "tiny": tiny_scenario,
    "large": large_scenario,
    "stable": stable_scenario,
}


def realism_scenario(name: str, seed: int = 0, *, batches: int | None = None, rows: int | None = None) -> Scenario:
    """A scenario of the realism suite (``REALISM``), optionally shorter or with smaller batches.

    Args:
        name: one of ``REALISM``.
        seed: seed of every random draw.
        batches: number of batches (events, and their ramps, scale with it).
        rows: rows per batch.

    Raises:
        InputError: unknown name or invalid overrides.
    """
    if name not in REALISM:
        raise InputError(f"unknown realism scenario {name!r}; choose one of {', '.join(REALISM)}")
    return get_scenario(name, seed=seed, batches=batches, rows=rows)


def get_scenario(
    name: str = "default", *, seed: int | None = None, batches: int | None = None, rows: int | None = None
) -> Scenario:
    """A preset (``SCENARIOS``) or realism (``REALISM``) scenario, optionally with another seed, length
    (events scale with it) or batch size.

    Raises:
        InputError: unknown scenario name or invalid overrides.
    """
    factories = {**SCENARIOS, **REALISM}
    if name not in factories:
        raise InputError(f"unknown scenario {name!r}; choose one of {', '.join(factories)}")
    scenario = factories[name](seed or 0)
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


def default_spec(scenario: Scenario, name: str = "synth") -> ModelSpec:
    """The minimal spec of the scenario: name, task, target, id and time columns and features; every policy
    at its default (what a user who writes only the required keys gets).

    Raises:
        SpecError: ``name`` is not a valid model name.
    """
    columns = columns_of(scenario)
    return ModelSpec(
        name=name,
        task=scenario.task,
        target=columns.target,
        id_column=columns.id,
        time_column=columns.time,
        features=Features(numeric=list(columns.numeric), categorical=list(columns.categorical)),
    )


def spec_for(scenario: Scenario, name: str = "synth") -> ModelSpec:
    """A model spec for the scenario's columns, with policies sized in its batches.

    For the presets, columns, task and the drift section match ``configs/example.yaml``. The rest is tuned
    so the loop reacts to this stream within a few batches (``driftline backtest`` shows what each knob
    costs):

    * ``window``: train on the last 2 labelled batches; a drift-triggered retrain waits until 2 batches
      since the drift onset are labelled, so its window holds only rows from after the change;
    * ``gates.non_inferiority_margin`` 0.02 AUC (regression: 0.05 noise sd of RMSE): a candidate as good
      as the champion is not rejected for the noise between two models trained on different batches;
    * ``shadow``: tuned for one batch of rows; an equivalent candidate (within 0.01 log loss; regression:
      2% of the noise variance in squared error) is promoted, which re-baselines the drift reference after
      a covariate drift; inconclusive after 3 periods;
    * ``cooldown``: one drift retrain per reference and 4 periods; a new drift-triggered candidate
      supersedes one in shadow (fresher data beats a test begun before the change).
    """
    rows = scenario.rows
    period_days = scenario.batch_period / dt.timedelta(days=1)
    binary = scenario.task == "binary"
    return ModelSpec(
        **default_spec(scenario, name).model_dump(exclude_unset=True),
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
        # Regression: the binary floors are set to None explicitly, so the written YAML (which holds every
        # key) loads back (a dumped default `min_auc: 0.6` would be rejected for a regression model).
        gates=GatesSpec(non_inferiority_margin=0.02)
        if binary
        else GatesSpec(non_inferiority_margin=0.05 * AMOUNT_NOISE_SD, min_auc=None, max_logloss=None),
        shadow=ShadowSpec(
            min_rows=max(30, min(1_000, rows // 2)),
            planned_rows=max(100, rows),
            max_days=3 * period_days,
            equivalence_margin=0.01 if binary else 0.02 * AMOUNT_NOISE_SD**2,
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


def truth_document(scenario: Scenario) -> dict:
    """What ``truth.json`` holds: the scenario and each batch's ``BatchTruth``.

    A batch's ``flip`` is written only when the scenario has a ``LabelFlip`` (so the presets' file keeps
    its bytes).
    """
    batches = [truth(scenario, index).to_dict() for index in range(scenario.batches)]
    if not any(isinstance(event, LabelFlip) for event in scenario.events):
        for state in batches:
            del state["flip"]
    return {"scenario": scenario.model_dump(mode="json"), "batches": batches}


def write_dataset(
    scenario: Scenario,
    directory: str | Path,
    name: str = "synth",
    spec: Literal["tuned", "minimal"] = "tuned",
) -> SynthOutput:
    """Write the scenario to ``directory``.

    Files: ``history.parquet`` (every row with its target, time-ordered, for ``driftline backtest``),
    ``batches/<id>.parquet`` (id, time, features) and ``labels/<id>.parquet`` (id, target) per batch,
    ``spec.yaml`` and ``truth.json`` (``truth_document``). Columns are named by ``columns_of``.

    Args:
        scenario: what to write.
        directory: created if missing.
        name: model name written into the spec.
        spec: ``tuned`` writes ``spec_for`` (policies sized for the stream), ``minimal`` ``default_spec``.
    """
    root = Path(directory)
    (root / "batches").mkdir(parents=True, exist_ok=True)
    (root / "labels").mkdir(parents=True, exist_ok=True)
    batch_paths: list[Path] = []
    label_paths: list[Path] = []
    target = columns_of(scenario).target
    frames = []
    for index in range(scenario.batches):
        features, labels = generate_batch(scenario, index)
        identifier = batch_id(scenario, index)
        batch_paths.append(root / "batches" / f"{identifier}.parquet")
        label_paths.append(root / "labels" / f"{identifier}.parquet")
        features.write_parquet(batch_paths[-1])
        labels.write_parquet(label_paths[-1])
        frames.append(features.with_columns(labels.get_column(target)))
    history_path = root / "history.parquet"
    pl.concat(frames).write_parquet(history_path)
    spec_path = root / "spec.yaml"
    if spec == "tuned":
        header = f"# Spec for the synthetic scenario {scenario.name!r} (seed {scenario.seed}), by driftline synth.\n"
        text = spec_for(scenario, name).to_yaml()
    else:  # only the keys it sets: every policy is left to the defaults of whoever reads it
        header = (
            f"# Minimal spec (every policy at its default) for the synthetic scenario {scenario.name!r} "
            f"(seed {scenario.seed}), by driftline synth.\n"
        )
        minimal = default_spec(scenario, name).model_dump(mode="json", exclude_unset=True)
        text = yaml.safe_dump(minimal, sort_keys=False, allow_unicode=True)
    spec_path.write_text(header + text, encoding="utf-8")
    truth_path = root / "truth.json"
    truth_path.write_text(json.dumps(truth_document(scenario), indent=2) + "\n", encoding="utf-8")
    return SynthOutput(
        directory=root,
        history=history_path,
        spec=spec_path,
        truth=truth_path,
        batches=batch_paths,
        labels=label_paths,
        rows=scenario.batches * scenario.rows,
    )
