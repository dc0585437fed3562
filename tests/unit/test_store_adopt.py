"""``ObjectStore.adopt``: objects other tools wrote (no sha256) get one, without ever overwriting a concurrent
writer; run against MemoryStore and against S3Store on a real moto server."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from driftline.errors import ConflictError, IntegrityError, ObjectNotFoundError
from driftline.storage.store import MemoryStore, ObjectStore, S3Store

KEY = "datasets/m/batches/foreign.parquet"


def _s3(endpoint: str) -> S3Store:
    store = S3Store(
        f"t-{uuid.uuid4().hex[:12]}",
        prefix="team/prod",
        endpoint_url=endpoint,
        access_key_id="test",
        secret_access_key="test",
    )
    assert store.create_bucket() is True
    return store


@pytest.fixture(params=["memory", "s3"])
def store(request: pytest.FixtureRequest, s3_endpoint: str) -> Iterator[ObjectStore]:
    yield MemoryStore() if request.param == "memory" else _s3(s3_endpoint)


def _put_foreign(store: ObjectStore, key: str, data: bytes) -> None:
    """Write ``data`` the way another tool would: no sha256 metadata."""
    if isinstance(store, MemoryStore):
        store.put_foreign(key, data)
    else:
        assert isinstance(store, S3Store)
        store._client.put_object(Bucket=store.bucket, Key=store._key(key), Body=data)


def test_a_foreign_object_is_refused_by_get_until_adopted_then_reads_verified(
    store: ObjectStore, tmp_path: Path
) -> None:
    _put_foreign(store, KEY, b"written by a partner's exporter")
    with pytest.raises(IntegrityError, match="no sha256"):
        store.get(KEY)
    info = store.adopt(KEY, tmp_path / "copy")
    assert info is not None
    assert info.sha256 == hashlib.sha256(b"written by a partner's exporter").hexdigest()
    assert (tmp_path / "copy").read_bytes() == b"written by a partner's exporter"
    assert store.get(KEY) == b"written by a partner's exporter"
    assert store.info(KEY).sha256 == info.sha256 and store.info(KEY).etag == info.etag


def test_adopt_records_nothing_when_the_content_is_refused(store: ObjectStore, tmp_path: Path) -> None:
    _put_foreign(store, KEY, b"not parquet")
    before = store.info(KEY)
    seen: list[bytes] = []

    def refuse(path: Path) -> bool:
        seen.append(path.read_bytes())
        return False

    assert store.adopt(KEY, tmp_path / "copy", refuse) is None
    assert seen == [b"not parquet"]
    assert store.info(KEY).etag == before.etag and store.info(KEY).sha256 == ""
    with pytest.raises(IntegrityError, match="no sha256"):
        store.get(KEY)


def test_adopting_an_object_driftline_wrote_changes_nothing(store: ObjectStore, tmp_path: Path) -> None:
    written = store.put(KEY, b"ours")
    info = store.adopt(KEY, tmp_path / "copy", lambda _: pytest.fail("accept must not be asked"))
    assert info is not None and info.etag == written.etag and info.sha256 == written.sha256
    assert store.info(KEY).etag == written.etag


def test_a_tampered_object_with_a_mismatching_sha256_is_never_adopted(store: ObjectStore, tmp_path: Path) -> None:
    info = store.put(KEY, b"genuine")
    if isinstance(store, MemoryStore):
        store.tamper(KEY, b"forged!")
    else:
        assert isinstance(store, S3Store)
        store._client.put_object(
            Bucket=store.bucket, Key=store._key(KEY), Body=b"forged!", Metadata={"sha256": info.sha256}
        )
    with pytest.raises(IntegrityError, match=r"foreign.parquet.*tampered"):
        store.adopt(KEY, tmp_path / "copy")
    assert not (tmp_path / "copy").exists()
    with pytest.raises(IntegrityError, match="tampered"):
        store.get(KEY)


def test_a_concurrent_writer_is_never_overwritten(store: ObjectStore, tmp_path: Path) -> None:
    _put_foreign(store, KEY, b"first version")

    def writer_replaces_it_meanwhile(path: Path) -> bool:
        _put_foreign(store, KEY, b"second version, written while we checked the first")
        return True

    with pytest.raises(ConflictError, match="foreign.parquet"):
        store.adopt(KEY, tmp_path / "copy", writer_replaces_it_meanwhile)
    info = store.info(KEY)
    assert info.sha256 == ""  # the second version is untouched, still waiting to be adopted on its own merits
    assert store.adopt(KEY, tmp_path / "again") is not None
    assert store.get(KEY) == b"second version, written while we checked the first"


def test_an_object_deleted_during_adoption_is_a_conflict(store: ObjectStore, tmp_path: Path) -> None:
    _put_foreign(store, KEY, b"soon gone")

    def deleted_meanwhile(path: Path) -> bool:
        store.delete(KEY)
        return True

    with pytest.raises(ConflictError, match="foreign.parquet"):
        store.adopt(KEY, tmp_path / "copy", deleted_meanwhile)
    assert not store.exists(KEY)


def test_adopting_a_missing_object_names_the_key(store: ObjectStore, tmp_path: Path) -> None:
    with pytest.raises(ObjectNotFoundError, match="foreign.parquet"):
        store.adopt(KEY, tmp_path / "copy")
