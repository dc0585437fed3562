"""Large batches on Dask: when to use it, a client, partitioned profiling and ``xgboost.dask`` training.

Nothing here needs Dask at import time: dask, distributed, s3fs and ``xgboost.dask`` are imported by the
functions that use them, so driftline works without the ``driftline[dask]`` extra, and asking for Dask
without it is one clear error (``DaskNotInstalledError``).

* ``use_dask(rows, settings)``: the rule (``DRIFTLINE_DASK_ADDRESS`` set, or ``rows >= DRIFTLINE_DASK_MIN_ROWS``).
* ``dask_client(settings)``: a client of the named scheduler, or of a ``LocalCluster`` on 127.0.0.1 with
  ``DRIFTLINE_DASK_WORKERS`` single-threaded worker processes and no dashboard.
* ``profile_parquet_partitioned``: row groups of one parquet file profiled in parallel with the same
  ``profiling.Profiler`` as the single-process path, the whylogs views merged. Counts, means and frequent
  items are those of a single pass; KLL quantiles are approximate within the sketch's own rank error
  (measured in tests/unit/test_dask.py; ``drift.py``'s noise floor already charges that error to each side).
* ``DaskFitter``: a ``training.Fitter`` on ``DaskQuantileDMatrix`` + ``xgboost.dask.train``. ``training.train``
  keeps encoding, params, early stopping, refit rounds and seed; only the boosting runs on the cluster.
  Deterministic for a fixed worker count (rows cut into one contiguous block per worker, placed on workers
  in name order, one thread each): the same data gives the same booster bytes. Another worker count gives
  another (equally valid) model.
* ``read_window``: a training window's features and labels read from their parquet partitions on the
  workers (S3 through s3fs with ``storage_options(settings)``, or local paths), joined per batch exactly as
  ``training.assemble_window`` does, and brought back as one frame sorted by (time, id).
"""

from __future__ import annotations

import dataclasses
import importlib
import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from driftline.data import profiling
from driftline.errors import InfrastructureError, InputError
from driftline.models import training
from driftline.models.spec import ModelSpec
from driftline.settings import Settings
from driftline.statistics.metrics import evaluate
from driftline.storage import layout

if TYPE_CHECKING:
    from whylogs.core import DatasetProfileView

EXTRA = "driftline[dask]"
LOCAL = "local"
# More tasks than workers evens out uneven row groups; each task's sketch adds merge error, so not many more.
TASKS_PER_WORKER = 2
CONNECT_TIMEOUT_SECONDS = 30


class DaskNotInstalledError(InfrastructureError):
    """Dask was asked for (by a setting) but the ``driftline[dask]`` extra is not installed."""


# --------------------------------------------------------------------------------------------- the rule
def use_dask(rows: int, settings: Settings) -> bool:
    """Whether ``rows`` rows (a batch or a training window) go to Dask.

    Yes when ``DRIFTLINE_DASK_ADDRESS`` names a scheduler (or ``local``), or when ``DRIFTLINE_DASK_MIN_ROWS``
    is set and ``rows`` reaches it (then a LocalCluster is used unless an address is set).
    """
    return dask_reason(rows, settings) is not None


def dask_reason(rows: int, settings: Settings) -> str | None:
    """Why ``use_dask`` says yes (the setting and its value), None when it says no."""
    if settings.dask_address:
        return f"DRIFTLINE_DASK_ADDRESS={settings.dask_address}"
    if settings.dask_min_rows is not None and rows >= settings.dask_min_rows:
        return f"{rows} rows >= DRIFTLINE_DASK_MIN_ROWS={settings.dask_min_rows}"
    return None


def require_dask(reason: str = "Dask was asked for") -> None:
    """Import dask, distributed and s3fs, or raise ``DaskNotInstalledError`` naming the extra.

    Raises:
        DaskNotInstalledError: one of them is missing; the message names it, ``reason`` and the extra.
    """
    for module in ("dask", "distributed", "s3fs"):
        try:
            importlib.import_module(module)
        except ImportError as error:
            raise DaskNotInstalledError(
                f"{reason}, but {module!r} is not installed: install the extra with "
                f"`pip install '{EXTRA}'`, or unset DRIFTLINE_DASK_ADDRESS and DRIFTLINE_DASK_MIN_ROWS "
                f"({error})"
            ) from error


