"""ModelSpec: the per-model YAML (docs/architecture.md section 9), validated with every problem named.

Minimal form::

    name: example
    task: binary                 # binary | regression
    target: label
    id_column: id
    time_column: ts
    features:
      numeric: [f0, f1]
      categorical: [c0]
    # optional sections, each with documented defaults:
    drift: {...}                 # driftline.statistics.drift.DriftPolicy
    xgboost: {...}               # XGBoostSpec: params, num_boost_round, early_stopping_rounds, seed
    window: {...}                # WindowSpec: last_batches / last_days, minimum rows, time splits
    gates: {...}                 # GatesSpec: floors, champion non-inferiority, slices, noise, latency, size
    cooldown: {...}              # CooldownSpec: retrain cooldown, whether a candidate supersedes shadow
    performance: {...}           # PerformanceSpec: champion loss monitor, prediction drift
    slices: [region]             # categorical features judged as slices

Unknown keys are rejected with their path (``drift.treshold``), so a typo never silently falls back to
a default. Column names are the user's: any string a parquet column may have.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from driftline.errors import InputError, ObjectNotFoundError
from driftline.statistics.drift import DriftPolicy
from driftline.storage import layout
from driftline.storage.layout import NAME_PATTERN

if TYPE_CHECKING:
    from driftline.storage.store import ObjectStore


class SpecError(InputError):
    """The spec is not valid; the message lists every problem with its key."""


class Features(BaseModel):
    """Feature columns by kind."""

    model_config = ConfigDict(extra="forbid")

    numeric: list[str] = Field(default_factory=list, description="Numeric feature columns.")
    categorical: list[str] = Field(default_factory=list, description="Categorical feature columns.")

    @model_validator(mode="after")
    def _distinct(self) -> Features:
        if not self.numeric and not self.categorical:
            raise ValueError("at least one numeric or categorical feature is required")
        seen: set[str] = set()
        for name in [*self.numeric, *self.categorical]:
            if name == "":
                raise ValueError("a feature name is empty")
            if name in seen:
                raise ValueError(f"feature {name!r} is listed twice")
            seen.add(name)
        return self

    @property
    def all(self) -> list[str]:
        return [*self.numeric, *self.categorical]


class XGBoostSpec(BaseModel):
    """Training parameters. Defaults suit most tabular problems: hist trees, early stopping on time."""

    model_config = ConfigDict(extra="forbid")

    params: dict[str, float | int | str | bool] = Field(
        default_factory=lambda: {
            "tree_method": "hist",
            "max_depth": 6,
            "eta": 0.1,
            "subsample": 0.8,
            "colsample_bytree": 0.8,
            "min_child_weight": 1.0,
            "lambda": 1.0,
            "max_bin": 256,
        },
        description="xgboost.train params; objective and eval_metric follow the task unless given here.",
    )
    num_boost_round: int = Field(default=400, ge=1, le=100_000, description="Upper bound on boosting rounds.")
    early_stopping_rounds: int = Field(
        default=30, ge=1, description="Stop when the time-based early-stopping split stops improving."
    )
    seed: int = Field(default=0, description="Seed of every random step (same data + spec = same model bytes).")

    @field_validator("params")
    @classmethod
    def _no_nondeterministic_params(cls, params: dict) -> dict:
        if "nthread" in params or "n_jobs" in params:
            raise ValueError(
                "set threads with DRIFTLINE_NTHREAD, not in the spec (the spec must not depend on the machine)"
            )
        return params


class WindowSpec(BaseModel):
    """Which labelled batches train a candidate, and how they are split by time."""

    model_config = ConfigDict(extra="forbid")

    last_batches: int | None = Field(default=20, ge=1, description="Use the most recent N labelled batches.")
    last_days: float | None = Field(default=None, gt=0, description="... or those whose events lie in the last T days.")
    min_labelled_rows: int = Field(default=1000, ge=10, description="No training below this many labelled rows.")
    min_rows_since_drift: int = Field(
        default=500,
        ge=0,
        description="A drift-triggered retrain waits for this many labelled rows from the drifted batch on.",
    )
    before_onset_weight: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="A retrain answering an input drift weighs rows older than its onset this much (rows from the "
        "onset on weigh 1): 0 drops them, 1 ignores the onset. Inputs moved, but the old rows may still teach the same "
        "rule, so they are kept at a discount. Applied only when at least min_rows_since_drift rows follow the onset.",
    )
    before_drop_weight: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="A retrain answering a proven performance drop of the champion weighs rows older than the drop's "
        "onset this much: 0 (default) trains on the rows from the onset on only, so a rule that changed, even "
        "inverted, is learned rather than outvoted by the old regime.",
    )
    early_stop_fraction: float = Field(
        default=0.1, gt=0, lt=0.5, description="Latest share of the training rows used for early stopping."
    )
    holdout_fraction: float = Field(
        default=0.2, gt=0, lt=0.5, description="Latest share of the window held out for the gates."
    )


class GatesSpec(BaseModel):
    """Validation gates a candidate must pass; every gate is evaluated and reported."""

    model_config = ConfigDict(extra="forbid")

    min_auc: float | None = Field(default=0.6, ge=0, le=1, description="Binary: holdout AUC floor.")
    max_logloss: float | None = Field(default=None, gt=0, description="Binary: holdout log-loss ceiling.")
    max_rmse: float | None = Field(default=None, gt=0, description="Regression: holdout RMSE ceiling.")
    max_mae: float | None = Field(default=None, gt=0, description="Regression: holdout MAE ceiling.")
    non_inferiority_margin: float = Field(
        default=0.01,
        ge=0,
        description="Candidate may be at most this much worse than the champion on the same holdout rows "
        "(AUC points for binary, RMSE units for regression), judged on the bootstrap interval's worst end.",
    )
    bootstrap_samples: int = Field(default=300, ge=50, le=10_000, description="Paired bootstrap resamples.")
    confidence: float = Field(default=0.95, gt=0.5, lt=1, description="Confidence of the bootstrap interval.")
    max_slice_gap: float | None = Field(
        default=0.1, gt=0, description="Largest allowed gap between a slice's metric and the overall metric."
    )
    min_slice_rows: int = Field(default=200, ge=10, description="Slices with fewer holdout rows are not judged.")
    noise_sd: float = Field(
        default=0.1, gt=0, le=2, description="Robustness: Gaussian noise added to numeric features, in feature sds."
    )
    max_noise_drop: float | None = Field(
        default=0.05, gt=0, description="Largest metric drop under that noise (AUC points; RMSE rise in target sds)."
    )
    max_p99_latency_ms: float | None = Field(
        default=50.0,
        gt=0,
        description="Ceiling on p99 single-row prediction latency, judged load-corrected: fails only when the "
        "bootstrap band of the corrected p99 lies entirely above it.",
    )
    min_throughput_rows_per_s: float | None = Field(
        default=20_000,
        gt=0,
        description="Floor on batch prediction throughput, judged load-corrected: fails only when every "
        "measured round's corrected rate is below it.",
    )
    max_latency_ratio: float | None = Field(
        default=2.5,
        ge=1,
        le=100,
        description="Candidate's median and p99 single-row latency, measured interleaved with the champion on "
        "the same rows, may be at most this multiple of the champion's (plus latency_slack_ms). None: no "
        "comparison.",
    )
    max_batch_time_ratio: float | None = Field(
        default=2.5,
        ge=1,
        le=100,
        description="Candidate's batch prediction time, measured interleaved with the champion on the same "
        "rows, may be at most this multiple of the champion's (plus latency_slack_ms). None: no comparison.",
    )
    latency_slack_ms: float = Field(
        default=1.0,
        ge=0,
        le=1_000,
        description="Timing excesses over the champion below this many milliseconds (per single-row call and "
        "per batch) are noise, never a failure.",
    )
    max_model_bytes: int | None = Field(default=50_000_000, gt=0, description="Largest allowed UBJ model size.")


class CooldownSpec(BaseModel):
    """Retrain storm control."""

    model_config = ConfigDict(extra="forbid")

    seconds: int | None = Field(
        default=None,
        ge=0,
        description="Wall-clock cooldown: at most one drift-triggered retrain per reference in each window of this "
        "many seconds. None or 0 (default, cadence-free): one retrain per drift announcement, and a lasting drift is "
        "announced once per episode (driftline.loop.rules.observe_drift).",
    )
    supersede_shadow: bool = Field(
        default=False, description="Whether a new candidate may replace one still in shadow."
    )


class ShadowSpec(BaseModel):
    """The sequential shadow test of a candidate against the champion on the same rows."""

    model_config = ConfigDict(extra="forbid")

    alpha: float = Field(
        default=0.05,
        gt=0,
        lt=0.5,
        description="Error level of the anytime-valid confidence sequence (checked every batch).",
    )
    min_rows: int = Field(
        default=500,
        ge=30,
        description="No verdict before this many labelled paired rows (the bounds are valid at any n; this only "
        "keeps the first noisy rows from deciding).",
    )
    max_rows: int = Field(
        default=200_000, ge=100, description="Budget: inconclusive once this many rows were compared."
    )
    max_batches: int | None = Field(
        default=10,
        ge=1,
        description="Budget: inconclusive after this many labelled batches were compared (cadence-free).",
    )
    max_days: float | None = Field(
        default=None,
        gt=0,
        description="Optional budget in event time: inconclusive once the labelled batches compared span this many "
        "days. None (default): no time budget, as batches may span minutes or years.",
    )
    equivalence_margin: float | None = Field(
        default=None,
        gt=0,
        description="Promote when the mean loss difference is proven within +-margin (per-row loss units); "
        "None: promote only a proven better candidate.",
    )
    planned_rows: int = Field(
        default=10_000, ge=100, description="Rows at which the confidence sequence is tuned to be tightest."
    )
    max_latency_ratio: float | None = Field(
        default=1.5, gt=0, description="Candidate p99 scoring latency may be at most this multiple of the champion's."
    )
    latency_slack_ms: float = Field(
        default=1.0,
        ge=0,
        description="Latency excesses below this many milliseconds are noise (timer, scheduler), never a reject.",
    )


class GuardSpec(BaseModel):
    """Post-promotion guard: the previous champion keeps scoring in shadow; roll back if proven better."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(default=True, description="Watch a new champion against the previous one.")
    alpha: float = Field(default=0.05, gt=0, lt=0.5, description="Error level of the guard's confidence sequence.")
    min_rows: int = Field(default=1000, ge=30, description="No rollback decision before this many labelled rows.")
    max_rows: int = Field(default=50_000, ge=100, description="The guard ends (champion kept) after this many rows.")


