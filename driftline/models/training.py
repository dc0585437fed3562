"""Training: the labelled window, its time split, feature encoding, a deterministic XGBoost model.

Pure domain (polars, numpy, xgboost); the retrain flow only orders these steps::

    data = assemble_window(store, spec, batch_ids)     # features joined with labels, sorted by time
    split = time_split(data.frame, spec)                # train | early stop | holdout, by event time;
                                                        # split.notes: cuts that broke ties in time by id
    trained = train(split, spec, nthread=settings.nthread)
    store.create(layout.model_booster(model, version), model_bytes(trained.booster))

Determinism: the same batches and spec give byte-identical UBJ models. Rows are sorted by (time, id)
whatever order they arrived in, categorical codes come from the sorted categories of the rows trained on, every random
step is seeded from ``spec.xgboost.seed``, and the number of threads does not change the model.

Early stopping on the early-stopping rows picks the number of rounds; the saved booster is then refit on
the train and early-stopping rows for that many rounds (scaled for the extra rows, with a floor after a
small early-stopping set: ``train``), so it is complete as saved, with no ``iteration_range`` to remember.
The holdout trains nothing. Optional per-row weights come in a ``WEIGHT_COLUMN`` column.

The booster's feature names are the user's column names; the three characters XGBoost refuses in a
feature name (``[``, ``]``, ``<``) are replaced there, and the encoder records the mapping
(``FeatureEncoder.booster_names``). Holdout metrics come from :mod:`driftline.statistics.metrics`.
"""

from __future__ import annotations

import io
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import numpy as np
import polars as pl

from driftline.errors import InputError, ObjectNotFoundError
from driftline.loop.rules import (
    WEIGHT_COLUMN,  # optional per-row weight of train and early-stop rows (loop.onset_weights)
)
from driftline.models.spec import ModelSpec
from driftline.statistics.metrics import evaluate
from driftline.storage import layout
from driftline.storage.store import ObjectStore

if TYPE_CHECKING:
    # Imported where a booster is built or loaded: most flow runs import this module (encoding, prediction),
    # and xgboost (with the scipy it pulls in) is ~0.5 s of a run's start that profiling or promoting never uses.
    import xgboost

T = TypeVar("T")  # what a window's fetch returns per object (bytes with ETag, or head info)

ENCODER_FORMAT = 1
# A time cut inside a run of equal times moves to the run's end when that changes its part by at most this
# share of the part's rows; otherwise it stays inside the run and divides it by id (``time_split``).
TIE_TOLERANCE = 0.1
# Early stopping on fewer rows than this stops too early (its loss is noise): the refit then gets at least
# MIN_ETA_ROUNDS / eta rounds, 100 at eta 0.1 (``train``).
SMALL_EARLY_STOP_ROWS = 500
# From this many training rows on, the refit is skipped and the early-stopped booster is kept, cut at its
# best iteration: the early-stopping rows add a tenth to what is learnt there (the learning curve is flat),
# while a second boosting run doubles the cost of a retrain.
REFIT_MAX_TRAIN_ROWS = 200_000
MIN_ETA_ROUNDS = 10.0
_TASK_DEFAULTS: dict[str, dict[str, str]] = {
    "binary": {"objective": "binary:logistic", "eval_metric": "logloss"},
    "regression": {"objective": "reg:squarederror", "eval_metric": "rmse"},
}
_FORBIDDEN_IN_BOOSTER_NAMES = {"[": "(", "]": ")", "<": "\u2039"}
# Frames of at most this many rows are encoded column by column in numpy (``FeatureEncoder._encode_small``)
# when every numeric feature is one of these types; others go through the polars expressions.
SMALL_FRAME_ROWS = 256
_PLAIN_NUMERIC = frozenset(
    {pl.Float32, pl.Float64, pl.Int8, pl.Int16, pl.Int32, pl.Int64}
    | {pl.UInt8, pl.UInt16, pl.UInt32, pl.UInt64, pl.Boolean}
)

Progress = Callable[[str], None]


# --- the labelled window ----------------------------------------------------------------------


@dataclass(frozen=True)
class BatchUsed:
    """One batch of the window, with the ETags of the objects read (lineage)."""

    batch_id: str
    rows: int
    features_etag: str
    labels_etag: str
    dropped_rows: int = 0  # joined rows without an event time or a target value


@dataclass(frozen=True)
class TrainingData:
    """Labelled rows of a window: id, time, features (spec order) and target, sorted by (time, id)."""

    frame: pl.DataFrame
    batches: list[BatchUsed]
    unlabelled: list[str] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return self.frame.height


def _read_parquet(data: bytes, key: str, columns: list[str], what: str) -> pl.DataFrame:
    try:
        schema = pl.read_parquet_schema(io.BytesIO(data))
    except Exception as error:  # polars raises several kinds for a damaged footer
        raise InputError(f"{key}: not a readable parquet file ({error})") from error
    missing = [c for c in columns if c not in schema]
    if missing:
        raise InputError(f"{key}: {what} lacks column(s) {', '.join(repr(c) for c in missing)}")
    return pl.read_parquet(io.BytesIO(data), columns=columns)


def _time_kind(dtype: pl.DataType) -> str:
    if dtype.is_temporal():
        return "temporal"
    if dtype.is_integer():
        return "integer"
    return str(dtype)


