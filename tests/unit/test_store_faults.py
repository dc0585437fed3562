"""Transient S3 faults are retried and permanent ones named: injected in-process into a real moto server's traffic.

The faults are injected on botocore's ``before-send`` hook of the store's own client, so every request still
travels over HTTP to the real server unless a fault answers it first: what is tested is the store's retry
configuration and error translation, not a fake.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ConnectionClosedError

from driftline.errors import ConflictError, InfrastructureError, StoreUnavailableError
from driftline.storage.store import S3Store


class _Body:
    def __init__(self, data: bytes) -> None:
        self._data = data

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._data


def _error_response(url: str, status: int, code: str) -> AWSResponse:
    body = f"<Error><Code>{code}</Code><Message>injected</Message></Error>".encode()
    return AWSResponse(url, status, {"Content-Type": "application/xml"}, _Body(body))


class Faults:
    """Answers the next requests whose method matches with a fault; counts every request it saw."""

    def __init__(self) -> None:
        self.plan: list[tuple[str, Callable[[Any], Any]]] = []
        self.requests: list[str] = []

    def __call__(self, request: Any, **_: Any) -> Any:
        self.requests.append(request.method)
        for index, (method, fault) in enumerate(self.plan):
            if method == request.method:
                del self.plan[index]
                return fault(request)
        return None

    def respond(self, method: str, status: int, code: str, times: int = 1) -> None:
        for _ in range(times):
            self.plan.append((method, lambda request: _error_response(request.url, status, code)))

    def reset_connection(self, method: str, times: int = 1) -> None:
        def fault(request: Any) -> None:
            raise ConnectionClosedError(endpoint_url=request.url)

        for _ in range(times):
            self.plan.append((method, fault))


@pytest.fixture
def store(s3_endpoint: str) -> S3Store:
    bucket = f"faults-{uuid.uuid4().hex[:8]}"
    # Three attempts keep the backoff short; production's default (adaptive mode, 5 attempts) retries more.
    store = S3Store(bucket, endpoint_url=s3_endpoint, access_key_id="test", secret_access_key="test", max_attempts=3)
    store.create_bucket()
    return store


@pytest.fixture
def faults(store: S3Store) -> Faults:
    faults = Faults()
    store._client.meta.events.register("before-send.s3.*", faults)
    return faults


@pytest.mark.parametrize(
    ("status", "code"),
    [(503, "SlowDown"), (500, "InternalError"), (503, "ServiceUnavailable"), (429, "Throttling")],
)
def test_transient_errors_on_write_and_read_are_retried(store: S3Store, faults: Faults, status: int, code: str) -> None:
    faults.respond("PUT", status, code, times=2)
    store.put("a/x.bin", b"payload")
    faults.respond("GET", status, code, times=2)
    assert store.get("a/x.bin") == b"payload"
    assert faults.requests.count("PUT") == 3 and faults.requests.count("GET") == 3


def test_a_reset_connection_is_retried(store: S3Store, faults: Faults) -> None:
    faults.reset_connection("PUT")
    faults.reset_connection("GET")
    store.put("a/y.bin", b"payload")
    assert store.get("a/y.bin") == b"payload"


def test_a_listing_survives_a_throttled_page(store: S3Store, faults: Faults) -> None:
    store.list_page_size = 2
    for i in range(5):
        store.put(f"p/{i}.bin", b"x")
    faults.respond("GET", 503, "SlowDown")
    assert list(store.list("p/")) == [f"p/{i}.bin" for i in range(5)]


def test_a_permanent_server_error_is_a_clear_error_naming_the_key(store: S3Store, faults: Faults) -> None:
    faults.respond("GET", 500, "InternalError", times=50)
    with pytest.raises(InfrastructureError, match="models/m/aliases/champion.json"):
        store.get("models/m/aliases/champion.json")
    assert 3 <= faults.requests.count("GET") < 50  # retried, then given up with a clear error


def test_a_permanently_unreachable_endpoint_names_the_endpoint_and_the_key(store: S3Store, faults: Faults) -> None:
    faults.reset_connection("GET", times=20)
    with pytest.raises(StoreUnavailableError) as raised:
        store.get("datasets/m/batches/b1.parquet")
    assert store.endpoint_url in str(raised.value)
    assert "datasets/m/batches/b1.parquet" in str(raised.value)


def test_a_conditional_create_whose_reply_was_lost_is_not_reported_as_lost(
    store: S3Store, faults: Faults, s3_endpoint: str
) -> None:
    """The server stored the object but the reply never came: the retry meets 412 against our own bytes.

    Reporting that as a lost race would make the caller think another writer won (a claim not held, a
    profile someone else wrote); the store must recognise its own write by its sha256.
    """
    plain = boto3.client(
        "s3", endpoint_url=s3_endpoint, aws_access_key_id="test", aws_secret_access_key="test", region_name="us-east-1"
    )

    def store_then_drop_the_reply(request: Any) -> None:
        headers = {k.lower(): v.decode() if isinstance(v, bytes) else v for k, v in request.headers.items()}
        plain.put_object(
            Bucket=store.bucket,
            Key="claims/c1.json",
            Body=request.body if isinstance(request.body, bytes) else request.body.read(),
            Metadata={"sha256": headers.get("x-amz-meta-sha256", "")},
        )
        raise ConnectionClosedError(endpoint_url=request.url)

    faults.plan.append(("PUT", store_then_drop_the_reply))
    info = store.create("claims/c1.json", b'{"owner": "me"}')
    assert store.get("claims/c1.json") == b'{"owner": "me"}'
    assert info.sha256 == store.info("claims/c1.json").sha256
    # Someone else's bytes under the key are still a lost race.
    with pytest.raises(ConflictError):
        store.create("claims/c1.json", b'{"owner": "another"}')
