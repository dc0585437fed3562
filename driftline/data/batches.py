"""Feature batches: validation against the spec, quarantine of bad ones, profiling of stored ones."""

from __future__ import annotations

import contextlib
import json
import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from driftline.data import profiling
from driftline.errors import ConflictError, InputError, IntegrityError, InvalidNameError, ObjectNotFoundError
from driftline.events import records
from driftline.models.spec import ModelSpec
from driftline.storage import layout
from driftline.storage.store import ObjectStore

if TYPE_CHECKING:
    from whylogs.core import DatasetProfileView

logger = logging.getLogger(__name__)


class BatchRejectedError(InputError):
    """A batch failed validation; the message lists every problem."""


@dataclass(frozen=True)
class BatchCheck:
    """Outcome of validating a batch file against a spec; ``problems`` lists every failure."""

    source: str
    rows: int
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def message(self) -> str:
        return f"{self.source}: batch rejected:\n" + "\n".join(f"  - {p}" for p in self.problems)


def _numeric(dtype: pl.DataType) -> bool:
    return dtype.is_numeric() or dtype == pl.Boolean


def _categorical(dtype: pl.DataType) -> bool:
    return (
        dtype in (pl.String, pl.Boolean)
        or dtype.is_integer()
        or isinstance(dtype, pl.Categorical | pl.Enum)
        or dtype == pl.Categorical
    )


def _time(dtype: pl.DataType) -> bool:
    return dtype.is_temporal() or dtype.is_integer()


def check_batch_file(path: str | Path, spec: ModelSpec, source: str | None = None) -> BatchCheck:
    """Validate a features batch (parquet) against the spec.

    Checks, all reported together: readable parquet; no missing, extra or mistyped columns (numeric
    features numeric or boolean; categorical features string, categorical, enum, boolean or integer; the
    time column temporal or integer epoch); not empty; ids present and unique; no +-inf in a numeric
    feature (whylogs and XGBoost would take it as a real value and skew every statistic).

    Args:
        path: local parquet file.
        spec: the model's spec.
        source: how to name the batch in messages (default: the path).
    """
    source = source or str(path)
    try:
        schema = profiling.parquet_schema(path)
    except InputError as error:
        return BatchCheck(source=source, rows=0, problems=[str(error).replace(str(path), "file")])
    problems: list[str] = []
    expected = spec.batch_columns
    missing = [c for c in expected if c not in schema]
    extra = [c for c in schema if c not in expected]
    if missing:
        problems.append(f"missing column(s): {', '.join(repr(c) for c in missing)}")
    if extra:
        problems.append(f"unexpected column(s): {', '.join(repr(c) for c in extra)} (not in the spec)")
    for column in spec.features.numeric:
        if column in schema and not _numeric(schema[column]):
            problems.append(f"column {column!r} is {schema[column]}, the spec says numeric")
    for column in spec.features.categorical:
        if column in schema and not _categorical(schema[column]):
            problems.append(f"column {column!r} is {schema[column]}, the spec says categorical")
    if spec.time_column in schema and not _time(schema[spec.time_column]):
        problems.append(f"time column {spec.time_column!r} is {schema[spec.time_column]}, expected a datetime")
    rows = 0
    if spec.id_column in schema:
        try:
            # glob=False: a path, never a pattern ('g[1].parquet' would otherwise read g1.parquet).
            ids = pl.read_parquet(path, columns=[spec.id_column], glob=False).get_column(spec.id_column)
        except Exception as error:  # a file whose footer reads but whose data pages are corrupt
            return BatchCheck(source=source, rows=0, problems=[*problems, f"unreadable data ({error})"])
        rows = ids.len()
        if rows == 0:
            problems.append("the batch is empty")
        if ids.null_count():
            problems.append(f"{ids.null_count()} row(s) have no id ({spec.id_column!r} is null)")
        duplicates = rows - ids.drop_nulls().n_unique() - ids.null_count()
        if duplicates > 0:
            sample = ids.filter(ids.is_duplicated()).unique().head(3).to_list()
            problems.append(f"{duplicates} duplicate id(s) in {spec.id_column!r}, e.g. {sample}")
    floats = [c for c in spec.features.numeric if c in schema and schema[c].is_float()]
    if floats:
        try:
            problems.extend(_non_finite_problems(path, floats))
        except Exception as error:  # corrupt data pages in a feature column
            problems.append(f"unreadable data ({error})")
    return BatchCheck(source=source, rows=rows, problems=problems)


