"""Prefect's REST API over plain HTTP: the retried request, and ``PrefectEventSink`` (``/api/events``).

Shared by the tasks and the CLI shell (``driftline/cli/prefect_api.py`` builds its reads on ``request``), so
it lives outside ``driftline/cli`` (which tasks may not import) and imports no Prefect: ``httpx`` only, so
``driftline --help`` and the ad-hoc commands stay fast and the domain stays free of Prefect.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from driftline.errors import InfrastructureError
from driftline.events.records import EventRecord
from driftline.events.sink import EventSink, Related
from driftline.storage.store import ObjectStore

# Our own calls retry what a busy server answers (SQLite "database is locked" is a 503) and dropped
# connections, with capped exponential backoff: 0.5 + 1 + 2 + 4 = 7.5 s of waiting over 5 attempts.
RETRY_STATUSES = frozenset({429, 502, 503, 504})
RETRY_ATTEMPTS = 5
RETRY_BASE_DELAY = 0.5
RETRY_MAX_DELAY = 4.0


def retry_delay(attempt: int, retry_after: str | None = None) -> float:
    """Seconds to wait after failed ``attempt`` (1-based): doubling from the base, capped; a numeric
    ``Retry-After`` is honoured up to the cap."""
    delay = min(RETRY_MAX_DELAY, RETRY_BASE_DELAY * 2 ** (attempt - 1))
    if retry_after is not None:
        with contextlib.suppress(ValueError):  # an HTTP date instead of seconds: keep the backoff
            delay = min(RETRY_MAX_DELAY, max(delay, float(retry_after)))
    return delay


def _headers() -> dict[str, str]:
    key = os.environ.get("PREFECT_API_KEY")
    return {"Authorization": f"Bearer {key}"} if key else {}


def request(method: str, url: str, *, json: Any = None, timeout: float = 10.0, hint: str = "") -> httpx.Response:
    """One API call, retried on 429/502/503/504 and connection errors; any other answer is returned as is.

    Raises:
        InfrastructureError: still unreachable or still answering a retryable status after
            ``RETRY_ATTEMPTS`` attempts; the message names the URL.
    """
    for attempt in range(1, RETRY_ATTEMPTS + 1):
        try:
            response = httpx.request(method, url, json=json, headers=_headers(), timeout=timeout)
        except httpx.TransportError as error:
            if attempt == RETRY_ATTEMPTS:
                raise InfrastructureError(
                    f"Prefect API {url} is unreachable after {attempt} attempts ({error}){hint}"
                ) from error
            time.sleep(retry_delay(attempt))
            continue
        if response.status_code not in RETRY_STATUSES:
            return response
        if attempt == RETRY_ATTEMPTS:
            raise InfrastructureError(
                f"Prefect API {url} answered {response.status_code} {attempt} times: {response.text[:300]}{hint}"
            )
        time.sleep(retry_delay(attempt, response.headers.get("Retry-After")))
    raise AssertionError("unreachable")  # pragma: no cover (the loop returns or raises)


def require_api_url(api_url: str | None) -> str:
    """``api_url``, or an ``InfrastructureError`` saying how to get one."""
    if not api_url:
        raise InfrastructureError(
            "no Prefect API: start the local stack with `driftline up` or set DRIFTLINE_PREFECT_API_URL"
        )
    return api_url


def filter_events(url: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    """One page (<= 50) of ``POST /api/events/filter``."""
    response = request("POST", f"{url}/events/filter", json=body)
    if response.status_code != 200:
        raise InfrastructureError(f"Prefect API {url}/events/filter answered {response.status_code}: {response.text}")
    return list(response.json().get("events", []))


def emit_records(api_url: str | None, records: Sequence[EventRecord], related: Sequence[Related] | None = None) -> None:
    """Send outbox records to the server as Prefect events, synchronously, each with the record's own id.

    ``POST /api/events`` rather than ``emit_event``: the latter queues to a background websocket worker
    that may not have connected before a short-lived process exits (events were lost that way), and it
    silently drops events when the server is down. Here a failure is an ``InfrastructureError``.
    """
    url = require_api_url(api_url)
    body = [
        {
            "id": record.event_id,
            "occurred": record.occurred,
            "event": record.name,
            "resource": {"prefect.resource.id": record.resource_id, "prefect.resource.name": record.model},
            "related": [dict(item) for item in related or []],
            "payload": record.payload,
        }
        for record in records
    ]
    hint = "; the event stays in the outbox"
    response = request("POST", f"{url}/events", json=body, hint=hint)
    if response.status_code >= 300:
        raise InfrastructureError(
            f"Prefect API {url}/events answered {response.status_code}: {response.text[:300]}{hint}"
        )


def seen_event_ids(api_url: str | None, event_ids: Sequence[str], since: datetime) -> set[str]:
    """Which of ``event_ids`` the server has stored (queried in pages of 50)."""
    url = require_api_url(api_url)
    seen: set[str] = set()
    for start in range(0, len(event_ids), 50):
        page = list(event_ids[start : start + 50])
        body = {
            "filter": {
                "occurred": {
                    "since": (since - timedelta(minutes=5)).isoformat(),
                    "until": (datetime.now(UTC) + timedelta(minutes=5)).isoformat(),
                },
                "id": {"id": page},
            },
            "limit": 50,
        }
        seen.update(str(event["id"]) for event in filter_events(url, body))
    return seen


class PrefectEventSink(EventSink):
    """Model events to the Prefect server at ``api_url`` (None: not configured, so sending fails and the
    events wait in the outbox)."""

    def __init__(self, store: ObjectStore, api_url: str | None) -> None:
        super().__init__(store)
        self.api_url = api_url

    def send(self, records: Sequence[EventRecord], related: Sequence[Related] = ()) -> None:
        emit_records(self.api_url, records, related)

    def stored(self, event_ids: Sequence[str], since: datetime) -> set[str]:
        return seen_event_ids(self.api_url, event_ids, since)
