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
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from driftline import layout, profiling, training
from driftline.errors import InfrastructureError, InputError
from driftline.settings import Settings
from driftline.spec import ModelSpec

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
    """One batch of a window: where its features and labels parquet live (``s3://`` URLs or local paths)."""

    batch_id: str
    features: str
    labels: str


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
