"""Where driftline's events go: the ``EventSink`` interface over the S3 outbox, and ``MemoryEventSink``.

Every model event is written to the outbox (``events/<model>/<ulid>.json``) before it is sent, so an event
the server never got is not lost: ``reconcile`` re-sends it later under the same id, which the server stores
once. The sink only says how to send records and which ids the server already has; publishing, the outbox
and reconcile are the same for every sink:

* ``driftline.events.prefect_http.PrefectEventSink`` sends to the Prefect server's ``/api/events`` (flows, tasks and
  the CLI);
* ``MemoryEventSink`` keeps what was sent in a list (unit tests, replays) and can play a server that is down.

``outbox_health`` is the rule ``driftline doctor`` applies to the outbox: which events are stuck.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from driftline.errors import InfrastructureError
from driftline.events.records import (
    EventRecord,
    outbox_ulids,
    read_outbox,
    read_outbox_record,
    ulid_time,
    ulid_to_uuid,
    write_outbox,
)
from driftline.storage.store import ObjectStore

# The server persists events in batches (~5 s): one younger than this may be on its way, and re-sending one
# its triggers already saw would count it twice.
RECONCILE_GRACE = timedelta(seconds=60)
# watch-batches reconciles every minute: an event missing for longer than the grace and two of its runs is
# stuck, a younger one is the backlog on its way.
STUCK_AFTER = RECONCILE_GRACE + timedelta(minutes=2)
# How far back `driftline doctor` reads the outbox, and how far back it lists events it could not check.
DOCTOR_LOOKBACK = timedelta(days=7)
UNCHECKED_LOOKBACK = timedelta(days=1)

Related = Mapping[str, str]


class EventSink(ABC):
    """Publishes model events through the S3 outbox of ``store`` and re-sends what the receiver missed.

    Subclasses implement the two operations that talk to the receiver: ``send`` and ``stored``.
    """

    def __init__(self, store: ObjectStore) -> None:
        self.store = store

    @abstractmethod
    def send(self, records: Sequence[EventRecord], related: Sequence[Related] = ()) -> None:
        """Deliver ``records`` (each under its own event id) with ``related`` resources.

        Raises:
            InfrastructureError: the receiver is unreachable or refused them; the records stay in the outbox.
        """

    @abstractmethod
    def stored(self, event_ids: Sequence[str], since: datetime) -> set[str]:
        """Which of ``event_ids`` (events that occurred at or after ``since``) the receiver holds.

        Raises:
            InfrastructureError: the receiver cannot be asked.
        """

    def publish(self, record: EventRecord, related: Sequence[Related] = ()) -> str:
        """Write the event to the outbox first, then send it; return the event id.

        If sending fails (``InfrastructureError``), the outbox copy is what ``reconcile`` re-sends later.
        """
        write_outbox(self.store, record)
        self.send([record], related)
        return record.event_id

    def keep(self, record: EventRecord) -> str:
        """Write the event to the outbox only (idempotent), for ``reconcile`` to send; return the event id."""
        write_outbox(self.store, record)
        return record.event_id

    def outbox(self, model: str, since: datetime | None = None) -> list[EventRecord]:
        """The outbox records of ``model``, oldest first, optionally only those at or after ``since``."""
        return read_outbox(self.store, model, since)

    def reconcile(self, model: str, lookback: timedelta, now: datetime | None = None) -> list[str]:
        """Re-send outbox events of the last ``lookback`` that the receiver does not hold; return their ids.

        Events younger than ``RECONCILE_GRACE`` are left alone (see there). The outbox is listed, not read:
        an event's id and time are in its key, so only the records to re-send are fetched.
        """
        moment = now or datetime.now(UTC)
        settled = moment - RECONCILE_GRACE
        ulids = [ulid for ulid in outbox_ulids(self.store, model, moment - lookback) if ulid_time(ulid) < settled]
        if not ulids:
            return []
        # A ULID made in a busy millisecond is bumped past the record's `occurred`: ask from a little earlier.
        since = ulid_time(ulids[0]) - timedelta(seconds=1)
        seen = self.stored([ulid_to_uuid(ulid) for ulid in ulids], since)
        missing = [read_outbox_record(self.store, model, ulid) for ulid in ulids if ulid_to_uuid(ulid) not in seen]
        if missing:
            self.send(missing)
        return [r.event_id for r in missing]


class MemoryEventSink(EventSink):
    """An event sink that keeps what it was sent: for unit tests and replays that need no server.

    ``reachable = False`` plays a server that is down: ``send`` and ``stored`` raise ``InfrastructureError``.
    """

    def __init__(self, store: ObjectStore, reachable: bool = True) -> None:
        super().__init__(store)
        self.reachable = reachable
        self.sent: list[tuple[EventRecord, list[dict[str, str]]]] = []

    def _check(self) -> None:
        if not self.reachable:
            raise InfrastructureError("the in-memory event receiver is down; the event stays in the outbox")

    def send(self, records: Sequence[EventRecord], related: Sequence[Related] = ()) -> None:
        self._check()
        held = {record.event_id for record, _ in self.sent}
        # Like the Prefect server: an id it already holds is not stored twice.
        self.sent.extend((r, [dict(item) for item in related]) for r in records if r.event_id not in held)

    def stored(self, event_ids: Sequence[str], since: datetime) -> set[str]:
        self._check()
        wanted = set(event_ids)
        return {record.event_id for record, _ in self.sent if record.event_id in wanted}

    @property
    def records(self) -> list[EventRecord]:
        """What was sent, in order, each event once."""
        return [record for record, _ in self.sent]


# --------------------------------------------------------------------------------------------- doctor
@dataclass(frozen=True)
class OutboxHealth:
    """What ``driftline doctor`` says about a model's outbox: events stuck and events not yet confirmed."""

    events: int
    stuck: list[str] = field(default_factory=list)
    unconfirmed: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict:
        """The ``outbox`` section of ``driftline doctor --json``."""
        return {"events_last_7_days": self.events, "not_on_server": self.stuck, "not_confirmed": self.unconfirmed}


