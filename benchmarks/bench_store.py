"""S3Store overhead against raw boto3 on the same moto server: sha256 verification and conditional writes.

Baseline: plain boto3 ``put_object`` / ``get_object`` with the same client settings. Ratio > 1 means
driftline is slower than the baseline by that factor.

    .venv/bin/python -m benchmarks store
"""

from __future__ import annotations

import logging
import os
import statistics
import time
import uuid

from driftline.storage.store import S3Store
from tests.support import moto_server


def _median_seconds(fn, repeats: int) -> float:
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def main() -> dict[str, dict]:
    """Median times of four store operations, each against its boto3 equivalent, as result entries."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's per-request access log
    with moto_server() as endpoint:
        bucket_name = f"bench-{uuid.uuid4().hex[:8]}"
        store = S3Store(bucket_name, endpoint_url=endpoint, access_key_id="b", secret_access_key="b")
        store.create_bucket()
        client, bucket = store._client, store.bucket
        big = os.urandom(8 * 1024 * 1024)
        small = b'{"version": "v1"}'
        store.put("big", big)
        client.put_object(Bucket=bucket, Key="big-raw", Body=big)

        rows = []
        raw_get = _median_seconds(lambda: client.get_object(Bucket=bucket, Key="big-raw")["Body"].read(), 15)
        ours_get = _median_seconds(lambda: store.get("big"), 15)
        rows.append(("store_get_8mib_ms", "get 8 MiB (verified sha256)", ours_get, raw_get))

        raw_put = _median_seconds(lambda: client.put_object(Bucket=bucket, Key="big-raw", Body=big), 10)
        ours_put = _median_seconds(lambda: store.put("big", big), 10)
        rows.append(("store_put_8mib_ms", "put 8 MiB (sha256 metadata)", ours_put, raw_put))

        counter = iter(range(10**9))
        raw_small = _median_seconds(lambda: client.put_object(Bucket=bucket, Key=f"r/{next(counter)}", Body=small), 300)
        ours_create = _median_seconds(lambda: store.create(f"c/{next(counter)}", small), 300)
        rows.append(("store_create_small_ms", "create small (IfNoneMatch)", ours_create, raw_small))

        info = store.create("alias", small)
        etag = [info.etag]

        def cas() -> None:
            etag[0] = store.replace("alias", small, etag[0]).etag

        rows.append(("store_replace_small_ms", "replace small (IfMatch)", _median_seconds(cas, 300), raw_small))

    print(f"{'operation':34} {'driftline':>11} {'baseline':>11} {'ratio':>7}")
    for _, label, ours, baseline in rows:
        print(f"{label:34} {ours * 1e3:9.2f}ms {baseline * 1e3:9.2f}ms {ours / baseline:7.2f}")
    return {
        name: {
            "value": ours * 1e3,
            "unit": "ms",
            "baseline": baseline * 1e3,
            "ratio": ours / baseline,
            "notes": f"S3Store {label} on moto, median; baseline raw boto3; ratio = ours / baseline, lower is faster",
        }
        for name, label, ours, baseline in rows
    }


if __name__ == "__main__":
    import json

    print(json.dumps(main(), indent=2))
