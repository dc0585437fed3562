"""Parity: one seeded stream through the deployed flows (in-process, real Prefect and S3 servers) and through
the backtest gives the same decisions, batch by batch.

Both sides call ``driftline.loop.rules`` and the pure modules it orders; this test holds them together. A rule
changed on one side only (say the backtest admitted retrains while a candidate is in shadow, or the retrain
flow skipped the readiness check) changes one side's sequence and fails here. The stream: a stable start,
an input drift at batch 4, and a label rule that flips at batch 6 (a concept drift the features do not show),
so the sequence holds drift announcements, retrains, a shadow verdict and the performance monitor.

The driver plays the automations of ``prefect.yaml`` in a fixed order per batch: batch.arrived -> profile-batch
(which scores the batch: score-batch is its subflow) -> (drift.detected -> retrain); labels.arrived ->
shadow-evaluate (which promotes on a promote verdict: promote is its subflow) -> (performance.degraded ->
retrain) -> (retrain.due -> retrain, the labels re-check, sent only when a waiting retrain would build). The
backtest replays the same order. The defaults are clock-free, so production runs on the real clock and the
backtest on event time.
"""

from __future__ import annotations

import uuid

import pytest

from driftline.models import registry
from driftline.models.spec import GatesSpec, ModelSpec, ShadowSpec
from driftline.replay import backtest, synth
from driftline.settings import Settings
from driftline.storage import layout
from driftline.storage.store import ObjectStore, open_store
from flows.profile_batch import profile_batch
from flows.retrain import retrain
from flows.shadow_evaluate import shadow_evaluate
from tests.batches import parquet_bytes

# Also run on a Prefect server on PostgreSQL by `make test` (see tests/flows/conftest.py).
pytestmark = pytest.mark.loop

WARMUP = 3
SCENARIO = synth.Scenario(
    name="parity",
    batches=14,
    rows=1_000,
    seed=5,
    label_delay=0,
    events=[
        synth.CovariateDrift(feature="income", shift=0.8, from_batch=4),
        synth.ConceptDrift(strength=1.0, from_batch=6),
    ],
)


def parity_spec(name: str) -> ModelSpec:
    """Defaults, except what measures this machine (timing gates, shadow latency): the replay skips those."""
    return synth.default_spec(SCENARIO, name).model_copy(
        update={
            "gates": GatesSpec(max_p99_latency_ms=None, min_throughput_rows_per_s=None),
            "shadow": ShadowSpec(max_latency_ratio=None),
        }
    )


def _window(store: ObjectStore, model: str, version: str) -> tuple[str, bool]:
    lineage = registry.read_metadata(store, model, version)["lineage"]
    batches = [batch["batch_id"] for batch in lineage["training_batches"]]
    return f"{batches[0]}-{batches[-1]}", lineage.get("favours_onset") is not None


def _retrained(store: ObjectStore, model: str, result: dict, drift_call: bool) -> list[str]:
    outcome = result["outcome"]
    if outcome in ("shadow", "rejected", "champion"):
        window, weighted = _window(store, model, result["version"])
        return [f"retrain on {window}{' from onset' if weighted else ''}", f"placed {outcome}"]
    if drift_call and outcome in ("duplicate", "stale", "shadow-busy"):
        return [f"request {outcome}"]
    return []


def _answer(model: str, announcement: dict) -> dict:
    return retrain(
        model,
        trigger="drift",
        drift_event_id=announcement["event_id"],
        drift_batch_id=announcement["batch_id"],
        drift_onset=announcement["drift_onset"],
        reference_version=announcement["reference_version"],
        drift_kind=announcement["kind"],
    )


def run_flows(store: ObjectStore, model: str) -> list[tuple[int, str]]:
    """Drive the stream through the deployed flows; return (batch, decision) as the backtest records them."""
    decisions: list[tuple[int, str]] = []
    batches = {i: synth.generate_batch(SCENARIO, i) for i in range(SCENARIO.batches)}

    def arrive(index: int) -> str:
        batch_id = synth.batch_id(SCENARIO, index)
        store.create(layout.batch_data(model, batch_id), parquet_bytes(batches[index][0]))
        return batch_id

    def label(index: int) -> str:
        batch_id = synth.batch_id(SCENARIO, index)
        store.create(layout.batch_labels(model, batch_id), parquet_bytes(batches[index][1]))
        return batch_id

    for index in range(WARMUP):  # the first champion's batches: profiled, labelled, then a manual retrain
        profile_batch(model, arrive(index))
        label(index)
    assert retrain(model)["outcome"] == "champion"

    for t in range(WARMUP, SCENARIO.batches):
        batch_id = arrive(t)
        profiled = profile_batch(model, batch_id)
        if profiled["announcement"] is not None:
            decisions.append((t, f"drift announced on {batch_id}"))
            decisions += [(t, d) for d in _retrained(store, model, _answer(model, profiled["announcement"]), True)]
        assert profiled["scoring"]["batch_id"] == batch_id and "failed" not in profiled["scoring"], profiled

        label(t)
        evaluated = shadow_evaluate(model, batch_id)
        shadow = evaluated.get("shadow")
        if evaluated.get("shadow_final"):
            decisions.append((t, f"shadow {shadow['verdict']}"))
        if evaluated.get("rolled_back_to"):
            decisions.append((t, "rollback"))
        announcement = evaluated.get("announcement")
        if announcement is not None:
            decisions.append((t, f"performance degraded since {announcement['since_batch_id']}"))
        if (evaluated.get("promotion") or {}).get("outcome") == "promoted":
            decisions.append((t, "promoted"))
        if announcement is not None:
            decisions += [(t, d) for d in _retrained(store, model, _answer(model, announcement), True)]
        if evaluated.get("retrain_due"):
            decisions += [(t, d) for d in _retrained(store, model, retrain(model, trigger="labels"), False)]
    return decisions


def run_backtest(spec: ModelSpec) -> list[tuple[int, str]]:
    result = backtest.run_backtest(
        synth.history(SCENARIO), spec, batches=SCENARIO.batches, policies="drift", label_delay=0, warmup=WARMUP
    )
    return result.policies["drift"].decisions


@pytest.fixture
def store() -> ObjectStore:
    return open_store(Settings())


def test_flows_and_backtest_make_the_same_decisions_batch_by_batch(store: ObjectStore) -> None:
    model = f"parity-{uuid.uuid4().hex[:8]}"
    spec = parity_spec(model)
    store.put(layout.model_spec(model), spec.to_yaml().encode())
    replayed = run_backtest(spec)
    deployed = run_flows(store, model)
    # The stream must exercise the loop, or agreeing would prove nothing.
    kinds = {decision.split(" ")[0] for _, decision in replayed}
    assert {"drift", "retrain", "placed", "shadow", "performance"} <= kinds, replayed
    assert deployed == replayed