def _join_batch(spec: ModelSpec, batch_id: str, features: pl.DataFrame, labels: pl.DataFrame) -> pl.DataFrame:
    key = layout.batch_labels(spec.name, batch_id)
    ids = labels.get_column(spec.id_column)
    duplicates = ids.len() - ids.n_unique()
    if duplicates:
        raise InputError(f"{key}: {duplicates} duplicate id(s) in {spec.id_column!r}; each row needs one label")
    feature_id_dtype = features.schema[spec.id_column]
    if labels.schema[spec.id_column] != feature_id_dtype:
        try:
            labels = labels.with_columns(pl.col(spec.id_column).cast(feature_id_dtype, strict=True))
        except pl.exceptions.PolarsError as error:
            raise InputError(
                f"{key}: id column {spec.id_column!r} is {labels.schema[spec.id_column]}, "
                f"the batch's is {feature_id_dtype}"
            ) from error
    try:
        target = labels.get_column(spec.target).cast(pl.Float64, strict=True)
    except pl.exceptions.PolarsError as error:
        raise InputError(f"{key}: target {spec.target!r} is {labels.schema[spec.target]}, not numeric") from error
    labels = labels.with_columns(target)
    joined = features.join(labels, on=spec.id_column, how="inner")
    # Categorical values become strings here so batches with different physical types concatenate.
    return joined.with_columns(pl.col(c).cast(pl.String) for c in spec.features.categorical).select(
        spec.id_column, spec.time_column, *spec.features.all, spec.target
    )


def labelled_batches(
    store: ObjectStore, model: str, batch_ids: Sequence[str], fetch: Callable[[str], T]
) -> tuple[list[tuple[str, str, str, T, T]], list[str]]:
    """``(batch id, features key, labels key, features, labels)`` of each labelled batch, fetched with ``fetch``
    (``store.read`` for the bytes, ``store.info`` for a head request only), and the ids without labels.

    Raises:
        ObjectNotFoundError: a batch's features object does not exist.
        InputError: a batch id is listed twice.
    """
    if len(set(batch_ids)) != len(batch_ids):
        repeated = sorted({b for b in batch_ids if batch_ids.count(b) > 1})
        raise InputError(f"model {model!r}: batch id(s) {repeated} listed more than once")
    labelled: list[tuple[str, str, str, T, T]] = []
    unlabelled: list[str] = []
    for batch_id in batch_ids:
        features_key, labels_key = layout.batch_data(model, batch_id), layout.batch_labels(model, batch_id)
        try:
            labels = fetch(labels_key)
        except ObjectNotFoundError:
            if not store.exists(features_key):
                raise ObjectNotFoundError(f"model {model!r}: no batch {batch_id!r} ({features_key})") from None
            unlabelled.append(batch_id)
            continue
        try:
            features = fetch(features_key)
        except ObjectNotFoundError as error:
            raise ObjectNotFoundError(f"model {model!r}: no batch {batch_id!r} ({features_key})") from error
        labelled.append((batch_id, features_key, labels_key, features, labels))
    return labelled, unlabelled


def assemble_window(store: ObjectStore, spec: ModelSpec, batch_ids: list[str]) -> TrainingData:
    """Join each batch's features with its labels and stack them into one training frame.

    Rows are joined on ``spec.id_column`` (inner join), limited to the spec's columns (id, time,
    features, target), concatenated and sorted by (time, id), so the result does not depend on the
    order rows arrived in. Categorical features are returned as strings. Joined rows without an
    event time or a target value are dropped (counted in ``BatchUsed.dropped_rows``).

    Args:
        store: where batches and labels live.
        spec: the model's spec.
        batch_ids: batches of the window, in any order.

    Returns:
        The frame, each batch used with its rows and ETags, and the batches without labels.

    Raises:
        ObjectNotFoundError: a batch's features object does not exist.
        InputError: a file lacks a spec column, labels are duplicated or not numeric, a binary target
            is not 0/1, time columns disagree in kind, or fewer than ``spec.window.min_labelled_rows``
            labelled rows remain.
    """
    model = spec.name
    frames: list[pl.DataFrame] = []
    used: list[BatchUsed] = []
    time_kinds: dict[str, str] = {}
    labelled, unlabelled = labelled_batches(store, model, batch_ids, store.read)
    for batch_id, features_key, labels_key, features_object, labels_object in labelled:
        features = _read_parquet(features_object.data, features_key, spec.batch_columns, "batch")
        labels = _read_parquet(labels_object.data, labels_key, spec.labels_columns, "labels file")
        time_kinds[batch_id] = _time_kind(features.schema[spec.time_column])
        joined = _join_batch(spec, batch_id, features, labels)
        kept = _with_time_and_target(joined, spec)
        frames.append(kept)
        used.append(
            BatchUsed(
                batch_id=batch_id,
                rows=kept.height,
                features_etag=features_object.etag,
                labels_etag=labels_object.etag,
                dropped_rows=joined.height - kept.height,
            )
        )
    if len(set(time_kinds.values())) > 1:
        raise InputError(
            f"model {model!r}: time column {spec.time_column!r} is temporal in some batches and not in others: "
            f"{time_kinds}"
        )
    rows = sum(batch.rows for batch in used)
    minimum = spec.window.min_labelled_rows
    if rows < minimum:
        raise InputError(
            f"model {model!r}: {rows} labelled row(s) from {len(used)} labelled batch(es) "
            f"({len(unlabelled)} of {len(batch_ids)} without labels) < window.min_labelled_rows {minimum}"
        )
    try:
        frame = pl.concat(frames, how="vertical_relaxed")
    except pl.exceptions.PolarsError as error:
        raise InputError(f"model {model!r}: batches of the window have incompatible column types ({error})") from error
    frame = sort_by_time(frame, spec)
    if spec.task == "binary":
        # On the target alone: filtering the whole frame by the check cost ~30 ms of a 1M-row window even
        # when no row failed it.
        target = frame.get_column(spec.target)
        bad = target.filter(~target.is_in([0.0, 1.0]))
        if bad.len():
            raise InputError(
                f"model {model!r}: binary target {spec.target!r} must be 0 or 1; {bad.len()} row(s) are not, "
                f"e.g. {bad.unique().sort().head(5).to_list()}"
            )
    return TrainingData(frame=frame, batches=used, unlabelled=unlabelled)


