"""The per-process reference cache of drift checks: read once, never stale, bounded.

``check_batch_drift`` reads the model's reference for every batch; ``ReferenceCache`` keeps it parsed and
prepared, keyed by the object's location, ETag and sha256. Reports must be those of a check that reads
and parses the reference every time.
"""

from __future__ import annotations

import json
import uuid

import pytest

from driftline.data import profiling
from driftline.data.references import ReferenceCache
from driftline.errors import IntegrityError, ObjectNotFoundError
from driftline.loop.drift_checks import check_batch_drift
from driftline.statistics.drift import compare_profiles
from driftline.storage import layout
from driftline.storage.store import MemoryStore, ObjectStore, S3Store
from tests.batches import example_batch, example_spec

SPEC = example_spec("cached")
MODEL = SPEC.name


def _profile(seed: int, income_shift: float = 0.0) -> bytes:
    return profiling.serialize(profiling.profile_frame(example_batch(seed, rows=3000, income_shift=income_shift)))


def _promote(store: ObjectStore, version: str, profile: bytes) -> None:
    store.put(layout.reference_profile(MODEL, version), profile)
    store.put(layout.alias(MODEL, "champion"), json.dumps({"version": version}).encode())


def _add_batch(store: ObjectStore, batch_id: str, seed: int, income_shift: float = 0.0) -> None:
    store.put(layout.batch_profile(MODEL, batch_id), _profile(seed, income_shift))


def _plain_report(store: ObjectStore, reference_key: str, batch_id: str) -> dict:
    """The report of a check that reads and parses the reference itself."""
    reference = profiling.deserialize(store.get(reference_key))
    current = profiling.deserialize(store.get(layout.batch_profile(MODEL, batch_id)))
    report = compare_profiles(
        reference,
        current,
        numeric=SPEC.features.numeric,
        categorical=SPEC.features.categorical,
        policy=SPEC.drift,
    )
    return report.to_dict()


def test_batches_checked_against_one_reference_read_it_once_with_the_plain_reports() -> None:
    store, cache = MemoryStore(), ReferenceCache()
    _promote(store, "v1", _profile(1))
    for index, (batch_id, shift) in enumerate([("b1", 0.0), ("b2", 0.3), ("b3", 0.0)]):
        _add_batch(store, batch_id, 10 + index, shift)
        check = check_batch_drift(store, SPEC, batch_id, cache=cache)
        assert json.dumps(check.report.to_dict()) == json.dumps(
            _plain_report(store, layout.reference_profile(MODEL, "v1"), batch_id)
        )
    assert (cache.misses, cache.hits, len(cache)) == (1, 2, 1)


def test_a_new_champion_reference_is_never_served_from_the_cache() -> None:
    store, cache = MemoryStore(), ReferenceCache()
    _promote(store, "v1", _profile(1))
    _add_batch(store, "b1", 11)
    _add_batch(store, "b2", 12, income_shift=0.3)
    check_batch_drift(store, SPEC, "b1", cache=cache)
    _promote(store, "v2", _profile(2, income_shift=0.3))  # retrained on the shifted data
    check = check_batch_drift(store, SPEC, "b2", cache=cache)
    assert check.reference.version == "v2"
    assert check.report.to_dict() == _plain_report(store, layout.reference_profile(MODEL, "v2"), "b2")
    assert check.report.to_dict() != _plain_report(store, layout.reference_profile(MODEL, "v1"), "b2")
    assert cache.misses == 2


@pytest.mark.parametrize("same_bytes", [False, True], ids=["new bytes", "same bytes"])
def test_a_reference_rewritten_under_the_same_key_is_read_afresh(same_bytes: bool) -> None:
    """Keys of champion references are written once, the provisional one can be replaced: ETag decides."""
    store, cache = MemoryStore(), ReferenceCache()
    key = layout.reference_profile(MODEL, layout.PROVISIONAL_REFERENCE)
    store.put(key, _profile(1))
    _add_batch(store, "b1", 11)
    _add_batch(store, "b2", 12)
    check_batch_drift(store, SPEC, "b1", cache=cache)
    store.delete(key)
    store.put(key, _profile(1) if same_bytes else _profile(3, income_shift=0.5))
    check = check_batch_drift(store, SPEC, "b2", cache=cache)
    assert check.reference.provisional
    assert check.report.to_dict() == _plain_report(store, key, "b2")
    assert (cache.misses, cache.hits) == (2, 0)


def test_the_cache_keeps_the_most_recently_used_references_only() -> None:
    store, cache = MemoryStore(), ReferenceCache(maxsize=2)
    keys = [f"profiles/m{i}/reference/v1.bin" for i in range(3)]
    for seed, key in enumerate(keys):
        store.put(key, _profile(seed))
    first = cache.get(store, keys[0])
    cache.get(store, keys[1])
    assert cache.get(store, keys[0]) is first  # keys[0] used last: keys[1] goes first
    cache.get(store, keys[2])
    assert len(cache) == 2
    assert cache.get(store, keys[0]) is first
    misses = cache.misses
    cache.get(store, keys[1])
    assert cache.misses == misses + 1


def test_a_reference_the_store_refuses_is_refused_as_without_a_cache() -> None:
    store, cache = MemoryStore(), ReferenceCache()
    store.put_foreign("profiles/m/reference/v1.bin", _profile(1))
    with pytest.raises(IntegrityError, match="no sha256"):
        cache.get(store, "profiles/m/reference/v1.bin")
    with pytest.raises(ObjectNotFoundError):
        cache.get(store, "profiles/m/reference/v2.bin")
    assert len(cache) == 0


def test_an_invalid_cache_size_is_refused() -> None:
    with pytest.raises(ValueError, match="maxsize"):
        ReferenceCache(maxsize=0)


def test_s3_references_hit_the_cache_until_the_object_changes(s3_endpoint: str) -> None:
    store = S3Store(
        f"t-{uuid.uuid4().hex[:12]}", endpoint_url=s3_endpoint, access_key_id="test", secret_access_key="test"
    )
    assert store.create_bucket() is True
    cache = ReferenceCache()
    key = layout.reference_profile(MODEL, layout.PROVISIONAL_REFERENCE)
    store.put(key, _profile(1))
    first = cache.get(store, key)
    assert cache.get(store, key) is first
    store.put(key, _profile(2, income_shift=0.5))
    replaced = cache.get(store, key)
    assert replaced is not first
    assert (cache.misses, cache.hits) == (2, 1)
    assert replaced.rows == profiling.row_count(profiling.deserialize(store.get(key)))