class PredictionDriftSpec(BaseModel):
    """Drift of the champion's predictions on a batch against its predictions on its own holdout."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(
        default=True, description="Profile the champion's predictions of every scored batch and compare them."
    )
    trigger_retrain: bool = Field(
        default=False,
        description="Publish driftline.drift.detected (kind prediction), which the retrain trigger acts on, when "
        "the predictions drift. Off by default: a prediction shift without input drift is usually a change in "
        "the mix of easy and hard rows, which is recorded in the drift report either way.",
    )


class PerformanceSpec(BaseModel):
    """The champion's performance monitor: its per-row loss on labelled batches against its holdout loss."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(default=True, description="Watch the champion's loss whenever labels arrive.")
    alpha: float = Field(
        default=0.05,
        gt=0,
        lt=0.5,
        description="Chance of ever announcing a champion degraded while it is not (over its whole life): half "
        "covers the holdout baseline's own sampling error, half the confidence sequences.",
    )
    min_rows: int = Field(
        default=500, ge=30, description="Labelled rows a stretch of batches needs before it can show a drop."
    )
    planned_rows: int = Field(
        default=5_000, ge=100, description="Rows at which the confidence sequences are tuned to be tightest."
    )
    relative_margin: float = Field(
        default=0.02,
        ge=0,
        le=1,
        description="Rise of the mean per-row loss, as a share of the holdout loss, that is tolerated on top of "
        "the baseline's sampling error (0.02: a loss 2% above the holdout's is not a degradation).",
    )
    prediction_drift: PredictionDriftSpec = Field(
        default_factory=PredictionDriftSpec, description="Prediction drift, checked by score-batch."
    )


