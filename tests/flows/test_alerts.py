"""Alerts end to end: the automations applied to the session's real Prefect server, events sent to it, and the
notifications received by a real HTTP server on loopback started here.

The server's triggers service loads a new automation within ~5 s (its periodic reconcile), so the test first
sends probe events on a model of its own until one is notified, and only then the events under test.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from typer.testing import CliRunner

from driftline.cli import alerts
from driftline.events import prefect_http
from driftline.events.records import BATCH_PROFILED, DRIFT_DETECTED, new_event
from driftline.settings import Settings
from tests.support import REPO, Receiver, webhook_receiver

AUTOMATIONS = REPO / "deployments" / "automations"
PAYLOADS: list[tuple[str, dict[str, Any]]] = [
    ("driftline.drift.detected", {"batch_id": "b-0001", "kind": "input", "score": 0.42, "top_features": ["income"]}),
    ("driftline.drift.detected", {"batch_id": "b-0002", "kind": "input", "score": 0.57, "top_features": ["age"]}),
    ("driftline.performance.degraded", {"batch_id": "b-0003", "reference_version": "v1", "estimate": 0.08, "n": 1500}),
    ("driftline.candidate.rejected", {"version": "v2", "gate_summary": "gate failed: auc 0.71 < 0.75"}),
    ("driftline.model.promoted", {"champion": "v3", "previous": "v1", "reason": "shadow verdict: promote"}),
    ("driftline.model.rolled_back", {"champion": "v1", "previous": "v3", "reason": "rollback: guard"}),
]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with webhook_receiver() as state:
        yield state


@pytest.fixture
def alerts_off_afterwards(prefect_api_url: str) -> Iterator[None]:
    """Later tests of the session must not notify a receiver that is gone."""
    yield
    alerts.apply_alerts(prefect_api_url, Settings(alert_webhook_url=None), AUTOMATIONS)


def _send(api_url: str, model: str, name: str, payload: dict[str, Any]) -> tuple[str, float]:
    record = new_event(model, name, payload)
    sent = time.monotonic()
    prefect_http.emit_records(api_url, [record])
    return record.event_id, sent


def _poll(condition: Callable[[], bool], timeout: float, every: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(every)
    return True


def _wait_until_triggers_loaded(api_url: str, receiver: Receiver) -> None:
    probe = f"alerts-probe-{uuid.uuid4().hex[:8]}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        _send(api_url, probe, DRIFT_DETECTED, {"batch_id": "probe"})
        if _poll(lambda: bool(receiver.about(probe)), timeout=1.0):
            return
    pytest.fail("no notification for a probe event within 30 s: are the server's triggers/actions services on?")


def test_each_alerting_event_notifies_exactly_once_and_other_events_never(
    prefect_api_url: str, receiver: Receiver, alerts_off_afterwards: None
) -> None:
    report = alerts.apply_alerts(prefect_api_url, Settings(alert_webhook_url=receiver.url), AUTOMATIONS)
    assert report.enabled and len(report.automations) == len(alerts.ALERTING_EVENTS)
    _wait_until_triggers_loaded(prefect_api_url, receiver)

    model = f"alerts-{uuid.uuid4().hex[:8]}"
    # The silent event goes first: by the time the last alert arrives, it has had its chance to notify.
    silent_id, _ = _send(prefect_api_url, model, BATCH_PROFILED, {"batch_id": "b-0000", "drift": False})
    sent: dict[str, tuple[str, float]] = {}
    for name, payload in PAYLOADS:
        event_id, at = _send(prefect_api_url, model, name, payload)
        sent[event_id] = (name, at)

    assert _poll(lambda: len(receiver.about(model)) >= len(PAYLOADS), timeout=30), receiver.about(model)
    # Nothing else may follow: no duplicate, nothing for the non-alerting event.
    assert not _poll(lambda: len(receiver.about(model)) > len(PAYLOADS), timeout=3)

    notifications = receiver.about(model)
    by_event: dict[str, list[tuple[float, dict[str, Any]]]] = {event_id: [] for event_id in sent}
    for at, body in notifications:
        assert body["source"] == "driftline" and model in body["subject"]
        assert silent_id not in body["body"] and BATCH_PROFILED not in body["body"]
        [event_id] = [event_id for event_id in sent if event_id in body["body"]]
        by_event[event_id].append((at, body))
    for event_id, (name, _) in sent.items():
        [(_, body)] = by_event[event_id]
        assert f"event: {name}\n" in body["body"], body
    # Two drift events on one model in a burst got one notification each: none was folded into the other.
    assert [name for name, _ in sent.values()].count(DRIFT_DETECTED) == 2

    latencies = sorted(by_event[event_id][0][0] - at for event_id, (_, at) in sent.items())
    print(f"\nevent -> notification latency (s): {', '.join(f'{x:.2f}' for x in latencies)}")


def test_applying_twice_leaves_one_block_and_one_automation_each_and_no_url_removes_them(
    prefect_api_url: str, receiver: Receiver, alerts_off_afterwards: None
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.events.schemas.automations import AutomationCore
    from prefect.settings import PREFECT_API_URL, temporary_settings

    runner = CliRunner()
    env = {"DRIFTLINE_ALERT_WEBHOOK_URL": receiver.url, "DRIFTLINE_PREFECT_API_URL": prefect_api_url}
    first = runner.invoke(alerts.app, ["apply", "--dir", str(AUTOMATIONS), "--json"], env=env)
    assert first.exit_code == 0, first.output
    applied = json.loads(first.output)
    # A copy created by hand and an alert automation whose file is gone: apply cleans up both.
    definition = alerts.load_definitions(AUTOMATIONS)[0]
    with temporary_settings(updates={PREFECT_API_URL: prefect_api_url}), get_client(sync_client=True) as client:
        stray = AutomationCore.model_validate(definition.with_block(applied["block"]["id"]))
        client.create_automation(stray)
        client.create_automation(stray.model_copy(update={"name": "driftline-alert-retired"}))

    second = runner.invoke(alerts.app, ["apply", "--dir", str(AUTOMATIONS), "--json"], env=env)
    assert second.exit_code == 0, second.output
    again = json.loads(second.output)
    assert {name: a["action"] for name, a in again["automations"].items()} == dict.fromkeys(
        applied["automations"], "unchanged"
    )
    assert {name: a["id"] for name, a in again["automations"].items()} == {
        name: a["id"] for name, a in applied["automations"].items()
    }
    assert sorted(again["removed"]) == sorted([definition.name, "driftline-alert-retired"])
    assert again["block"] == applied["block"]  # updated in place: same document, same id

    shown = runner.invoke(alerts.app, ["show", "--json"], env=env)
    assert shown.exit_code == 0, shown.output
    on_server = json.loads(shown.output)
    assert on_server["enabled"] and on_server["kind"] == "json"
    assert sorted(on_server["automations"]) == sorted(applied["automations"])
    with temporary_settings(updates={PREFECT_API_URL: prefect_api_url}), get_client(sync_client=True) as client:
        names = [a.name for a in client.read_automations() if alerts.ALERT_TAG in a.tags]
        documents = [d for d in client.read_block_documents() if d.name == alerts.BLOCK_NAME]
    assert sorted(names) == sorted(applied["automations"])
    assert len(documents) == 1
    assert documents[0].data["url"] == "{{webhook_url}}"  # the URL itself sits in the block's secrets

    off = runner.invoke(
        alerts.app, ["apply", "--dir", str(AUTOMATIONS)], env={**env, "DRIFTLINE_ALERT_WEBHOOK_URL": ""}
    )
    assert off.exit_code == 0, off.output
    assert "alerts off" in off.output and f"removed {len(names)} alert automation(s)" in off.output
    after = json.loads(runner.invoke(alerts.app, ["show", "--json"], env=env).output)
    assert after["enabled"] is False and after["automations"] == {} and after["block"] is None


def test_unreachable_server_is_an_infrastructure_error_naming_it() -> None:
    from driftline.errors import InfrastructureError
    from tests.support import free_port

    url = f"http://127.0.0.1:{free_port()}/api"
    with pytest.raises(InfrastructureError, match=url):
        alerts.apply_alerts(url, Settings(alert_webhook_url="http://127.0.0.1:9/hook"), AUTOMATIONS)
