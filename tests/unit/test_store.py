"""The ObjectStore contract, run against MemoryStore and against S3Store on a real moto server."""

from __future__ import annotations

import hashlib
import threading
import uuid
from collections.abc import Iterator

import pytest

from driftline.errors import (
    BucketNotFoundError,
    ConflictError,
    CredentialsError,
    IntegrityError,
    ObjectNotFoundError,
    StoreUnavailableError,
)
from driftline.settings import Settings
from driftline.storage.store import MemoryStore, ObjectStore, S3Store, open_store


def _s3(endpoint: str, bucket: str, prefix: str = "") -> S3Store:
    return S3Store(bucket, prefix=prefix, endpoint_url=endpoint, access_key_id="test", secret_access_key="test")


@pytest.fixture(params=["memory", "s3"])
def store(request: pytest.FixtureRequest, s3_endpoint: str) -> Iterator[ObjectStore]:
    if request.param == "memory":
        yield MemoryStore()
        return
    bucket = f"t-{uuid.uuid4().hex[:12]}"
    s3 = _s3(s3_endpoint, bucket, prefix="team/prod")
    assert s3.create_bucket() is True
    yield s3


def test_both_implementations_satisfy_the_protocol(store: ObjectStore) -> None:
    assert isinstance(store, ObjectStore)


def test_put_then_get_round_trips_bytes_and_records_sha256(store: ObjectStore) -> None:
    payload = bytes(range(256)) * 40
    info = store.put("models/m/spec.yaml", payload)
    assert info.sha256 == hashlib.sha256(payload).hexdigest()
    assert info.size == len(payload)
    stored = store.read("models/m/spec.yaml")
    assert stored.data == payload
    assert stored.etag == info.etag
    assert store.info("models/m/spec.yaml").sha256 == info.sha256


def test_missing_key_raises_not_found_naming_the_key(store: ObjectStore) -> None:
    with pytest.raises(ObjectNotFoundError, match="absent/key"):
        store.get("absent/key")
    with pytest.raises(ObjectNotFoundError):
        store.info("absent/key")
    assert store.exists("absent/key") is False


def test_create_fails_with_conflict_when_key_exists(store: ObjectStore) -> None:
    store.create("aliases/champion.json", b"v1")
    with pytest.raises(ConflictError):
        store.create("aliases/champion.json", b"v2")
    assert store.get("aliases/champion.json") == b"v1"


def test_replace_succeeds_with_current_etag_and_fails_when_it_moved(store: ObjectStore) -> None:
    first = store.create("aliases/shadow.json", b"v1")
    second = store.replace("aliases/shadow.json", b"v2", first.etag)
    assert store.get("aliases/shadow.json") == b"v2"
    with pytest.raises(ConflictError):
        store.replace("aliases/shadow.json", b"v3", first.etag)
    assert store.read("aliases/shadow.json").etag == second.etag
    assert store.get("aliases/shadow.json") == b"v2"


def test_replace_of_a_deleted_object_is_a_conflict(store: ObjectStore) -> None:
    info = store.create("state.json", b"x")
    store.delete("state.json")
    with pytest.raises(ConflictError):
        store.replace("state.json", b"y", info.etag)


def test_list_is_paginated_sorted_and_scoped_to_the_prefix(store: ObjectStore) -> None:
    if isinstance(store, S3Store):
        store.list_page_size = 7  # many pages without thousands of requests
    keys = [f"events/m/{i:05d}.json" for i in range(60)]
    for key in keys:
        store.put(key, b"{}")
    store.put("events/other/0.json", b"{}")
    assert list(store.list("events/m/")) == keys


def test_delete_is_idempotent(store: ObjectStore) -> None:
    store.put("a", b"1")
    store.delete("a")
    store.delete("a")
    assert not store.exists("a")