# --------------------------------------------------------------------------------------------- the client
@contextmanager
def dask_client(settings: Settings) -> Iterator[Any]:
    """A ``distributed.Client``: of ``DRIFTLINE_DASK_ADDRESS``, or of a LocalCluster started and stopped here.

    The LocalCluster binds 127.0.0.1 only, has no dashboard, and runs ``DRIFTLINE_DASK_WORKERS`` worker
    processes with one thread each (what makes training reproducible for a fixed count).

    Raises:
        DaskNotInstalledError: the extra is missing.
        InfrastructureError: the scheduler at ``DRIFTLINE_DASK_ADDRESS`` cannot be reached.
    """
    address = settings.dask_address
    require_dask(f"DRIFTLINE_DASK_ADDRESS={address}" if address else "Dask was asked for")
    from distributed import Client, LocalCluster

    if address and address != LOCAL:
        try:
            client = Client(address, timeout=CONNECT_TIMEOUT_SECONDS)
        except (OSError, TimeoutError) as error:
            raise InfrastructureError(
                f"DRIFTLINE_DASK_ADDRESS={address}: no Dask scheduler reachable ({type(error).__name__}: {error}); "
                "start one (`dask scheduler`) or set it to 'local'"
            ) from error
        try:
            yield client
        finally:
            client.close()
        return
    with (
        LocalCluster(
            n_workers=settings.dask_workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            # No dashboard; its HTTP server (health routes) still starts: on a free loopback port, not 8787.
            scheduler_kwargs={"dashboard": False, "dashboard_address": "127.0.0.1:0"},
            silence_logs=40,  # logging.ERROR: worker start/stop chatter would flood task logs
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client


def worker_addresses(client: Any) -> list[str]:
    """The cluster's workers in name order (stable across runs of a LocalCluster: names 0, 1, ...)."""
    workers = client.scheduler_info(n_workers=-1)["workers"]
    return [address for address, _ in sorted(workers.items(), key=lambda item: (str(item[1]["name"]), item[0]))]


def _threads_per_worker(client: Any) -> int:
    workers = client.scheduler_info(n_workers=-1)["workers"].values()
    return max(1, min(int(worker["nthreads"]) for worker in workers))


# --------------------------------------------------------------------------------------------- S3 paths
def storage_options(settings: Settings) -> dict[str, Any]:
    """fsspec/s3fs options that reach the bucket the way ``S3Store.from_settings`` does."""
    options: dict[str, Any] = {"client_kwargs": {"region_name": settings.s3_region}}
    if settings.s3_endpoint_url:
        options["client_kwargs"]["endpoint_url"] = settings.s3_endpoint_url
    if settings.aws_access_key_id and settings.aws_secret_access_key:
        options["key"] = settings.aws_access_key_id.get_secret_value()
        options["secret"] = settings.aws_secret_access_key.get_secret_value()
    # Path-style, as S3Store: moto and MinIO serve it, virtual-host style needs DNS per bucket.
    options["config_kwargs"] = {"s3": {"addressing_style": "path"}}
    return options


def s3_url(settings: Settings, key: str) -> str:
    """``s3://bucket/prefix/key`` of a layout key."""
    prefix = settings.s3_prefix.strip("/")
    return f"s3://{settings.s3_bucket}/{prefix + '/' if prefix else ''}{key}"


def _open(source: str, options: dict[str, Any] | None):
    import fsspec

    return fsspec.open(source, "rb", **(options or {})).open()


# --------------------------------------------------------------------------------------------- profiling
@dataclass(frozen=True)
class PartitionedProfile:
    """A profile merged from partitions, and how it was cut."""

    view: DatasetProfileView
    rows: int
    partitions: int  # tasks, each a run of contiguous row groups
    row_groups: int
    workers: int


def _file_layout(source: str, options: dict[str, Any] | None) -> tuple[dict[str, pl.DataType], list[int]]:
    import pyarrow.parquet as pq

    try:
        with _open(source, options) as handle:
            schema = dict(pl.read_parquet_schema(handle))
            handle.seek(0)
            metadata = pq.ParquetFile(handle).metadata
            return schema, [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)]
    except FileNotFoundError as error:
        raise InputError(f"{source}: no such file") from error
    except (OSError, ValueError) as error:
        raise InputError(f"{source}: not a readable parquet file ({error})") from error


def _contiguous_groups(rows: Sequence[int], tasks: int) -> list[list[int]]:
    """Row-group indices cut into at most ``tasks`` contiguous runs of about equal rows."""
    total = sum(rows)
    if not rows:
        return []
    tasks = max(1, min(tasks, len(rows)))
    runs: list[list[int]] = [[]]
    seen = 0
    for index, count in enumerate(rows):
        # Start a new run once this one holds its share of the rows (and runs are left to fill).
        if runs[-1] and seen >= total * len(runs) / tasks and len(runs) < tasks:
            runs.append([])
        runs[-1].append(index)
        seen += count
    return runs


def _profile_row_groups(
    source: str,
    options: dict[str, Any] | None,
    row_groups: list[int],
    schema: dict[str, pl.DataType],
    columns: list[str] | None,
    chunk_rows: int,
) -> tuple[bytes, int]:
    """Runs on a worker: the serialised profile of some row groups, and their rows."""
    import pyarrow.parquet as pq

    profiler = profiling.Profiler(schema)
    with _open(source, options) as handle:
        parquet = pq.ParquetFile(handle, pre_buffer=False)
        for batch in parquet.iter_batches(batch_size=chunk_rows, row_groups=row_groups, columns=columns):
            profiler.update(pl.from_arrow(batch))  # type: ignore[arg-type]
    return profiling.serialize(profiler.view()), profiler.rows


def profile_parquet_partitioned(
    client: Any,
    source: str,
    columns: list[str] | None = None,
    *,
    options: dict[str, Any] | None = None,
    chunk_rows: int = profiling.DEFAULT_CHUNK_ROWS,
    tasks: int | None = None,
) -> PartitionedProfile:
    """Profile a parquet file's row groups on the cluster and merge the whylogs views.

    Args:
        client: a ``distributed.Client`` (``dask_client``).
        source: a local path (the workers must see it: a LocalCluster) or an ``s3://`` URL.
        columns: columns to profile; None is every sketchable column (as ``profiling.profile_parquet``).
        options: fsspec storage options for ``source`` (``storage_options(settings)`` for S3).
        chunk_rows: rows per ``Profiler.update`` on a worker.
        tasks: partitions; default ``TASKS_PER_WORKER`` per worker (never more than row groups).

    Returns:
        The merged view (a stock ``DatasetProfileView``, read by ``drift.py`` like any other) and the cut.

    Raises:
        InputError: the file is missing or unreadable, or lacks a requested column.
    """
    schema, group_rows = _file_layout(source, options)
    if columns is not None:
        absent = [name for name in columns if name not in schema]
        if absent:
            raise InputError(f"{source}: no column(s) {absent} in the file")
        schema = {name: schema[name] for name in columns}
    workers = len(worker_addresses(client))
    runs = _contiguous_groups(group_rows, tasks or TASKS_PER_WORKER * max(workers, 1))
    if not runs:  # no row group: the single-process path gives the empty profile of the schema
        return PartitionedProfile(profiling.Profiler(schema).view(), 0, 0, 0, workers)
    futures = [
        client.submit(_profile_row_groups, source, options, run, schema, columns, chunk_rows, pure=False)
        for run in runs
    ]
    results = client.gather(futures)
    # Merged in file order, so the same file and cut always give the same bytes.
    view = profiling.merge(
        profiling.deserialize(data, f"{source} row groups {run}") for (data, _), run in zip(results, runs, strict=True)
    )
    rows = sum(count for _, count in results)
    return PartitionedProfile(view, rows, len(runs), len(group_rows), workers)


def profile_batch_file(
    path: str,
    chunk_rows: int = profiling.DEFAULT_CHUNK_ROWS,
    columns: list[str] | None = None,
    *,
    settings: Settings,
    remote_url: str | None = None,
) -> DatasetProfileView:
    """``profiling.profile_parquet``'s drop-in: single-process below the Dask rule, partitioned above it.

    Args:
        path: the batch downloaded to local disk (validated there by ``batches.check_batch_file``).
        remote_url: where workers of a remote cluster read the same object (``s3_url``); a LocalCluster
            reads ``path``.
    """
    rows = sum(_file_layout(path, None)[1])
    reason = dask_reason(rows, settings)
    if reason is None:
        return profiling.profile_parquet(path, chunk_rows=chunk_rows, columns=columns)
    require_dask(reason)
    remote = bool(settings.dask_address) and settings.dask_address != LOCAL
    source, options = (remote_url, storage_options(settings)) if remote and remote_url else (str(path), None)
    with dask_client(settings) as client:
        return profile_parquet_partitioned(client, source, columns, options=options, chunk_rows=chunk_rows).view


# --------------------------------------------------------------------------------------------- training
def _blocks(array: np.ndarray, parts: int) -> list[np.ndarray]:
    return np.array_split(array, parts, axis=0)


@dataclass
class DaskFitter:
    """``training.Fitter`` on a Dask cluster: ``DaskQuantileDMatrix`` + ``xgboost.dask.train``.

    Rows are cut into one contiguous block per worker and each block is placed on its worker (workers in
    name order), so a fixed worker count always sees the same data layout; XGBoost runs with the workers'
    thread count (1 on ``dask_client``'s LocalCluster). Params otherwise as given (seed included).
    """

    client: Any

    def _distribute(self, data: training.FitData, workers: list[str]) -> tuple[Any, Any, Any]:
        import dask.array as da

        if not isinstance(data.x, np.ndarray):  # already dask arrays on the workers (``DaskWindow``)
            return data.x, data.y, data.weight

        parts = min(len(workers), max(1, data.x.shape[0]))

        def placed(array: np.ndarray | None) -> Any:
            if array is None:
                return None
            blocks = []
            for index, block in enumerate(_blocks(array, parts)):
                future = self.client.scatter(block, workers=[workers[index]], hash=False)
                blocks.append(da.from_delayed(future, shape=block.shape, dtype=block.dtype))
            return da.concatenate(blocks, axis=0)

        return placed(data.x), placed(data.y), placed(data.weight)

    def fit(
        self,
        params: dict[str, Any],
        matrix_options: dict[str, Any],
        data: training.FitData,
        *,
        num_boost_round: int,
        early_stop: training.FitData | None = None,
        early_stopping_rounds: int | None = None,
    ) -> Any:
        from xgboost import dask as dxgb

        workers = worker_addresses(self.client)
        if not workers:
            raise InfrastructureError(
                "the Dask cluster has no workers (DRIFTLINE_DASK_ADDRESS / DRIFTLINE_DASK_WORKERS)"
            )
        x, y, weight = self._distribute(data, workers)
        # Persisted together, so X, y and weights keep one partitioning (xgboost.dask refuses mismatched ones).
        x, y, weight = (None if part is None else part.persist() for part in (x, y, weight))
        matrix = dxgb.DaskQuantileDMatrix(self.client, x, y, weight=weight, **matrix_options)
        evals = []
        if early_stop is not None:
            ex, ey, ew = self._distribute(early_stop, workers)
            evals = [
                (dxgb.DaskQuantileDMatrix(self.client, ex, ey, weight=ew, ref=matrix, **matrix_options), "early_stop")
            ]
        result = dxgb.train(
            self.client,
            {**params, "nthread": _threads_per_worker(self.client)},
            matrix,
            num_boost_round=num_boost_round,
            evals=evals,
            early_stopping_rounds=early_stopping_rounds if early_stop is not None else None,
            verbose_eval=False,
        )
        return result["booster"]


def train_on_dask(
    client: Any, split: training.Split, spec: ModelSpec, progress: training.Progress | None = None
) -> training.TrainedModel:
    """``training.train`` with the boosting on the cluster (see ``DaskFitter``); same encoding, rounds, seed.

    The holdout stays on the client (it is a fraction, ``window.holdout_fraction``, of the window): metrics
    and every gate run on it there with the returned booster, a plain ``xgboost.Booster`` saved as UBJ.
    """
    threads = _threads_per_worker(client)
    trained = training.train(split, spec, threads, progress=progress, fitter=DaskFitter(client))
    # In the gate report: a model reproduces only on the same worker count.
    note = f"boosted on Dask: {len(worker_addresses(client))} worker(s) x {threads} thread(s)"
    return dataclasses.replace(trained, notes=(*trained.notes, note))


def dask_trainer(client: Any) -> Callable[[training.Split, ModelSpec, int], training.TrainedModel]:
    """A drop-in for ``training.train(split, spec, nthread)`` that boosts on ``client``'s cluster.

    Boosting uses the workers' threads (1 each on ``dask_client``'s LocalCluster); ``nthread`` is for the
    predictions the gates make afterwards in this process.
    """

    def train(split: training.Split, spec: ModelSpec, nthread: int) -> training.TrainedModel:
        trained = train_on_dask(client, split, spec)
        # The gates predict in this process: with its threads, not the workers' one (the bytes do not change).
        trained.booster.set_param({"nthread": nthread})
        return trained

    return train


@dataclass(frozen=True)
class WindowPart:
    """One batch of a window: where its features and labels parquet live (``s3://`` URLs or local paths).

    With the sha256 the store recorded (``ObjectStore.info``), a worker checks the bytes it read against it,
    so the lineage names exactly what trained ("" when the store recorded none: the read then fails).
    """

    batch_id: str
    features: str
    labels: str
    features_sha256: str | None = None
    labels_sha256: str | None = None


def window_parts(settings: Settings, model: str, batch_ids: Sequence[str]) -> list[WindowPart]:
    """The S3 URLs of the batches' features and labels (``layout`` keys under the settings' bucket)."""
    return [
        WindowPart(b, s3_url(settings, layout.batch_data(model, b)), s3_url(settings, layout.batch_labels(model, b)))
        for b in batch_ids
    ]


def _read_part(part: WindowPart, spec: ModelSpec, options: dict[str, Any] | None) -> pl.DataFrame:
    """Runs on a worker: one batch joined with its labels, as ``training.assemble_window`` joins them."""
    with _open(part.features, options) as handle:
        features = training._read_parquet(handle.read(), part.features, spec.batch_columns, "batch")
    with _open(part.labels, options) as handle:
        labels = training._read_parquet(handle.read(), part.labels, spec.labels_columns, "labels file")
    joined = training._join_batch(spec, part.batch_id, features, labels)
    return joined.drop_nulls([spec.time_column, spec.target]).filter(pl.col(spec.target).is_not_nan())


def read_window(
    client: Any, spec: ModelSpec, parts: Sequence[WindowPart], options: dict[str, Any] | None = None
) -> pl.DataFrame:
    """The window's labelled rows, read and joined on the workers (one task per batch), sorted by (time, id).

    Each worker reads its batch's features and labels (through s3fs for ``s3://`` URLs with ``options``),
    joins them and drops rows without a time or a target, as ``training.assemble_window`` does; the client
    gathers the joined rows, since the time split needs every row's (time, id) in order.

    Raises:
        InputError: no batches, a file lacks a spec column, labels are duplicated or not numeric, or no
            labelled rows remain.
    """
    if not parts:
        raise InputError(f"model {spec.name!r}: no batches in the window")
    futures = client.map(_read_part, list(parts), spec=spec, options=options, pure=False)
    frames = client.gather(futures)
    try:
        frame = pl.concat(frames, how="vertical_relaxed")
    except pl.exceptions.PolarsError as error:
        raise InputError(
            f"model {spec.name!r}: batches of the window have incompatible column types ({error})"
        ) from error
    if frame.height == 0:
        raise InputError(f"model {spec.name!r}: no labelled rows in {len(parts)} batch(es)")
    return frame.sort([spec.time_column, spec.id_column], maintain_order=True)


# --------------------------------------------------------------------------------------------- windows on the cluster
# Exact order statistics of the window's times without bringing them here: candidate values are narrowed
# with PIVOTS sampled values per part per round, then gathered once at most GATHER_LIMIT remain.
PIVOTS = 256
GATHER_LIMIT = 50_000


@dataclass
class _Part:
    """One batch of a window on its worker: labelled rows sorted by (time, id), and what lineage needs."""

    frame: pl.DataFrame
    joined: int  # joined rows before those without a time or a target were dropped
    time_kind: str
    times: np.ndarray  # physical event times of ``frame``, ascending


def _part(frame: pl.DataFrame, spec: ModelSpec, joined: int, time_kind: str) -> _Part:
    times = frame.get_column(spec.time_column).to_physical().to_numpy()
    return _Part(frame, joined, time_kind, times)


def _read_verified(source: str, options: dict[str, Any] | None, sha256: str | None) -> bytes:
    from driftline.storage.store import _verify

    with _open(source, options) as handle:
        data = handle.read()
    if sha256 is not None:
        _verify(source, data, sha256 or None, "window on Dask")  # the bytes the lineage names, or IntegrityError
    return data


def _load_part(part: WindowPart, spec: ModelSpec, options: dict[str, Any] | None) -> _Part:
    """Runs on a worker: one batch read, checked against the recorded sha256, joined as ``assemble_window``."""
    features = training._read_parquet(
        _read_verified(part.features, options, part.features_sha256), part.features, spec.batch_columns, "batch"
    )
    labels = training._read_parquet(
        _read_verified(part.labels, options, part.labels_sha256), part.labels, spec.labels_columns, "labels file"
    )
    time_kind = training._time_kind(features.schema[spec.time_column])
    joined = training._join_batch(spec, part.batch_id, features, labels)
    kept = joined.drop_nulls([spec.time_column, spec.target]).filter(pl.col(spec.target).is_not_nan())
    return _part(kept.sort([spec.time_column, spec.id_column], maintain_order=True), spec, joined.height, time_kind)


def _part_facts(part: _Part, spec: ModelSpec) -> dict[str, Any]:
    frame = part.frame
    facts: dict[str, Any] = {
        "rows": frame.height,
        "joined": part.joined,
        "time_kind": part.time_kind,
        "newest": frame.select(pl.col(spec.time_column).max()).item() if frame.height else None,
        "schema": {name: str(dtype) for name, dtype in frame.schema.items()},
    }
    if spec.task == "binary":
        bad = frame.filter(~pl.col(spec.target).is_in([0.0, 1.0])).get_column(spec.target)
        facts["bad_targets"] = (bad.len(), bad.unique().sort().head(5).to_list())
    return facts


def _restrict_part(part: _Part, spec: ModelSpec, newest: Any, onset: str | None) -> tuple[_Part, int]:
    """``restrict_days`` with the window's newest time; the rows at or after ``onset`` (``rules.rows_since``)."""
    from driftline.loop import retraining, rules

    frame = retraining.restrict_days_from(part.frame, spec, newest)
    return _part(frame, spec, part.joined, part.time_kind), rules.rows_since(frame, spec, onset)


def _weigh_part(part: _Part, spec: ModelSpec, onset: str, weight: float) -> _Part:
    """``rules.onset_weights``' column, once the window-wide rule said the window is weighted."""
    from driftline.loop import rules

    frame = part.frame
    after = rules._at_or_after(frame, spec, onset) if frame.height else pl.Series([], dtype=pl.Boolean)
    weights = np.where(after.to_numpy(), 1.0, weight).astype(np.float32)
    weighted = frame.with_columns(pl.Series(rules.WEIGHT_COLUMN, weights))
    weighted = weighted.filter(pl.col(rules.WEIGHT_COLUMN) > 0) if weight == 0 else weighted
    return _part(weighted, spec, part.joined, part.time_kind)


def _height(part: _Part) -> int:
    return part.frame.height


def _sample(part: _Part, lower: Any, upper: Any, pivots: int) -> tuple[int, np.ndarray]:
    """Times strictly inside (lower, upper) (None: unbounded): their count and up to ``pivots`` of them."""
    times = part.times
    start = 0 if lower is None else int(np.searchsorted(times, lower, side="right"))
    stop = len(times) if upper is None else int(np.searchsorted(times, upper, side="left"))
    inside = times[start:stop]
    if len(inside) <= pivots:
        return len(inside), inside.copy()
    return len(inside), inside[np.linspace(0, len(inside) - 1, pivots).astype(np.int64)]


def _counts(part: _Part, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.searchsorted(part.times, values, side="left"), np.searchsorted(part.times, values, side="right")


def _run_ids(part: _Part, spec: ModelSpec, value: Any) -> pl.Series:
    start, stop = np.searchsorted(part.times, value, side="left"), np.searchsorted(part.times, value, side="right")
    return part.frame.get_column(spec.id_column).slice(int(start), int(stop - start))


def _time_value(part: _Part, spec: ModelSpec, value: Any) -> Any:
    index = int(np.searchsorted(part.times, value, side="left"))
    if index < len(part.times) and part.times[index] == value:
        return part.frame.get_column(spec.time_column)[index]
    return None


@dataclass(frozen=True)
class _Boundary:
    """Where a later part starts: rows with time > value, or time == value and (no id, or id >= id)."""

    value: Any
    id: Any = None
    by_id: bool = False


def _later(frame: pl.DataFrame, times: np.ndarray, spec: ModelSpec, boundary: _Boundary) -> np.ndarray:
    later = times > boundary.value
    if boundary.by_id:
        equal = times == boundary.value
        ids = frame.get_column(spec.id_column)
        later |= equal & (ids >= boundary.id).fill_null(False).to_numpy()
    else:
        later |= times == boundary.value
    return later


def _split_part(
    part: _Part, spec: ModelSpec, early: _Boundary, holdout: _Boundary
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Runs on a worker: this batch's train, early-stop and holdout rows (still in (time, id) order)."""
    frame = part.frame
    if frame.height == 0:
        return frame, frame, frame
    in_holdout = _later(frame, part.times, spec, holdout)
    in_early = _later(frame, part.times, spec, early) & ~in_holdout
    return (
        frame.filter(pl.Series(~in_holdout & ~in_early)),
        frame.filter(pl.Series(in_early)),
        frame.filter(pl.Series(in_holdout)),
    )


def _pick(parts: tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame], index: int) -> pl.DataFrame:
    return parts[index]


def _categories(frames: Sequence[pl.DataFrame], spec: ModelSpec) -> dict[str, list[str]]:
    return {
        column: sorted(
            set().union(*(f.get_column(column).cast(pl.String).drop_nulls().unique().to_list() for f in frames))
        )
        for column in spec.features.categorical
    }


def _weight_facts(frame: pl.DataFrame) -> tuple[int, float] | None:
    from driftline.loop.rules import WEIGHT_COLUMN

    if WEIGHT_COLUMN not in frame.columns:
        return None
    weights = frame.get_column(WEIGHT_COLUMN).cast(pl.Float64, strict=True).to_numpy()
    bad = int(np.sum(~np.isfinite(weights) | (weights < 0)))
    return bad, float(weights.astype(np.float32).sum(dtype=np.float64))


def _encode(frame: pl.DataFrame, encoder: training.FeatureEncoder, spec: ModelSpec, what: str) -> Any:
    if what == "x":
        return encoder.encode(frame)
    if what == "y":
        return training._labels(frame, spec)
    # Checked window-wide before (``_weight_facts``); the values ``training._weights`` gives.
    return frame.get_column(training.WEIGHT_COLUMN).cast(pl.Float64, strict=True).to_numpy().astype(np.float32)


def _profile_part(frames: Sequence[pl.DataFrame], columns: list[str]) -> bytes:
    profiler = profiling.Profiler(dict(frames[0].select(columns).schema))
    for frame in frames:
        profiler.update(frame.select(columns))
    return profiling.serialize(profiler.view())


@dataclass(frozen=True)
class ClusterSplit:
    """The time split of a window on a cluster: the holdout brought here, the other parts' sizes and notes."""

    holdout: pl.DataFrame
    train_rows: int
    early_stop_rows: int
    ties_broken: bool = False
    notes: tuple[str, ...] = ()


class DaskWindow:
    """A window's batches read, joined, restricted, weighted and split on the workers (``WindowPart`` each).

    Each batch is one partition, pinned to a worker: batches cut into one contiguous run per worker, workers
    in name order (so a fixed worker count gives the same layout and the same booster bytes). Nothing but
    counts, the categorical levels, a few order statistics and the holdout comes back to this process.

    Raises (on construction):
        InputError: as ``training.assemble_window`` (a file lacks a column, duplicate or non-numeric labels,
            mixed time kinds, too few labelled rows, a binary target not 0/1).
        IntegrityError: an object's bytes do not match the sha256 recorded for the lineage.
    """

    def __init__(
        self,
        client: Any,
        spec: ModelSpec,
        parts: Sequence[WindowPart],
        options: dict[str, Any] | None,
        *,
        onset: str | None = None,
        drift_kind: str | None = None,
    ) -> None:
        from driftline.loop import rules

        if not parts:
            raise InputError(f"model {spec.name!r}: no batches in the window")
        self.client, self.spec, self.parts = client, spec, list(parts)
        workers = worker_addresses(client)
        if not workers:
            raise InfrastructureError(
                "the Dask cluster has no workers (DRIFTLINE_DASK_ADDRESS / DRIFTLINE_DASK_WORKERS)"
            )
        count = len(self.parts)
        self.placement = [workers[index * len(workers) // count] for index in range(count)]
        loaded = [
            self._on(worker, _load_part, part, spec, options)
            for part, worker in zip(self.parts, self.placement, strict=True)
        ]
        facts = client.gather([self._on(w, _part_facts, f, spec) for f, w in zip(loaded, self.placement, strict=True)])
        self.facts = facts
        model = spec.name
        kinds = {part.batch_id: fact["time_kind"] for part, fact in zip(self.parts, facts, strict=True)}
        if len(set(kinds.values())) > 1:
            raise InputError(
                f"model {model!r}: time column {spec.time_column!r} is temporal in some batches and not in others: "
                f"{kinds}"
            )
        rows = sum(fact["rows"] for fact in facts)
        minimum = spec.window.min_labelled_rows
        if rows < minimum:
            raise InputError(
                f"model {model!r}: {rows} labelled row(s) from {count} labelled batch(es) "
                f"(0 of {count} without labels) < window.min_labelled_rows {minimum}"
            )
        if spec.task == "binary":
            bad = sum(fact["bad_targets"][0] for fact in facts)
            if bad:
                examples = sorted({v for fact in facts for v in fact["bad_targets"][1]})[:5]
                raise InputError(
                    f"model {model!r}: binary target {spec.target!r} must be 0 or 1; {bad} row(s) are not, "
                    f"e.g. {examples}"
                )
        newests = [fact["newest"] for fact in facts if fact["newest"] is not None]
        newest = max(newests) if newests else None
        restricted = [
            self._on(w, _restrict_part, f, spec, newest if spec.window.last_days is not None else None, onset)
            for f, w in zip(loaded, self.placement, strict=True)
        ]
        pairs = client.gather([self._on(w, _since, r) for r, w in zip(restricted, self.placement, strict=True)])
        heights = [height for height, _ in pairs]
        self.rows_since_onset = sum(since for _, since in pairs) if onset is not None else sum(heights)
        self.futures = [self._on(w, _first, r) for r, w in zip(restricted, self.placement, strict=True)]
        # rules.onset_weights' rule, on the window's counts.
        weight = rules.onset_weight(spec, drift_kind)
        newer, height = self.rows_since_onset, sum(heights)
        self.weighted = not (
            onset is None
            or weight >= 1
            or height == 0
            or newer < max(spec.window.min_rows_since_drift, 1)
            or newer == height
        )
        if self.weighted:
            self.futures = [
                self._on(w, _weigh_part, f, spec, onset, weight)
                for f, w in zip(self.futures, self.placement, strict=True)
            ]
        self.heights = client.gather(
            [self._on(w, _height, f) for f, w in zip(self.futures, self.placement, strict=True)]
        )
        self.rows = sum(self.heights)
        del loaded, restricted

    def _on(self, worker: str, function: Callable[..., Any], *args: Any) -> Any:
        return self.client.submit(function, *args, workers=[worker], allow_other_workers=False, pure=False)

    def batches_used(self, etags: dict[str, tuple[str, str]]) -> list[training.BatchUsed]:
        """Lineage as ``assemble_window`` records it; ``etags``: batch id -> (features, labels) ETags."""
        return [
            training.BatchUsed(
                batch_id=part.batch_id,
                rows=fact["rows"],
                features_etag=etags[part.batch_id][0],
                labels_etag=etags[part.batch_id][1],
                dropped_rows=fact["joined"] - fact["rows"],
            )
            for part, fact in zip(self.parts, self.facts, strict=True)
        ]

    # ---- exact order statistics of the times, ``training.time_split``'s cuts
    def _gather_each(self, function: Callable[..., Any], *args: Any) -> list[Any]:
        return self.client.gather(
            [self._on(w, function, f, *args) for f, w in zip(self.futures, self.placement, strict=True)]
        )

    def count_below(self, value: Any) -> tuple[int, int]:
        """(rows with time < value, rows with time <= value) over the window."""
        counts = self._gather_each(_counts, np.asarray([value]))
        return int(sum(c[0][0] for c in counts)), int(sum(c[1][0] for c in counts))

    def value_at(self, index: int) -> Any:
        """The ``index``-th physical time in ascending order, exactly (rows stay on the workers)."""
        lower, upper, below = None, None, 0  # the answer is in (lower, upper); ``below`` rows are <= lower
        while True:
            samples = self._gather_each(_sample, lower, upper, PIVOTS)
            inside = sum(count for count, _ in samples)
            if inside <= GATHER_LIMIT:
                values = np.sort(np.concatenate([s for _, s in self._gather_each(_sample, lower, upper, GATHER_LIMIT)]))
                return values[index - below]
            pivots = np.unique(np.concatenate([values for _, values in samples]))
            counts = self._gather_each(_counts, pivots)
            less = np.sum([c[0] for c in counts], axis=0)
            at_most = np.sum([c[1] for c in counts], axis=0)
            hit = np.flatnonzero((less <= index) & (index < at_most))
            if hit.size:
                return pivots[hit[0]]
            above = np.flatnonzero(at_most > index)
            if above.size:
                upper = pivots[above[0]]
            if above.size == 0 or above[0] > 0:
                last = (above[0] if above.size else len(pivots)) - 1
                lower, below = pivots[last], int(at_most[last])

    def _cut(self, desired: int, upper: int, what: str) -> tuple[int, _Boundary, str | None]:
        cache: dict[Any, tuple[int, int]] = {}

        def counts(value: Any) -> tuple[int, int]:
            if value not in cache:
                cache[value] = self.count_below(value)
            return cache[value]

        values: dict[int, Any] = {}

        def value_at(index: int) -> Any:
            if index not in values:
                values[index] = self.value_at(index)
            return values[index]

        cut, run = training.cut_sorted(
            value_at,
            lambda v: min(counts(v)[0], upper),
            lambda v: min(counts(v)[1], upper),
            desired,
            0,
            upper,
        )
        value = value_at(cut)
        if run is None:
            return cut, _Boundary(value), None
        first, after = run
        ids = pl.concat(self._gather_each(_run_ids, self.spec, value)).sort()
        boundary = _Boundary(value, ids[cut - first], by_id=True)
        shown = next(v for v in self._gather_each(_time_value, self.spec, value) if v is not None)
        note = (
            f"{what} cut inside {after - first} rows sharing {self.spec.time_column} {shown} "
            f"({cut - first} before, {after - cut} after): ties broken by {self.spec.id_column}"
        )
        return cut, boundary, note

    def split(self) -> tuple[ClusterSplit, list[Any], list[Any]]:
        """``training.time_split`` on the cluster: the holdout here, the train and early-stop parts there."""
        window, rows = self.spec.window, self.rows
        if rows < 3:
            raise InputError(
                f"model {self.spec.name!r}: {rows} row(s) cannot be split into train, early stop and holdout"
            )
        notes = []
        holdout_rows = max(1, math.floor(rows * window.holdout_fraction + 0.5))
        holdout_start, holdout, note = self._cut(rows - holdout_rows, rows, "holdout")
        notes += [note] if note else []
        early_rows = max(1, math.floor(holdout_start * window.early_stop_fraction + 0.5))
        early_start, early, note = self._cut(holdout_start - early_rows, holdout_start, "early-stopping")
        notes += [note] if note else []
        pieces = [
            self._on(w, _split_part, f, self.spec, early, holdout)
            for f, w in zip(self.futures, self.placement, strict=True)
        ]
        train = [self._on(w, _pick, p, 0) for p, w in zip(pieces, self.placement, strict=True)]
        early_parts = [self._on(w, _pick, p, 1) for p, w in zip(pieces, self.placement, strict=True)]
        held = self.client.gather([self._on(w, _pick, p, 2) for p, w in zip(pieces, self.placement, strict=True)])
        frame = pl.concat(held, how="vertical_relaxed").sort(
            [self.spec.time_column, self.spec.id_column], maintain_order=True
        )
        if frame.height != rows - holdout_start:
            raise InfrastructureError(
                f"holdout has {frame.height} rows on the cluster, {rows - holdout_start} expected"
            )
        split = ClusterSplit(frame, early_start, holdout_start - early_start, bool(notes), tuple(notes))
        return split, train, early_parts


def _since(restricted: tuple[_Part, int]) -> tuple[int, int]:
    return restricted[0].frame.height, restricted[1]


def _first(restricted: tuple[_Part, int]) -> _Part:
    return restricted[0]


def _assemble(frames: Sequence[pl.DataFrame]) -> pl.DataFrame:
    return pl.concat(list(frames), how="vertical_relaxed") if len(frames) > 1 else frames[0]


class ClusterWindowTrainer:
    """``retraining.ClusterTrainer`` of a window read from its parquet partitions by ``DaskWindow``.

    ``training.train``'s steps with the rows on the workers: the split as ``time_split`` (exact cuts), the
    categorical levels gathered from the train and early-stop parts (sorted, as ``FeatureEncoder.fit``),
    each part encoded on its worker, ``training.fit_and_refit`` on ``DaskFitter``; the holdout metrics
    and every gate run here on the holdout.
    """

    def __init__(self, window: DaskWindow) -> None:
        self.window = window

    def train(
        self, spec: ModelSpec, nthread: int, progress: Callable[[str], None]
    ) -> tuple[ClusterSplit, training.TrainedModel]:
        import time

        import dask.array as da

        window, client = self.window, self.window.client
        started = time.perf_counter()
        split, train_parts, early_parts = window.split()
        progress(
            f"training on {split.train_rows} rows, early stopping on {split.early_stop_rows}, then the final model "
            f"on both ({split.train_rows + split.early_stop_rows} rows), on Dask from {len(window.parts)} "
            f"parquet partition(s)"
        )
        placed = list(zip(window.placement, train_parts, early_parts, strict=True))
        levels = client.gather([window._on(w, _part_categories, t, e, spec) for w, t, e in placed])
        encoder = training.FeatureEncoder.from_categories(
            spec, {c: [v for level in levels for v in level[c]] for c in spec.features.categorical}
        )
        for what, parts in (("training", train_parts), ("early-stopping", early_parts)):
            facts = client.gather(
                [window._on(w, _weight_facts_of, p) for w, p in zip(window.placement, parts, strict=True)]
            )
            if facts and facts[0] is not None:
                bad = sum(f[0] for f in facts)
                if bad:
                    raise InputError(
                        f"{what} rows: {bad} weight(s) in {training.WEIGHT_COLUMN!r} are missing, negative or infinite"
                    )
                if not sum(f[1] for f in facts) > 0:
                    raise InputError(f"{what} rows: every weight in {training.WEIGHT_COLUMN!r} is 0")
        weighted = window.weighted
        params = training.training_params(spec, _threads_per_worker(client))
        say = progress
        say(
            f"training {spec.name}: {split.train_rows} train, {split.early_stop_rows} early-stop, "
            f"{split.holdout.height} holdout rows; {len(encoder.features)} features"
            + ("; weighted" if weighted else "")
        )
        width = len(encoder.features)

        def arrays(parts: list[Any], rows: list[int]) -> training.FitData:
            def stacked(what: str, shape: Callable[[int], tuple[int, ...]], dtype: Any) -> Any:
                blocks = [
                    da.from_delayed(window._on(w, _encode, p, encoder, spec, what), shape=shape(n), dtype=dtype)
                    for w, p, n in zip(window.placement, parts, rows, strict=True)
                    if n
                ]
                return da.concatenate(blocks, axis=0)

            return training.FitData(
                stacked("x", lambda n: (n, width), np.float32),
                stacked("y", lambda n: (n,), np.float32),
                stacked("w", lambda n: (n,), np.float32) if weighted else None,
            )

        train_rows = client.gather(
            [window._on(w, _frame_height, p) for w, p in zip(window.placement, train_parts, strict=True)]
        )
        early_rows = client.gather(
            [window._on(w, _frame_height, p) for w, p in zip(window.placement, early_parts, strict=True)]
        )
        train_data, early_data = arrays(train_parts, train_rows), arrays(early_parts, early_rows)

        def refit_data() -> tuple[training.FitData, float]:
            # Train rows then early-stop rows, as ``training.train`` concatenates them.
            both = training.FitData(
                da.concatenate([train_data.x, early_data.x]),
                da.concatenate([train_data.y, early_data.y]),
                None if not weighted else da.concatenate([train_data.weight, early_data.weight]),
            )
            if not weighted:
                return both, (split.train_rows + split.early_stop_rows) / split.train_rows
            sums = client.compute([train_data.weight.sum(dtype=np.float64), early_data.weight.sum(dtype=np.float64)])
            train_sum, early_sum = (float(s) for s in client.gather(sums))
            return both, (train_sum + early_sum) / train_sum

        booster, best_iteration, rounds, refit_rounds, notes = training.fit_and_refit(
            spec,
            params,
            training.matrix_options(encoder),
            DaskFitter(client),
            train_data,
            early_data,
            refit_data,
            early_rows=split.early_stop_rows,
            say=say,
            train_rows=split.train_rows,
        )
        train_seconds = time.perf_counter() - started
        for note in notes:
            say(note)
        if refit_rounds is not None:
            say(f"refit {refit_rounds} rounds on {split.train_rows + split.early_stop_rows} train + early-stop rows")
        booster.set_param({"nthread": nthread})  # the gates predict here, with this process's threads
        metrics = evaluate(
            spec.task, training._labels(split.holdout, spec), training.predict(booster, encoder, split.holdout)
        )
        say("holdout " + ", ".join(f"{name} {value:.4f}" for name, value in metrics.items()))
        workers = len(worker_addresses(client))
        note = (
            f"trained on Dask from {len(window.parts)} parquet partition(s): {workers} worker(s) x "
            f"{_threads_per_worker(client)} thread(s); holdout brought to the gates whole"
        )
        trained = training.TrainedModel(
            booster=booster,
            encoder=encoder,
            best_iteration=best_iteration,
            rounds=rounds,
            metrics=metrics,
            importances=training._gain_importances(booster, encoder),
            train_seconds=train_seconds,
            params=params,
            refit_rounds=refit_rounds,
            notes=(*notes, note),
        )
        return split, trained

    def profile(self, columns: list[str]) -> Any:
        """The window's ``columns`` profiled on the workers (one partition each), merged in batch order."""
        window = self.window
        data = window.client.gather(
            [
                window._on(w, _profile_window_part, f, columns)
                for f, w in zip(window.futures, window.placement, strict=True)
            ]
        )
        return profiling.merge(profiling.deserialize(d, "window partition") for d in data)


def _part_categories(train: pl.DataFrame, early: pl.DataFrame, spec: ModelSpec) -> dict[str, list[str]]:
    return _categories([train, early], spec)


def _weight_facts_of(frame: pl.DataFrame) -> tuple[int, float] | None:
    return _weight_facts(frame)


def _frame_height(frame: pl.DataFrame) -> int:
    return frame.height


def _profile_window_part(part: _Part, columns: list[str]) -> bytes:
    return _profile_part([part.frame], columns)


# --------------------------------------------------------------------------------------------- the retrain window
def window_rows(parts: Sequence[WindowPart], options: dict[str, Any] | None) -> int:
    """Rows of the window's batches from their parquet footers (ranged reads; no data is downloaded).

    An upper bound of the labelled rows (``use_dask``'s count for a retrain window).
    """
    return sum(sum(_file_layout(part.features, options)[1]) for part in parts)


def locate_parts(
    store: Any, spec: ModelSpec, batch_ids: Sequence[str], locate: Callable[[str], str]
) -> tuple[list[WindowPart], dict[str, tuple[str, str]], list[str]]:
    """Where workers read each batch, the ETags for the lineage and the batches without labels.

    Only head requests (``ObjectStore.info``): the ETag and sha256 the store recorded for each object.

    Raises:
        ObjectNotFoundError: a batch's features object does not exist.
        InputError: a batch id is listed twice.
    """
    labelled, unlabelled = training.labelled_batches(store, spec.name, batch_ids, store.info)
    parts, etags = [], {}
    for batch_id, features_key, labels_key, features, labels in labelled:
        parts.append(WindowPart(batch_id, locate(features_key), locate(labels_key), features.sha256, labels.sha256))
        etags[batch_id] = (features.etag, labels.etag)
    return parts, etags, unlabelled


def open_window(
    client: Any, spec: ModelSpec, request: Any, parts: Sequence[WindowPart], options: dict[str, Any] | None
) -> DaskWindow:
    """The window on the cluster, restricted and weighted for ``request`` as ``retraining.prepare_window``."""
    onset = request.drift_onset if request.trigger == "drift" else None
    return DaskWindow(client, spec, parts, options, onset=onset, drift_kind=request.drift_kind)


def prepare_window(
    client: Any,
    store: Any,
    spec: ModelSpec,
    request: Any,
    locate: Callable[[str], str],
    options: dict[str, Any] | None,
) -> tuple[Any, DaskWindow | None]:
    """``retraining.prepare_window`` with the rows left in their parquet partitions, read by the workers.

    The same batches (``retraining.window_batch_ids``), lineage (ETags from head requests; the workers check
    the bytes they read against the recorded sha256), rows, rows since the onset and weights; the
    ``PreparedWindow`` holds no rows (``cluster`` says where they are).

    Returns:
        The prepared window, and the window on the cluster (None with a shortfall).

    Raises:
        InputError: too little labelled data for a manual retrain (a drift one gets the ``shortfall``).
    """
    from driftline.loop import retraining

    notes: list[str] = []
    try:
        ids, notes = retraining.window_batch_ids(store, spec)
        parts, etags, unlabelled = locate_parts(store, spec, ids, locate)
        window = open_window(client, spec, request, parts, options)
    except InputError as error:
        if request.trigger == "manual":
            raise
        return retraining.PreparedWindow(None, pl.DataFrame(), 0, shortfall=str(error), notes=notes), None
    data = training.TrainingData(frame=pl.DataFrame(), batches=window.batches_used(etags), unlabelled=unlabelled)
    cluster = retraining.ClusterWindow(parts=parts, rows=window.rows, weighted=window.weighted)
    prepared = retraining.PreparedWindow(data, pl.DataFrame(), window.rows_since_onset, notes=notes, cluster=cluster)
    return prepared, window
