"""Flows called in-process against a real Prefect server and a real S3 server, both started once.

This tier runs in its own pytest process (see Makefile): Prefect settings chosen here would otherwise
leak into the other tiers.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import moto_server, postgres_server, prefect_server


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    with moto_server() as endpoint:
        yield endpoint


@pytest.fixture(scope="session")
def prefect_database() -> Iterator[str | None]:
    """None (SQLite), or the URL of a real PostgreSQL when DRIFTLINE_TEST_PREFECT_DATABASE=postgresql: `make
    test` runs the loop's tests (marker ``loop``) once more that way."""
    choice = os.environ.get("DRIFTLINE_TEST_PREFECT_DATABASE", "sqlite")
    if choice == "sqlite":
        yield None
        return
    if choice != "postgresql":
        raise pytest.UsageError(f"DRIFTLINE_TEST_PREFECT_DATABASE={choice!r}: expected sqlite or postgresql")
    with postgres_server() as url:
        yield url


@pytest.fixture(scope="session")
def prefect_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """PREFECT_HOME of the session's server (its SQLite database lives here when it uses SQLite)."""
    return tmp_path_factory.mktemp("prefect-home")


@pytest.fixture(scope="session")
def prefect_api_url(prefect_home: Path, prefect_database: str | None) -> Iterator[str]:
    with prefect_server(prefect_home, database_url=prefect_database) as api_url:
        yield api_url


@pytest.fixture(scope="session", autouse=True)
def flow_environment(s3_endpoint: str, prefect_api_url: str) -> Iterator[dict[str, str]]:
    """Point driftline and Prefect at the session's servers; disable the flow heartbeat (~1 s per run)."""
    from prefect.settings import PREFECT_API_URL, PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    from driftline.storage.store import S3Store

    patch = pytest.MonkeyPatch()
    env = {
        "DRIFTLINE_S3_ENDPOINT_URL": s3_endpoint,
        "DRIFTLINE_S3_BUCKET": "driftline-flows",
        "DRIFTLINE_AWS_ACCESS_KEY_ID": "test",
        "DRIFTLINE_AWS_SECRET_ACCESS_KEY": "test",
        "DRIFTLINE_PREFECT_API_URL": prefect_api_url,
    }
    for name, value in env.items():
        patch.setenv(name, value)
    S3Store("driftline-flows", endpoint_url=s3_endpoint, access_key_id="test", secret_access_key="test").create_bucket()
    with temporary_settings(updates={PREFECT_API_URL: prefect_api_url, PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        yield env
        # Flush logs and events while the server is still up; at interpreter exit it would be gone and
        # Prefect's workers would retry against it for a minute.
        from prefect.events.worker import EventsWorker
        from prefect.logging.handlers import APILogWorker

        APILogWorker.drain_all(timeout=10)
        EventsWorker.drain_all(timeout=10)
    patch.undo()