def _with_time_and_target(joined: pl.DataFrame, spec: ModelSpec) -> pl.DataFrame:
    """``joined`` without the rows lacking an event time or a target value (null, or NaN for the target).

    A batch with nothing to drop is returned as it is: filtering it anyway copied every column of every
    batch (strings included), ~0.2 s of a 1M-row window for no row removed.
    """
    times, target = joined.get_column(spec.time_column), joined.get_column(spec.target)
    if not times.null_count() and not target.null_count() and not target.is_nan().any():
        return joined
    return joined.drop_nulls([spec.time_column, spec.target]).filter(pl.col(spec.target).is_not_nan())


def _in_time_order(frame: pl.DataFrame, spec: ModelSpec) -> bool:
    """Whether rows are already in (time, id) order, so a stable sort would leave them as they are.

    Only numeric (or temporal) columns without nulls or NaN are checked; anything else answers False and is
    sorted, which is always right.
    """
    times = frame.get_column(spec.time_column).to_physical()
    ids = frame.get_column(spec.id_column).to_physical()
    if not (times.dtype.is_numeric() and ids.dtype.is_numeric()) or times.null_count() or ids.null_count():
        return False
    time_values, id_values = times.to_numpy(), ids.to_numpy()
    later = time_values[1:] > time_values[:-1]
    tied = time_values[1:] == time_values[:-1]
    # NaN compares false both ways, so a NaN anywhere fails the check.
    return bool(np.all(later | (tied & (id_values[1:] >= id_values[:-1]))))


def sort_by_time(frame: pl.DataFrame, spec: ModelSpec) -> pl.DataFrame:
    """``frame`` sorted by (time, id), stable; a window assembled in order is returned as it is.

    Batches usually arrive in time order, and sorting 1M rows of 20 features (strings included) again in
    ``time_split`` after ``assemble_window`` cost a few tenths of a second of a retrain for nothing.
    """
    if frame.height < 2 or _in_time_order(frame, spec):
        return frame
    return frame.sort([spec.time_column, spec.id_column], maintain_order=True)


# --- the time split ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Split:
    """Train, early-stopping and holdout rows, in (time, id) order: each part is no earlier than the one before.

    Each part is strictly later in event time than the one before unless ``ties_broken``: then a cut fell
    inside a run of rows sharing one event time, those rows were divided by id, and ``notes`` say where.
    """

    train: pl.DataFrame
    early_stop: pl.DataFrame
    holdout: pl.DataFrame
    ties_broken: bool = False
    notes: tuple[str, ...] = ()  # one line per cut placed inside a run of equal times, for the gate report


def _cut(times: np.ndarray, desired: int, lower: int, upper: int) -> tuple[int, tuple[int, int] | None]:
    """Where the later part ``times[cut:upper]`` starts, and the run of equal times the cut falls inside.

    The cut stays at ``desired`` (clamped so both parts keep a row) when a time change is there. Inside a
    run of equal times it moves to the nearest end of the run if that changes the later part's rows by at
    most ``TIE_TOLERANCE`` of them (at least one row); otherwise it stays inside the run, whose rows are then
    divided in their (time, id) order, and the run's (start, end) is returned.
    """
    return cut_sorted(
        lambda index: times[index],
        lambda value: int(np.searchsorted(times[lower:upper], value, side="left")) + lower,
        lambda value: int(np.searchsorted(times[lower:upper], value, side="right")) + lower,
        desired,
        lower,
        upper,
    )


def cut_sorted(
    value_at: Callable[[int], Any],
    first_of: Callable[[Any], int],
    after_of: Callable[[Any], int],
    desired: int,
    lower: int,
    upper: int,
) -> tuple[int, tuple[int, int] | None]:
    """``_cut`` over sorted times known only through accessors (a window on a cluster: ``distributed``).

    ``value_at(i)`` is the i-th time in (time, id) order; ``first_of(v)`` / ``after_of(v)`` are the indices in
    ``[lower, upper]`` where the run of times equal to ``v`` starts and ends (``searchsorted`` left / right).
    """
    desired = min(max(desired, lower + 1), upper - 1)
    if value_at(desired - 1) < value_at(desired):
        return desired, None
    value = value_at(desired)
    first = first_of(value)
    after = after_of(value)
    tolerance = max(1, math.floor(TIE_TOLERANCE * (upper - desired)))
    candidates = [c for c in (first, after) if lower < c < upper and abs(c - desired) <= tolerance]
    if candidates:
        return min(candidates, key=lambda c: (abs(c - desired), c)), None
    return desired, (first, after)


