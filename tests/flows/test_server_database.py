"""Which database the flows tier's Prefect server really writes to (`make test` runs the loop on both)."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from pathlib import Path

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


def _flow_run_names_in_sqlite(path: Path, name_like: str) -> list[str]:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as connection:
        rows = connection.execute(
            "SELECT f.name FROM flow_run r JOIN flow f ON f.id = r.flow_id WHERE r.parameters LIKE ?",
            (f"%{name_like}%",),
        ).fetchall()
    return [row[0] for row in rows]


def test_flow_runs_are_rows_of_the_chosen_database(
    prefect_database: str | None, prefect_home: Path, prefect_api_url: str
) -> None:
    nonce = f"db-{uuid.uuid4().hex[:10]}"
    stack_check(nonce)
    sqlite_file = prefect_home / "prefect.db"
    if prefect_database is None:
        assert _flow_run_names_in_sqlite(sqlite_file, nonce) == ["stack-check"]
    else:
        assert _flow_run_names_in_postgres(prefect_database, nonce) == ["stack-check"]
        # ... and not in a SQLite file the server might have fallen back to.
        assert not sqlite_file.exists() or _flow_run_names_in_sqlite(sqlite_file, nonce) == []
