"""Building a candidate: the labelled window, training, gates, registration and the alias it is placed on.

Known truth: ``tests.batches.example_batch`` rows with ``example_labels`` follow a known, learnable rule
(risk rises with debt ratio, utilization and late payments), so a candidate trained on them clears the
example spec's AUC floor. Timing gates are switched off here: their decisions depend on the machine's load,
and they are tested in tests/unit/test_validation.py.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from driftline.data import profiling
from driftline.errors import ConflictError, InputError
from driftline.loop import retraining, rules
from driftline.loop.cooldown import RetrainRequest
from driftline.models import registry
from driftline.models.spec import CooldownSpec, ModelSpec, WindowSpec
from driftline.models.validation import GateReport
from driftline.storage import layout
from driftline.storage.store import MemoryStore
from tests.batches import example_batch, example_labels, example_spec, parquet_bytes

ROWS = 1_500
BASE = example_spec("m")
SPEC = ModelSpec.model_validate(
    {
        **BASE.model_dump(),
        "xgboost": {**BASE.xgboost.model_dump(), "num_boost_round": 40},
        "gates": {
            **BASE.gates.model_dump(),
            "max_p99_latency_ms": None,
            "min_throughput_rows_per_s": None,
            "max_latency_ratio": None,
            "max_batch_time_ratio": None,
        },
    }
)
MODEL = SPEC.name
NOW = datetime(2026, 2, 1, tzinfo=UTC)


def _request(trigger: str = "manual", onset: str | None = None, kind: str | None = None) -> RetrainRequest:
    return RetrainRequest(
        model=MODEL, trigger=trigger, requested_at=NOW.isoformat(), drift_onset=onset, drift_kind=kind
    )


def _labelled(store: MemoryStore, batch_id: str, seed: int, rows: int = ROWS, profile: bool = False) -> pl.DataFrame:
    frame = example_batch(seed, rows=rows)
    store.put(layout.batch_data(MODEL, batch_id), parquet_bytes(frame))
    store.put(layout.batch_labels(MODEL, batch_id), parquet_bytes(example_labels(frame, seed)))
    if profile:
        store.put(layout.batch_profile(MODEL, batch_id), profiling.serialize(profiling.profile_frame(frame)))
    return frame


def _version(store: MemoryStore, version: str, alias: str | None = None) -> None:
    registry.register_version(store, MODEL, version, f"booster {version}".encode(), {"decision": "shadow"})
    if alias is not None:
        current = registry.read_alias(store, MODEL, alias)
        registry.move_alias(store, MODEL, alias, version, expected=current, reason="test")


def _candidate(version: str, decision: str, reasons: list[str] | None = None) -> retraining.Candidate:
    return retraining.Candidate(
        model=MODEL,
        version=version,
        decision=decision,
        reasons=reasons or [f"{decision} for the test"],
        gate_report=GateReport(gates=[]),
        metrics={},
        reference_key=layout.reference_profile(MODEL, version),
        training_rows=0,
        parent_champion=None,
    )


# --------------------------------------------------------------------------------------------- window
def test_only_batches_with_features_and_labels_that_are_not_quarantined_are_labelled() -> None:
    store = MemoryStore()
    store.put(layout.batch_data(MODEL, "features-only"), b"x")
    store.put(layout.batch_labels(MODEL, "labels-only"), b"x")
    for batch_id in ("b2", "b1", "quarantined"):
        store.put(layout.batch_data(MODEL, batch_id), b"x")
        store.put(layout.batch_labels(MODEL, batch_id), b"x")
    store.put(layout.batch_quarantine(MODEL, "quarantined"), b"{}")
    assert retraining.labelled_batch_ids(store, MODEL) == ["b1", "b2"]


@pytest.mark.parametrize(
    ("last_batches", "expected"),
    [(None, ["a", "b", "c"]), (2, ["b", "c"]), (5, ["a", "b", "c"])],
    ids=["all", "last two", "more than there are"],
)
def test_the_window_is_the_most_recent_labelled_batches(last_batches: int | None, expected: list[str]) -> None:
    spec = SPEC.model_copy(update={"window": WindowSpec(last_batches=last_batches)})
    assert retraining.select_window(["a", "b", "c"], spec) == expected


def test_a_day_window_keeps_rows_within_its_days_of_the_newest_event() -> None:
    newest = datetime(2026, 1, 10)
    times = [newest - timedelta(days=d) for d in (0.0, 0.5, 1.0, 1.5, 3.0)]
    frame = pl.DataFrame({"ts": times, "n": range(5)})
    spec = SPEC.model_copy(update={"window": WindowSpec(last_days=1.0)})
    assert retraining.restrict_days(frame, spec)["n"].to_list() == [0, 1, 2]
    assert retraining.restrict_days(frame, SPEC).equals(frame)  # no day window: every row


def test_a_day_window_over_epoch_seconds_counts_days_of_86400_seconds() -> None:
    frame = pl.DataFrame({"ts": [1_000_000, 1_000_000 - 86_400, 1_000_000 - 86_401], "n": [0, 1, 2]})
    spec = SPEC.model_copy(update={"window": WindowSpec(last_days=1.0)})
    assert retraining.restrict_days(frame, spec)["n"].to_list() == [0, 1]
    # The newest event of the whole window (a cluster's) may lie outside this part of it.
    assert retraining.restrict_days_from(frame, spec, 1_000_000 + 86_400)["n"].to_list() == [0]
    assert retraining.restrict_days_from(frame, spec, None).equals(frame)


def test_a_model_without_labelled_batches_names_the_command_that_adds_them() -> None:
    with pytest.raises(
        InputError, match=r"model 'm' has no labelled batches yet; store labels with `driftline labels m"
    ):
        retraining.window_batch_ids(MemoryStore(), SPEC)


def test_a_manual_retrain_without_labels_fails_and_a_drift_retrain_waits_with_the_shortfall() -> None:
    store = MemoryStore()
    with pytest.raises(InputError, match="no labelled batches"):
        retraining.prepare_window(store, SPEC, _request())
    waiting = retraining.prepare_window(store, SPEC, _request("drift", onset=NOW.isoformat(), kind="input"))
    assert waiting.data is None and waiting.batch_ids == [] and waiting.rows == 0
    assert "no labelled batches" in waiting.shortfall


def test_a_drift_retrain_weighs_the_rows_before_its_onset_down() -> None:
    store = MemoryStore()
    _labelled(store, "b1", seed=1)
    second = _labelled(store, "b2", seed=2)
    onset = second["ts"].min().isoformat()
    window = retraining.prepare_window(store, SPEC, _request("drift", onset=onset, kind="input"))
    assert window.batch_ids == ["b1", "b2"] and window.rows == 2 * ROWS
    assert window.rows_since_onset == ROWS and window.weighted
    weights = window.frame.get_column(rules.WEIGHT_COLUMN).to_list()
    assert weights == [SPEC.window.before_onset_weight] * ROWS + [1.0] * ROWS
    manual = retraining.prepare_window(store, SPEC, _request())
    assert not manual.weighted and manual.rows_since_onset == 2 * ROWS


# ------------------------------------------------------------------------------------------ candidate
@pytest.fixture(scope="module")
def built() -> tuple[MemoryStore, retraining.Candidate, retraining.PreparedWindow]:
    store = MemoryStore()
    _labelled(store, "b1", seed=1, profile=True)
    _labelled(store, "b2", seed=2, profile=True)
    window = retraining.prepare_window(store, SPEC, _request())
    candidate = retraining.build_candidate(store, SPEC, _request(), window, nthread=1, environment={"git": "abc"})
    return store, candidate, window


def test_a_candidate_on_learnable_data_passes_the_gates_and_becomes_the_first_champion(built) -> None:
    store, candidate, window = built
    assert candidate.gate_report.passed, candidate.gate_report.summary()
    assert candidate.metrics["auc"] > SPEC.gates.min_auc
    assert candidate.decision == "champion" and candidate.parent_champion is None
    assert candidate.training_rows == window.rows == 2 * ROWS
    payload = candidate.event_payload()
    assert payload["version"] == candidate.version and payload["gates_passed"] is True
    assert payload["metadata_key"] == layout.model_metadata(MODEL, candidate.version)


def test_a_registered_candidate_carries_its_lineage_baseline_and_reference(built) -> None:
    store, candidate, _ = built
    metadata = registry.read_metadata(store, MODEL, candidate.version)
    lineage = metadata["lineage"]
    assert [b["batch_id"] for b in lineage["training_batches"]] == ["b1", "b2"]
    assert lineage["reference_profile"] == candidate.reference_key
    assert lineage["spec_hash"] == SPEC.content_hash() and lineage["git"] == "abc"
    assert metadata["trigger"] == "manual" and metadata["decision"] == "champion"
    assert metadata["baseline"]["loss_kind"] == "logloss" and metadata["baseline"]["rows"] > 0
    assert store.exists(metadata["baseline"]["prediction_profile"])
    # The reference is the merge of the training batches' stored profiles.
    reference = profiling.deserialize(store.get(candidate.reference_key))
    assert reference.get_column("income").get_metric("counts").n.value == 2 * ROWS
    registry.load_model(store, MODEL, candidate.version)  # booster intact (sha256 checked)


def test_a_window_left_on_a_cluster_needs_the_cluster_to_train() -> None:
    cluster_window = retraining.PreparedWindow(
        None, pl.DataFrame(), 0, cluster=retraining.ClusterWindow(parts=[], rows=10, weighted=False)
    )
    with pytest.raises(InputError, match="the window is on a Dask cluster"):
        retraining.build_candidate(MemoryStore(), SPEC, _request(), cluster_window, nthread=1, environment={})


# ------------------------------------------------------------------------------------------ placement
def test_a_rejected_candidate_moves_no_alias() -> None:
    store = MemoryStore()
    _version(store, "v1")
    placement = retraining.place_candidate(store, SPEC, _candidate("v1", "rejected", ["gate failed: auc"]))
    assert (placement.decision, placement.moved, placement.reasons) == ("rejected", [], ["gate failed: auc"])
    assert registry.read_alias(store, MODEL, "champion") is None and registry.read_alias(store, MODEL, "shadow") is None


def test_the_first_champion_is_placed_and_one_that_arrived_meanwhile_wins() -> None:
    store = MemoryStore()
    _version(store, "v1")
    assert retraining.place_candidate(store, SPEC, _candidate("v1", "champion")).moved == ["champion"]
    assert registry.read_alias(store, MODEL, "champion").version == "v1"
    _version(store, "v2")
    with pytest.raises(ConflictError, match="got champion v1 while v2 was training"):
        retraining.place_candidate(store, SPEC, _candidate("v2", "champion"))
    assert registry.read_alias(store, MODEL, "champion").version == "v1"


def test_a_candidate_enters_shadow_and_supersedes_one_only_when_the_spec_allows() -> None:
    store = MemoryStore()
    _version(store, "v1", alias="champion")
    _version(store, "v2")
    assert retraining.place_candidate(store, SPEC, _candidate("v2", "shadow")).moved == ["shadow"]
    _version(store, "v3")
    with pytest.raises(ConflictError, match="candidate v2 entered shadow while v3 was training"):
        retraining.place_candidate(store, SPEC, _candidate("v3", "shadow"))
    assert registry.read_alias(store, MODEL, "shadow").version == "v2"
    superseding = SPEC.model_copy(update={"cooldown": CooldownSpec(supersede_shadow=True)})
    retraining.place_candidate(store, superseding, _candidate("v3", "shadow", ["better"]))
    shadow = registry.read_alias(store, MODEL, "shadow")
    assert shadow.version == "v3" and shadow.reason == "better; supersedes v2"


def test_lineage_chains_the_drift_report_to_the_alias_moves() -> None:
    store = MemoryStore()
    request = {"drift_event_id": "event-7", "drift_batch_id": "b3"}
    metadata = {"decision": "shadow", "trigger": "drift:event-7", "request": request, "lineage": {"x": 1}}
    registry.register_version(store, MODEL, "v1", b"booster", metadata)
    registry.register_version(store, MODEL, "v0", b"booster 0", {})
    store.put(layout.drift_report(MODEL, "b3"), json.dumps({"score": 0.4, "drifted_features": ["income"]}).encode())
    registry.move_alias(store, MODEL, "shadow", "v1", expected=None, reason="entered shadow")
    registry.move_alias(store, MODEL, "champion", "v0", expected=None, reason="unrelated")
    chain = retraining.lineage(store, MODEL, "v1")
    assert chain["drift"] == {"event_id": "event-7", "batch_id": "b3", "score": 0.4, "drifted_features": ["income"]}
    assert [move["to"] for move in chain["alias_moves"]] == ["v1"]
    assert chain["trigger"] == "drift:event-7" and chain["lineage"] == {"x": 1}


def test_lineage_of_a_manual_version_has_no_drift() -> None:
    store = MemoryStore()
    registry.register_version(store, MODEL, "v1", b"booster", {"trigger": "manual", "request": {}})
    chain = retraining.lineage(store, MODEL, "v1")
    assert chain["drift"] == {"event_id": None, "batch_id": None, "score": None, "drifted_features": None}
    assert chain["alias_moves"] == [] and chain["model_sha256"]
