"""Which database the flows tier's Prefect server really writes to (`make test` runs the loop on both)."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from flows.stack_check import stack_check

pytestmark = pytest.mark.loop


def _flow_run_names_in_postgres(url: str, name_like: str) -> list[str]:
    import asyncpg

    async def query() -> list[str]:
        connection = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            rows = await connection.fetch(
                "SELECT f.name FROM flow_run r JOIN flow f ON f.id = r.flow_id WHERE r.parameters::text LIKE $1",
                f"%{name_like}%",
            )
        finally:
            await connection.close()
        return [row["name"] for row in rows]

    return asyncio.run(query())


def test_flow_runs_are_rows_of_the_chosen_database(prefect_database: str | None, prefect_api_url: str) -> None:
    nonce = f"db-{uuid.uuid4().hex[:10]}"
    stack_check(nonce)
    if prefect_database is None:
        pytest.skip("SQLite run: DRIFTLINE_TEST_PREFECT_DATABASE=postgresql checks the PostgreSQL rows")
    assert _flow_run_names_in_postgres(prefect_database, nonce) == ["stack-check"]
