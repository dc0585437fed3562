"""The local S3 keeps its data: moto's server with its recorder, replayed and compacted on start.

Servers are real processes started with :class:`LocalS3Server`'s own command and environment, exactly as
the stack runs them, on free loopback ports.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import httpx
import polars as pl
import pytest
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import ClientError

from driftline.cli.s3_server import (
    LocalS3Server,
    LogEntry,
    LogReadReport,
    Operation,
    RecordingError,
    Replayed,
    classify,
    entries_to_keep,
    parse_line,
    read_log,
    should_compact,
    write_compacted,
)
from driftline.errors import ConflictError, StackError
from driftline.storage.store import SHA256_METADATA_KEY, S3Store
from tests.support import BIN, REPO, free_port

BUCKET = "persist"
KEY_ID, SECRET = "driftline-local", "driftline-local-secret"


class Running:
    """A LocalS3Server process that tests stop with the signal they choose and start again."""

    def __init__(self, data_dir: Path) -> None:
        self.port = free_port()
        self.spec = LocalS3Server(data_dir, "127.0.0.1", self.port, BIN)
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None
        self.summary = ""

    def start(self) -> str:
        self.process = subprocess.Popen(
            self.spec.command(),
            cwd=REPO,
            env={**os.environ, **self.spec.env()},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/", timeout=1).status_code < 500:
                    self.summary = self.spec.after_start(self.url)
                    return self.summary
            assert self.process.poll() is None, f"server exited with {self.process.returncode}"
            time.sleep(0.05)
        raise AssertionError("the S3 server did not answer within 30 s")

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, sig)
        self.process.wait(10)

    def restart(self, sig: signal.Signals) -> str:
        self.stop(sig)
        return self.start()

    def client(self):
        return boto3.client(
            "s3",
            endpoint_url=self.url,
            aws_access_key_id=KEY_ID,
            aws_secret_access_key=SECRET,
            region_name="us-east-1",
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
        )

    def store(self) -> S3Store:
        return S3Store(
            BUCKET, prefix="driftline", endpoint_url=self.url, access_key_id=KEY_ID, secret_access_key=SECRET
        )


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Running]:
    running = Running(tmp_path / "s3")
    running.start()
    running.store().create_bucket()
    try:
        yield running
    finally:
        running.stop(signal.SIGKILL)


def _status(error: ClientError) -> int:
    return error.response["ResponseMetadata"]["HTTPStatusCode"]


def _state(client) -> dict[str, tuple[str, bytes, dict]]:
    """Every object of the bucket: ETag, bytes and metadata."""
    state = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
        for item in page.get("Contents", []):
            response = client.get_object(Bucket=BUCKET, Key=item["Key"])
            state[item["Key"]] = (response["ETag"], response["Body"].read(), response["Metadata"])
    return state


def _storage(url: str) -> dict[str, str]:
    return {
        "aws_endpoint_url": url,
        "aws_access_key_id": KEY_ID,
        "aws_secret_access_key": SECRET,
        "aws_region": "us-east-1",
        "aws_allow_http": "true",
    }


# ---------------------------------------------------------------------------------------------- real servers
@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGKILL], ids=["down-up", "sigkill"])
def test_objects_survive_a_restart_with_etags_metadata_and_conditional_writes(
    server: Running, stop_signal: signal.Signals
) -> None:
    store, client = server.store(), server.client()
    pointer = store.create("models/churn/aliases/champion.json", b'{"version": "v1"}')
    moved = store.replace("models/churn/aliases/champion.json", b'{"version": "v2"}', pointer.etag)
    store.put("models/churn/spec.json", b'{"name": "churn"}')
    store.put("models/churn/gone.json", b"{}")
    store.delete("models/churn/gone.json")
    frame = pl.DataFrame({"x": list(range(1000)), "y": [i * 0.5 for i in range(1000)]})
    frame.write_parquet(f"s3://{BUCKET}/batches/b1.parquet", storage_options=_storage(server.url))
    blob = os.urandom(11 * 2**20)
    client.upload_fileobj(
        io.BytesIO(blob), BUCKET, "blobs/big.bin", Config=TransferConfig(multipart_threshold=5 * 2**20)
    )
    before = _state(client)

    summary = server.restart(stop_signal)

    assert "restored 4 objects" in summary
    assert _state(client) == before
    assert not store.exists("models/churn/gone.json")
    head = client.head_object(Bucket=BUCKET, Key="driftline/models/churn/spec.json")
    assert head["Metadata"][SHA256_METADATA_KEY] == hashlib.sha256(b'{"name": "churn"}').hexdigest()
    assert store.get("models/churn/aliases/champion.json") == b'{"version": "v2"}'
    with pytest.raises(ConflictError):
        store.create("models/churn/aliases/champion.json", b'{"version": "v3"}')
    with pytest.raises(ConflictError):
        store.replace("models/churn/aliases/champion.json", b'{"version": "v3"}', pointer.etag)
    with pytest.raises(ClientError) as raised:
        client.put_object(Bucket=BUCKET, Key="driftline/models/churn/spec.json", Body=b"x", IfNoneMatch="*")
    assert _status(raised.value) == 412
    store.replace("models/churn/aliases/champion.json", b'{"version": "v3"}', moved.etag)
    ranged = client.get_object(Bucket=BUCKET, Key="blobs/big.bin", Range="bytes=10-19")
    assert ranged["ResponseMetadata"]["HTTPStatusCode"] == 206 and ranged["Body"].read() == blob[10:20]
    read_back = pl.read_parquet(f"s3://{BUCKET}/batches/b1.parquet", storage_options=_storage(server.url))
    assert read_back.equals(frame)


def test_writes_after_a_restore_survive_the_next_kill(server: Running) -> None:
    """Multipart uploads of both lives too: each replay maps moto's new random upload ids to the recorded ones."""
    store, client = server.store(), server.client()
    parts = TransferConfig(multipart_threshold=5 * 2**20, multipart_chunksize=5 * 2**20)
    blobs = {"blobs/before.bin": os.urandom(10 * 2**20 + 7), "blobs/after.bin": os.urandom(10 * 2**20 + 11)}
    first = store.create("registry/a.json", b'{"a": 1}')
    client.upload_fileobj(io.BytesIO(blobs["blobs/before.bin"]), BUCKET, "blobs/before.bin", Config=parts)
    server.restart(signal.SIGKILL)
    store.replace("registry/a.json", b'{"a": 2}', first.etag)
    store.create("registry/b.json", b'{"b": 1}')
    client.upload_fileobj(io.BytesIO(blobs["blobs/after.bin"]), BUCKET, "blobs/after.bin", Config=parts)
    etags = {key: client.head_object(Bucket=BUCKET, Key=key)["ETag"] for key in blobs}

    server.restart(signal.SIGKILL)

    assert store.get("registry/a.json") == b'{"a": 2}'
    assert store.get("registry/b.json") == b'{"b": 1}'
    with pytest.raises(ConflictError):
        store.replace("registry/a.json", b'{"a": 3}', first.etag)
    for key, blob in blobs.items():
        response = client.get_object(Bucket=BUCKET, Key=key)
        assert (response["ETag"], response["Body"].read()) == (etags[key], blob)
    assert all(etag.endswith('-3"') for etag in etags.values())  # really multipart


