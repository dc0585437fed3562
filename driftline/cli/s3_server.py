"""Local S3 that keeps its data: moto's server, its request recorder, and a compacted replay on start.

moto keeps objects in memory only. Its recorder (``moto.moto_api.recorder``) appends every request it
receives to a JSON-lines file, before the request is handled, opening and closing the file each time: a
write that was acknowledged is in the file (in the kernel's page cache) even when the server is SIGKILLed.
Not fsynced per request, so a power cut can lose the last writes; ``down`` and a killed process cannot.

``python -m driftline.cli.s3_server --data-dir D --host H --port P`` is moto's standalone server (the same
WSGI app and request handler ``moto_server`` runs) with three steps before it binds the port, so no client
sees a half-restored store:

1. read ``D/recording.jsonl``, tolerating a torn last line (a SIGKILL in the middle of a write: that request
   was never answered) and reporting it;
2. replay the state-changing requests in-process, in order, with recording off. moto's own
   ``/moto-api/recorder/replay-recording`` is not used: it loads the whole file into memory, replays reads
   too, stops at a torn line, and cannot replay multipart uploads (their upload id is random, so the
   recorded UploadPart/Complete requests name an upload that no longer exists). Here each new upload id
   is mapped to the recorded one;
3. compact: rewrite the log to the requests that still matter (:func:`entries_to_keep`), via a temporary
   file, fsync and an atomic rename, then switch recording on.

While serving, state-changing requests are recorded and applied one at a time (:class:`SerialWrites`), so
the log's order is the order the store saw, and a replay crowns the same winner of a conditional-write race.

A summary of the restore is written to ``D/restore.json``; :meth:`LocalS3Server.after_start` reports it.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit
from xml.etree import ElementTree

from driftline.errors import StackError

LOG_NAME = "recording.jsonl"
SUMMARY_NAME = "restore.json"
# Headers that made a request conditional on a state that compaction removes: a kept write succeeded once,
# so it is replayed unconditionally.
CONDITIONAL_HEADERS = {
    "if-match",
    "if-none-match",
    "if-modified-since",
    "if-unmodified-since",
    "x-amz-copy-source-if-match",
    "x-amz-copy-source-if-none-match",
    "x-amz-copy-source-if-modified-since",
    "x-amz-copy-source-if-unmodified-since",
}
READ_METHODS = {"GET", "HEAD", "OPTIONS"}
OBJECT_SUBRESOURCES = {"tagging", "acl", "retention", "legal-hold"}


class RecordingError(Exception):
    """The recording cannot be read safely; the message names the file and line."""


# ---------------------------------------------------------------------------------------------- parsing
@dataclass(frozen=True)
class LogEntry:
    """One recorded request as moto's recorder writes it."""

    method: str
    url: str
    headers: dict[str, str]
    body: str
    body_encoded: bool

    @classmethod
    def from_json(cls, record: dict[str, Any]) -> LogEntry:
        return cls(
            method=str(record.get("method", "")).upper(),
            url=str(record.get("url", "")),
            headers={str(k): str(v) for k, v in (record.get("headers") or {}).items()},
            body=record.get("body") or "",
            body_encoded=bool(record.get("body_encoded")),
        )

    def to_json(self) -> str:
        return json.dumps(
            {
                "headers": self.headers,
                "method": self.method,
                "url": self.url,
                "body": self.body,
                "body_encoded": self.body_encoded,
            }
        )

    def body_bytes(self) -> bytes:
        return base64.b64decode(self.body) if self.body_encoded else self.body.encode("utf-8")

    def header(self, name: str) -> str | None:
        lowered = name.lower()
        return next((v for k, v in self.headers.items() if k.lower() == lowered), None)

    def unconditional(self) -> LogEntry:
        headers = {k: v for k, v in self.headers.items() if k.lower() not in CONDITIONAL_HEADERS}
        return LogEntry(self.method, self.url, headers, self.body, self.body_encoded)


