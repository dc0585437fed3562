"""Object storage: the ``ObjectStore`` protocol, ``S3Store`` (boto3) and ``MemoryStore``.

Both implementations honour the same contract (tests/unit/test_store.py runs it against both):

* every payload's sha256 is stored in the object's metadata and checked on every read
  (``IntegrityError`` on mismatch), so a tampered or truncated object is never used;
* ``create`` writes only if the key does not exist (S3 ``IfNoneMatch='*'``) and ``replace`` only if
  the ETag is still the one the caller read (``IfMatch``); the loser gets ``ConflictError``. That is
  how two writers of an alias or a shadow state never both win;
* keys are logical (built by ``driftline.storage.layout``); the store adds the configured prefix.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from driftline.errors import (
    BucketNotFoundError,
    ConflictError,
    CredentialsError,
    InfrastructureError,
    IntegrityError,
    ObjectNotFoundError,
    StoreUnavailableError,
)

if TYPE_CHECKING:
    from driftline.settings import Settings

SHA256_METADATA_KEY = "sha256"


@dataclass(frozen=True)
class ObjectInfo:
    """What the store knows about one object without its bytes."""

    key: str
    etag: str
    sha256: str
    size: int


@dataclass(frozen=True)
class StoredObject:
    """An object's verified bytes with the ETag to pass to ``replace``."""

    key: str
    data: bytes
    etag: str
    sha256: str


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@runtime_checkable
class ObjectStore(Protocol):
    """A flat key -> bytes store with conditional writes and verified reads."""

    def describe(self) -> str:
        """Human-readable location, used in error messages ("s3://bucket/prefix at URL")."""
        ...

    def location(self, key: str) -> str:
        """Where ``key`` lives, for messages ("s3://bucket/prefix/key (endpoint)")."""
        ...

    def check(self) -> None:
        """Raise an ``InfrastructureError`` naming the fault if the store cannot be used."""
        ...

    def get(self, key: str) -> bytes:
        """Return the object's bytes after checking their sha256; ``ObjectNotFoundError`` if absent."""
        ...

    def read(self, key: str) -> StoredObject:
        """Like ``get``, with the ETag needed for a later ``replace``."""
        ...

    def info(self, key: str) -> ObjectInfo:
        """ETag, sha256 and size of an object; ``ObjectNotFoundError`` if absent."""
        ...

    def put(self, key: str, data: bytes, *, content_type: str = "application/octet-stream") -> ObjectInfo:
        """Write unconditionally (last writer wins). Prefer ``create`` for immutable objects."""
        ...

    def create(self, key: str, data: bytes, *, content_type: str = "application/octet-stream") -> ObjectInfo:
        """Write only if the key does not exist yet; ``ConflictError`` otherwise."""
        ...

    def replace(
        self, key: str, data: bytes, etag: str, *, content_type: str = "application/octet-stream"
    ) -> ObjectInfo:
        """Write only if the object's ETag is still ``etag``; ``ConflictError`` otherwise."""
        ...

    def download(self, key: str, path: Path) -> ObjectInfo:
        """Stream the object to ``path`` (memory stays bounded), checking its sha256; remove it on failure."""
        ...

    def adopt(self, key: str, path: Path, accept: Callable[[Path], bool] | None = None) -> ObjectInfo | None:
        """Give an object another tool wrote (no sha256 metadata) a recorded sha256, so later reads verify it.

        Streams the object to ``path`` without a checksum, lets ``accept`` judge the local copy (None:
        accept), then rewrites the same bytes with their sha256 only if the ETag is still the one read, so
        a concurrent writer is never overwritten. An object that already has a sha256 is verified like
        ``download`` and returned unchanged. Returns the object's info, or None when ``accept`` refused it
        (nothing written; ``path`` keeps the bytes).

        Raises:
            IntegrityError: the object has a sha256 and its bytes do not match it.
            ConflictError: the object changed or vanished between the read and the rewrite.
        """
        ...

    def exists(self, key: str) -> bool:
        """Whether the key exists."""
        ...

    def list(self, prefix: str = "") -> Iterator[str]:
        """Keys under ``prefix`` in lexicographic order, across as many pages as there are."""
        ...

    def delete(self, key: str) -> None:
        """Remove the key; deleting a missing key is not an error."""
        ...