def test_the_winner_of_concurrent_conditional_creates_is_the_one_restored(server: Running) -> None:
    """Claims: of racing ``If-None-Match: *`` writers exactly one wins, and a replay crowns the same one."""
    from concurrent.futures import ThreadPoolExecutor

    stores = [server.store() for _ in range(4)]
    winners: dict[str, bytes] = {}

    def claim(writer: int, key: str) -> None:
        body = f'{{"writer": {writer}}}'.encode()
        with contextlib.suppress(ConflictError):
            stores[writer].create(key, body)
            assert key not in winners, f"{key} claimed twice"
            winners[key] = body

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda job: claim(*job), [(w, f"claims/{k}.json") for k in range(25) for w in range(4)]))
    assert len(winners) == 25

    server.restart(signal.SIGKILL)

    assert {key: server.store().get(key) for key in winners} == winners


def test_compaction_shrinks_the_log_and_replays_to_the_same_state(server: Running) -> None:
    store, client = server.store(), server.client()
    infos = {f"profiles/{i}.json": store.create(f"profiles/{i}.json", b'{"round": 0}') for i in range(40)}
    for round_number in range(1, 4):
        for key, info in infos.items():
            store.get(key)
            profile = {"round": round_number, "sketch": "x" * 10_000}  # superseded: ~1.6 MB to drop
            infos[key] = store.replace(key, json.dumps(profile).encode(), info.etag)
    for i in range(30, 40):
        store.delete(f"profiles/{i}.json")
    with contextlib.suppress(ConflictError):  # a lost race: logged, changed nothing
        store.create("profiles/0.json", b"loser")
    before = _state(client)
    raw_size = server.spec.log_path.stat().st_size

    server.restart(signal.SIGKILL)
    compacted_size = server.spec.log_path.stat().st_size
    assert _state(client) == before
    server.restart(signal.SIGTERM)

    assert compacted_size < raw_size / 4
    assert _state(client) == before
    described = server.spec.describe()
    assert described["last_restore"]["objects"] == 30
    assert described["log_bytes"] <= compacted_size * 1.5  # only the re-reads of this test since