def _tie_note(frame: pl.DataFrame, spec: ModelSpec, what: str, cut: int, run: tuple[int, int]) -> str:
    first, after = run
    value = frame.get_column(spec.time_column)[cut]
    return (
        f"{what} cut inside {after - first} rows sharing {spec.time_column} {value} "
        f"({cut - first} before, {after - cut} after): ties broken by {spec.id_column}"
    )


def time_split(frame: pl.DataFrame, spec: ModelSpec) -> Split:
    """Split rows by event time: the latest are the holdout, the latest of the rest stop early.

    Rows are sorted by (time, id). The latest ``spec.window.holdout_fraction`` of the rows are the
    holdout; the latest ``spec.window.early_stop_fraction`` of the remaining ones are the early-stopping
    set; the rest train. Ties in time never fail a split: a cut that falls inside a run of rows sharing
    one event time moves to the nearest time change when that changes its part by at most
    ``TIE_TOLERANCE`` (10%) of the part's rows, so no time straddles the cut; otherwise (daily snapshots,
    monthly extracts, a whole window at one time) it stays at the row count and the run's rows are
    divided by id, which ``Split.ties_broken`` and ``Split.notes`` record. Deterministic either way.
    Other columns, such as ``WEIGHT_COLUMN``, are kept in every part.

    Args:
        frame: labelled rows (any order; sorted here by time, then id).
        spec: the model's spec.

    Returns:
        The three parts, and notes on cuts placed inside a run of equal times.

    Raises:
        InputError: fewer than 3 rows (a part would be empty).
    """
    window = spec.window
    rows = frame.height
    if rows < 3:
        raise InputError(f"model {spec.name!r}: {rows} row(s) cannot be split into train, early stop and holdout")
    frame = sort_by_time(frame, spec)
    times = frame.get_column(spec.time_column).to_physical().to_numpy()
    notes: list[str] = []
    holdout_rows = max(1, math.floor(rows * window.holdout_fraction + 0.5))
    holdout_start, run = _cut(times, rows - holdout_rows, 0, rows)
    if run is not None:
        notes.append(_tie_note(frame, spec, "holdout", holdout_start, run))
    early_rows = max(1, math.floor(holdout_start * window.early_stop_fraction + 0.5))
    early_start, run = _cut(times, holdout_start - early_rows, 0, holdout_start)
    if run is not None:
        notes.append(_tie_note(frame, spec, "early-stopping", early_start, run))
    return Split(
        train=frame.slice(0, early_start),
        early_stop=frame.slice(early_start, holdout_start - early_start),
        holdout=frame.slice(holdout_start, rows - holdout_start),
        ties_broken=bool(notes),
        notes=tuple(notes),
    )


# --- feature encoding -------------------------------------------------------------------------


def _booster_names(features: Sequence[str]) -> tuple[str, ...]:
    names: list[str] = []
    for feature in features:
        name = feature
        for bad, replacement in _FORBIDDEN_IN_BOOSTER_NAMES.items():
            name = name.replace(bad, replacement)
        if name != feature:
            base, suffix = name, 1
            while name in features or name in names:
                name, suffix = f"{base}~{suffix}", suffix + 1
        names.append(name)
    return tuple(names)


def _numeric_expression(column: str, dtype: pl.DataType) -> pl.Expr:
    expression = pl.col(column)
    if dtype == pl.Date:
        seconds = expression.cast(pl.Datetime("us")).dt.epoch("us").cast(pl.Float64) / 1e6
    elif isinstance(dtype, pl.Datetime):
        seconds = expression.dt.epoch("us").cast(pl.Float64) / 1e6
    elif isinstance(dtype, pl.Duration):
        seconds = expression.dt.total_microseconds().cast(pl.Float64) / 1e6
    elif dtype == pl.Time:
        seconds = expression.cast(pl.Int64).cast(pl.Float64) / 1e9
    elif dtype.is_numeric() or dtype in (pl.Boolean, pl.Null):
        seconds = expression.cast(pl.Float64)
    else:
        raise InputError(f"numeric feature {column!r} is {dtype}; expected a number, boolean or date/time")
    # XGBoost refuses infinities; they become missing, like nulls.
    return pl.when(seconds.is_finite()).then(seconds).otherwise(None).cast(pl.Float32).fill_null(np.nan)


