"""S3Store overhead against raw boto3 on the same moto server: sha256 verification and conditional writes.

Baseline: plain boto3 ``put_object`` / ``get_object`` with the same client settings. Ratio > 1 means
driftline is slower than the baseline by that factor.
"""

from __future__ import annotations

import os
import statistics
import time
import uuid

from driftline.store import S3Store
from tests.support import moto_server


def _median_seconds(fn, repeats: int) -> float:
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def main() -> None:
    with moto_server() as endpoint:
        store = S3Store(f"bench-{uuid.uuid4().hex[:8]}", endpoint_url=endpoint, access_key_id="b", secret_access_key="b")
        store.create_bucket()
        client, bucket = store._client, store.bucket
        big = os.urandom(8 * 1024 * 1024)
        small = b'{"version": "v1"}'
        store.put("big", big)
        client.put_object(Bucket=bucket, Key="big-raw", Body=big)

        rows = []
        raw_get = _median_seconds(lambda: client.get_object(Bucket=bucket, Key="big-raw")["Body"].read(), 15)
        ours_get = _median_seconds(lambda: store.get("big"), 15)
        rows.append(("get 8 MiB (verified sha256)", ours_get, raw_get))

        raw_put = _median_seconds(lambda: client.put_object(Bucket=bucket, Key="big-raw", Body=big), 10)
        ours_put = _median_seconds(lambda: store.put("big", big), 10)
        rows.append(("put 8 MiB (sha256 metadata)", ours_put, raw_put))

        counter = iter(range(10**9))
        raw_small = _median_seconds(lambda: client.put_object(Bucket=bucket, Key=f"r/{next(counter)}", Body=small), 300)
        ours_create = _median_seconds(lambda: store.create(f"c/{next(counter)}", small), 300)
        rows.append(("create small (IfNoneMatch)", ours_create, raw_small))

        info = store.create("alias", small)
        etag = [info.etag]

        def cas() -> None:
            etag[0] = store.replace("alias", small, etag[0]).etag

        rows.append(("replace small (IfMatch)", _median_seconds(cas, 300), raw_small))

    print(f"{'operation':34} {'driftline':>11} {'baseline':>11} {'ratio':>7}")
    for name, ours, baseline in rows:
        print(f"{name:34} {ours * 1e3:9.2f}ms {baseline * 1e3:9.2f}ms {ours / baseline:7.2f}")


if __name__ == "__main__":
    main()
