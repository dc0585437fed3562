"""Event names and resource ids of driftline's Prefect events (docs/architecture.md section 6).

Pure data and the outbox's records: publishing and reconcile are ``driftline.events.sink.EventSink``'s.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import threading
import uuid
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from driftline.errors import ConflictError, InfrastructureError, IntegrityError, ObjectNotFoundError
from driftline.storage import layout
from driftline.storage.layout import validate_name
from driftline.storage.store import ObjectStore

BATCH_ARRIVED = "driftline.batch.arrived"
LABELS_ARRIVED = "driftline.labels.arrived"
BATCH_PROFILED = "driftline.batch.profiled"
BATCH_REJECTED = "driftline.batch.rejected"
DRIFT_DETECTED = "driftline.drift.detected"
PERFORMANCE_DEGRADED = "driftline.performance.degraded"
CANDIDATE_REGISTERED = "driftline.candidate.registered"
CANDIDATE_REJECTED = "driftline.candidate.rejected"
SHADOW_DECIDED = "driftline.shadow.decided"
MODEL_PROMOTED = "driftline.model.promoted"
MODEL_ROLLED_BACK = "driftline.model.rolled_back"
SCORING_FAILED = "driftline.scoring.failed"
# Labels arrived while a drift-triggered retrain waits for them: its re-check is due (shadow-evaluate sends
# it, the retrain deployment's labels trigger answers), so no retrain run starts when nothing waits.
RETRAIN_DUE = "driftline.retrain.due"
STACK_CHECKED = "driftline.stack.checked"

MODEL_EVENTS = (
    BATCH_ARRIVED,
    LABELS_ARRIVED,
    BATCH_PROFILED,
    BATCH_REJECTED,
    DRIFT_DETECTED,
    PERFORMANCE_DEGRADED,
    CANDIDATE_REGISTERED,
    CANDIDATE_REJECTED,
    SHADOW_DECIDED,
    MODEL_PROMOTED,
    MODEL_ROLLED_BACK,
    SCORING_FAILED,
    RETRAIN_DUE,
)


def model_resource_id(model: str) -> str:
    """Resource id every model event carries, matched by triggers as ``driftline.model.*``."""
    return f"driftline.model.{validate_name(model, 'model')}"


def stack_check_resource_id(nonce: str) -> str:
    return f"driftline.stack-check.{validate_name(nonce, 'stack-check nonce')}"


# --------------------------------------------------------------------------------------------- payloads
_URL_USERINFO = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)[^/@\s]+@", re.IGNORECASE)
_SECRET_PARAM = re.compile(
    r"(?P<name>[\w-]*(?:token|secret|password|passwd|signature|credential|api[_-]?key|access[_-]?key)[\w-]*)"
    r"(?P<sep>\s*[=:]\s*)(?P<value>[^\s&,;'\"]+)",
    re.IGNORECASE,
)
_BEARER = re.compile(r"\b(?P<scheme>bearer|basic)\s+[\w.~+/=-]+", re.IGNORECASE)
ERROR_MESSAGE_LIMIT = 500


def redact(message: str, limit: int = ERROR_MESSAGE_LIMIT) -> str:
    """An error message fit for an event payload: URL credentials and token-like values masked, cut at
    ``limit`` characters."""
    cleaned = _URL_USERINFO.sub(r"\g<scheme>***@", message)
    cleaned = _SECRET_PARAM.sub(r"\g<name>\g<sep>***", cleaned)
    cleaned = _BEARER.sub(r"\g<scheme> ***", cleaned)
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 3] + "..."


def failure_kind(error: BaseException) -> str:
    """What kind of failure stopped scoring: ``integrity`` (a stored object does not match its sha256),
    ``missing`` (an object is not there), ``infrastructure`` (a service is down) or ``error``."""
    if isinstance(error, IntegrityError):
        return "integrity"
    if isinstance(error, ObjectNotFoundError):
        return "missing"
    if isinstance(error, InfrastructureError):
        return "infrastructure"
    return "error"


def scoring_failed_payload(batch_id: str, version: str | None, error: BaseException) -> dict[str, Any]:
    """Payload of ``driftline.scoring.failed``: which batch and champion, the kind and the redacted message."""
    message = str(error) or type(error).__name__
    return {
        "batch_id": batch_id,
        "version": version,
        "role": "champion",
        "kind": failure_kind(error),
        "error_type": type(error).__name__,
        "error": redact(message),
    }


# --------------------------------------------------------------------------------------------- outbox
_CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz"


_ulid_lock = threading.Lock()
_ulid_last: list[int] = [0, 0]  # millisecond, random part of the last ULID made by this process


def new_ulid(now: datetime | None = None) -> str:
    """A lowercase ULID: 48-bit millisecond time + 80 random bits, lexicographically time-ordered.

    Monotonic within a process: a second ULID in the same millisecond increments the random part, so
    records written in quick succession (audit, outbox) list in the order they were made.
    """
    moment = now or datetime.now(UTC)
    millisecond = int(moment.timestamp() * 1000)
    with _ulid_lock:
        if now is None and millisecond <= _ulid_last[0]:
            millisecond, random_part = _ulid_last[0], (_ulid_last[1] + 1) % (1 << 80)
        else:
            random_part = int.from_bytes(os.urandom(10), "big") >> 1  # headroom for increments
        if now is None:
            _ulid_last[:] = [millisecond, random_part]
    value = (millisecond << 80) | random_part
    chars = []
    for _ in range(26):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def ulid_time(ulid: str) -> datetime:
    """The moment (millisecond) a ULID of ``new_ulid`` was made."""
    millisecond = 0
    for char in ulid[:10]:
        millisecond = (millisecond << 5) | _CROCKFORD.index(char)
    return datetime.fromtimestamp(millisecond / 1000, UTC)


def ulid_to_uuid(ulid: str) -> str:
    value = 0
    for char in ulid:
        value = (value << 5) | _CROCKFORD.index(char)
    return str(uuid.UUID(int=value & ((1 << 128) - 1)))


@dataclass(frozen=True)
class EventRecord:
    """An event as written to the outbox (``events/<model>/<ulid>.json``) before it is emitted."""

    ulid: str
    name: str
    model: str
    resource_id: str
    payload: dict[str, Any]
    occurred: str

    @property
    def event_id(self) -> str:
        """The Prefect event id: the ULID's 128 bits, so re-emitting the record never duplicates it."""
        return ulid_to_uuid(self.ulid)

    def to_json(self) -> bytes:
        return json.dumps({**asdict(self), "event_id": self.event_id}, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> EventRecord:
        fields = json.loads(data)
        fields.pop("event_id", None)
        return cls(**fields)


def new_event(model: str, name: str, payload: dict[str, Any], now: datetime | None = None) -> EventRecord:
    """Build a model event; the payload always carries the model name and the event id."""
    if name not in MODEL_EVENTS:
        raise ValueError(f"unknown event {name!r}")
    moment = now or datetime.now(UTC)
    ulid = new_ulid(moment if now is not None else None)
    return EventRecord(
        ulid=ulid,
        name=name,
        model=model,
        resource_id=model_resource_id(model),
        # The id is in the payload too: Prefect 3.9 cannot template `{{ event.id }}` (a UUID) into parameters.
        payload={"model": model, "event_id": ulid_to_uuid(ulid), **payload},
        occurred=moment.isoformat(),
    )


def write_outbox(store: ObjectStore, record: EventRecord) -> str:
    """Write the record to the outbox (idempotent); return its key."""
    key = layout.outbox_event(record.model, record.ulid)
    # An earlier attempt of the same publish may have written it already.
    with contextlib.suppress(ConflictError):
        store.create(key, record.to_json(), content_type="application/json")
    return key


def outbox_ulids(store: ObjectStore, model: str, since: datetime | None = None) -> list[str]:
    """ULIDs of the outbox records of ``model``, oldest first, optionally only those made at or after ``since``.

    A listing only: what the records hold is read by ``read_outbox_record`` for the few that need it.
    """
    floor = new_ulid(since)[:10] if since else ""
    ulids = (key.rsplit("/", 1)[-1].removesuffix(".json") for key in store.list(layout.outbox_prefix(model)))
    return sorted(ulid for ulid in ulids if ulid[:10] >= floor)


def read_outbox_record(store: ObjectStore, model: str, ulid: str) -> EventRecord:
    """The outbox record ``ulid`` of ``model``."""
    return EventRecord.from_json(store.get(layout.outbox_event(model, ulid)))


def read_outbox(store: ObjectStore, model: str, since: datetime | None = None) -> list[EventRecord]:
    """Outbox records of ``model``, oldest first, optionally only those at or after ``since``."""
    return [read_outbox_record(store, model, ulid) for ulid in outbox_ulids(store, model, since)]


def announced_batches(store: ObjectStore, model: str, batch_ids: Iterable[str], since: datetime) -> set[str]:
    """Which of ``batch_ids`` a ``driftline.batch.arrived`` record of ``model`` made at or after ``since``
    announces (its event-triggered profile-batch run is due or running).

    Newest records first, stopping once every batch is found: the batch a watch finds without a profile is, as
    a rule, the one just announced, so this reads a few records, not the whole window.
    """
    wanted = set(batch_ids)
    found: set[str] = set()
    if not wanted:
        return found
    for ulid in reversed(outbox_ulids(store, model, since)):
        record = read_outbox_record(store, model, ulid)
        batch_id = record.payload.get("batch_id")
        if record.name == BATCH_ARRIVED and batch_id in wanted:
            found.add(batch_id)
            if found == wanted:
                break
    return found
