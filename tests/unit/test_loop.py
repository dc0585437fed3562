"""The loop's sequencing rules (driftline.loop.rules): pure, so every case is a table or a short story."""

from __future__ import annotations

import datetime as dt
from datetime import UTC, datetime
from types import SimpleNamespace

import numpy as np
import polars as pl
import pytest

from driftline.loop import rules
from driftline.loop.cooldown import RetrainRequest
from driftline.models.spec import CooldownSpec, Features, ModelSpec, WindowSpec
from driftline.models.validation import GateReport, GateResult
from driftline.statistics.drift import DriftPolicy, Hysteresis


def _spec(**sections) -> ModelSpec:
    return ModelSpec(
        name="m",
        task="binary",
        target="y",
        id_column="id",
        time_column="ts",
        features=Features(numeric=["x"]),
        **sections,
    )


def _request(trigger: str = "drift", batch: str | None = "b003", reference: str | None = "v1", onset=None):
    return RetrainRequest(
        model="m",
        trigger=trigger,
        requested_at=datetime(2026, 11, 26, 10, 0, tzinfo=UTC).isoformat(),
        drift_batch_id=batch,
        drift_onset=onset,
        reference_version=reference,
    )


def _report(drift: bool, score: float = 0.4, features: tuple[str, ...] = ("x",)):
    return SimpleNamespace(drift=drift, score=score, drifted_features=list(features) if drift else [])


# ------------------------------------------------------------------------------------------ keys


def test_a_duplicated_announcement_shares_its_key_and_the_next_announcement_does_not() -> None:
    spec = _spec()
    assert rules.request_key(_request(), spec) == rules.request_key(_request(), spec) == "v1-drift-b003"
    performance = RetrainRequest(**{**_request().to_dict(), "drift_kind": "performance"})
    assert rules.request_key(performance, spec) != rules.request_key(_request(), spec)
    assert rules.request_key(_request(batch="b009"), spec) != rules.request_key(_request(), spec)
    assert rules.request_key(_request(reference="v2"), spec) != rules.request_key(_request(), spec)
    assert rules.request_key(_request(trigger="manual"), spec) is None
    # An announcement named only by its event id (a UUID) still gives a valid, stable object name.
    by_event = RetrainRequest(**{**_request(batch=None).to_dict(), "drift_event_id": "8b7a1b7b-1d3b-4f53-a579-b07"})
    key = rules.request_key(by_event, spec)
    assert key == rules.request_key(by_event, spec) and len(key) <= 63
    from driftline.storage.layout import retrain_claim

    assert retrain_claim("m", key).endswith(".json")


def test_a_wall_clock_cooldown_applies_only_when_the_spec_sets_one() -> None:
    spec = _spec(cooldown=CooldownSpec(seconds=3600))
    early, late = _request(batch="b003"), _request(batch="b004")
    assert rules.request_key(early, spec) == rules.request_key(late, spec)  # one per reference and hour
    later = RetrainRequest(**{**late.to_dict(), "requested_at": "2026-11-26T11:00:00+00:00"})
    assert rules.request_key(later, spec) != rules.request_key(early, spec)
    assert CooldownSpec().seconds is None  # cadence-free by default


# ------------------------------------------------------------------------------------------ admission


@pytest.mark.parametrize(
    ("trigger", "claimed", "shadow", "supersede", "outcome"),
    [
        ("drift", False, None, False, "proceed"),
        ("drift", True, None, False, "duplicate"),
        ("drift", False, "v7", False, "shadow-busy"),
        ("drift", True, "v7", False, "duplicate"),
        ("drift", False, "v7", True, "proceed"),
        ("manual", False, "v7", False, "proceed"),
        ("manual", False, None, False, "proceed"),
    ],
)
def test_admission(trigger: str, claimed: bool, shadow: str | None, supersede: bool, outcome: str) -> None:
    spec = _spec(cooldown=CooldownSpec(supersede_shadow=supersede))
    admission = rules.admit(_request(trigger), spec, shadow_version=shadow, already_claimed=claimed)
    assert admission.outcome == outcome
    assert admission.proceed == (outcome == "proceed")
    assert admission.reasons
    assert (admission.key is None) == (trigger == "manual")
    assert rules.waits(_request(trigger), admission) == (outcome == "shadow-busy")