_OTHER_TASK_GATES = {"binary": ("max_rmse", "max_mae"), "regression": ("min_auc", "max_logloss")}


class ModelSpec(BaseModel):
    """A model's contract: its columns, task and policies."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="Model name: [a-z0-9][a-z0-9._-]{0,62}.")
    task: Literal["binary", "regression"] = Field(description="binary classification or regression.")
    target: str = Field(min_length=1, description="Label column (in labels files, not in batches).")
    id_column: str = Field(min_length=1, description="Row id joining batches, labels and predictions.")
    time_column: str = Field(min_length=1, description="Event time; windows and holdouts are by time.")
    features: Features = Field(description="Feature columns by kind.")
    drift: DriftPolicy = Field(default_factory=DriftPolicy, description="How drift is measured and decided.")
    xgboost: XGBoostSpec = Field(default_factory=XGBoostSpec, description="Training parameters.")
    window: WindowSpec = Field(default_factory=WindowSpec, description="Training window and time splits.")
    gates: GatesSpec = Field(default_factory=GatesSpec, description="Validation gates.")
    cooldown: CooldownSpec = Field(default_factory=CooldownSpec, description="Retrain storm control.")
    shadow: ShadowSpec = Field(default_factory=ShadowSpec, description="Sequential shadow test.")
    promotion: Literal["auto", "manual"] = Field(
        default="auto", description="auto: a promote verdict promotes; manual: waits for `driftline promote`."
    )
    guard: GuardSpec = Field(default_factory=GuardSpec, description="Post-promotion guard and rollback.")
    performance: PerformanceSpec = Field(
        default_factory=PerformanceSpec, description="Champion monitoring: performance and prediction drift."
    )
    slices: list[str] = Field(
        default_factory=list, description="Categorical feature columns whose values are judged as slices by the gates."
    )

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        if not NAME_PATTERN.fullmatch(value) or ".." in value:
            raise ValueError(f"{value!r} must match [a-z0-9][a-z0-9._-]{{0,62}} without '..'")
        return value

    @model_validator(mode="after")
    def _columns_do_not_collide(self) -> ModelSpec:
        special = {"target": self.target, "id_column": self.id_column, "time_column": self.time_column}
        names = list(special.values())
        if len(set(names)) != len(names):
            raise ValueError(f"target, id_column and time_column must differ, got {special}")
        for key, column in special.items():
            if column in self.features.all:
                raise ValueError(f"{key} {column!r} is also listed as a feature")
        unknown_slices = [c for c in self.slices if c not in self.features.categorical]
        if unknown_slices:
            raise ValueError(f"slices {unknown_slices} must be categorical features")
        for gate in _OTHER_TASK_GATES[self.task]:
            if gate in self.gates.model_fields_set and getattr(self.gates, gate) is not None:
                raise ValueError(f"gates.{gate} does not apply to a {self.task} model")
        return self

    @property
    def labels_columns(self) -> list[str]:
        """Columns a labels file must have."""
        return [self.id_column, self.target]

    @property
    def batch_columns(self) -> list[str]:
        """Columns a features batch must have: id, time and every feature."""
        return [self.id_column, self.time_column, *self.features.all]

    def to_yaml(self) -> str:
        """The spec as YAML that ``parse_spec`` reads back to the same spec (metric gates of the other task,
        which only hold defaults, are written as null)."""
        data = self.model_dump(mode="json")
        for gate in _OTHER_TASK_GATES[self.task]:
            data["gates"][gate] = None
        return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)

    def content_hash(self) -> str:
        """sha256 of the canonical YAML (recorded in lineage)."""
        return hashlib.sha256(self.to_yaml().encode()).hexdigest()


def _format_errors(error: ValidationError, source: str) -> str:
    problems = []
    for item in error.errors():
        location = ".".join(str(part) for part in item["loc"]) or "(top level)"
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown key"
        elif item["type"] == "missing":
            message = "required key is missing"
        problems.append(f"  {location}: {message}")
    return f"{source}: invalid model spec\n" + "\n".join(problems)


class _DuplicateKeyError(yaml.YAMLError):
    def __init__(self, key: Any, line: int, first: int) -> None:
        super().__init__(f"duplicate key {key!r} on line {line} (first on line {first})")


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader refusing a key repeated in one mapping: plain YAML keeps the last value silently, so a
    second ``drift:`` block would quietly replace the first."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        first_lines: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # '<<: *anchor' may override keys on purpose
                continue
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                if key in first_lines:
                    raise _DuplicateKeyError(key, line, first_lines[key])
                first_lines[key] = line
            except TypeError:  # an unhashable key: SafeLoader raises its own error below
                continue
        return super().construct_mapping(node, deep=deep)


def parse_spec(text: str | bytes, source: str = "spec") -> ModelSpec:
    """Parse and validate spec YAML.

    Args:
        text: YAML text.
        source: where it came from (file path or S3 key), used in errors.

    Raises:
        SpecError: listing every problem with its key path.
    """
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)
    except _DuplicateKeyError as error:
        raise SpecError(f"{source}: {error}") from error
    except yaml.YAMLError as error:
        raise SpecError(f"{source}: not valid YAML ({error})") from error
    if not isinstance(data, dict):
        raise SpecError(f"{source}: a model spec is a YAML mapping, got {type(data).__name__}")
    try:
        return ModelSpec.model_validate(data)
    except ValidationError as error:
        raise SpecError(_format_errors(error, source)) from error


def load_spec(path: str | Path) -> ModelSpec:
    """Read and validate a spec file."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError as error:
        raise SpecError(f"{path}: no such file") from error
    return parse_spec(text, str(path))


