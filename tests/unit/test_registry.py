"""Registry: immutable versions, compare-and-swap aliases, audit, integrity, doctor."""

from __future__ import annotations

import hashlib
import json
import threading
import uuid
from collections.abc import Iterator

import pytest

from driftline.errors import ConflictError, IntegrityError, ObjectNotFoundError
from driftline.models import registry
from driftline.storage import layout
from driftline.storage.store import MemoryStore, ObjectStore, S3Store

MODEL = "credit"


@pytest.fixture(params=["memory", "s3"])
def store(request: pytest.FixtureRequest, s3_endpoint: str) -> Iterator[ObjectStore]:
    if request.param == "memory":
        yield MemoryStore()
        return
    s3 = S3Store(f"r-{uuid.uuid4().hex[:12]}", endpoint_url=s3_endpoint, access_key_id="t", secret_access_key="t")
    s3.create_bucket()
    yield s3


def _register(store: ObjectStore, version: str, decision: str = "shadow", booster: bytes | None = None) -> dict:
    booster = booster or f"booster of {version}".encode()
    return registry.register_version(
        store, MODEL, version, booster, {"decision": decision, "metrics": {"auc": 0.8}, "trigger": "manual"}
    )


def test_versions_are_immutable_and_carry_the_booster_sha256(store: ObjectStore) -> None:
    metadata = _register(store, "v1")
    assert metadata["model_sha256"] == hashlib.sha256(b"booster of v1").hexdigest()
    with pytest.raises(ConflictError):
        _register(store, "v1")
    booster, loaded = registry.load_model(store, MODEL, "v1")
    assert booster == b"booster of v1" and loaded["version"] == "v1"


def test_an_alias_can_only_name_a_stored_version(store: ObjectStore) -> None:
    with pytest.raises(ObjectNotFoundError, match="v404"):
        registry.move_alias(store, MODEL, "champion", "v404", expected=None, reason="test")


def test_alias_moves_are_compare_and_swap_and_audited(store: ObjectStore) -> None:
    _register(store, "v1")
    _register(store, "v2")
    first = registry.move_alias(store, MODEL, "champion", "v1", expected=None, reason="bootstrap")
    with pytest.raises(ConflictError):
        registry.move_alias(store, MODEL, "champion", "v2", expected=None, reason="second create loses")
    registry.move_alias(store, MODEL, "champion", "v2", expected=first, reason="promotion")
    with pytest.raises(ConflictError):
        registry.move_alias(store, MODEL, "champion", "v1", expected=first, reason="stale etag loses")
    assert registry.read_alias(store, MODEL, "champion").version == "v2"
    trail = registry.audit_trail(store, MODEL)
    assert [(r["from"], r["to"]) for r in trail] == [(None, "v1"), ("v1", "v2")]


def _race(store: ObjectStore, state: registry.AliasState, label: str) -> tuple[list[str], list[str]]:
    """20 threads try to move `shadow` from the same state at the same moment."""
    barrier = threading.Barrier(20)
    winners: list[str] = []
    conflicts: list[str] = []

    def mover(i: int) -> None:
        target = f"v{i:02d}"
        barrier.wait()
        try:
            registry.move_alias(store, MODEL, "shadow", target, expected=state, reason=label)
            winners.append(target)
        except ConflictError:
            conflicts.append(target)

    threads = [threading.Thread(target=mover, args=(i,)) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return winners, conflicts


def test_twenty_concurrent_movers_have_exactly_one_winner_per_round(store: ObjectStore) -> None:
    for i in range(20):
        _register(store, f"v{i:02d}")
    registry.move_alias(store, MODEL, "shadow", "v00", expected=None, reason="start")
    for round_ in range(3):
        winners, conflicts = _race(store, registry.read_alias(store, MODEL, "shadow"), f"round {round_}")
        assert len(winners) == 1 and len(conflicts) == 19
        assert registry.read_alias(store, MODEL, "shadow").version == winners[0]
    # The audit agrees: one record per successful move, chained from -> to.
    moves = [r for r in registry.audit_trail(store, MODEL) if r["alias"] == "shadow"]
    assert len(moves) == 4
    assert all(later["from"] == earlier["to"] for earlier, later in zip(moves, moves[1:], strict=False))


def test_a_tampered_booster_fails_to_load_and_doctor_names_the_alias(store: ObjectStore) -> None:
    _register(store, "v1")
    registry.move_alias(store, MODEL, "champion", "v1", expected=None, reason="bootstrap")
    # Rewrite the booster with valid object metadata but different bytes than the version recorded.
    store.put(layout.model_booster(MODEL, "v1"), b"someone else's booster")
    with pytest.raises(IntegrityError, match="v1"):
        registry.load_model(store, MODEL, "v1")
    report = registry.doctor(store, MODEL)
    assert not report.healthy
    assert any("alias champion -> v1" in problem for problem in report.problems)


def test_a_crash_between_model_write_and_alias_move_leaves_a_consistent_registry(store: ObjectStore) -> None:
    _register(store, "v1")
    registry.move_alias(store, MODEL, "champion", "v1", expected=None, reason="bootstrap")
    # Crash 1: booster written, metadata never written.
    store.create(layout.model_booster(MODEL, "v2"), b"half a version")
    # Crash 2: version complete (decision shadow), but the alias move never happened.
    _register(store, "v3", decision="shadow")

    assert registry.read_alias(store, MODEL, "champion").version == "v1"
    assert registry.read_alias(store, MODEL, "shadow") is None
    assert registry.list_version_ids(store, MODEL) == ["v1", "v3"]
    report = registry.doctor(store, MODEL)
    assert report.healthy, report.problems
    assert any(w.startswith("orphan v2") for w in report.warnings)
    assert any(w.startswith("orphan v3") for w in report.warnings)
    described = registry.describe_model(store, MODEL)
    assert described["aliases"] == {"champion": "v1", "shadow": None, "previous": None}
    assert {v["version"]: v["status"] for v in described["versions"]} == {"v1": "champion", "v3": "candidate"}


def test_models_json_lists_status_per_version(store: ObjectStore) -> None:
    _register(store, "v1")
    _register(store, "v2")
    registry.register_version(
        store, MODEL, "v3", b"b3", {"decision": "rejected", "gate_report": {"passed": False}, "trigger": "drift:e1"}
    )
    champion = registry.move_alias(store, MODEL, "champion", "v1", expected=None, reason="bootstrap")
    registry.move_alias(store, MODEL, "champion", "v2", expected=champion, reason="promotion")
    document = registry.describe_model(store, MODEL)
    json.dumps(document)
    statuses = {v["version"]: (v["status"], v["trigger"]) for v in document["versions"]}
    assert statuses == {"v1": ("retired", "manual"), "v2": ("champion", "manual"), "v3": ("rejected", "drift:e1")}


def test_version_ids_sort_by_creation_time() -> None:
    from datetime import UTC, datetime, timedelta

    earlier = registry.new_version_id(datetime(2026, 1, 1, tzinfo=UTC))
    later = registry.new_version_id(datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=1))
    assert earlier < later
    assert layout.validate_name(earlier) == earlier