def _non_finite_problems(path: str | Path, columns: list[str]) -> list[str]:
    """One problem per float column holding +-inf, with its count and share (only these columns are read)."""
    counts = (
        pl.scan_parquet(path, glob=False)
        .select(pl.len().alias("__rows"), *(pl.col(c).is_infinite().sum().alias(f"inf:{c}") for c in columns))
        .collect()
        .row(0, named=True)
    )
    rows = counts["__rows"]
    problems = []
    for column in columns:
        count = counts[f"inf:{column}"]
        if count:
            problems.append(
                f"column {column!r} has {count} non-finite value(s) (+-inf) in {rows} row(s) ({count / rows:.1%})"
            )
    return problems


@dataclass(frozen=True)
class ProfiledBatch:
    """A stored batch's profile, or why there is none."""

    model: str
    batch_id: str
    check: BatchCheck
    profile_key: str | None
    rows: int
    seconds: float
    already_profiled: bool = False
    event_time_min: str | None = None
    event_time_max: str | None = None
    adopted: bool = False  # written by another tool without a sha256; verified by content and given one


def _record_rejection(store: ObjectStore, model: str, record_id: str, batch_key: str, problems: list[str]) -> str:
    key = layout.batch_quarantine(model, record_id)
    record = {
        "model": model,
        "batch_id": record_id,
        "batch_key": batch_key,
        "problems": problems,
        "rejected_at": datetime.now(UTC).isoformat(),
    }
    with contextlib.suppress(ConflictError):
        store.create(key, json.dumps(record, indent=2).encode(), content_type="application/json")
    return key


def quarantine(store: ObjectStore, model: str, batch_id: str, check: BatchCheck) -> str:
    """Record why a batch was rejected (idempotent); return the record's key."""
    return _record_rejection(store, model, batch_id, layout.batch_data(model, batch_id), check.problems)


def quarantine_misnamed(store: ObjectStore, model: str, key: str) -> str:
    """Record that batch object ``key`` has a name that is no valid batch id (idempotent); return the record key.

    The record lives at ``layout.batch_quarantine(model, layout.misnamed_batch_id(key))`` (a valid key
    whatever the object's name) and names the original key, so the object is skipped from then on.
    """
    name = layout.batch_name_from_key(key)
    try:
        layout.validate_name(name or "", "batch id")
        reason = f"object {key!r} is not a batch object"
    except InvalidNameError as error:
        reason = f"{error}; rename the object to a valid batch id (e.g. {layout.misnamed_batch_id(key)!r})"
    return _record_rejection(store, model, layout.misnamed_batch_id(key), key, [reason])


def profile_stored_batch(
    store: ObjectStore,
    spec: ModelSpec,
    batch_id: str,
    chunk_rows: int = profiling.DEFAULT_CHUNK_ROWS,
    *,
    profile: Callable[..., DatasetProfileView] = profiling.profile_parquet,
) -> ProfiledBatch:
    """Download, validate and profile ``datasets/<model>/batches/<batch_id>.parquet``; store the profile.

    The profile is created with a conditional write: when another run already stored it, that profile
    is kept and ``already_profiled`` is set. A batch that fails validation gets no profile (the caller
    quarantines it). ``profile(path, chunk_rows=, columns=)`` makes the profile of the downloaded file:
    ``profiling.profile_parquet``, or ``distributed.profile_batch_file`` for partitions on Dask.

    Raises:
        ObjectNotFoundError: no such batch.
    """
    model = spec.name
    started = time.monotonic()
    profile_key = layout.batch_profile(model, batch_id)
    batch_key = layout.batch_data(model, batch_id)
    with tempfile.TemporaryDirectory(prefix="driftline-batch-") as scratch:
        local = Path(scratch) / "batch.parquet"
        adopted = False
        try:
            store.download(batch_key, local)
            check = check_batch_file(local, spec, source=batch_key)
        except ObjectNotFoundError as error:
            raise ObjectNotFoundError(f"no batch {batch_id!r} for model {model!r} ({batch_key})") from error
        except IntegrityError:
            if store.info(batch_key).sha256:
                raise  # a recorded sha256 the bytes do not match: tampered or truncated, never adopted
            check, adopted = _adopt_foreign_batch(store, spec, batch_key, local)
        if not check.ok:
            return ProfiledBatch(model, batch_id, check, None, check.rows, time.monotonic() - started, adopted=adopted)
        if store.exists(profile_key):
            return ProfiledBatch(
                model,
                batch_id,
                check,
                profile_key,
                check.rows,
                time.monotonic() - started,
                already_profiled=True,
                adopted=adopted,
            )
        columns = spec.batch_columns
        view = profile(local, chunk_rows=chunk_rows, columns=columns)
        event_time_min, event_time_max = _time_range(local, spec.time_column)
    try:
        store.create(profile_key, profiling.serialize(view))
        already = False
    except ConflictError:
        already = True
    return ProfiledBatch(
        model,
        batch_id,
        check,
        profile_key,
        check.rows,
        time.monotonic() - started,
        already_profiled=already,
        event_time_min=event_time_min,
        event_time_max=event_time_max,
        adopted=adopted,
    )