def parse_line(line: str) -> list[dict[str, Any]]:
    """The JSON records on one line of a recording (normally one; none for a blank line).

    Raises:
        ValueError: the line holds something other than JSON objects (torn or corrupt).
    """
    decoder = json.JSONDecoder()
    records, position, text = [], 0, line.strip()
    while position < len(text):
        record, end = decoder.raw_decode(text, position)
        if not isinstance(record, dict):
            raise ValueError(f"expected a JSON object at column {position + 1}")
        records.append(record)
        position = end
        while position < len(text) and text[position].isspace():
            position += 1
    return records


@dataclass
class LogReadReport:
    """What reading a recording found besides its entries."""

    lines: int = 0
    entry_bytes: list[int] = field(default_factory=list)
    """Size in the file of each entry read, in order."""
    torn_tail_bytes: int = 0
    """Bytes of an unterminated, unparsable last line (a write cut short by SIGKILL); ignored."""


def read_log(path: Path, report: LogReadReport) -> Iterator[LogEntry]:
    """Stream the entries of a recording, one line in memory at a time.

    A last line without its newline that does not parse is a torn write and is skipped (``report``
    says so); a bad line anywhere else means the file was damaged and nothing is guessed.

    Raises:
        RecordingError: a line other than a torn last one is not valid JSON.
    """
    if not path.exists():
        return
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            report.lines = number
            try:
                records = parse_line(raw.decode("utf-8"))
            except (UnicodeDecodeError, ValueError) as error:
                if not raw.endswith(b"\n") and not handle.read(1):
                    report.torn_tail_bytes = len(raw)
                    return
                raise RecordingError(
                    f"{path}: line {number} is not a recorded request ({error}); the file was damaged. Move it "
                    "aside to start with an empty store, or repair that line"
                ) from error
            for record in records:
                report.entry_bytes.append(len(raw) // len(records))
                yield LogEntry.from_json(record)


# ---------------------------------------------------------------------------------------------- classification
@dataclass(frozen=True)
class Operation:
    """What a recorded request does to the store, as far as compaction needs to know."""

    kind: str
    """read, create_bucket, delete_bucket, bucket_config, put, delete, delete_many, object_config,
    mpu_create, mpu_part, mpu_complete, mpu_abort, reset, other."""
    bucket: str = ""
    key: str = ""
    upload_id: str = ""
    subresource: str = ""
    copy_source: tuple[str, str] | None = None
    deleted_keys: tuple[str, ...] = ()
    enables_versioning: bool = False


def _copy_source(value: str | None) -> tuple[str, str] | None:
    if not value:
        return None
    source = unquote(value.split("?", 1)[0]).lstrip("/")
    bucket, _, key = source.partition("/")
    return bucket, key


def _deleted_keys(body: bytes) -> tuple[str, ...]:
    try:
        root = ElementTree.fromstring(body)
    except ElementTree.ParseError:
        return ()
    return tuple(el.text or "" for el in root.iter() if el.tag.rsplit("}", 1)[-1] == "Key")


def classify(entry: LogEntry) -> Operation:
    """The operation of a path-style S3 request (driftline, boto3 and polars all use path style here)."""
    parts = urlsplit(entry.url)
    path = parts.path
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    method = entry.method
    if method in READ_METHODS:
        return Operation("read")
    if path.startswith("/moto-api/"):
        return Operation("reset" if path.rstrip("/") == "/moto-api/reset" and method == "POST" else "other")
    bucket, _, raw_key = path.lstrip("/").partition("/")
    bucket, key = unquote(bucket), unquote(raw_key)
    if not bucket:
        return Operation("other")
    if not key:
        if method == "POST" and "delete" in query:
            return Operation("delete_many", bucket, deleted_keys=_deleted_keys(entry.body_bytes()))
        sub = next(iter(sorted(query)), "")
        if method == "PUT" and not sub:
            return Operation("create_bucket", bucket)
        if method == "DELETE" and not sub:
            return Operation("delete_bucket", bucket)
        if sub:
            enables = sub == "versioning" and b"<Status>Enabled</Status>" in entry.body_bytes().replace(b" ", b"")
            return Operation("bucket_config", bucket, subresource=sub, enables_versioning=enables)
        return Operation("other", bucket)
    if method == "POST" and "uploads" in query:
        return Operation("mpu_create", bucket, key)
    if "uploadId" in query:
        upload = query["uploadId"]
        if method == "PUT":
            return Operation(
                "mpu_part", bucket, key, upload, copy_source=_copy_source(entry.header("x-amz-copy-source"))
            )
        if method == "POST":
            return Operation("mpu_complete", bucket, key, upload)
        if method == "DELETE":
            return Operation("mpu_abort", bucket, key, upload)
    sub = next((name for name in query if name in OBJECT_SUBRESOURCES), "")
    if sub:
        return Operation("object_config", bucket, key, subresource=sub)
    if method == "PUT":
        return Operation("put", bucket, key, copy_source=_copy_source(entry.header("x-amz-copy-source")))
    if method == "DELETE":
        return Operation("delete", bucket, key)
    return Operation("other", bucket, key)


# ---------------------------------------------------------------------------------------------- compaction rule
@dataclass(frozen=True)
class Replayed:
    """A recorded request with the status it got when replayed, and its multipart upload (recorded id)."""

    operation: Operation
    status: int
    upload: str = ""
    """For multipart requests: the upload id as recorded (for a create: the id its parts used)."""

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


def entries_to_keep(replayed: Iterable[Replayed]) -> list[int]:
    """Indices of the recorded requests that rebuild the same store; the rest can be dropped.

    Dropped: reads; requests that failed (a 412 conditional write changed nothing, and replay is
    deterministic: moto's ETags are content hashes); writes superseded by a later write or delete of the same
    key; deletes (of nothing, once the writes before them are gone); multipart uploads never completed;
    everything of a bucket that was deleted later. Kept whole: object history in a bucket with versioning
    enabled, the content a copy read (the source key's write before the copy), requests not understood.

    Args:
        replayed: every entry of the recording, in order, with its replay status.

    Returns:
        Indices into ``replayed`` in ascending order.
    """
    live_object: dict[tuple[str, str], list[int]] = {}
    bucket_config: dict[tuple[str, str], int] = {}
    bucket_create: dict[str, list[int]] = {}
    retained: dict[str, list[int]] = {}  # per bucket ("" for no bucket): kept until the bucket goes
    versioned: set[str] = set()
    pinned: set[tuple[str, str]] = set()  # keys a copy has read: their current write must stay
    resurrecting: set[tuple[str, str]] = set()  # keys with a retained write: a later delete must stay too
    uploads: dict[str, list[int]] = {}

    def supersede(target: tuple[str, str], tombstone: int | None) -> None:
        previous = live_object.pop(target, [])
        if target in pinned:
            retained.setdefault(target[0], []).extend(previous)
            pinned.discard(target)
            resurrecting.add(target)
        if tombstone is not None and target in resurrecting:  # else a retained write brings the key back
            live_object[target] = [tombstone]

    def write(target: tuple[str, str], indices: list[int], copy_source: tuple[str, str] | None) -> None:
        if copy_source is not None:
            pinned.add(copy_source)
        if target[0] in versioned:
            live_object.setdefault(target, []).extend(indices)
            return
        supersede(target, None)
        live_object[target] = indices

    for index, item in enumerate(replayed):
        op = item.operation
        if op.kind == "mpu_create" and item.upload:
            uploads[item.upload] = [index]
        if not item.ok:
            continue
        target = (op.bucket, op.key)
        if op.kind == "reset":
            for state in (
                live_object,
                bucket_config,
                bucket_create,
                retained,
                versioned,
                pinned,
                resurrecting,
                uploads,
            ):
                state.clear()
        elif op.kind == "create_bucket":
            bucket_create.setdefault(op.bucket, []).append(index)
        elif op.kind == "delete_bucket":
            bucket_create.pop(op.bucket, None)
            retained.pop(op.bucket, None)
            versioned.discard(op.bucket)
            for mapping in (live_object, bucket_config):
                for gone in [k for k in mapping if k[0] == op.bucket]:
                    del mapping[gone]
            for keys in (pinned, resurrecting):
                keys.difference_update({k for k in keys if k[0] == op.bucket})
        elif op.kind == "bucket_config":
            bucket_config[(op.bucket, op.subresource)] = index
            if op.enables_versioning:
                versioned.add(op.bucket)
        elif op.kind == "put":
            write(target, [index], op.copy_source)
        elif op.kind == "mpu_part" and item.upload in uploads:
            uploads[item.upload].append(index)
            if op.copy_source is not None:
                pinned.add(op.copy_source)
        elif op.kind == "mpu_complete" and item.upload in uploads:
            write(target, [*uploads.pop(item.upload), index], None)
        elif op.kind == "mpu_abort":
            uploads.pop(item.upload, None)
        elif op.kind == "object_config":
            if target in live_object:
                live_object[target].append(index)
        elif op.kind in ("delete", "delete_many"):
            targets = [target] if op.kind == "delete" else [(op.bucket, key) for key in op.deleted_keys]
            if op.bucket in versioned:
                for each in targets:
                    live_object.setdefault(each, []).append(index)
                continue
            for each in targets:
                supersede(each, index)
        elif op.kind == "other":
            retained.setdefault(op.bucket, []).append(index)
    kept: set[int] = set()
    for group in (*bucket_create.values(), *live_object.values(), *retained.values()):
        kept.update(group)
    kept.update(bucket_config.values())
    return sorted(kept)


# ---------------------------------------------------------------------------------------------- replay
@dataclass
class RestoreSummary:
    """What a start restored; written to ``restore.json`` for :meth:`LocalS3Server.after_start`."""

    log_path: str
    entries_read: int = 0
    entries_replayed: int = 0
    failed_on_replay: int = 0
    """State-changing requests that failed when replayed (as they did originally: e.g. a lost 412 race)."""
    entries_kept: int = 0
    objects: int = 0
    buckets: int = 0
    torn_tail_bytes: int = 0
    log_bytes_before: int = 0
    log_bytes_after: int = 0
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)

    def line(self) -> str:
        text = (
            f"restored {self.objects:,} object{'' if self.objects == 1 else 's'} in {self.buckets} bucket(s) from "
            f"{Path(self.log_path).parent} in "
            f"{self.seconds:.1f} s (log {self.log_bytes_before / 1e6:.1f} -> {self.log_bytes_after / 1e6:.1f} MB)"
        )
        if self.torn_tail_bytes:
            text += f"; ignored a torn last request ({self.torn_tail_bytes:,} bytes, never acknowledged)"
        return text


