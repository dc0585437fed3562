"""Our own calls to the Prefect API retry what a busy server answers, against a real HTTP server on loopback."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest

from driftline.cli import prefect_api
from driftline.errors import InfrastructureError
from driftline.events import prefect_http
from driftline.events.records import DRIFT_DETECTED, new_event
from tests.support import free_port, serve_http


@dataclass
class FlakyServer:
    """Answers the first ``failures`` requests with ``status``, then 200; records every request path."""

    url: str = ""
    failures: int = 2
    status: int = 503
    answer: Any = field(default_factory=lambda: {"events": []})
    requests: list[tuple[float, str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


@contextmanager
def flaky_server(failures: int = 2, status: int = 503, answer: Any = None) -> Iterator[FlakyServer]:
    state = FlakyServer(failures=failures, status=status, answer=answer if answer is not None else {"events": []})

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            with state.lock:
                state.requests.append((time.monotonic(), self.path, json.loads(body or b"null")))
                failing = len(state.requests) <= state.failures
            payload = b'{"detail": "database is locked"}' if failing else json.dumps(state.answer).encode()
            self.send_response(state.status if failing else 200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: Any) -> None:
            return None

    with serve_http(Handler) as port:
        state.url = f"http://127.0.0.1:{port}/api"
        yield state


@pytest.fixture
def fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(prefect_http, "RETRY_BASE_DELAY", 0.01)
    monkeypatch.setattr(prefect_http, "RETRY_MAX_DELAY", 0.04)


def test_an_event_is_sent_after_two_503_answers_with_growing_waits() -> None:
    record = new_event("m", DRIFT_DETECTED, {"batch_id": "b1"})
    with flaky_server(failures=2, status=503) as server:
        prefect_http.emit_records(server.url, [record])
    assert [path for _, path, _ in server.requests] == ["/api/events"] * 3
    assert all(body[0]["id"] == record.event_id for _, _, body in server.requests)  # the same event each time
    first, second, third = (at for at, _, _ in server.requests)
    assert second - first >= 0.45 and third - second >= 0.95  # 0.5 s, then 1 s


@pytest.mark.parametrize("status", [429, 502, 503, 504])
def test_every_retryable_status_is_retried(status: int, fast_backoff: None) -> None:
    answer = {"events": [{"id": "e1"}]}
    with flaky_server(failures=2, status=status, answer=answer) as server:
        assert prefect_api.find_events(server.url, [DRIFT_DETECTED]) == [{"id": "e1"}]
    assert len(server.requests) == 3


def test_a_server_busy_for_good_is_a_clear_error_naming_the_url(fast_backoff: None) -> None:
    with flaky_server(failures=100, status=503) as server, pytest.raises(InfrastructureError) as raised:
        prefect_http.emit_records(server.url, [new_event("m", DRIFT_DETECTED, {})])
    assert len(server.requests) == prefect_http.RETRY_ATTEMPTS == 5
    message = str(raised.value)
    assert f"{server.url}/events answered 503 5 times" in message and "stays in the outbox" in message


def test_a_client_error_is_not_retried(fast_backoff: None) -> None:
    with flaky_server(failures=1, status=422) as server, pytest.raises(InfrastructureError, match="answered 422"):
        prefect_api.find_events(server.url, [DRIFT_DETECTED])
    assert len(server.requests) == 1


def test_a_refused_connection_is_retried_then_named(fast_backoff: None) -> None:
    url = f"http://127.0.0.1:{free_port()}/api"  # nothing listens there
    started = time.monotonic()
    with pytest.raises(InfrastructureError, match=f"{url}/events/filter is unreachable after 5 attempts"):
        prefect_api.find_events(url, [DRIFT_DETECTED])
    assert time.monotonic() - started < 5


def test_backoff_doubles_up_to_its_cap_and_honours_retry_after() -> None:
    assert [prefect_http.retry_delay(attempt) for attempt in range(1, 6)] == [0.5, 1.0, 2.0, 4.0, 4.0]
    assert sum(prefect_http.retry_delay(a) for a in range(1, prefect_http.RETRY_ATTEMPTS)) <= 10
    assert prefect_http.retry_delay(1, retry_after="3") == 3.0
    assert prefect_http.retry_delay(1, retry_after="60") == prefect_http.RETRY_MAX_DELAY
    assert prefect_http.retry_delay(2, retry_after="Wed, 21 Oct 2026 07:28:00 GMT") == 1.0