def _adopt_foreign_batch(store: ObjectStore, spec: ModelSpec, batch_key: str, local: Path) -> tuple[BatchCheck, bool]:
    """Validate a batch another tool wrote (no sha256) by its content; record a sha256 only if it passes.

    Returns the check and whether this run recorded the sha256. A bad batch keeps no sha256 and is
    quarantined by the caller like any other.
    """
    checks: list[BatchCheck] = []

    def accept(path: Path) -> bool:
        checks.append(check_batch_file(path, spec, source=batch_key))
        return checks[-1].ok

    try:
        info = store.adopt(batch_key, local, accept)
    except ConflictError:
        # Another run adopted it (or its writer replaced it) since we read it: check what is there now.
        store.download(batch_key, local)
        return check_batch_file(local, spec, source=batch_key), False
    if not checks:  # it already had a sha256 by the time adopt read it (verified by adopt)
        return check_batch_file(local, spec, source=batch_key), False
    if info is not None:
        logger.info("adopted %s (written without a sha256): recorded sha256 %s", batch_key, info.sha256)
    return checks[-1], info is not None


def _time_range(path: Path, column: str) -> tuple[str | None, str | None]:
    scan = pl.scan_parquet(path, glob=False)
    row = scan.select(pl.col(column).min().alias("a"), pl.col(column).max().alias("b")).collect()

    def text(value: object) -> str | None:
        if value is None:
            return None
        return value.isoformat() if hasattr(value, "isoformat") else str(value)

    return text(row.item(0, "a")), text(row.item(0, "b"))


def default_batch_id(now: datetime | None = None) -> str:
    """A time-ordered batch id such as ``20261126t101500-3fa2``."""
    import secrets

    moment = now or datetime.now(UTC)
    return f"{moment.strftime('%Y%m%dt%H%M%S')}-{secrets.token_hex(2)}"


@dataclass(frozen=True)
class BatchScan:
    """What the batches folders hold that still needs work, per model."""

    pending: dict[str, list[str]]  # batch ids with neither a profile nor a quarantine record
    misnamed: dict[str, list[str]]  # keys of batch objects whose name is no valid batch id, not yet quarantined


def _spec_models(store: ObjectStore) -> list[str]:
    models = []
    for key in store.list(layout.models_prefix()):
        name = layout.model_from_spec_key(key)
        if name is None:
            continue
        if not layout.is_valid_name(name):
            # Skipped, not raised: one stray object must not stop the watch for every other model.
            logger.warning("ignoring %s: %r is not a valid model name", key, name)
            continue
        models.append(name)
    return models