def test_a_torn_last_line_is_ignored_and_reported(server: Running) -> None:
    store = server.store()
    store.put("registry/kept.json", b'{"kept": true}')
    server.stop(signal.SIGKILL)
    entry = LogEntry("PUT", f"{server.url}/{BUCKET}/driftline/registry/torn.json", {"Host": "x"}, "e30=", True)
    with server.spec.log_path.open("a") as log:
        log.write(entry.to_json()[:40])  # a write SIGKILL cut short: never acknowledged

    summary = server.start()

    assert "torn" in summary
    assert store.get("registry/kept.json") == b'{"kept": true}'
    assert not store.exists("registry/torn.json")
    assert server.spec.log_path.read_bytes().endswith(b"\n")


def test_command_and_environment_keep_data_under_the_given_dir(tmp_path: Path) -> None:
    spec = LocalS3Server(tmp_path / "s3", "127.0.0.1", 4999, BIN)
    command = spec.command()
    assert command[1:3] == ["-m", "driftline.cli.s3_server"]
    assert command[command.index("--host") + 1] == "127.0.0.1"
    assert spec.env()["MOTO_RECORDER_FILEPATH"] == str(tmp_path / "s3" / "recording.jsonl")
    assert spec.describe()["log_bytes"] == 0
    with pytest.raises(StackError, match="restore summary"):
        spec.after_start("http://127.0.0.1:4999")


# ---------------------------------------------------------------------------------------------- pure rules
def _entry(method: str, path: str, body: bytes = b"", **headers: str) -> LogEntry:
    import base64

    return LogEntry(method, f"http://127.0.0.1:1{path}", dict(headers), base64.b64encode(body).decode(), True)


@pytest.mark.parametrize(
    ("method", "path", "headers", "kind"),
    [
        ("GET", "/b/k", {}, "read"),
        ("HEAD", "/b/k", {}, "read"),
        ("GET", "/b?list-type=2", {}, "read"),
        ("PUT", "/b", {}, "create_bucket"),
        ("DELETE", "/b", {}, "delete_bucket"),
        ("PUT", "/b?versioning", {}, "bucket_config"),
        ("PUT", "/b/a%2Fb.json", {}, "put"),
        ("PUT", "/b/k", {"x-amz-copy-source": "/b/src"}, "put"),
        ("DELETE", "/b/k", {}, "delete"),
        ("POST", "/b?delete", {}, "delete_many"),
        ("POST", "/b/k?uploads", {}, "mpu_create"),
        ("PUT", "/b/k?partNumber=1&uploadId=U", {}, "mpu_part"),
        ("POST", "/b/k?uploadId=U", {}, "mpu_complete"),
        ("DELETE", "/b/k?uploadId=U", {}, "mpu_abort"),
        ("PUT", "/b/k?tagging", {}, "object_config"),
        ("POST", "/moto-api/reset", {}, "reset"),
        ("GET", "/moto-api/data.json", {}, "read"),
        ("GET", "/", {}, "read"),
    ],
)
def test_requests_are_classified_by_what_they_change(method: str, path: str, headers: dict, kind: str) -> None:
    assert classify(_entry(method, path, **headers)).kind == kind


