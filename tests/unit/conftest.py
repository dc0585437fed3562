from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support import moto_server


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """Endpoint of a real moto S3 server over HTTP, shared by the session."""
    with moto_server() as endpoint:
        yield endpoint