def scan_batches(store: ObjectStore, model: str | None = None) -> BatchScan:
    """Batches waiting for a profile and misnamed batch objects waiting for a quarantine record.

    Only ``datasets/<model>/batches/<name>.parquet`` objects count (not those in sub-folders), for
    ``model`` or else every model with a spec.
    """
    models = [layout.validate_name(model, "model")] if model is not None else _spec_models(store)
    pending: dict[str, list[str]] = {}
    misnamed: dict[str, list[str]] = {}
    for name in models:
        keys = set(store.list(layout.batches_prefix(name)))
        profiled = {
            key.rsplit("/", 1)[-1].removesuffix(".bin") for key in store.list(layout.batch_profiles_prefix(name))
        }
        for key in sorted(keys):
            raw = layout.batch_name_from_key(key)
            if raw is None:
                continue
            batch_id = layout.batch_id_from_key(key)
            if batch_id is None:
                if layout.batch_quarantine(name, layout.misnamed_batch_id(key)) not in keys:
                    misnamed.setdefault(name, []).append(key)
                continue
            if batch_id in profiled or layout.batch_quarantine(name, batch_id) in keys:
                continue
            pending.setdefault(name, []).append(batch_id)
    return BatchScan(pending=pending, misnamed=misnamed)


# A batch announced by `driftline ingest` (a driftline.batch.arrived record in the outbox) is left to the run its
# event starts for this long: a watch that profiled it too would do the work twice (the later run finds the
# profile and emits nothing, but pays for the profile and the scoring). Past it (that run crashed, or the event
# never reached the server and waits for reconcile) the watch profiles the batch itself.
ANNOUNCED_GRACE = timedelta(minutes=2)


def leave_announced(
    store: ObjectStore, model: str, batch_ids: list[str], now: datetime | None = None
) -> tuple[list[str], list[str]]:
    """(batch ids a watch profiles now, batch ids announced within ``ANNOUNCED_GRACE``, left to their runs)."""
    since = (now or datetime.now(UTC)) - ANNOUNCED_GRACE
    announced = records.announced_batches(store, model, batch_ids, since)
    return [b for b in batch_ids if b not in announced], [b for b in batch_ids if b in announced]


def pending_batches(store: ObjectStore, model: str | None = None) -> dict[str, list[str]]:
    """Batch ids, per model with a spec, that have neither a profile nor a quarantine record."""
    return scan_batches(store, model).pending


def check_labels(frame: pl.DataFrame, spec: ModelSpec, batch_ids: pl.Series, source: str) -> pl.DataFrame:
    """Validate a labels frame against the spec and its batch's ids; return it reduced to the label columns.

    Raises:
        InputError: an empty frame (labels are stored once, so an empty file would lock the real labels
            out), or listing every problem (missing columns, null or non-0/1 targets, duplicate or unknown ids).
    """
    if frame.height == 0:
        raise InputError(f"{source}: labels rejected: the file has 0 rows; nothing was stored")
    missing = [c for c in spec.labels_columns if c not in frame.columns]
    if missing:
        raise InputError(f"{source}: missing column(s) {missing}; a labels file has {spec.labels_columns}")
    frame = frame.select(spec.labels_columns)
    target = frame.get_column(spec.target)
    problems = []
    if target.null_count():
        problems.append(f"{target.null_count()} row(s) have no {spec.target!r}")
    if frame.get_column(spec.id_column).is_duplicated().any():
        problems.append(f"duplicate ids in {spec.id_column!r}")
    if spec.task == "binary":
        values = set(target.drop_nulls().unique().to_list())
        if not _numeric(target.dtype):
            problems.append(f"binary target {spec.target!r} is {target.dtype} (need 0/1 numbers)")
        elif not values <= {0, 1}:
            problems.append(f"binary target {spec.target!r} has values {sorted(map(str, values))[:5]} (need 0/1)")
    label_ids = frame.get_column(spec.id_column)
    if label_ids.dtype != batch_ids.dtype and not (label_ids.dtype.is_integer() and batch_ids.dtype.is_integer()):
        # Compared as they are, polars would raise a bare SchemaError on the join.
        problems.append(f"ids in {spec.id_column!r} are {label_ids.dtype}, the batch's ids are {batch_ids.dtype}")
    else:
        unknown = frame.join(batch_ids.to_frame(spec.id_column), on=spec.id_column, how="anti").height
        if unknown:
            problems.append(f"{unknown} id(s) are not in the batch")
    if problems:
        raise InputError(f"{source}: labels rejected: " + "; ".join(problems))
    return frame
