"""Switchover under concurrency against the real S3 server, and rollback."""

from __future__ import annotations

import threading
import uuid

import pytest

from driftline.errors import ConflictError, InputError
from driftline.loop import promotion
from driftline.models import registry
from driftline.storage.store import S3Store

MODEL = "credit"


@pytest.fixture
def store(s3_endpoint: str) -> S3Store:
    s3 = S3Store(f"p-{uuid.uuid4().hex[:12]}", endpoint_url=s3_endpoint, access_key_id="t", secret_access_key="t")
    s3.create_bucket()
    for version in ("v1", "v2", "v3"):
        registry.register_version(s3, MODEL, version, f"booster {version}".encode(), {"decision": "shadow"})
    registry.register_version(s3, MODEL, "v9", b"bad", {"decision": "rejected"})
    registry.move_alias(s3, MODEL, "champion", "v1", expected=None, reason="bootstrap")
    registry.move_alias(s3, MODEL, "shadow", "v2", expected=None, reason="candidate")
    return s3


def test_twenty_concurrent_promotions_move_the_champion_exactly_once(store: S3Store) -> None:
    barrier = threading.Barrier(20)
    outcomes: list[str] = []

    def attempt() -> None:
        barrier.wait()
        try:
            promotion.promote(store, MODEL, "v2", reason="shadow verdict promote")
            outcomes.append("moved")
        except (ConflictError, InputError):
            outcomes.append("lost")

    threads = [threading.Thread(target=attempt) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes.count("moved") == 1 and outcomes.count("lost") == 19
    champion_moves = [r for r in registry.audit_trail(store, MODEL) if r["alias"] == "champion"]
    assert [(r["from"], r["to"]) for r in champion_moves] == [(None, "v1"), ("v1", "v2")]
    aliases = registry.describe_model(store, MODEL)["aliases"]
    assert aliases == {"champion": "v2", "shadow": None, "previous": "v1"}


def test_rollback_restores_the_previous_champion(store: S3Store) -> None:
    promotion.promote(store, MODEL, "v2", reason="better")
    switch = promotion.rollback(store, MODEL, reason="guard: worse with confidence")
    assert (switch.champion, switch.previous) == ("v1", "v2")
    assert registry.describe_model(store, MODEL)["aliases"] == {"champion": "v1", "shadow": None, "previous": "v2"}
    assert promotion.rollback(store, MODEL, reason="manual", to="v3").champion == "v3"


@pytest.mark.parametrize(
    ("version", "message"),
    [("v9", "rejected by its gates"), ("v1", "already champion")],
)
def test_promotions_that_make_no_sense_are_refused(store: S3Store, version: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        promotion.promote(store, MODEL, version, reason="manual")


def test_rollback_without_previous_names_the_fix(store: S3Store) -> None:
    with pytest.raises(InputError, match="--to VERSION"):
        promotion.rollback(store, MODEL, reason="manual")