def read_spec(store: ObjectStore, model: str) -> ModelSpec:
    """The spec in force for ``model`` (``models/<model>/spec.yaml``), validated: the one way to read it.

    Raises:
        ObjectNotFoundError: the model has no spec (the message says how to create one).
        SpecError: the stored spec is invalid, naming its key.
    """
    key = layout.model_spec(model)
    try:
        data = store.get(key)
    except ObjectNotFoundError as error:
        raise ObjectNotFoundError(
            f"model {model!r} has no spec; run `driftline model create <spec.yaml>` first"
        ) from error
    return parse_spec(data, key)


def missing_spec_problem(store: ObjectStore, model: str) -> str | None:
    """What ``driftline doctor`` reports when ``model`` has no stored spec (None when it has one).

    Without its spec no flow can run for the model: objects stored under it are stranded, not healthy.
    """
    key = layout.model_spec(model)
    if store.exists(key):
        return None
    stored = {
        "registry objects": next(iter(store.list(f"models/{model}/")), None) is not None,
        "batches": next(iter(store.list(layout.batches_prefix(model))), None) is not None,
    }
    found = [what for what, present in stored.items() if present]
    return (
        f"missing spec {store.location(key)}"
        + (f" although {' and '.join(found)} exist for it" if found else ": nothing is stored for this model")
        + f" (create it: driftline model create <spec.yaml> with name: {model})"
    )