def _recorded_upload_id(entry: LogEntry) -> str:
    return dict(parse_qsl(urlsplit(entry.url).query, keep_blank_values=True)).get("uploadId", "")


class _Replayer:
    """Sends recorded requests to moto's WSGI app in-process and maps multipart upload ids."""

    def __init__(self, app: Any) -> None:
        from moto.moto_server.werkzeug_app import create_backend_app
        from werkzeug.test import Client

        self.client = Client(app)
        # moto's dispatcher spends ~1 ms per request finding the service (stat calls over every module);
        # signed S3 requests go straight to an S3 app, which shares the same in-memory backend.
        self.s3_client = Client(create_backend_app("s3"))
        self.new_id: dict[str, str] = {}  # recorded upload id -> id of the upload this replay created
        self.open_uploads: dict[tuple[str, str], deque[tuple[str, int]]] = {}  # key -> (new id, create index)
        self.create_of: dict[int, str] = {}  # create index -> recorded id (learnt from its first part)

    def send(self, index: int, entry: LogEntry, op: Operation) -> Replayed:
        parts = urlsplit(entry.url)
        query = parts.query
        upload = ""
        if op.kind in ("mpu_part", "mpu_complete", "mpu_abort"):
            upload = _recorded_upload_id(entry)
            if upload not in self.new_id and self.open_uploads.get((op.bucket, op.key)):
                mapped, create_index = self.open_uploads[(op.bucket, op.key)].popleft()
                self.new_id[upload] = mapped
                self.create_of[create_index] = upload
            if upload in self.new_id:
                pairs = parse_qsl(query, keep_blank_values=True)
                pairs = [(k, self.new_id[upload] if k == "uploadId" else v) for k, v in pairs]
                query = "&".join(
                    f"{quote(k, safe='')}={quote(v, safe='')}" if v else quote(k, safe="") for k, v in pairs
                )
        headers = [(k, v) for k, v in entry.headers.items() if k.lower() not in ("content-length", "transfer-encoding")]
        signed_for_s3 = "/s3/aws4_request" in (entry.header("Authorization") or "")
        client = self.s3_client if signed_for_s3 and op.kind not in ("other", "reset") else self.client
        response = client.open(
            path=parts.path,
            query_string=query,
            method=entry.method,
            headers=headers,
            data=entry.body_bytes(),
            base_url=f"http://{entry.header('Host') or 'localhost'}",
        )
        status = response.status_code
        body = response.get_data()
        response.close()
        if op.kind == "mpu_create" and 200 <= status < 300:
            new = _xml_text(body, "UploadId")
            if new:
                self.open_uploads.setdefault((op.bucket, op.key), deque()).append((new, index))
        return Replayed(op, status, upload)

    def finish(self, replayed: list[Replayed]) -> list[Replayed]:
        """Give each multipart create the recorded id its parts used (known only once they were seen)."""
        return [
            Replayed(item.operation, item.status, self.create_of.get(index, item.upload))
            if item.operation.kind == "mpu_create"
            else item
            for index, item in enumerate(replayed)
        ]