def test_concurrent_creates_have_exactly_one_winner(store: ObjectStore) -> None:
    winners: list[int] = []
    losers: list[int] = []
    barrier = threading.Barrier(8)

    def attempt(i: int) -> None:
        barrier.wait()
        try:
            store.create("idempotency/key", str(i).encode())
            winners.append(i)
        except ConflictError:
            losers.append(i)

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(winners) == 1 and len(losers) == 7
    assert store.get("idempotency/key") == str(winners[0]).encode()


def test_tampered_memory_object_raises_integrity_error() -> None:
    store = MemoryStore()
    store.put("models/m/versions/v1/model.ubj", b"booster bytes")
    store.tamper("models/m/versions/v1/model.ubj", b"booster bytez")
    with pytest.raises(IntegrityError, match="model.ubj"):
        store.get("models/m/versions/v1/model.ubj")


def test_tampered_s3_object_raises_integrity_error(s3_endpoint: str) -> None:
    store = _s3(s3_endpoint, f"t-{uuid.uuid4().hex[:12]}")
    store.create_bucket()
    info = store.put("model.ubj", b"genuine")
    # Someone rewrites the bytes but keeps the old metadata.
    store._client.put_object(Bucket=store.bucket, Key="model.ubj", Body=b"forged!", Metadata={"sha256": info.sha256})
    with pytest.raises(IntegrityError, match="tampered"):
        store.get("model.ubj")


def test_object_without_sha256_metadata_is_refused(s3_endpoint: str) -> None:
    store = _s3(s3_endpoint, f"t-{uuid.uuid4().hex[:12]}")
    store.create_bucket()
    store._client.put_object(Bucket=store.bucket, Key="foreign.bin", Body=b"not ours")
    with pytest.raises(IntegrityError, match="no sha256"):
        store.get("foreign.bin")


def test_prefix_isolates_two_stores_in_one_bucket(s3_endpoint: str) -> None:
    bucket = f"t-{uuid.uuid4().hex[:12]}"
    team_a, team_b = _s3(s3_endpoint, bucket, "a"), _s3(s3_endpoint, bucket, "b")
    team_a.create_bucket()
    team_a.put("k", b"a")
    team_b.put("k", b"b")
    assert (team_a.get("k"), team_b.get("k")) == (b"a", b"b")
    assert list(team_a.list()) == ["k"]


def test_missing_bucket_is_a_clear_error_naming_it(s3_endpoint: str) -> None:
    store = _s3(s3_endpoint, "no-such-bucket-here")
    with pytest.raises(BucketNotFoundError, match="no-such-bucket-here"):
        store.check()
    with pytest.raises(BucketNotFoundError, match="no-such-bucket-here"):
        store.put("k", b"v")


def test_unreachable_endpoint_names_the_endpoint() -> None:
    store = S3Store(
        "b",
        endpoint_url="http://127.0.0.1:9",  # discard port: nothing listens
        access_key_id="x",
        secret_access_key="y",
        max_attempts=1,
        connect_timeout=1,
    )
    with pytest.raises(StoreUnavailableError, match=r"http://127\.0\.0\.1:9") as raised:
        store.get("k")
    assert raised.value.exit_code == 3


def test_missing_credentials_are_a_clear_error(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    store = S3Store("b", endpoint_url=s3_endpoint, max_attempts=1)
    with pytest.raises(CredentialsError, match="DRIFTLINE_AWS_ACCESS_KEY_ID"):
        store.get("k")


def test_open_store_uses_the_settings(s3_endpoint: str) -> None:
    settings = Settings(
        s3_endpoint_url=s3_endpoint,
        s3_bucket="settings-bucket",
        s3_prefix="p",
        aws_access_key_id="a",
        aws_secret_access_key="b",
    )
    store = open_store(settings)
    store.create_bucket()
    store.put("x", b"1")
    assert store.describe() == f"s3://settings-bucket/p/ at {s3_endpoint}"
    assert store._client.get_object(Bucket="settings-bucket", Key="p/x")["Body"].read() == b"1"
