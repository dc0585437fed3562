"""The `driftline shadow --json` document (docs/architecture.md section 8), built in the domain
(``driftline.loop.evaluation.shadow_status``)."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from driftline.loop import evaluation
from driftline.models.spec import ShadowSpec
from driftline.statistics.shadow import decide, fold_batch, start_shadow
from driftline.storage.store import MemoryStore

T0 = datetime(2024, 5, 1, tzinfo=UTC)
POLICY = ShadowSpec(alpha=0.05, min_rows=1_000, max_rows=20_000, planned_rows=10_000, max_latency_ratio=None)
CONTRACT = {"candidate", "n", "estimate", "lower", "upper", "verdict"}


def test_no_candidate_in_shadow_is_the_empty_document() -> None:
    document = evaluation.shadow_status(None, None, None)
    assert document == {"candidate": None, "n": 0, "estimate": None, "lower": None, "upper": None, "verdict": None}
    assert evaluation.read_shadow_status(MemoryStore(), "m") == document


def test_a_candidate_without_paired_rows_continues_and_says_why() -> None:
    document = evaluation.shadow_status("v2", None, None)
    assert set(document) >= CONTRACT
    assert document["candidate"] == "v2" and document["n"] == 0 and document["verdict"] == "continue"
    assert document["reasons"] == ["no labelled rows scored by both models yet"]


def test_a_running_test_is_decided_at_its_last_batch_and_carries_its_history() -> None:
    better = np.random.default_rng(7).normal(-0.1, 0.5, 5_000)
    state = fold_batch(start_shadow("m", "v2", "v1", now=T0), better, "b1", policy=POLICY, now=T0)
    document = evaluation.shadow_status("v2", state, POLICY)
    verdict = decide(state, POLICY, T0)
    assert set(document) >= CONTRACT
    assert document["verdict"] == verdict.verdict == "promote"
    assert (document["n"], document["estimate"], document["upper"]) == (5_000, verdict.estimate, verdict.upper)
    assert document["upper"] < 0 and document["reasons"] == verdict.reasons
    assert document["champion"] == "v1" and document["started_at"] == T0.isoformat()
    assert [point["batch_id"] for point in document["history"]] == ["b1"]
    assert set(document["latency_p99_ms"]) == {"candidate_ms", "champion_ms"}


def test_a_running_test_needs_the_policy_it_is_decided_under() -> None:
    state = start_shadow("m", "v2", "v1", now=T0)
    with pytest.raises(ValueError, match="shadow policy"):
        evaluation.shadow_status("v2", state, None)
