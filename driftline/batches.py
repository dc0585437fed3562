"""Feature batches: validation against the spec, quarantine of bad ones, profiling of stored ones."""

from __future__ import annotations

import contextlib
import json
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from driftline import layout, profiling
from driftline.errors import ConflictError, InputError, ObjectNotFoundError
from driftline.spec import ModelSpec
from driftline.store import ObjectStore


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
    time column temporal or integer epoch); not empty; ids present and unique.

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
            ids = pl.read_parquet(path, columns=[spec.id_column]).get_column(spec.id_column)
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
    return BatchCheck(source=source, rows=rows, problems=problems)


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


def quarantine(store: ObjectStore, model: str, batch_id: str, check: BatchCheck) -> str:
    """Record why a batch was rejected (idempotent); return the record's key."""
    key = layout.batch_quarantine(model, batch_id)
    record = {
        "model": model,
        "batch_id": batch_id,
        "batch_key": layout.batch_data(model, batch_id),
        "problems": check.problems,
        "rejected_at": datetime.now(UTC).isoformat(),
    }
    with contextlib.suppress(ConflictError):
        store.create(key, json.dumps(record, indent=2).encode(), content_type="application/json")
    return key


def profile_stored_batch(
    store: ObjectStore, spec: ModelSpec, batch_id: str, chunk_rows: int = profiling.DEFAULT_CHUNK_ROWS
) -> ProfiledBatch:
    """Download, validate and profile ``datasets/<model>/batches/<batch_id>.parquet``; store the profile.

    The profile is created with a conditional write: when another run already stored it, that profile
    is kept and ``already_profiled`` is set. A batch that fails validation gets no profile (the caller
    quarantines it).

    Raises:
        ObjectNotFoundError: no such batch.
    """
    model = spec.name
    started = time.monotonic()
    profile_key = layout.batch_profile(model, batch_id)
    batch_key = layout.batch_data(model, batch_id)
    with tempfile.TemporaryDirectory(prefix="driftline-batch-") as scratch:
        local = Path(scratch) / "batch.parquet"
        try:
            store.download(batch_key, local)
        except ObjectNotFoundError as error:
            raise ObjectNotFoundError(f"no batch {batch_id!r} for model {model!r} ({batch_key})") from error
        check = check_batch_file(local, spec, source=batch_key)
        if not check.ok:
            return ProfiledBatch(model, batch_id, check, None, check.rows, time.monotonic() - started)
        if store.exists(profile_key):
            return ProfiledBatch(
                model, batch_id, check, profile_key, check.rows, time.monotonic() - started, already_profiled=True
            )
        columns = spec.batch_columns
        view = profiling.profile_parquet(local, chunk_rows=chunk_rows, columns=columns)
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
    )


def _time_range(path: Path, column: str) -> tuple[str | None, str | None]:
    row = pl.scan_parquet(path).select(pl.col(column).min().alias("a"), pl.col(column).max().alias("b")).collect()

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


def pending_batches(store: ObjectStore, model: str | None = None) -> dict[str, list[str]]:
    """Batch ids, per model with a spec, that have neither a profile nor a quarantine record."""
    if model is not None:
        models = [model]
    else:
        models = [m for m in map(layout.model_from_spec_key, store.list(layout.models_prefix())) if m]
    pending: dict[str, list[str]] = {}
    for name in models:
        keys = set(store.list(layout.batches_prefix(name)))
        profiled = {
            key.rsplit("/", 1)[-1].removesuffix(".bin") for key in store.list(layout.batch_profiles_prefix(name))
        }
        waiting = []
        for key in sorted(keys):
            batch_id = layout.batch_id_from_key(key)
            if batch_id is None or batch_id in profiled:
                continue
            if layout.batch_quarantine(name, batch_id) in keys:
                continue
            waiting.append(batch_id)
        if waiting:
            pending[name] = waiting
    return pending


def check_labels(frame: pl.DataFrame, spec: ModelSpec, batch_ids: pl.Series, source: str) -> pl.DataFrame:
    """Validate a labels frame against the spec and its batch's ids; return it reduced to the label columns.

    Raises:
        InputError: listing every problem (missing columns, null or non-0/1 targets, duplicate or unknown ids).
    """
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
        if not values <= {0, 1}:
            problems.append(f"binary target {spec.target!r} has values {sorted(map(str, values))[:5]} (need 0/1)")
    unknown = frame.join(batch_ids.to_frame(spec.id_column), on=spec.id_column, how="anti").height
    if unknown:
        problems.append(f"{unknown} id(s) are not in the batch")
    if problems:
        raise InputError(f"{source}: labels rejected: " + "; ".join(problems))
    return frame
