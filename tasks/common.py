"""What every task needs: settings and the store (one boto3 client per process and configuration)."""

from __future__ import annotations

import json
import threading

from pydantic import SecretStr

from driftline.settings import Settings
from driftline.storage.store import ObjectStore, open_store

_stores: dict[str, ObjectStore] = {}
_lock = threading.Lock()


def store() -> ObjectStore:
    """The store the current DRIFTLINE_* settings describe; clients are reused (creating one costs ~0.4 s)."""
    settings = Settings()
    key = json.dumps(
        settings.model_dump(),
        sort_keys=True,
        default=lambda value: value.get_secret_value() if isinstance(value, SecretStr) else str(value),
    )
    with _lock:
        if key not in _stores:
            _stores[key] = open_store(settings)
        return _stores[key]


def artifact_key(*parts: str) -> str:
    """Prefect artifact keys allow lowercase letters, digits and dashes only."""
    raw = "-".join(parts).lower()
    cleaned = "".join(char if char.isalnum() and char.isascii() else "-" for char in raw)
    return "-".join(filter(None, cleaned.split("-")))