def outbox_health(
    records: Sequence[EventRecord],
    now: datetime,
    seen: set[str] | None = None,
    check_error: str | None = None,
) -> OutboxHealth:
    """Judge the outbox ``records`` (``DOCTOR_LOOKBACK``) against the ids the server holds.

    Args:
        records: outbox records of the last ``DOCTOR_LOOKBACK``.
        now: the moment of the check.
        seen: ids of ``records`` the server holds; None when it was not asked (no server configured, or
            ``check_error``).
        check_error: why asking the server failed; the records of the last ``UNCHECKED_LOOKBACK`` are then
            listed as not confirmed.

    Returns:
        An event missing on the server for longer than ``STUCK_AFTER`` is stuck (a problem: watch-batches
        should have re-sent it); a younger missing one is not confirmed yet (a warning).
    """
    warnings: list[str] = []
    problems: list[str] = []
    stuck: list[str] = []
    unconfirmed: list[str] = []
    if check_error is not None:
        warnings.append(f"outbox not checked against the server: {check_error}")
        recent = now - UNCHECKED_LOOKBACK
        unconfirmed = [f"{r.name} {r.event_id}" for r in records if datetime.fromisoformat(r.occurred) >= recent]
    elif seen is not None:
        cutoff = now - STUCK_AFTER
        missing = [r for r in records if r.event_id not in seen]
        stuck = [f"{r.name} {r.event_id}" for r in missing if datetime.fromisoformat(r.occurred) < cutoff]
        unconfirmed = [f"{r.name} {r.event_id}" for r in missing if datetime.fromisoformat(r.occurred) >= cutoff]
    if unconfirmed:
        warnings.append(
            f"{len(unconfirmed)} outbox event(s) not yet on the Prefect server; watch-batches re-sends them every "
            "minute once the server answers"
        )
    if stuck:
        problems.append(
            f"{len(stuck)} outbox event(s) never reached the Prefect server; watch-batches re-sends them every "
            "minute: is it scheduled and the worker running (`driftline status`)?"
        )
    return OutboxHealth(len(records), stuck, unconfirmed, warnings, problems)