def test_a_labels_recheck_claims_nothing_but_still_waits_for_the_slot() -> None:
    spec = _spec()
    busy = rules.admit(_request(), spec, shadow_version="v7", rechecking=True)
    assert busy.outcome == "shadow-busy" and busy.key is None
    assert rules.admit(_request(), spec, shadow_version=None, rechecking=True).proceed


def test_a_waiting_request_is_stale_once_its_champion_was_replaced() -> None:
    pending = _request(onset="2026-01-08T00:00:00")
    assert rules.stale_pending(pending, "v1") is None
    assert rules.stale_pending(_request(reference=None), "v2") is None
    reason = rules.stale_pending(pending, "v2")
    assert reason is not None and "v1" in reason and "v2 is champion now" in reason


# ------------------------------------------------------------------------------------------ readiness


@pytest.mark.parametrize(
    ("trigger", "since", "shortfall", "window", "ready"),
    [
        ("drift", 500, None, ["b1", "b2"], True),
        ("drift", 499, None, ["b1", "b2"], False),
        ("drift", 900, "only 3 labelled rows", ["b1"], False),
        ("drift", 900, None, ["b0", "b1"], False),  # exactly the champion's batches: nothing new to learn
        ("manual", 0, None, ["b0", "b1"], True),
    ],
)
def test_readiness(trigger: str, since: int, shortfall: str | None, window: list[str], ready: bool) -> None:
    spec = _spec(window=WindowSpec(min_rows_since_drift=500))
    result = rules.readiness(
        _request(trigger),
        spec,
        window_batches=window,
        rows_since_onset=since,
        shortfall=shortfall,
        champion_batches=["b0", "b1"],
    )
    assert result.ready is ready and result.reasons


def test_every_duration_a_spec_sets_is_named_and_the_defaults_set_none() -> None:
    assert rules.time_settings(_spec()) == []
    spec = ModelSpec.model_validate(
        {**_spec().model_dump(), "shadow": {"max_days": 14}, "cooldown": {"seconds": 3600}, "window": {"last_days": 7}}
    )
    notes = rules.time_settings(spec)
    assert [note.split(" ")[0] for note in notes] == ["shadow.max_days", "cooldown.seconds", "window.last_days"]


# ------------------------------------------------------------------------------------------ episodes


def _observe(spec: ModelSpec, verdicts, reference: str = "v1", watch: rules.DriftWatch | None = None):
    watch = watch or rules.DriftWatch()
    out = []
    for index, report in enumerate(verdicts):
        watch, declaration = rules.observe_drift(watch, f"b{index:03d}", report, reference, spec)
        out.append(declaration)
    return watch, out


def test_a_lasting_drift_is_announced_once_per_episode() -> None:
    watch, out = _observe(_spec(), [_report(False), *[_report(True)] * 6])
    assert [d.declared for d in out] == [False, *[True] * 6]
    assert [d.announce for d in out] == [False, True, False, False, False, False, False]
    assert watch.episode is not None and watch.episode.started_batch == "b001"
    assert "not announced again" in out[3].reasons[-1]


def test_a_drift_that_ended_and_returns_is_a_new_episode() -> None:
    reports = [_report(True), _report(False), _report(False), _report(True)]
    _, out = _observe(_spec(), reports)
    assert [d.announce for d in out] == [True, False, False, True]
    assert "ended" in out[2].reasons[-1]
    # One clean batch is not the end: drift flickering around its threshold is one episode.
    _, flicker = _observe(_spec(), [_report(True), _report(False), _report(True), _report(False), _report(True)])
    assert [d.announce for d in flicker] == [True, False, False, False, False]


def test_a_drift_that_grows_is_announced_again() -> None:
    reports = [_report(True, 0.3), _report(True, 0.4), _report(True, 0.5), _report(True, 0.5, ("x", "z"))]
    _, out = _observe(_spec(drift=DriftPolicy(top_k=3)), reports)
    assert [d.announce for d in out] == [True, False, True, True]
    assert "grew" in out[2].reasons[-1] and "newly drifted z" in out[3].reasons[-1]