def _verify(key: str, data: bytes, recorded: str | None, where: str) -> str:
    actual = sha256_hex(data)
    if recorded is None:
        raise IntegrityError(f"{where}: object {key!r} has no sha256 metadata; it was not written by driftline")
    if actual != recorded:
        raise IntegrityError(
            f"{where}: object {key!r} is corrupt or was tampered with: sha256 {actual} != recorded {recorded}"
        )
    return actual


class MemoryStore:
    """In-process store with the same semantics as ``S3Store``; for unit tests and the backtest."""

    def __init__(self) -> None:
        self._objects: dict[str, tuple[bytes, str, dict[str, str]]] = {}
        self._lock = threading.Lock()
        self._counter = 0

    def describe(self) -> str:
        return "memory store"

    def location(self, key: str) -> str:
        return f"memory://{key}"

    def check(self) -> None:
        return None

    def _etag(self, data: bytes) -> str:
        # A counter makes ETags move on every write, even of identical bytes, as a cautious CAS needs.
        self._counter += 1
        return f'"{hashlib.md5(data + str(self._counter).encode()).hexdigest()}"'

    def _write(self, key: str, data: bytes) -> ObjectInfo:
        digest = sha256_hex(data)
        etag = self._etag(data)
        self._objects[key] = (bytes(data), etag, {SHA256_METADATA_KEY: digest})
        return ObjectInfo(key=key, etag=etag, sha256=digest, size=len(data))

    def tamper(self, key: str, data: bytes) -> None:
        """Overwrite bytes without updating the sha256 (fault injection in tests)."""
        with self._lock:
            _, etag, metadata = self._objects[key]
            self._objects[key] = (bytes(data), etag, metadata)

    def put_foreign(self, key: str, data: bytes) -> ObjectInfo:
        """Write bytes without a sha256, as a tool other than driftline would (fault injection in tests)."""
        with self._lock:
            etag = self._etag(data)
            self._objects[key] = (bytes(data), etag, {})
            return ObjectInfo(key=key, etag=etag, sha256="", size=len(data))

    def adopt(self, key: str, path: Path, accept: Callable[[Path], bool] | None = None) -> ObjectInfo | None:
        with self._lock:
            try:
                data, etag, metadata = self._objects[key]
            except KeyError:
                raise ObjectNotFoundError(f"{self.describe()}: no object {key!r}") from None
        Path(path).write_bytes(data)
        recorded = metadata.get(SHA256_METADATA_KEY)
        if recorded is not None:
            try:
                _verify(key, data, recorded, self.describe())
            except IntegrityError:
                Path(path).unlink(missing_ok=True)
                raise
            return ObjectInfo(key=key, etag=etag, sha256=recorded, size=len(data))
        if accept is not None and not accept(Path(path)):
            return None
        return self.replace(key, data, etag)

    def read(self, key: str) -> StoredObject:
        with self._lock:
            try:
                data, etag, metadata = self._objects[key]
            except KeyError:
                raise ObjectNotFoundError(f"{self.describe()}: no object {key!r}") from None
        digest = _verify(key, data, metadata.get(SHA256_METADATA_KEY), self.describe())
        return StoredObject(key=key, data=data, etag=etag, sha256=digest)

    def get(self, key: str) -> bytes:
        return self.read(key).data

    def info(self, key: str) -> ObjectInfo:
        with self._lock:
            try:
                data, etag, metadata = self._objects[key]
            except KeyError:
                raise ObjectNotFoundError(f"{self.describe()}: no object {key!r}") from None
        return ObjectInfo(key=key, etag=etag, sha256=metadata.get(SHA256_METADATA_KEY, ""), size=len(data))

    def put(self, key: str, data: bytes, *, content_type: str = "application/octet-stream") -> ObjectInfo:
        with self._lock:
            return self._write(key, data)

    def create(self, key: str, data: bytes, *, content_type: str = "application/octet-stream") -> ObjectInfo:
        with self._lock:
            if key in self._objects:
                raise ConflictError(f"{self.describe()}: {key!r} already exists")
            return self._write(key, data)

    def replace(
        self, key: str, data: bytes, etag: str, *, content_type: str = "application/octet-stream"
    ) -> ObjectInfo:
        with self._lock:
            current = self._objects.get(key)
            if current is None or current[1] != etag:
                raise ConflictError(f"{self.describe()}: {key!r} changed since it was read (ETag {etag} moved)")
            return self._write(key, data)

    def download(self, key: str, path: Path) -> ObjectInfo:
        stored = self.read(key)
        Path(path).write_bytes(stored.data)
        return ObjectInfo(key=key, etag=stored.etag, sha256=stored.sha256, size=len(stored.data))

    def exists(self, key: str) -> bool:
        with self._lock:
            return key in self._objects

    def list(self, prefix: str = "") -> Iterator[str]:
        with self._lock:
            keys = sorted(k for k in self._objects if k.startswith(prefix))
        yield from keys

    def delete(self, key: str) -> None:
        with self._lock:
            self._objects.pop(key, None)


