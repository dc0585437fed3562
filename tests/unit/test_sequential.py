"""The sequential-statistics kit's state: what shadow, guard and performance states share.

Their JSON on S3 is ``asdict`` of each state, so its keys follow the dataclass fields: the shared base
must add no field and reorder none (a stored state written before it reads back, and new ones are
written the same way).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import numpy as np
import pytest

from driftline.errors import InputError
from driftline.models.spec import GuardSpec, PerformanceSpec, ShadowSpec
from driftline.statistics import guard, performance, shadow
from driftline.statistics.sequential import fold_moments, fold_paired, moments_of

NOW = datetime(2026, 11, 26, tzinfo=UTC)


def test_stored_states_keep_their_key_order() -> None:
    shadow_state = shadow.start_shadow("m", "v2", "v1", now=NOW)
    guard_state = guard.start_guard("m", "v2", "v1", now=NOW)
    monitor = performance.start_monitor("m", "v1", 0.4, 100, NOW, baseline_sd=0.5)
    common = ["started_at", "updated_at", "n", "mean", "m2", "batch_ids", "history"]
    assert list(shadow_state.to_dict()) == [
        "model", "candidate", "champion", *common, "latency_p99_ms", "verdict", "closed"
    ]  # fmt: skip
    assert list(guard_state.to_dict()) == ["model", "new_champion", "previous", *common, "verdict", "closed"]
    assert list(monitor.to_dict()) == [
        "model", "champion", "baseline_loss", "baseline_rows", "started_at", "updated_at", "baseline_sd",
        "n", "mean", "m2", "batch_ids", "history", "verdict", "alerted", "alerted_at", "alerted_batch_id",
        "alert_event_id", "variance",
    ]  # fmt: skip


def test_folded_states_read_back_from_their_json_unchanged() -> None:
    rng = np.random.default_rng(1)
    d = rng.normal(-0.01, 0.5, 300)
    losses = np.abs(d)
    folded = [
        (
            shadow.fold_batch(
                shadow.start_shadow("m", "v2", "v1", now=NOW), d, "b1", policy=ShadowSpec(), now=NOW, champion_p99_ms=2
            ),
            d,
        ),
        (guard.fold_batch(guard.start_guard("m", "v2", "v1", now=NOW), d, "b1", policy=GuardSpec(), now=NOW), d),
        (
            performance.fold_batch(
                performance.start_monitor("m", "v1", 0.4, 100, NOW), losses, "b1", PerformanceSpec(), NOW
            ),
            losses,
        ),
    ]
    for state, values in folded:
        stored = json.loads(json.dumps(state.to_dict(), allow_nan=False))
        again = type(state).from_dict(stored)
        assert again == state
        assert again.n == values.size and again.variance == pytest.approx(float(np.var(values, ddof=1)), rel=1e-12)


def test_a_paired_fold_equals_the_moments_of_all_rows_and_ignores_a_repeated_batch() -> None:
    rng = np.random.default_rng(2)
    first, second = rng.normal(0.1, 1.0, 400), rng.normal(0.3, 2.0, 250)
    state = guard.start_guard("m", "v2", "v1", now=NOW)
    once = fold_paired(state, first, "b1", alpha=0.05, planned_rows=1_000, now=NOW)
    twice = fold_paired(once, second, "b2", alpha=0.05, planned_rows=1_000, now=NOW)
    n, mean, m2 = moments_of(np.concatenate([first, second]))
    assert twice.n == n and twice.mean == pytest.approx(mean, rel=1e-12) and twice.m2 == pytest.approx(m2, rel=1e-12)
    assert [point["batch_id"] for point in twice.history] == ["b1", "b2"]
    assert fold_paired(twice, second, "b2", alpha=0.05, planned_rows=1_000, now=NOW) is twice
    assert (twice.n, twice.mean, twice.m2) == pytest.approx(fold_moments(once.n, once.mean, once.m2, second))


def test_bad_differences_are_refused_naming_what_they_are() -> None:
    with pytest.raises(InputError, match=r"2 loss\(es\) of batch b7 are NaN or infinite"):
        moments_of(np.array([1.0, np.nan, np.inf]), "losses of batch b7", "loss(es) of batch b7")
    with pytest.raises(InputError, match="differences must be a 1-D array"):
        moments_of(np.zeros((2, 2)))
    with pytest.raises(InputError, match="must be timezone-aware"):
        fold_paired(guard.start_guard("m", "v2", "v1", now=NOW), np.zeros(3), "b1", alpha=0.05, planned_rows=10,
                    now=datetime(2026, 1, 1))  # fmt: skip