def test_a_key_is_percent_decoded_and_a_copy_names_its_source() -> None:
    op = classify(_entry("PUT", "/b/a%2Fb.json", **{"x-amz-copy-source": "b/src%20x"}))
    assert (op.bucket, op.key, op.copy_source) == ("b", "a/b.json", ("b", "src x"))


def test_delete_objects_lists_the_keys_it_deletes() -> None:
    body = b'<Delete xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Object><Key>a</Key></Object><Object><Key>b</Key></Object></Delete>'
    assert classify(_entry("POST", "/b?delete", body)).deleted_keys == ("a", "b")


def _ops(*items: tuple[str, str, int] | tuple[str, str, int, str]) -> list[Replayed]:
    """(kind, key, status[, upload]) in bucket ``b``."""
    return [
        Replayed(Operation(kind=item[0], bucket="b", key=item[1]), item[2], item[3] if len(item) > 3 else "")
        for item in items
    ]


@pytest.mark.parametrize(
    ("history", "kept"),
    [
        pytest.param(_ops(("create_bucket", "", 200), ("put", "k", 200), ("read", "k", 200)), [0, 1], id="reads"),
        pytest.param(_ops(("put", "k", 200), ("put", "k", 200)), [1], id="superseded-put"),
        pytest.param(_ops(("put", "k", 200), ("put", "k", 412)), [0], id="failed-conditional-put-supersedes-nothing"),
        pytest.param(_ops(("put", "k", 200), ("delete", "k", 204)), [], id="deleted"),
        pytest.param(_ops(("put", "k", 200), ("delete", "k", 204), ("put", "k", 200)), [2], id="recreated"),
        pytest.param(
            _ops(("mpu_create", "k", 200, "U"), ("mpu_part", "k", 200, "U"), ("mpu_complete", "k", 200, "U")),
            [0, 1, 2],
            id="multipart-completed",
        ),
        pytest.param(
            _ops(("put", "k", 200), ("mpu_create", "k", 200, "U"), ("mpu_part", "k", 200, "U")),
            [0],
            id="multipart-never-completed",
        ),
        pytest.param(
            _ops(("mpu_create", "k", 200, "U"), ("mpu_part", "k", 200, "U"), ("mpu_abort", "k", 204, "U")),
            [],
            id="multipart-aborted",
        ),
        pytest.param(
            _ops(("create_bucket", "", 200), ("put", "k", 200), ("delete_bucket", "", 204), ("create_bucket", "", 200)),
            [3],
            id="bucket-deleted",
        ),
        pytest.param(_ops(("put", "k", 200), ("object_config", "k", 200)), [0, 1], id="tagging-follows-its-put"),
        pytest.param(_ops(("put", "k", 200), ("reset", "", 200), ("put", "j", 200)), [2], id="moto-reset"),
        pytest.param(_ops(("other", "", 200), ("other", "", 400)), [0], id="unknown-kept-if-it-succeeded"),
    ],
)
def test_compaction_keeps_only_what_rebuilds_the_store(history: list[Replayed], kept: list[int]) -> None:
    assert entries_to_keep(history) == kept


def test_a_versioned_bucket_keeps_every_version() -> None:
    history = [
        Replayed(Operation("bucket_config", "b", subresource="versioning", enables_versioning=True), 200),
        *_ops(("put", "k", 200), ("put", "k", 200), ("delete", "k", 204)),
    ]
    assert entries_to_keep(history) == [0, 1, 2, 3]


def test_the_write_a_copy_read_is_kept_when_its_source_is_overwritten_or_deleted() -> None:
    history = [
        Replayed(Operation("put", "b", "src"), 200),
        Replayed(Operation("put", "b", "dst", copy_source=("b", "src")), 200),
        Replayed(Operation("put", "b", "src"), 200),
        Replayed(Operation("delete", "b", "src"), 204),
    ]
    assert entries_to_keep(history) == [0, 1, 3]
    # The copy overwritten in turn: what it read is kept anyway (conservative), with the delete after it.
    assert entries_to_keep([*history, Replayed(Operation("put", "b", "dst"), 200)]) == [0, 3, 4]


