"""The demo's pure parts: its timeline reader (against a fake event store), spec changes and story."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import pytest
from rich.console import Console

from driftline.cli import demo
from driftline.replay import synth
from tests.batches import example_spec

T0 = datetime(2026, 1, 1, tzinfo=UTC)


class FakeServer:
    """Stored events, served like POST /api/events/filter: occurred >= since, ascending, 50 per page."""

    def __init__(self) -> None:
        self.stored: list[dict] = []
        self.runs: list[dict] = []  # what active_flow_runs answers

    def active_flow_runs(self, api_url):
        return list(self.runs)

    def store(self, seconds: float, name: str, batch_id: str) -> None:
        occurred = (T0 + timedelta(seconds=seconds)).isoformat()
        self.stored.append(
            {"id": f"{name}-{batch_id}", "event": name, "occurred": occurred, "payload": {"batch_id": batch_id}}
        )

    def find_events(self, api_url, names, resource_ids=None, since=None, limit=50, newest_first=False):
        matching = [e for e in self.stored if datetime.fromisoformat(e["occurred"]) >= since and e["event"] in names]
        return sorted(matching, key=lambda e: e["occurred"])[:limit]


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> FakeServer:
    fake = FakeServer()
    monkeypatch.setattr(demo.prefect_api, "find_events", fake.find_events)
    monkeypatch.setattr(demo.prefect_api, "active_flow_runs", fake.active_flow_runs)
    monkeypatch.setattr(demo, "RUNS_EVERY_S", 0.0)
    return fake


def _timeline() -> demo.Timeline:
    return demo.Timeline("http://x/api", "m", Console(file=io.StringIO()), T0)


def test_an_event_stored_after_a_later_one_is_still_seen_and_none_twice(server: FakeServer) -> None:
    timeline = _timeline()
    server.store(10, "driftline.batch.profiled", "b1")
    server.store(12, "driftline.batch.profiled", "b3")
    assert [e["payload"]["batch_id"] for e in timeline.poll()] == ["b1", "b3"]
    server.store(11, "driftline.batch.profiled", "b2")  # stamped before b3, stored after it
    assert [e["payload"]["batch_id"] for e in timeline.poll()] == ["b2"]
    assert timeline.poll() == []
    assert len(timeline.events) == 3


def test_more_than_a_page_of_events_is_read_to_the_end(server: FakeServer) -> None:
    timeline = _timeline()
    for i in range(120):
        server.store(i * 0.1, "driftline.batch.arrived", f"b{i:03d}")
    assert len(timeline.poll()) == 120
    assert timeline.wait(lambda: len(timeline.named("driftline.batch.arrived")) == 120, 1, "events") is None


def test_waiting_for_what_never_comes_names_it(server: FakeServer) -> None:
    with pytest.raises(demo.InfrastructureError, match="no profile of b9 within 0 s"):
        _timeline().wait(lambda: False, 0, "profile of b9")


# --------------------------------------------------------------------------------------------- waiting
RUN = ("r1", "Running")


@pytest.mark.parametrize(
    ("before", "after", "moved"),
    [
        (None, demo.Activity(0), True),  # the first look starts the clock
        (demo.Activity(3, frozenset({RUN}), True), demo.Activity(3, frozenset({RUN}), True), False),
        (demo.Activity(3), demo.Activity(4), True),  # a new event
        (demo.Activity(3, frozenset({("r1", "Late")})), demo.Activity(3, frozenset({RUN}), True), True),  # started
        (demo.Activity(3, frozenset({RUN}), True), demo.Activity(3), True),  # ended
        (demo.Activity(3), demo.Activity(3, frozenset({("r2", "Scheduled")})), True),  # created
    ],
)
def test_a_new_event_or_any_run_state_change_is_movement(
    before: demo.Activity | None, after: demo.Activity, moved: bool
) -> None:
    assert demo.has_moved(before, after) is moved


@pytest.mark.parametrize(
    ("idle", "busy", "keep"),
    [
        (10, False, True),  # within the idle timeout
        (130, False, False),  # nothing moved, nothing runs (runs only queued: the worker may be down)
        (130, True, True),  # a long training run: work under way
        (1000, True, False),  # a run RUNNING unchanged for ages: a crashed worker's leftover
    ],
)
def test_waiting_goes_on_while_something_moves_or_runs_and_stops_when_idle(idle: float, busy: bool, keep: bool) -> None:
    assert demo.keep_waiting(idle, busy, idle_timeout=120, busy_timeout=900) is keep


def test_a_wait_outlives_its_idle_timeout_while_a_run_is_under_way(server: FakeServer) -> None:
    timeline = _timeline()
    timeline.poll_every = 0.01
    server.runs = [
        {"id": "r1", "name": "x", "flow": "score-batch", "state": "RUNNING", "state_name": "Running", "model": "m"}
    ]
    polls = []

    def done() -> bool:
        polls.append(1)
        if len(polls) == 20:
            server.store(5, "driftline.batch.profiled", "b1")  # the run's event: the next poll reads it
        return bool(timeline.named("driftline.batch.profiled"))

    timeline.wait(done, 0, "profile of b1")  # an idle timeout of 0 s: only the running run keeps it going
    assert len(polls) >= 21


def test_giving_up_names_what_is_queued_and_the_last_activity(server: FakeServer) -> None:
    timeline = _timeline()
    timeline.poll_every = 0.01
    server.store(1, "driftline.batch.arrived", "b7")
    server.runs = [
        {"id": "r1", "name": "x", "flow": "profile-batch", "state": "SCHEDULED", "state_name": "Late", "model": "m"}
    ]
    with pytest.raises(demo.InfrastructureError) as raised:
        timeline.wait(lambda: False, 0.05, "profile of b7")
    message = str(raised.value)
    assert "no profile of b7 within 0 s without progress" in message
    assert "queued: profile-batch (Late) x1" in message and "last activity" in message


def test_runs_are_summarised_by_flow_and_state() -> None:
    runs = [
        {"flow": "score-batch", "state": "RUNNING", "state_name": "Running"},
        {"flow": "score-batch", "state": "PENDING", "state_name": "Pending"},
        {"flow": "profile-batch", "state": "SCHEDULED", "state_name": "Late"},
    ]
    assert demo.describe_runs(runs) == "running: score-batch x2; queued: profile-batch (Late) x1"
    assert demo.describe_runs([]) == "no runs"


def test_demo_spec_lists_every_change_and_stays_a_valid_spec() -> None:
    scenario = synth.get_scenario("fast", batches=demo.FAST_BATCHES)
    spec, changes = demo.demo_spec(example_spec("example"), "demo", scenario)
    assert spec.name == "demo" and spec.cooldown.seconds == 0 and spec.cooldown.supersede_shadow is True
    assert spec.window.min_rows_since_drift == 2 * scenario.rows
    assert "cooldown.seconds=0" in changes and len(changes) >= 10


def test_the_fast_story_bootstraps_before_any_drift_and_names_its_events() -> None:
    scenario = synth.get_scenario("fast", batches=demo.FAST_BATCHES)
    first_event = min(event.from_batch for event in scenario.events)
    assert 1 <= demo.bootstrap_batches(scenario) < first_event
    assert demo.concept_drift_at(scenario) == 6
    text = demo.describe_scenario(scenario)
    assert "income drifts" in text and "concept drift" in text
    line = demo.describe_event("driftline.shadow.decided", {"candidate": "v2", "verdict": "promote", "n": 10})
    assert line.startswith("v2: promote after 10 rows")