def test_a_new_champion_opens_a_new_episode_and_a_repeated_batch_changes_nothing() -> None:
    spec = _spec()
    watch, out = _observe(spec, [_report(True), _report(True)])
    again, repeated = rules.observe_drift(watch, "b001", _report(True), "v1", spec)
    assert again == watch and repeated.repeated and not repeated.announce
    _, after = rules.observe_drift(watch, "b002", _report(True), "v2", spec)
    assert after.announce and after.episode.reference == "v2"
    # Stored and read back (the production watch lives in S3), including the pre-episode list form.
    assert rules.DriftWatch.from_dict(watch.to_dict()) == watch
    legacy = rules.DriftWatch.from_dict([{"batch_id": "b0", "drift": True}])
    assert legacy.verdicts == (("b0", True),) and legacy.episode is None


def test_hysteresis_declares_only_k_of_m() -> None:
    spec = _spec(drift=DriftPolicy(hysteresis=Hysteresis(k=2, m=3)))
    _, out = _observe(spec, [_report(True), _report(False), _report(True), _report(True)])
    assert [d.declared for d in out] == [False, False, True, True]
    assert "hysteresis: 1 of the last 3" in out[0].reasons[0]


# ------------------------------------------------------------------------------------------ the window


def _window(rows_before: int, rows_after: int, kind: str = "datetime") -> tuple[pl.DataFrame, str]:
    start = dt.datetime(2026, 1, 1)
    times = [start + dt.timedelta(hours=i) for i in range(rows_before + rows_after)]
    onset = times[rows_before]
    frame = pl.DataFrame(
        {"id": np.arange(len(times)), "ts": times, "x": np.zeros(len(times)), "y": np.zeros(len(times))}
    )
    if kind == "epoch":
        frame = frame.with_columns(pl.col("ts").dt.epoch("s"))
        return frame, str(int(onset.replace(tzinfo=UTC).timestamp()))
    if kind == "date":
        frame = frame.with_columns(pl.col("ts").dt.date())
        return frame, onset.date().isoformat()
    return frame, onset.isoformat()


@pytest.mark.parametrize("kind", ["datetime", "epoch"])
def test_a_window_after_a_change_favours_rows_from_the_onset_on(kind: str) -> None:
    spec = _spec(window=WindowSpec(min_rows_since_drift=500, before_onset_weight=0.25))
    frame, onset = _window(1_500, 600, kind)
    weighted = rules.onset_weights(frame, spec, onset)
    weights = weighted.get_column(rules.WEIGHT_COLUMN).to_numpy()
    assert weights[:1_500].tolist() == [0.25] * 1_500 and weights[1_500:].tolist() == [1.0] * 600
    assert rules.rows_since(frame, spec, onset) == 600


def test_too_few_rows_after_the_onset_keep_the_window_as_it_is() -> None:
    spec = _spec(window=WindowSpec(min_rows_since_drift=500))
    frame, onset = _window(1_500, 200)
    assert rules.onset_weights(frame, spec, onset).equals(frame)
    assert rules.onset_weights(frame, spec, None).equals(frame)


def test_a_zero_weight_drops_the_old_regime() -> None:
    spec = _spec(window=WindowSpec(min_rows_since_drift=100, before_onset_weight=0.0))
    frame, onset = _window(300, 200, "date")
    kept = rules.onset_weights(frame, spec, onset)
    assert kept.get_column("ts").min().isoformat() >= onset


# ------------------------------------------------------------------------------------------ placement


def _gates(*failed: str, auc: float = 0.58, champion_auc: float | None = 0.31, difference: float = 0.0) -> GateReport:
    names = ["metric_floor auc", "champion_non_inferiority", "robustness"]
    gates = [
        GateResult(name, name not in failed, 0.0, 0.0, f"{name} detail", measurements={"difference": difference})
        for name in names
    ]
    metrics = {"auc": auc, "logloss": 0.6, "champion_logloss": 0.5} | (
        {"champion_auc": champion_auc} if champion_auc is not None else {}
    )
    return GateReport(gates=gates, metrics=metrics)


