"""What every task needs: settings and the store, built per call (cheap; nothing at import time)."""

from __future__ import annotations

from driftline.settings import Settings
from driftline.store import ObjectStore, open_store


def store() -> ObjectStore:
    return open_store(Settings())


def artifact_key(*parts: str) -> str:
    """Prefect artifact keys allow lowercase letters, digits and dashes only."""
    raw = "-".join(parts).lower()
    cleaned = "".join(char if char.isalnum() and char.isascii() else "-" for char in raw)
    return "-".join(filter(None, cleaned.split("-")))
