"""Where flow runs' time goes: stages from state timestamps, the triggering event matched per deployment."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from driftline.events.records import BATCH_ARRIVED, BATCH_PROFILED, DRIFT_DETECTED, LABELS_ARRIVED, RETRAIN_DUE
from driftline.reports.run_timing import STAGES, RunTiming, breakdown, with_triggers

T0 = datetime(2026, 12, 2, 12, tzinfo=UTC)


def _at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def _run(flow: str, created: float, pending: float, running: float, ended: float | None, tasks: float, **params):
    return RunTiming(
        flow=flow,
        created=_at(created),
        pending=_at(pending),
        running=_at(running),
        ended=None if ended is None else _at(ended),
        task_seconds=tasks,
        parameters=params,
    )


def _event(name: str, seconds: float, **payload) -> dict:
    return {"event": name, "occurred": _at(seconds).isoformat(), "payload": payload}


def test_a_runs_stages_add_up_to_its_wall_time_from_the_event() -> None:
    run = _run("profile-batch", 2.0, 2.5, 6.0, 9.0, 2.25, model="m", batch_id="b001")
    (timed,) = with_triggers([run], [_event(BATCH_ARRIVED, 1.0, batch_id="b001")])
    stages = timed.stages()
    assert stages == {"trigger": 1.0, "queue": 0.5, "start": 3.5, "tasks": 2.25, "flow": 0.75}
    assert sum(stages.values()) == pytest.approx((timed.ended - timed.triggered_at).total_seconds())
    assert timed.event_to_start == 5.0


def test_the_triggering_event_is_the_latest_of_its_batch_before_the_run_was_created() -> None:
    runs = [
        _run("profile-batch", 10.0, 10.5, 12.0, 14.0, 1.0, batch_id="b002"),
        _run("shadow-evaluate", 30.0, 30.5, 32.0, 33.0, 0.5, batch_id="b001"),
    ]
    events = [
        _event(BATCH_ARRIVED, 1.0, batch_id="b001"),
        _event(BATCH_ARRIVED, 9.0, batch_id="b002"),
        _event(BATCH_PROFILED, 14.5, batch_id="b002"),
        _event(LABELS_ARRIVED, 29.0, batch_id="b001"),
        _event(LABELS_ARRIVED, 29.5, batch_id="b002"),  # another batch's labels: not this run's
        _event(BATCH_ARRIVED, 40.0, batch_id="b002"),  # after the run was created: cannot have started it
    ]
    profile, shadow = with_triggers(runs, events)
    assert profile.triggered_at == _at(9.0)
    assert shadow.triggered_at == _at(29.0)


def test_a_subflow_has_no_trigger_and_its_time_is_not_its_parents_overhead() -> None:
    parent = replace(_run("profile-batch", 10.0, 10.5, 12.0, 20.0, 3.0, batch_id="b002"), subflow_seconds=4.0)
    child = replace(_run("score-batch", 15.0, 15.0, 15.1, 19.0, 3.5, batch_id="b002"), subflow=True)
    events = [_event(BATCH_ARRIVED, 9.0, batch_id="b002"), _event(BATCH_PROFILED, 14.5, batch_id="b002")]
    profile, score = with_triggers([parent, child], events)
    assert profile.triggered_at == _at(9.0) and score.triggered_at is None
    assert profile.stages() == {"trigger": 1.0, "queue": 0.5, "start": 1.5, "tasks": 3.0, "flow": 1.0}
    assert score.stages()["tasks"] == 3.5 and score.stages()["trigger"] is None
    result = breakdown([profile, score])
    assert result.total["tasks"] == 6.5  # the subflow's work once, not again in its parent's
    assert result.event_to_run_start_n == 1


def test_a_drift_retrain_is_matched_by_its_event_id_and_a_manual_one_by_nothing() -> None:
    runs = [
        _run("retrain", 20.0, 20.5, 23.0, 30.0, 6.0, trigger="drift", drift_event_id="e-2"),
        _run("retrain", 21.0, 21.5, 24.0, 25.0, 0.5, trigger="labels"),
        _run("retrain", 22.0, 22.5, 25.0, 35.0, 9.0, trigger="manual"),
    ]
    events = [
        _event(DRIFT_DETECTED, 5.0, event_id="e-1"),
        _event(DRIFT_DETECTED, 18.0, event_id="e-2"),
        _event(DRIFT_DETECTED, 19.0, event_id="e-3"),
        _event(RETRAIN_DUE, 20.5, batch_id="b004"),
    ]
    drift, labels, manual = with_triggers(runs, events)
    assert drift.triggered_at == _at(18.0)
    assert labels.triggered_at == _at(20.5)
    assert manual.triggered_at is None and manual.stages()["trigger"] is None


def test_the_breakdown_gives_medians_per_flow_totals_shares_and_the_median_latency() -> None:
    runs = with_triggers(
        [
            _run("profile-batch", 1.0, 2.0, 5.0, 8.0, 2.0, batch_id="b001"),
            _run("profile-batch", 11.0, 11.5, 15.5, 18.0, 2.0, batch_id="b002"),
            _run("profile-batch", 21.0, 22.0, 27.0, 30.0, 2.5, batch_id="b003"),
            _run("score-batch", 9.0, 9.5, 12.0, None, 0.0, batch_id="b001"),  # still running: left out
        ],
        [_event(BATCH_ARRIVED, t, batch_id=f"b00{i}") for i, t in ((1, 0.0), (2, 10.0), (3, 20.0))],
    )
    result = breakdown(runs)
    assert result.runs == 3 and [f.flow for f in result.flows] == ["profile-batch"]
    (profile,) = result.flows
    assert profile.median == {"trigger": 1.0, "queue": 1.0, "start": 4.0, "tasks": 2.0, "flow": 0.5}
    assert profile.total == {"trigger": 3.0, "queue": 2.5, "start": 12.0, "tasks": 6.5, "flow": 2.0}
    assert result.event_to_run_start_median == 5.5  # 5, 5.5, 7
    assert sum(result.share().values()) == pytest.approx(1.0)
    assert result.share()["start"] == pytest.approx(12.0 / 26.0)
    table = result.lines()
    assert table[0].split() == ["flow", "runs", *STAGES] and table[1].split()[:2] == ["profile-batch", "3"]


def test_task_time_never_exceeds_the_run_and_an_empty_breakdown_has_no_latency() -> None:
    clock_skewed = _run("promote", 0.0, 0.5, 1.0, 2.0, 5.0)  # task runs reported longer than the flow body
    assert clock_skewed.stages()["tasks"] == 1.0 and clock_skewed.stages()["flow"] == 0.0
    empty = breakdown([])
    assert empty.runs == 0 and empty.event_to_run_start_median is None and empty.share()["start"] == 0.0
