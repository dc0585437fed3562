"""Which profile a batch is compared with.

The reference is the champion's training-data profile (``profiles/<model>/reference/<version>.bin``).
Before any champion exists, the model's first profiled batch becomes a *provisional* reference
(``profiles/<model>/reference/provisional.bin``, created with a conditional write so exactly one batch
wins); the first promotion replaces it with the champion's own reference.

A reference is read for every batch checked against it: ``ReferenceCache`` keeps it parsed and prepared
(``drift.PreparedReference``) per process, keyed by the object's ETag and sha256.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from dataclasses import dataclass

from driftline.data import profiling
from driftline.errors import ConflictError, ObjectNotFoundError
from driftline.statistics.drift import PreparedReference
from driftline.storage import layout
from driftline.storage.store import ObjectStore


@dataclass(frozen=True)
class Reference:
    """The reference profile in force for a model."""

    key: str
    version: str | None
    provisional: bool
    established_by: str | None = None  # the batch that became the provisional reference


def champion_version(store: ObjectStore, model: str) -> str | None:
    """The champion alias's version, None before the first promotion."""
    try:
        return json.loads(store.get(layout.alias(model, "champion")))["version"]
    except ObjectNotFoundError:
        return None


def resolve_reference(store: ObjectStore, model: str) -> Reference | None:
    """The champion's reference profile, else the provisional one, else None."""
    version = champion_version(store, model)
    if version is not None:
        return Reference(key=layout.reference_profile(model, version), version=version, provisional=False)
    key = layout.reference_profile(model, layout.PROVISIONAL_REFERENCE)
    if store.exists(key):
        return Reference(key=key, version=None, provisional=True)
    return None


def establish_provisional(store: ObjectStore, model: str, batch_id: str, profile: bytes) -> Reference:
    """Make this batch's profile the provisional reference unless another batch already is."""
    key = layout.reference_profile(model, layout.PROVISIONAL_REFERENCE)
    try:
        store.create(key, profile)
        return Reference(key=key, version=None, provisional=True, established_by=batch_id)
    except ConflictError:
        return Reference(key=key, version=None, provisional=True)


class ReferenceCache:
    """Reference profiles parsed and prepared once, for every batch checked against them in this process.

    Entries are keyed by where the object lives and by its ETag and recorded sha256, read with a
    metadata-only request before each use: a reference that is replaced, deleted and recreated, or
    rewritten in place gets a new ETag and is read afresh, never served stale. A hit skips the read (a
    full GET plus whylogs' parse, tens of ms); a miss reads the bytes and their ETag in one request
    and keys the entry by those. A hit trusts the sha256 checked when its entry was read: bytes that
    changed while the ETag stayed (no S3 write does that) are noticed at the next miss. Least recently
    used entries go first beyond ``maxsize``.

    Args:
        maxsize: prepared references kept (a 50-column one holds its parsed profile, a few MB).
    """

    def __init__(self, maxsize: int = 8) -> None:
        if maxsize < 1:
            raise ValueError(f"maxsize must be >= 1, got {maxsize}")
        self.maxsize = maxsize
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[tuple[str, str, str], PreparedReference] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def get(self, store: ObjectStore, key: str) -> PreparedReference:
        """The prepared profile stored at ``key``; raises what ``store.get`` and ``profiling.deserialize`` raise.

        Raises:
            ObjectNotFoundError: no object at ``key``.
            IntegrityError: its bytes do not match their sha256, or it has none (not written by driftline).
            InputError: the bytes are not a whylogs profile.
        """
        info = store.info(key)
        if not info.sha256:
            # Not written by driftline: store.get refuses it with the usual IntegrityError.
            return PreparedReference(profiling.deserialize(store.get(key), key))
        location = store.location(key)
        with self._lock:
            prepared = self._entries.get((location, info.etag, info.sha256))
            if prepared is not None:
                self._entries.move_to_end((location, info.etag, info.sha256))
                self.hits += 1
                return prepared
        stored = store.read(key)
        prepared = PreparedReference(profiling.deserialize(stored.data, key))
        with self._lock:
            self.misses += 1
            self._entries[(location, stored.etag, stored.sha256)] = prepared
            while len(self._entries) > self.maxsize:
                self._entries.popitem(last=False)
        return prepared


# Per process: a worker's flow run checking many batches of a model reads its reference once.
REFERENCE_CACHE = ReferenceCache()


def prepared_reference(store: ObjectStore, key: str, cache: ReferenceCache | None = None) -> PreparedReference:
    """The reference profile at ``key``, prepared for drift checks, from ``cache`` (the process's by default)."""
    return (REFERENCE_CACHE if cache is None else cache).get(store, key)