def test_a_floor_never_keeps_a_worse_champion_in_service() -> None:
    decision, reasons = rules.decide_placement(_gates("metric_floor auc"), has_champion=True)
    assert decision == "shadow" and "floor waived" in reasons[0] and "0.3100" in reasons[0]


@pytest.mark.parametrize(
    ("failed", "champion_auc", "decision"),
    [
        (("metric_floor auc",), 0.70, "rejected"),  # the champion serves better than the candidate: the floor holds
        (("metric_floor auc", "robustness"), 0.31, "rejected"),  # only floors are waived
        ((), 0.31, "shadow"),
    ],
)
def test_other_failures_still_reject(failed: tuple[str, ...], champion_auc: float, decision: str) -> None:
    assert rules.decide_placement(_gates(*failed, champion_auc=champion_auc), has_champion=True)[0] == decision


@pytest.mark.parametrize(
    ("degraded", "difference", "decision"),
    [(True, 0.02, "shadow"), (True, -0.02, "rejected"), (False, 0.02, "rejected")],
)
def test_the_non_inferiority_interval_protects_a_healthy_champion_only(
    degraded: bool, difference: float, decision: str
) -> None:
    """After a proven drop the few new rows make the interval too wide; the point estimate and then the
    shadow test decide. A healthy champion keeps the interval's protection."""
    report = _gates("champion_non_inferiority", difference=difference)
    placed, reasons = rules.decide_placement(report, has_champion=True, champion_degraded=degraded)
    assert placed == decision
    if placed == "shadow":
        assert "interval waived" in reasons[0]


def test_the_first_model_needs_its_absolute_gates() -> None:
    assert rules.decide_placement(_gates(), has_champion=False)[0] == "champion"
    assert rules.decide_placement(_gates("metric_floor auc", champion_auc=None), has_champion=False)[0] == "rejected"


def test_a_proven_performance_drop_supersedes_the_candidate_in_shadow() -> None:
    """The candidate was chosen before the champion's loss rose: the drop's answer replaces it."""
    spec = _spec()
    request = RetrainRequest(**{**_request().to_dict(), "drift_kind": "performance"})
    admission = rules.admit(request, spec, shadow_version="v7")
    assert admission.proceed and "performance dropped" in admission.reasons[-1]
    assert not rules.admit(_request(), spec, shadow_version="v7").proceed  # input drift still waits for the slot


def test_a_performance_drop_trains_on_the_rows_from_its_onset_on_and_waits_for_enough_of_them() -> None:
    spec = _spec(window=WindowSpec(min_rows_since_drift=500, min_labelled_rows=1_000))
    frame, onset = _window(3_000, 1_200)
    kept = rules.onset_weights(frame, spec, onset, "performance")
    assert kept.height == 1_200  # before_drop_weight 0: the old regime is dropped
    weighted = rules.onset_weights(frame, spec, onset, "input")
    assert weighted.height == frame.height and set(weighted.get_column(rules.WEIGHT_COLUMN).unique()) == {0.5, 1.0}
    drop = RetrainRequest(**{**_request().to_dict(), "drift_kind": "performance"})
    assert not rules.readiness(drop, spec, window_batches=["b1"], rows_since_onset=499).ready
    assert rules.readiness(drop, spec, window_batches=["b1"], rows_since_onset=500).ready


def test_a_rejected_answer_to_a_proven_drop_is_retried_with_twice_the_rows() -> None:
    spec = _spec(window=WindowSpec(min_rows_since_drift=500, min_labelled_rows=1_000))
    drop = RetrainRequest(**{**_request().to_dict(), "drift_kind": "performance"})
    again = rules.retry(drop, 1_000)
    assert again is not None and again.min_rows_since_onset == 2_000
    assert not rules.readiness(again, spec, window_batches=["b1"], rows_since_onset=1_999).ready
    assert rules.readiness(again, spec, window_batches=["b1"], rows_since_onset=2_000).ready
    assert rules.retry(_request(), 1_000) is None  # input drift: its candidate was no better, nothing to retry
    from driftline.loop.cooldown import answer_key

    assert answer_key(again) != answer_key(drop)  # the retry is a new answer, not a duplicate of the first