def test_delete_objects_removes_each_listed_key() -> None:
    history = [
        Replayed(Operation("put", "b", "a"), 200),
        Replayed(Operation("put", "b", "c"), 200),
        Replayed(Operation("delete_many", "b", deleted_keys=("a",)), 200),
    ]
    assert entries_to_keep(history) == [1]


def test_lines_written_concurrently_into_one_are_all_read() -> None:
    assert parse_line('{"method": "PUT"}{"method": "GET"}\n') == [{"method": "PUT"}, {"method": "GET"}]
    assert parse_line("\n") == []


def test_a_kept_write_is_replayed_unconditionally() -> None:
    entry = _entry("PUT", "/b/k", b"x", **{"If-Match": '"abc"', "If-None-Match": "*", "x-amz-meta-sha256": "s"})
    assert entry.unconditional().headers == {"x-amz-meta-sha256": "s"}


def test_a_damaged_line_before_the_end_names_the_file_and_line(tmp_path: Path) -> None:
    log = tmp_path / "recording.jsonl"
    good = _entry("PUT", "/b/k", b"x").to_json()
    log.write_text(f"{good}\n{good[:20]}\n{good}\n")
    with pytest.raises(RecordingError, match=rf"{log}: line 2"):
        list(read_log(log, LogReadReport()))


def test_a_torn_last_line_is_reported_not_read(tmp_path: Path) -> None:
    log = tmp_path / "recording.jsonl"
    good = _entry("PUT", "/b/k", b"x").to_json()
    log.write_text(f"{good}\n{good[:25]}")
    report = LogReadReport()
    assert len(list(read_log(log, report))) == 1
    assert report.torn_tail_bytes == 25


def test_compacted_log_is_written_whole_and_the_temporary_file_removed(tmp_path: Path) -> None:
    log = tmp_path / "recording.jsonl"
    lines = [_entry("PUT", f"/b/k{i}", b"x", **{"If-None-Match": "*"}).to_json() for i in range(3)]
    log.write_text("\n".join(lines) + "\n")
    (tmp_path / "recording.jsonl.tmp").write_text("left by a crash during an earlier compaction")

    write_compacted(log, [0, 2])

    entries = list(read_log(log, LogReadReport()))
    assert [e.url.rsplit("/", 1)[1] for e in entries] == ["k0", "k2"]
    assert all("If-None-Match" not in e.headers for e in entries)
    assert not (tmp_path / "recording.jsonl.tmp").exists()


@pytest.mark.parametrize(
    ("entry_bytes", "keep", "torn", "expected"),
    [
        ([10_000_000, 200, 200], [0], 0, False),  # a start's own health checks only
        ([1_000_000] * 10, [0], 0, True),
        ([100_000] * 10, [0], 0, False),  # under 1 MB to gain
        ([300] * 3000 + [200_000_000], [3000], 0, True),  # thousands of small writes hidden by one big object
        ([300] * 900, [0], 0, False),  # under 1,000 entries to gain
        ([100, 100], [0, 1], 7, True),  # a torn tail is always cut
    ],
)
def test_the_log_is_rewritten_only_when_it_gains_enough(
    entry_bytes: list[int], keep: list[int], torn: int, expected: bool
) -> None:
    assert should_compact(entry_bytes, keep, torn) is expected


def test_reads_leave_the_log_as_it_was(server: Running) -> None:
    store = server.store()
    store.create("registry/read-me.json", b'{"n": 1}')
    size = server.spec.log_path.stat().st_size
    for _ in range(50):
        store.get("registry/read-me.json")
        store.exists("registry/read-me.json")
        list(store.list("registry/"))
    assert server.spec.log_path.stat().st_size == size
    store.put("registry/read-me.json", b'{"n": 2}')
    assert server.spec.log_path.stat().st_size > size