def _xml_text(body: bytes, tag: str) -> str:
    with contextlib.suppress(ElementTree.ParseError):
        for element in ElementTree.fromstring(body).iter():
            if element.tag.rsplit("}", 1)[-1] == tag:
                return element.text or ""
    return ""


def _fsync_dir(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def should_compact(entry_bytes: list[int], keep: list[int], torn_tail_bytes: int = 0) -> bool:
    """Rewrite the log when it drops a torn tail, or at least 10 % of it by bytes (and 1 MB) or by entries (and
    1,000 of them).

    Every start logs a few reads (health checks) of its own: rewriting a large log for those alone would copy
    it on each ``up`` for nothing. Entries count apart from bytes: a few big objects can hide thousands of
    superseded small writes, each of which costs a replay.
    """
    if torn_tail_bytes:
        return True
    total_bytes, total_entries = sum(entry_bytes), len(entry_bytes)
    dropped_bytes = total_bytes - sum(entry_bytes[index] for index in keep)
    dropped_entries = total_entries - len(keep)
    by_bytes = dropped_bytes >= 1_000_000 and dropped_bytes >= total_bytes / 10
    by_entries = dropped_entries >= 1_000 and dropped_entries >= total_entries / 10
    return by_bytes or by_entries


def write_compacted(log_path: Path, keep: list[int]) -> int:
    """Rewrite ``log_path`` to the entries at ``keep`` (unconditional), crash safe; returns its new size.

    A crash before the rename leaves the old log (and a stray ``.tmp`` that the next start overwrites);
    after it, the new one. Either replays to the same store.
    """
    wanted = set(keep)
    temporary = log_path.with_name(log_path.name + ".tmp")
    with temporary.open("w", encoding="utf-8") as out:
        for index, entry in enumerate(read_log(log_path, LogReadReport())):
            if index in wanted:
                out.write(entry.unconditional().to_json())
                out.write("\n")
        out.flush()
        os.fsync(out.fileno())
    os.replace(temporary, log_path)
    _fsync_dir(log_path.parent)
    return log_path.stat().st_size


def restore(app: Any, log_path: Path, progress: Callable[[str], None] = lambda _: None) -> RestoreSummary:
    """Replay ``log_path`` into moto's ``app`` (recording must be off) and compact it.

    Raises:
        RecordingError: the log is damaged somewhere other than a torn last line.
    """
    started = time.monotonic()
    summary = RestoreSummary(log_path=str(log_path))
    if not log_path.exists():
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_path.touch()
    summary.log_bytes_before = log_path.stat().st_size
    report = LogReadReport()
    replayer = _Replayer(app)
    replayed: list[Replayed] = []
    for index, entry in enumerate(read_log(log_path, report)):
        op = classify(entry)
        if op.kind == "read":
            replayed.append(Replayed(op, 200))
            continue
        item = replayer.send(index, entry, op)
        replayed.append(item)
        summary.entries_replayed += 1
        if not item.ok:
            summary.failed_on_replay += 1
        if summary.entries_replayed % 1000 == 0:
            progress(f"replayed {summary.entries_replayed:,} requests")
    replayed = replayer.finish(replayed)
    summary.entries_read = len(replayed)
    summary.torn_tail_bytes = report.torn_tail_bytes
    keep = entries_to_keep(replayed)
    summary.entries_kept = len(keep)
    if should_compact(report.entry_bytes, keep, report.torn_tail_bytes):
        summary.log_bytes_after = write_compacted(log_path, keep)
    else:
        summary.log_bytes_after = summary.log_bytes_before
    summary.buckets, summary.objects = _count_objects()
    summary.seconds = time.monotonic() - started
    return summary


def _count_objects() -> tuple[int, int]:
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends

    backend = s3_backends[DEFAULT_ACCOUNT_ID]["global"]
    return len(backend.buckets), sum(len(bucket.keys) for bucket in backend.buckets.values())


# ---------------------------------------------------------------------------------------------- the server
def _serialise_recording() -> None:
    """Make moto's recorder write one request at a time, and only requests that may change state.

    Each request appends ``json + "\\n"`` in two writes when the entry is larger than the file buffer, so
    two threads could interleave lines; a lock keeps every line whole (the parser copes either way).
    """
    from moto.moto_api import recorder

    lock = threading.Lock()
    record = recorder._record_request

    def locked(request: Any, *args: Any, **kwargs: Any) -> None:
        # Reads change nothing: logging them would only grow the file (and the next start's compaction).
        if getattr(request, "method", None) in READ_METHODS:
            return
        with lock:
            record(request, *args, **kwargs)

    recorder._record_request = locked  # type: ignore[method-assign]


class SerialWrites:
    """WSGI middleware: state-changing requests are recorded and applied one at a time, reads in parallel.

    moto checks ``If-None-Match``/``If-Match`` and then stores, with nothing in between held, and its
    recorder logs a request before handling it: two concurrent conditional writes could both succeed, or be
    logged in one order and applied in the other, so a replay would crown the other winner. One write at a
    time makes the log's order the order the store saw (moto runs under the GIL: little is lost).
    """

    def __init__(self, app: Any) -> None:
        self.app = app
        self.lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        if environ.get("REQUEST_METHOD", "GET") in READ_METHODS:
            return self.app(environ, start_response)
        with self.lock:
            return self.app(environ, start_response)


def serve(data_dir: Path, host: str, port: int) -> None:
    """Restore the store from ``data_dir``, then run moto's server on ``host:port`` until killed."""
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir / LOG_NAME
    # The recorder reads these when moto is imported; recording stays off until the replay is done.
    os.environ["MOTO_RECORDER_FILEPATH"] = str(log_path)
    os.environ.pop("MOTO_ENABLE_RECORDING", None)
    from moto.moto_api import recorder
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import run_simple

    app = DomainDispatcherApplication(create_backend_app)
    summary_path = data_dir / SUMMARY_NAME
    summary_path.unlink(missing_ok=True)
    try:
        summary = restore(app, log_path, progress=lambda line: print(line, flush=True))
    except RecordingError as error:
        summary = RestoreSummary(log_path=str(log_path), errors=[str(error)])
        summary_path.write_text(json.dumps(asdict(summary), indent=2))
        print(f"driftline s3: {error}", file=sys.stderr, flush=True)
        raise SystemExit(2) from error
    summary_path.write_text(json.dumps(asdict(summary), indent=2))
    print(summary.line(), flush=True)
    _serialise_recording()
    recorder.start_recording()
    run_simple(host, port, SerialWrites(app), threaded=True, request_handler=MotoRequestHandler)


# ---------------------------------------------------------------------------------------------- stack interface
class LocalS3Server:
    """The stack's S3 part: what to run, and what to report once it answers.

    Args:
        data_dir: where the recording lives (``<state_dir>/s3``).
        host / port: where the server listens (loopback).
        bin_dir: the stack's virtualenv ``bin`` (its Python runs the server).
    """

    def __init__(self, data_dir: Path, host: str, port: int, bin_dir: Path) -> None:
        self.data_dir = data_dir
        self.host = host
        self.port = port
        self.bin_dir = bin_dir

    @property
    def log_path(self) -> Path:
        return self.data_dir / LOG_NAME

    @property
    def summary_path(self) -> Path:
        return self.data_dir / SUMMARY_NAME

    def command(self) -> list[str]:
        python = self.bin_dir / "python"
        return [
            str(python if python.exists() else Path(sys.executable)),
            "-m",
            "driftline.cli.s3_server",
            "--data-dir",
            str(self.data_dir),
            "--host",
            self.host,
            "--port",
            str(self.port),
        ]

    def env(self) -> dict[str, str]:
        """Extra environment of the server process."""
        return {"MOTO_RECORDER_FILEPATH": str(self.log_path), "PYTHONUNBUFFERED": "1"}

    def after_start(self, url: str, progress: Callable[[str], None] = lambda _: None) -> str:
        """One line on what the start restored (the server restores before it listens, so this only reads).

        Raises:
            StackError: the server answered at ``url`` but wrote no restore summary (it is not ours).
        """
        try:
            summary = RestoreSummary(**json.loads(self.summary_path.read_text()))
        except (FileNotFoundError, json.JSONDecodeError, TypeError) as error:
            raise StackError(
                f"the S3 server at {url} wrote no restore summary to {self.summary_path}: is another server on "
                "that port?"
            ) from error
        line = summary.line()
        progress(line)
        return line

    def before_stop(self, url: str) -> None:
        """Nothing to do: every acknowledged write is already in the log (SIGTERM and SIGKILL are both safe)."""
        return None

    def describe(self) -> dict[str, Any]:
        """For ``driftline status --json``."""
        info: dict[str, Any] = {
            "kind": "moto_server + recorder (compacted on start)",
            "data_dir": str(self.data_dir),
            "log": str(self.log_path),
            "log_bytes": self.log_path.stat().st_size if self.log_path.exists() else 0,
        }
        with contextlib.suppress(FileNotFoundError, json.JSONDecodeError):
            info["last_restore"] = json.loads(self.summary_path.read_text())
        return info


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="moto's S3 server whose data survives restarts")
    parser.add_argument("--data-dir", type=Path, required=True, help="e.g. .driftline/s3")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000)
    args = parser.parse_args(argv)
    serve(args.data_dir.resolve(), args.host, args.port)


if __name__ == "__main__":
    main()