_CONFLICT_CODES = {"PreconditionFailed", "ConditionalRequestConflict", "412", "409"}
_CREDENTIAL_CODES = {
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "AccessDenied",
    "ExpiredToken",
    "InvalidToken",
    "403",
}


class S3Store:
    """``ObjectStore`` on any S3-compatible endpoint (AWS S3, moto_server, MinIO) through boto3.

    Args:
        bucket: bucket name.
        prefix: key prefix inside the bucket ("" for none).
        endpoint_url: S3 endpoint; ``None`` means AWS.
        region: bucket region.
        access_key_id / secret_access_key: explicit credentials; ``None`` uses the default chain.
        max_attempts: botocore attempts in adaptive retry mode (transient errors, throttling).
        connect_timeout / read_timeout: seconds.
    """

    def __init__(
        self,
        bucket: str,
        *,
        prefix: str = "",
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        max_attempts: int = 5,
        connect_timeout: float = 5.0,
        read_timeout: float = 60.0,
    ) -> None:
        import boto3
        from botocore.config import Config

        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.endpoint_url = endpoint_url
        from driftline.settings import redact_url

        # What messages show: an endpoint's password never reaches a log, an error or an event.
        self._shown_endpoint = redact_url(endpoint_url) if endpoint_url else "AWS S3"
        config = Config(
            region_name=region,
            retries={"mode": "adaptive", "max_attempts": max_attempts},
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            # Path-style works for moto, MinIO and AWS alike; virtual-host style needs DNS per bucket.
            s3={"addressing_style": "path"},
            # SigV4 for presigned URLs too (botocore presigns with SigV2 for custom endpoints otherwise).
            signature_version="s3v4",
        )
        session = boto3.session.Session(
            aws_access_key_id=access_key_id, aws_secret_access_key=secret_access_key, region_name=region
        )
        self._client = session.client("s3", endpoint_url=endpoint_url, config=config)
        self.list_page_size = 1000  # S3's maximum; tests lower it to exercise pagination cheaply

    @classmethod
    def from_settings(cls, settings: Settings) -> S3Store:
        return cls(
            settings.s3_bucket,
            prefix=settings.s3_prefix,
            endpoint_url=settings.s3_endpoint_url,
            region=settings.s3_region,
            access_key_id=settings.aws_access_key_id.get_secret_value() if settings.aws_access_key_id else None,
            secret_access_key=(
                settings.aws_secret_access_key.get_secret_value() if settings.aws_secret_access_key else None
            ),
            max_attempts=settings.s3_max_attempts,
            connect_timeout=settings.s3_connect_timeout,
            read_timeout=settings.s3_read_timeout,
        )

    def describe(self) -> str:
        where = f"s3://{self.bucket}/{self.prefix + '/' if self.prefix else ''}"
        return f"{where} at {self._shown_endpoint}"

    def location(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._key(key)} ({self._shown_endpoint})"

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _translate(self, error: Exception, key: str | None = None) -> Exception:
        """Map a botocore error to the driftline error that names what is at fault."""
        from botocore.exceptions import (
            ClientError,
            HTTPClientError,
            NoCredentialsError,
            PartialCredentialsError,
        )
        from botocore.exceptions import (
            ConnectionError as BotoConnectionError,
        )

        from driftline.settings import redact_urls

        where = self.describe()
        # HTTPClientError: a connection closed or a read timing out mid-request, after botocore's retries.
        if isinstance(error, BotoConnectionError | HTTPClientError):
            on = f" (object {key!r})" if key is not None else ""
            return StoreUnavailableError(
                f"S3 endpoint {self._shown_endpoint} is unreachable{on} ({redact_urls(str(error))}); start the local "
                "stack with `driftline up` or fix DRIFTLINE_S3_ENDPOINT_URL"
            )
        if isinstance(error, NoCredentialsError | PartialCredentialsError):
            return CredentialsError(
                f"{where}: no AWS credentials found; set DRIFTLINE_AWS_ACCESS_KEY_ID and "
                "DRIFTLINE_AWS_SECRET_ACCESS_KEY or configure the AWS default chain"
            )
        if isinstance(error, ClientError):
            code = str(error.response.get("Error", {}).get("Code", ""))
            status = str(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
            if code == "NoSuchBucket":
                return BucketNotFoundError(
                    f"bucket {self.bucket!r} does not exist at {self._shown_endpoint}; create it "
                    "(`driftline up` does so locally) or fix DRIFTLINE_S3_BUCKET"
                )
            if code in ("NoSuchKey", "404", "NotFound"):
                return ObjectNotFoundError(f"{where}: no object {key!r}")
            if code in _CONFLICT_CODES or status in ("412", "409"):
                return ConflictError(f"{where}: conditional write of {key!r} lost ({code or status})")
            if code in _CREDENTIAL_CODES or status == "403":
                return CredentialsError(f"{where}: credentials refused ({code}); check the access key and secret")
            return InfrastructureError(f"{where}: S3 error on {key!r}: {code} {redact_urls(str(error))}")
        return error

    def check(self) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self._client.head_bucket(Bucket=self.bucket)
        except ClientError as error:
            code = str(error.response.get("Error", {}).get("Code", ""))
            if code in ("404", "NoSuchBucket", "NotFound"):
                raise BucketNotFoundError(
                    f"bucket {self.bucket!r} does not exist at {self._shown_endpoint}; create it "
                    "(`driftline up` does so locally) or fix DRIFTLINE_S3_BUCKET"
                ) from error
            raise self._translate(error) from error
        except BotoCoreError as error:
            raise self._translate(error) from error

    def create_bucket(self) -> bool:
        """Create the bucket if missing; return whether it was created (local stack and tests)."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.check()
            return False
        except BucketNotFoundError:
            pass
        try:
            self._client.create_bucket(Bucket=self.bucket)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                return False
            raise self._translate(error) from error
        except BotoCoreError as error:
            raise self._translate(error) from error
        return True

    def read(self, key: str) -> StoredObject:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            response = self._client.get_object(Bucket=self.bucket, Key=self._key(key))
            data = response["Body"].read()
        except (ClientError, BotoCoreError) as error:
            raise self._translate(error, key) from error
        digest = _verify(key, data, response.get("Metadata", {}).get(SHA256_METADATA_KEY), self.describe())
        return StoredObject(key=key, data=data, etag=response["ETag"], sha256=digest)

    def get(self, key: str) -> bytes:
        return self.read(key).data

    def info(self, key: str) -> ObjectInfo:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            response = self._client.head_object(Bucket=self.bucket, Key=self._key(key))
        except (ClientError, BotoCoreError) as error:
            raise self._translate(error, key) from error
        return ObjectInfo(
            key=key,
            etag=response["ETag"],
            sha256=response.get("Metadata", {}).get(SHA256_METADATA_KEY, ""),
            size=int(response["ContentLength"]),
        )

    def _put(self, key: str, data: bytes, content_type: str, **conditions: Any) -> ObjectInfo:
        from botocore.exceptions import BotoCoreError, ClientError

        digest = sha256_hex(data)
        try:
            response = self._client.put_object(
                Bucket=self.bucket,
                Key=self._key(key),
                Body=data,
                ContentType=content_type,
                Metadata={SHA256_METADATA_KEY: digest},
                **conditions,
            )
        except (ClientError, BotoCoreError) as error:
            translated = self._translate(error, key)
            if isinstance(translated, ConflictError) and "IfNoneMatch" in conditions and _was_retried(error):
                # botocore retried a create whose reply was lost: the retry meets the object the first attempt
                # stored. Our own bytes (same sha256) mean we won; reporting a lost race would be wrong.
                with contextlib.suppress(ObjectNotFoundError):
                    existing = self.info(key)
                    if existing.sha256 == digest:
                        return existing
            raise translated from error
        return ObjectInfo(key=key, etag=response["ETag"], sha256=digest, size=len(data))

    def put(self, key: str, data: bytes, *, content_type: str = "application/octet-stream") -> ObjectInfo:
        return self._put(key, data, content_type)

    def presigned_get_url(self, key: str, expires_seconds: int) -> str:
        """A URL that lets anyone holding it GET ``key`` until it expires (signed locally: no request is made).

        SigV4 caps ``expires_seconds`` at 7 days; signed with temporary credentials (an IAM role, SSO) the URL
        stops working when those credentials expire, whichever comes first.
        """
        return self._client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": self._key(key)}, ExpiresIn=expires_seconds
        )

    def create(self, key: str, data: bytes, *, content_type: str = "application/octet-stream") -> ObjectInfo:
        return self._put(key, data, content_type, IfNoneMatch="*")

    def replace(
        self, key: str, data: bytes, etag: str, *, content_type: str = "application/octet-stream"
    ) -> ObjectInfo:
        try:
            return self._put(key, data, content_type, IfMatch=etag)
        except ObjectNotFoundError as error:
            raise ConflictError(f"{self.describe()}: {key!r} was deleted since it was read") from error

    def _fetch(self, key: str, path: Path) -> tuple[dict[str, Any], str, int]:
        """Stream the object to ``path`` unverified; return (the GET response, sha256 of the bytes, size)."""
        from botocore.exceptions import BotoCoreError, ClientError

        digest = hashlib.sha256()
        size = 0
        try:
            response = self._client.get_object(Bucket=self.bucket, Key=self._key(key))
            with path.open("wb") as sink:
                for chunk in response["Body"].iter_chunks(chunk_size=1 << 20):
                    digest.update(chunk)
                    sink.write(chunk)
                    size += len(chunk)
        except (ClientError, BotoCoreError) as error:
            path.unlink(missing_ok=True)
            raise self._translate(error, key) from error
        return response, digest.hexdigest(), size

    def download(self, key: str, path: Path) -> ObjectInfo:
        path = Path(path)
        response, actual, size = self._fetch(key, path)
        recorded = response.get("Metadata", {}).get(SHA256_METADATA_KEY)
        if recorded != actual:
            path.unlink(missing_ok=True)
            if recorded is None:
                raise IntegrityError(f"{self.describe()}: object {key!r} has no sha256 metadata")
            raise IntegrityError(
                f"{self.describe()}: object {key!r} is corrupt or was tampered with: "
                f"sha256 {actual} != recorded {recorded}"
            )
        return ObjectInfo(key=key, etag=response["ETag"], sha256=recorded, size=size)

    def adopt(self, key: str, path: Path, accept: Callable[[Path], bool] | None = None) -> ObjectInfo | None:
        from botocore.exceptions import BotoCoreError, ClientError

        path = Path(path)
        response, actual, size = self._fetch(key, path)
        etag = response["ETag"]
        recorded = response.get("Metadata", {}).get(SHA256_METADATA_KEY)
        if recorded is not None:
            if recorded != actual:
                path.unlink(missing_ok=True)
                raise IntegrityError(
                    f"{self.describe()}: object {key!r} is corrupt or was tampered with: "
                    f"sha256 {actual} != recorded {recorded}"
                )
            return ObjectInfo(key=key, etag=etag, sha256=recorded, size=size)
        if accept is not None and not accept(path):
            return None
        content_type = response.get("ContentType") or "application/octet-stream"
        try:
            # Streamed from the local copy (memory stays bounded); IfMatch: the bytes hashed are the bytes kept.
            with path.open("rb") as body:
                written = self._client.put_object(
                    Bucket=self.bucket,
                    Key=self._key(key),
                    Body=body,
                    ContentType=content_type,
                    Metadata={SHA256_METADATA_KEY: actual},
                    IfMatch=etag,
                )
        except (ClientError, BotoCoreError) as error:
            translated = self._translate(error, key)
            if isinstance(translated, ObjectNotFoundError):
                raise ConflictError(f"{self.describe()}: {key!r} was deleted since it was read") from error
            raise translated from error
        return ObjectInfo(key=key, etag=written["ETag"], sha256=actual, size=size)

    def exists(self, key: str) -> bool:
        try:
            self.info(key)
        except ObjectNotFoundError:
            return False
        return True

    def list(self, prefix: str = "") -> Iterator[str]:
        from botocore.exceptions import BotoCoreError, ClientError

        paginator = self._client.get_paginator("list_objects_v2")
        strip = len(self._key(""))
        try:
            for page in paginator.paginate(
                Bucket=self.bucket, Prefix=self._key(prefix), PaginationConfig={"PageSize": self.list_page_size}
            ):
                for item in page.get("Contents", []):
                    yield item["Key"][strip:]
        except (ClientError, BotoCoreError) as error:
            raise self._translate(error, prefix) from error

    def delete(self, key: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self._client.delete_object(Bucket=self.bucket, Key=self._key(key))
        except (ClientError, BotoCoreError) as error:
            raise self._translate(error, key) from error


def _was_retried(error: Exception) -> bool:
    response = getattr(error, "response", None) or {}
    return int(response.get("ResponseMetadata", {}).get("RetryAttempts", 0) or 0) > 0


def update_json(
    store: ObjectStore,
    key: str,
    initial: Callable[[], Any],
    mutate: Callable[[Any], Any],
    attempts: int = 20,
) -> Any:
    """Read-modify-write a JSON object with conditional writes, retrying when another writer got there first.

    Args:
        initial: the value to start from when the object does not exist yet (then created with IfNoneMatch).
        mutate: the new value from the current one; must be safe to call again after a conflict.

    Raises:
        ConflictError: ``attempts`` conflicts in a row.
    """
    for _ in range(attempts):
        try:
            stored = store.read(key)
            current, etag = json.loads(stored.data), stored.etag
        except ObjectNotFoundError:
            current, etag = initial(), None
        updated = mutate(current)
        body = json.dumps(updated, allow_nan=False).encode()
        try:
            if etag is None:
                store.create(key, body, content_type="application/json")
            else:
                store.replace(key, body, etag, content_type="application/json")
            return updated
        except ConflictError:
            continue
    raise ConflictError(f"{key}: {attempts} concurrent updates in a row; giving up")


def open_store(settings: Settings) -> S3Store:
    """The S3 store the settings describe (no network access until first use)."""
    return S3Store.from_settings(settings)
