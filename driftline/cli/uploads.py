"""Putting a batch or its labels on S3 and announcing it: shared by `ingest`, `labels` and `demo`.

Objects first (conditional create), event last through the S3 outbox of the event sink (whose store the
objects go to), so a lost event is re-sent by reconcile and a repeated upload is refused instead of
overwriting what flows already read.
"""

from __future__ import annotations

import io
import json
from typing import NamedTuple

import polars as pl

from driftline.data.batches import check_labels
from driftline.errors import ConflictError, InfrastructureError, InputError, IntegrityError, ObjectNotFoundError
from driftline.events.records import BATCH_ARRIVED, LABELS_ARRIVED, new_event
from driftline.events.sink import EventSink
from driftline.models.spec import ModelSpec
from driftline.storage import layout
from driftline.storage.store import ObjectStore


class SubmittedBatch(NamedTuple):
    key: str
    event_id: str
    announced: bool  # False: the Prefect server was unreachable; the event waits in the S3 outbox


def submit_batch(
    events: EventSink,
    model: str,
    batch_id: str,
    data: bytes,
    *,
    queue_if_unreachable: bool = False,
) -> SubmittedBatch:
    """Store a features batch in the sink's store and announce ``driftline.batch.arrived``.

    With ``queue_if_unreachable`` a Prefect server that cannot be reached (or none configured) is not an
    error: the batch is stored and its event stays in the S3 outbox, which watch-batches re-sends every
    minute once the server answers (and it profiles the batch itself regardless).
    """
    store = events.store
    key = layout.batch_data(model, batch_id)
    try:
        store.create(key, data, content_type="application/vnd.apache.parquet")
    except ConflictError as error:
        raise InputError(
            f"batch {batch_id!r} of model {model!r} already exists ({key}); choose another --batch-id"
        ) from error
    record = new_event(model, BATCH_ARRIVED, {"batch_id": batch_id, "key": key})
    if not queue_if_unreachable:
        return SubmittedBatch(key, events.publish(record), True)
    try:
        events.publish(record)
    except InfrastructureError:
        events.keep(record)  # idempotent: the same record, whether or not publish wrote it already
        return SubmittedBatch(key, record.event_id, False)
    return SubmittedBatch(key, record.event_id, True)


def submit_labels(
    events: EventSink, spec: ModelSpec, batch_id: str, frame: pl.DataFrame, source: str
) -> tuple[str, int, float]:
    """Validate, store (in the sink's store) and announce a batch's labels; return (key, rows, share of the
    batch labelled).

    Refused, with nothing stored: an empty labels frame and labels of a quarantined batch (labels are
    stored once, and a quarantined batch's labels would make every later retrain fail).
    """
    store = events.store
    batch_key = layout.batch_data(spec.name, batch_id)
    _refuse_quarantined(store, spec.name, batch_id, source)
    try:
        data = store.get(batch_key)
    except ObjectNotFoundError as error:
        raise InputError(f"batch {batch_id!r} of model {spec.name!r} does not exist; ingest it first") from error
    except IntegrityError as error:
        if store.info(batch_key).sha256:
            raise
        raise InputError(
            f"{source}: batch {batch_id!r} ({batch_key}) was written by another tool and is not verified yet; "
            "store its labels once `watch-batches` has profiled it"
        ) from error
    batch = pl.read_parquet(io.BytesIO(data), columns=[spec.id_column])
    frame = check_labels(frame, spec, batch.get_column(spec.id_column), source)
    buffer = io.BytesIO()
    frame.write_parquet(buffer)
    key = layout.batch_labels(spec.name, batch_id)
    try:
        store.create(key, buffer.getvalue(), content_type="application/vnd.apache.parquet")
    except ConflictError as error:
        raise InputError(f"labels for batch {batch_id!r} already exist ({key})") from error
    payload = {"batch_id": batch_id, "key": key, "rows": frame.height}
    events.publish(new_event(spec.name, LABELS_ARRIVED, payload))
    return key, frame.height, frame.height / max(batch.height, 1)


def _refuse_quarantined(store: ObjectStore, model: str, batch_id: str, source: str) -> None:
    record_key = layout.batch_quarantine(model, batch_id)
    try:
        record = json.loads(store.get(record_key))
    except ObjectNotFoundError:
        return
    problems = record.get("problems") if isinstance(record, dict) else None
    listed = "; ".join(map(str, problems)) if problems else "no problems recorded"
    raise InputError(
        f"{source}: labels refused: batch {batch_id!r} of model {model!r} is quarantined ({record_key}: {listed}); "
        "ingest a corrected batch under a new --batch-id and label that one"
    )
