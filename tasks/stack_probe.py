"""Tasks of the stack-check flow: prove that a flow run reaches S3."""

from __future__ import annotations

import json
import os
import time

from prefect import task

from driftline.storage import layout
from tasks.common import store as open_configured_store


@task(retries=2, retry_delay_seconds=[1, 3])
def write_probe(nonce: str) -> str:
    """Create the probe object; return its sha256."""
    store = open_configured_store()
    payload = json.dumps({"nonce": nonce, "written_at": time.time()}).encode()
    return store.create(layout.stack_check_probe(nonce), payload, content_type="application/json").sha256


@task(retries=2, retry_delay_seconds=[1, 3])
def read_probe(nonce: str, sha256: str) -> str:
    """Read the probe back (verified) and delete it; return where it was."""
    store = open_configured_store()
    key = layout.stack_check_probe(nonce)
    stored = store.read(key)
    if stored.sha256 != sha256 or json.loads(stored.data)["nonce"] != nonce:
        raise RuntimeError(f"probe {key!r} read back different content")
    store.delete(key)
    return store.location(key)


TELEMETRY_VARIABLES = ("DO_NOT_TRACK", "WHYLOGS_NO_ANALYTICS", "PREFECT_SERVER_ANALYTICS_ENABLED")


@task
def telemetry_settings() -> dict[str, str | None]:
    """The telemetry switches as a flow run on the worker sees them (all must say off)."""
    return {name: os.environ.get(name) for name in TELEMETRY_VARIABLES}