@dataclass(frozen=True)
class FeatureEncoder:
    """Turns a frame into the float32 matrix the booster was trained on (features in spec order).

    Numeric features become float32 (booleans 0/1, dates and times epoch seconds, nulls and infinities
    NaN). Categorical features become codes into the sorted list of categories seen in the training
    rows (values compared as strings); unseen values and nulls become NaN, which XGBoost treats as
    missing.
    """

    features: tuple[str, ...]
    kinds: tuple[str, ...]  # "numeric" | "categorical", per feature
    categories: dict[str, tuple[str, ...]]
    # Encoding expressions per schema of the numeric features (``_expressions_for``); not part of the encoder.
    _expression_cache: dict[tuple[Any, ...], list[pl.Expr]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    _code_cache: dict[str, dict[str | None, float]] = field(default_factory=dict, init=False, repr=False, compare=False)

    @classmethod
    def fit(cls, frame: pl.DataFrame, spec: ModelSpec, *more: pl.DataFrame) -> FeatureEncoder:
        """Learn the categories of each categorical feature from ``frame`` and ``more`` (the training rows).

        Several frames give the encoder of their concatenation: each frame's distinct values are united,
        so the rows are never copied into one frame just to list them.
        """
        frames = (frame, *more)
        for part in frames:
            missing = [c for c in spec.features.all if c not in part.columns]
            if missing:
                raise InputError(f"model {spec.name!r}: training rows lack feature(s) {missing}")
        categories = {
            column: {
                value
                for part in frames
                for value in part.get_column(column).cast(pl.String).drop_nulls().unique().to_list()
            }
            for column in spec.features.categorical
        }
        return cls.from_categories(spec, categories)

    @classmethod
    def from_categories(cls, spec: ModelSpec, categories: dict[str, Sequence[str]]) -> FeatureEncoder:
        """The encoder of the spec's features given each categorical feature's distinct values (any order)."""
        categories = {column: tuple(sorted(set(categories[column]))) for column in spec.features.categorical}
        kinds = ("numeric",) * len(spec.features.numeric) + ("categorical",) * len(spec.features.categorical)
        return cls(features=tuple(spec.features.all), kinds=kinds, categories=categories)

    @property
    def feature_types(self) -> list[str]:
        """XGBoost feature types: 'q' numeric, 'c' categorical."""
        return ["c" if kind == "categorical" else "q" for kind in self.kinds]

    @property
    def booster_names(self) -> list[str]:
        """Feature names given to XGBoost: the column names, with ``[``, ``]`` and ``<`` replaced."""
        return list(_booster_names(self.features))

    def encode(self, frame: pl.DataFrame) -> np.ndarray:
        """The (rows x features) float32 C-ordered matrix of ``frame``; extra columns are ignored.

        Raises:
            InputError: a feature column is missing or a numeric one is not numeric.
        """
        schema = frame.schema
        missing = [c for c in self.features if c not in schema]
        if missing:
            raise InputError(f"frame lacks feature column(s) {', '.join(repr(c) for c in missing)}")
        if frame.height == 0:
            return np.empty((0, len(self.features)), dtype=np.float32)
        if frame.height <= SMALL_FRAME_ROWS and all(
            kind == "categorical" or schema[column] in _PLAIN_NUMERIC
            for column, kind in zip(self.features, self.kinds, strict=True)
        ):
            return self._encode_small(frame)
        expressions = self._expressions_for(schema)
        # Every expression yields float32, so polars writes the row-major matrix in one pass; its default
        # column-major result cost a second full copy to become C-ordered.
        matrix = frame.select(expressions).to_numpy(order="c")
        return np.ascontiguousarray(matrix, dtype=np.float32)

    def _encode_small(self, frame: pl.DataFrame) -> np.ndarray:
        """``encode`` of a few rows of plain numeric and any categorical columns, column by column.

        The same values as the expressions give (finite numbers as float32, the rest NaN; categories by
        their code), without a query: for a single row, planning and running one on polars' thread pool
        was ~1 ms of CPU and more of waiting on a busy machine, most of a served prediction.
        """
        matrix = np.empty((frame.height, len(self.features)), dtype=np.float32)
        for index, (column, kind) in enumerate(zip(self.features, self.kinds, strict=True)):
            series = frame.get_column(column)
            if kind == "categorical":
                codes = self._category_codes(column)
                matrix[:, index] = [codes.get(value, np.nan) for value in series.cast(pl.String).to_list()]
            else:
                values = series.cast(pl.Float64).to_numpy()  # nulls are NaN here
                with np.errstate(over="ignore"):  # beyond float32's range is inf, as polars' cast gives
                    matrix[:, index] = np.where(np.isfinite(values), values, np.nan)
        return matrix

    def _category_codes(self, column: str) -> dict[str | None, float]:
        codes = self._code_cache.get(column)
        if codes is None:
            codes = {value: float(code) for code, value in enumerate(self.categories[column])}
            self._code_cache[column] = codes
        return codes

    def _expressions_for(self, schema: pl.Schema) -> list[pl.Expr]:
        """The encoding expressions for frames of ``schema``, built once per schema of the numeric features.

        Building them took ~3 ms of Python per call, most of a single-row prediction: the latency gate makes
        hundreds of those, and a served model one per request.
        """
        key = tuple(schema[column] for column, kind in zip(self.features, self.kinds, strict=True) if kind == "numeric")
        cached = self._expression_cache.get(key)
        if cached is not None:
            return cached
        expressions = []
        for column, kind in zip(self.features, self.kinds, strict=True):
            if kind == "categorical":
                known = list(self.categories[column])
                expressions.append(
                    pl.col(column)
                    .cast(pl.String)
                    .replace_strict(known, list(range(len(known))), default=None, return_dtype=pl.Float32)
                    .fill_null(np.nan)
                    .alias(column)
                )
            else:
                expressions.append(_numeric_expression(column, schema[column]).alias(column))
        self._expression_cache[key] = expressions
        return expressions

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (stored in a model version's metadata)."""
        return {
            "format": ENCODER_FORMAT,
            "features": [
                {
                    "name": name,
                    "kind": kind,
                    "booster_name": booster_name,
                    **({"categories": list(self.categories[name])} if kind == "categorical" else {}),
                }
                for name, kind, booster_name in zip(self.features, self.kinds, self.booster_names, strict=True)
            ],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureEncoder:
        """Rebuild an encoder from ``to_dict`` output.

        Raises:
            InputError: the dict is not an encoder of a known format.
        """
        try:
            if data["format"] != ENCODER_FORMAT:
                raise InputError(f"feature encoder format {data['format']!r} is not supported ({ENCODER_FORMAT} is)")
            features = tuple(str(item["name"]) for item in data["features"])
            kinds = tuple(str(item["kind"]) for item in data["features"])
            categories = {
                str(item["name"]): tuple(str(value) for value in item["categories"])
                for item in data["features"]
                if item["kind"] == "categorical"
            }
        except (KeyError, TypeError) as error:
            raise InputError(f"not a feature encoder: missing or malformed {error}") from error
        unknown = sorted(set(kinds) - {"numeric", "categorical"})
        if unknown:
            raise InputError(f"feature encoder has unknown feature kind(s) {unknown}")
        return cls(features=features, kinds=kinds, categories=categories)


# --- training ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainedModel:
    """A booster refit on the train and early-stopping rows, with what is needed to use and judge it."""

    booster: xgboost.Booster
    encoder: FeatureEncoder
    best_iteration: int  # best early-stopping iteration of the run on the training rows alone
    rounds: int  # boosting rounds that run made before early stopping ended it
    metrics: dict[str, float]  # on the holdout: binary auc, logloss; regression rmse, mae
    importances: dict[str, float]  # total gain share per feature (0.0 if unused), summing to 1
    train_seconds: float
    params: dict[str, Any]  # as passed to xgboost.train
    # Rounds of ``booster``, refit on train + early-stop rows; None: no refit (``REFIT_MAX_TRAIN_ROWS``, or a
    # booster built elsewhere such as the backtest's plain model), cut at ``best_iteration``.
    refit_rounds: int | None = None
    notes: tuple[str, ...] = ()  # how the number of rounds was chosen, when not simply by early stopping
    # ``predict(booster, encoder, split.holdout)`` as the metrics were computed from it, so the gates and the
    # holdout baseline reuse it instead of predicting the same rows again; None when not kept.
    holdout_predictions: np.ndarray | None = field(default=None, compare=False, repr=False)


def training_params(spec: ModelSpec, nthread: int) -> dict[str, Any]:
    """xgboost.train params: the task's objective and metric unless the spec sets them, seed and threads."""
    return {**_TASK_DEFAULTS[spec.task], **spec.xgboost.params, "seed": spec.xgboost.seed, "nthread": nthread}


def _labels(frame: pl.DataFrame, spec: ModelSpec) -> np.ndarray:
    return frame.get_column(spec.target).cast(pl.Float32).to_numpy()


def _weights(frame: pl.DataFrame, what: str) -> np.ndarray | None:
    """The rows' training weights (``WEIGHT_COLUMN``), or None when the frame has no such column."""
    if WEIGHT_COLUMN not in frame.columns:
        return None
    try:
        weights = frame.get_column(WEIGHT_COLUMN).cast(pl.Float64, strict=True).to_numpy()
    except pl.exceptions.PolarsError as error:
        raise InputError(
            f"{what} rows: weight column {WEIGHT_COLUMN!r} is {frame.schema[WEIGHT_COLUMN]}, not numeric"
        ) from error
    bad = int(np.sum(~np.isfinite(weights) | (weights < 0)))  # nulls are NaN here
    if bad:
        raise InputError(f"{what} rows: {bad} weight(s) in {WEIGHT_COLUMN!r} are missing, negative or infinite")
    if not weights.sum() > 0:
        raise InputError(f"{what} rows: every weight in {WEIGHT_COLUMN!r} is 0")
    return weights.astype(np.float32)


def _learning_rate(params: dict[str, Any]) -> float:
    return float(params.get("eta", params.get("learning_rate", 0.3)))  # 0.3: XGBoost's default


def _refit_rounds(
    spec: ModelSpec, params: dict[str, Any], best_iteration: int, scale: float, early_rows: int
) -> tuple[int, tuple[str, ...]]:
    """Rounds of the refit: the best iteration's, times ``scale`` (refit rows / training rows, by weight),
    at least ``MIN_ETA_ROUNDS / eta`` after a small early-stopping set, at most ``num_boost_round``."""
    scaled = max(1, math.floor((best_iteration + 1) * scale + 0.5))
    eta = _learning_rate(params)
    floor = math.ceil(MIN_ETA_ROUNDS / eta - 1e-9) if early_rows < SMALL_EARLY_STOP_ROWS else 1
    rounds = min(max(scaled, floor), spec.xgboost.num_boost_round)
    if rounds <= scaled:
        return rounds, ()
    return rounds, (
        f"early stopping on {early_rows} rows chose {best_iteration + 1} round(s) ({scaled} for the refit rows); "
        f"raised to {rounds}: fewer than {SMALL_EARLY_STOP_ROWS} early-stopping rows stop too early "
        f"(floor {MIN_ETA_ROUNDS:g} / eta {eta:g}, at most num_boost_round)",
    )


def _gain_importances(booster: xgboost.Booster, encoder: FeatureEncoder) -> dict[str, float]:
    scores = booster.get_score(importance_type="total_gain")
    gains = {
        name: float(scores.get(booster_name, 0.0))
        for name, booster_name in zip(encoder.features, encoder.booster_names, strict=True)
    }
    total = sum(gains.values())
    if total <= 0:
        return dict.fromkeys(encoder.features, 0.0)
    return {name: gain / total for name, gain in gains.items()}


@dataclass(frozen=True)
class FitData:
    """Encoded rows for one XGBoost matrix: float32 features, labels, optional weights."""

    x: np.ndarray
    y: np.ndarray
    weight: np.ndarray | None = None


class Fitter(Protocol):
    """Builds the matrices and runs ``xgboost.train`` (in this process, or on a cluster)."""

    def fit(
        self,
        params: dict[str, Any],
        matrix_options: dict[str, Any],
        data: FitData,
        *,
        num_boost_round: int,
        early_stop: FitData | None = None,
        early_stopping_rounds: int | None = None,
    ) -> xgboost.Booster:
        """A booster trained on ``data``, stopped early on ``early_stop`` when given."""
        ...


@dataclass(frozen=True)
class LocalFitter:
    """``QuantileDMatrix`` + ``xgboost.train`` in this process with ``nthread`` threads."""

    nthread: int

    def fit(
        self,
        params: dict[str, Any],
        matrix_options: dict[str, Any],
        data: FitData,
        *,
        num_boost_round: int,
        early_stop: FitData | None = None,
        early_stopping_rounds: int | None = None,
    ) -> xgboost.Booster:
        import xgboost

        options = {**matrix_options, "nthread": self.nthread}
        matrix = xgboost.QuantileDMatrix(data.x, label=data.y, weight=data.weight, **options)
        evals = []
        if early_stop is not None:
            # The early-stopping rows are only predicted, never binned for training, so a plain DMatrix: its
            # metric is that of the booster's own predictions on the raw values. A QuantileDMatrix on the
            # training cuts put a category first seen in these rows into a training category's bin (another
            # best iteration than the booster's real predictions give), cost ~4x the CPU to build and ~1.6x
            # per round to evaluate (80k rows x 20 features, one thread: 15 vs 9.4 ms a round, 200 rounds).
            evals = [
                (
                    xgboost.DMatrix(early_stop.x, label=early_stop.y, weight=early_stop.weight, **options),
                    "early_stop",
                )
            ]
        return xgboost.train(
            params,
            matrix,
            num_boost_round=num_boost_round,
            evals=evals,
            early_stopping_rounds=early_stopping_rounds if early_stop is not None else None,
            verbose_eval=False,
        )


def matrix_options(encoder: FeatureEncoder) -> dict[str, Any]:
    """Options of every XGBoost matrix built for ``encoder``'s features."""
    return {
        "feature_names": encoder.booster_names,
        "feature_types": encoder.feature_types,
        "enable_categorical": True,
        "missing": np.nan,
    }


def fit_and_refit(
    spec: ModelSpec,
    params: dict[str, Any],
    options: dict[str, Any],
    fit: Fitter,
    train_data: FitData,
    early_data: FitData,
    refit_data: Callable[[], tuple[FitData, float]],
    *,
    early_rows: int,
    say: Progress,
    train_rows: int | None = None,
) -> tuple[xgboost.Booster, int, int, int | None, tuple[str, ...]]:
    """The two boosting runs of ``train``: early stopping finds the rounds, the refit uses them.

    ``refit_data()`` gives the refit rows (train then early-stop) and the scale of the rounds (refit rows /
    training rows, by weight); it is called after the first run, so its rows need not exist before. With
    ``train_rows`` at least ``REFIT_MAX_TRAIN_ROWS`` (and an early-stopping set large enough to trust), there
    is no refit: the first run's booster is kept, cut at its best iteration, and the refit rounds are None.

    Returns:
        (booster, best iteration, rounds of the first run, refit rounds or None, notes on the rounds).
    """
    full = fit.fit(
        params,
        options,
        train_data,
        num_boost_round=spec.xgboost.num_boost_round,
        early_stop=early_data,
        early_stopping_rounds=spec.xgboost.early_stopping_rounds,
    )
    rounds = full.num_boosted_rounds()
    best_iteration = full.best_iteration if "best_iteration" in full.attributes() else rounds - 1
    say(f"best iteration {best_iteration} of {rounds} rounds on the training rows")
    if train_rows is not None and train_rows >= REFIT_MAX_TRAIN_ROWS and early_rows >= SMALL_EARLY_STOP_ROWS:
        note = (
            f"no refit: {train_rows:,} training rows (>= {REFIT_MAX_TRAIN_ROWS:,}); the early-stopped booster is "
            f"kept at its best iteration ({best_iteration + 1} rounds)"
        )
        return full[: best_iteration + 1], best_iteration, rounds, None, (note,)
    del full
    data, scale = refit_data()
    refit_rounds, notes = _refit_rounds(spec, params, best_iteration, scale, early_rows)
    booster = fit.fit(params, options, data, num_boost_round=refit_rounds)
    return booster, best_iteration, rounds, refit_rounds, notes


def train(
    split: Split,
    spec: ModelSpec,
    nthread: int,
    progress: Progress | None = None,
    fitter: Fitter | None = None,
) -> TrainedModel:
    """Train an XGBoost model: early stopping picks the rounds, then a refit uses the early-stopping rows too.

    1. A run on the training rows, stopped early on the early-stopping rows (``early_stopping_rounds``),
       finds the best iteration.
    2. The returned booster is refit, with the same params and seed, on the training and early-stopping rows
       together (the most recent rows before the holdout), for the best iteration's rounds scaled by the
       extra rows (by weight, with ``WEIGHT_COLUMN``). When the early-stopping set is small (fewer than
       ``SMALL_EARLY_STOP_ROWS``), its noisy loss tends to stop far too early, so the refit gets at least
       ``MIN_ETA_ROUNDS / eta`` rounds (100 at eta 0.1); ``TrainedModel.notes`` says so. Never more than
       ``num_boost_round``.

    The holdout never trains either booster; its metrics are computed with the refit booster, which is
    complete as returned (saving and predicting need no iteration range). If the split's frames carry
    ``WEIGHT_COLUMN``, its values weight the rows of both runs and of the early-stopping metric; holdout
    metrics stay unweighted. Categorical codes come from the train and early-stopping rows.

    Args:
        split: rows split by time (``time_split``).
        spec: the model's spec (task, features, xgboost section).
        nthread: XGBoost threads; the model bytes do not depend on it.
        progress: called with a short message at each step (rows, best iteration, refit, metrics).
        fitter: where the boosters are fitted; None is this process (``LocalFitter(nthread)``). A Dask
            fitter (``driftline.data.distributed.DaskFitter``) gets the same encoded rows, params and rounds.

    Returns:
        The trained model with holdout metrics and gain importances.

    Raises:
        InputError: the holdout cannot be scored (a binary holdout with a single class), or a weight is
            missing, negative or infinite, or all the train or early-stopping weights are 0.
    """
    say = progress or (lambda message: None)
    started = time.perf_counter()
    train_weights = _weights(split.train, "training")
    early_weights = _weights(split.early_stop, "early-stopping")
    encoder = FeatureEncoder.fit(split.train, spec, split.early_stop)
    params = training_params(spec, nthread)
    say(
        f"training {spec.name}: {split.train.height} train, {split.early_stop.height} early-stop, "
        f"{split.holdout.height} holdout rows; {len(encoder.features)} features"
        + ("; weighted" if train_weights is not None else "")
    )
    options = matrix_options(encoder)
    fit = fitter or LocalFitter(nthread)
    train_x, train_y = encoder.encode(split.train), _labels(split.train, spec)
    early_x, early_y = encoder.encode(split.early_stop), _labels(split.early_stop, spec)

    def refit_data() -> tuple[FitData, float]:
        if (train_weights is None) != (early_weights is None):
            raise InputError(
                f"{WEIGHT_COLUMN!r} must be in both the training and the early-stopping rows, or in neither"
            )
        fit_weights = None if train_weights is None else np.concatenate([train_weights, early_weights])
        if fit_weights is None:
            scale = (len(train_y) + len(early_y)) / len(train_y)
        else:
            scale = float(fit_weights.sum(dtype=np.float64) / train_weights.sum(dtype=np.float64))
        data = FitData(np.concatenate([train_x, early_x]), np.concatenate([train_y, early_y]), fit_weights)
        return data, scale

    booster, best_iteration, rounds, refit_rounds, notes = fit_and_refit(
        spec,
        params,
        options,
        fit,
        FitData(train_x, train_y, train_weights),
        FitData(early_x, early_y, early_weights),
        refit_data,
        early_rows=split.early_stop.height,
        say=say,
        train_rows=split.train.height,
    )
    train_seconds = time.perf_counter() - started
    for note in notes:
        say(note)
    if refit_rounds is not None:
        rows = len(train_y) + len(early_y)
        say(f"refit {refit_rounds} rounds on {rows} train + early-stop rows ({train_seconds:.2f} s)")
    holdout_predictions = predict(booster, encoder, split.holdout)
    metrics = evaluate(spec.task, _labels(split.holdout, spec), holdout_predictions)
    say("holdout " + ", ".join(f"{name} {value:.4f}" for name, value in metrics.items()))
    return TrainedModel(
        booster=booster,
        encoder=encoder,
        best_iteration=best_iteration,
        rounds=rounds,
        metrics=metrics,
        importances=_gain_importances(booster, encoder),
        train_seconds=train_seconds,
        params=params,
        refit_rounds=refit_rounds,
        notes=notes,
        holdout_predictions=holdout_predictions,
    )


def model_bytes(booster: xgboost.Booster) -> bytes:
    """The booster as UBJ bytes (what ``models/<model>/versions/<version>/model.ubj`` holds)."""
    return bytes(booster.save_raw("ubj"))


def load_booster(data: bytes) -> xgboost.Booster:
    """A booster from UBJ bytes.

    Raises:
        InputError: the bytes are not an XGBoost model.
    """
    import xgboost

    booster = xgboost.Booster()
    try:
        booster.load_model(bytearray(data))
    except xgboost.core.XGBoostError as error:
        raise InputError(f"not an XGBoost UBJ model ({len(data)} bytes): {str(error).splitlines()[0]}") from error
    return booster


def predict(
    booster: xgboost.Booster, encoder: FeatureEncoder, frame: pl.DataFrame, nthread: int | None = None
) -> np.ndarray:
    """Predictions for ``frame``: probabilities of class 1 for binary models, values for regression.

    Uses every tree of the booster: boosters from ``train`` (and their saved bytes) are already cut to
    the best iteration.

    Args:
        booster: a trained or loaded booster.
        encoder: the encoder it was trained with.
        frame: rows with (at least) the feature columns.
        nthread: threads for prediction; None keeps the booster's setting.
    """
    if nthread is not None:
        booster.set_param({"nthread": nthread})
    matrix = encoder.encode(frame)
    if matrix.shape[0] == 0:
        return np.empty(0, dtype=np.float32)
    return np.asarray(booster.inplace_predict(matrix, missing=np.nan))
