"""Which reference profile a batch is compared with: the champion's, else the provisional one, else none.

The cache of prepared references is tested in tests/unit/test_drift_cache.py; here, the choice of the
reference and the one-winner creation of the provisional reference, on a MemoryStore.
"""

from __future__ import annotations

import json

import pytest

from driftline.data import profiling
from driftline.data.references import (
    REFERENCE_CACHE,
    Reference,
    ReferenceCache,
    champion_version,
    establish_provisional,
    prepared_reference,
    resolve_reference,
)
from driftline.errors import ObjectNotFoundError
from driftline.models import registry
from driftline.storage import layout
from driftline.storage.store import MemoryStore
from tests.batches import example_batch

MODEL = "m"
PROVISIONAL_KEY = layout.reference_profile(MODEL, layout.PROVISIONAL_REFERENCE)


def _profile(seed: int) -> bytes:
    return profiling.serialize(profiling.profile_frame(example_batch(seed, rows=500).select("income", "region")))


def _champion(store: MemoryStore, version: str) -> None:
    registry.register_version(store, MODEL, version, f"booster {version}".encode(), {"decision": "champion"})
    current = registry.read_alias(store, MODEL, "champion")
    registry.move_alias(store, MODEL, "champion", version, expected=current, reason="test")


def test_a_model_without_champion_or_provisional_reference_has_none() -> None:
    store = MemoryStore()
    assert champion_version(store, MODEL) is None
    assert resolve_reference(store, MODEL) is None


def test_the_provisional_reference_is_used_until_a_champion_exists() -> None:
    store = MemoryStore()
    store.create(PROVISIONAL_KEY, _profile(1))
    assert resolve_reference(store, MODEL) == Reference(key=PROVISIONAL_KEY, version=None, provisional=True)


def test_the_champion_reference_wins_over_the_provisional_one() -> None:
    store = MemoryStore()
    store.create(PROVISIONAL_KEY, _profile(1))
    _champion(store, "v1")
    assert champion_version(store, MODEL) == "v1"
    assert resolve_reference(store, MODEL) == Reference(
        key=layout.reference_profile(MODEL, "v1"), version="v1", provisional=False
    )
    _champion(store, "v2")
    assert resolve_reference(store, MODEL).version == "v2"


def test_a_cleared_champion_alias_falls_back_to_the_provisional_reference() -> None:
    store = MemoryStore()
    store.create(PROVISIONAL_KEY, _profile(1))
    _champion(store, "v1")
    registry.move_alias(
        store, MODEL, "champion", None, expected=registry.read_alias(store, MODEL, "champion"), reason="x"
    )
    assert champion_version(store, MODEL) is None
    assert resolve_reference(store, MODEL).provisional


def test_the_first_batch_to_establish_the_provisional_reference_wins_and_later_ones_keep_its_bytes() -> None:
    store = MemoryStore()
    first, second = _profile(1), _profile(2)
    assert first != second
    won = establish_provisional(store, MODEL, "b1", first)
    lost = establish_provisional(store, MODEL, "b2", second)
    assert won == Reference(key=PROVISIONAL_KEY, version=None, provisional=True, established_by="b1")
    assert lost == Reference(key=PROVISIONAL_KEY, version=None, provisional=True, established_by=None)
    assert store.get(PROVISIONAL_KEY) == first


def test_prepared_reference_uses_the_given_cache_and_else_the_process_cache() -> None:
    store = MemoryStore()
    store.create(PROVISIONAL_KEY, _profile(1))
    own = ReferenceCache()
    prepared = prepared_reference(store, PROVISIONAL_KEY, own)
    assert prepared_reference(store, PROVISIONAL_KEY, own) is prepared
    assert (own.misses, own.hits) == (1, 1)
    REFERENCE_CACHE.clear()
    misses = REFERENCE_CACHE.misses
    default = prepared_reference(store, PROVISIONAL_KEY)
    assert default is not prepared and REFERENCE_CACHE.misses == misses + 1
    assert prepared_reference(store, PROVISIONAL_KEY) is default
    REFERENCE_CACHE.clear()


def test_clearing_the_cache_reads_the_reference_again() -> None:
    store, cache = MemoryStore(), ReferenceCache()
    store.create(PROVISIONAL_KEY, _profile(1))
    first = cache.get(store, PROVISIONAL_KEY)
    cache.clear()
    assert len(cache) == 0
    assert cache.get(store, PROVISIONAL_KEY) is not first and cache.misses == 2


def test_a_champion_whose_reference_profile_is_missing_is_not_found_when_prepared() -> None:
    """The alias names the reference; a missing object is an error, never a silent fallback to provisional."""
    store = MemoryStore()
    store.create(PROVISIONAL_KEY, _profile(1))
    store.put(layout.alias(MODEL, "champion"), json.dumps({"version": "v9"}).encode())
    reference = resolve_reference(store, MODEL)
    assert reference.key == layout.reference_profile(MODEL, "v9")
    with pytest.raises(ObjectNotFoundError):
        prepared_reference(store, reference.key, ReferenceCache())
