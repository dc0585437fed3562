"""Alert automations without a server: the shipped files, their validation, the templates, the webhook block."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import SecretStr

from driftline.cli.alerts import (
    ALERT_TAG,
    ALERTING_EVENTS,
    BLOCK_ID_PLACEHOLDER,
    AlertDefinition,
    build_block,
    check_alerts,
    load_definitions,
    render_notification,
)
from driftline.errors import InputError
from driftline.events.records import BATCH_PROFILED, new_event
from driftline.settings import Settings
from tests.support import REPO

AUTOMATIONS = REPO / "deployments" / "automations"
UI = "http://127.0.0.1:4250"

# Payloads as the flows emit them (driftline.events.records.new_event adds model and event_id).
PAYLOADS: dict[str, dict[str, Any]] = {
    "driftline.drift.detected": {
        "batch_id": "b-0042",
        "kind": "input",
        "score": 0.4213,
        "top_features": ["income", "age"],
        "report_key": "drift/credit/b-0042.json",
        "reference_key": "profiles/credit/reference/v1.bin",
        "reference_version": "v1",
        "drift_onset": None,
    },
    "driftline.performance.degraded": {
        "batch_id": "b-0050",
        "kind": "performance",
        "drift_onset": "2026-11-01T00:00:00+00:00",
        "reference_version": "v1",
        "since_batch_id": "b-0047",
        "estimate": 0.081,
        "lower": 0.032,
        "upper": 0.13,
        "tolerance": 0.0,
        "n": 1500,
        "baseline_loss": 0.41,
        "reasons": ["loss rose: lower bound 0.032 > tolerance 0"],
    },
    "driftline.candidate.rejected": {
        "version": "v20261101t120000-ab12",
        "decision": "rejected",
        "metrics": {"auc": 0.712345, "logloss": 0.51},
        "gates_passed": False,
        "gate_summary": "gate failed: auc 0.71 < 0.75",
        "parent_champion": "v1",
        "metadata_key": "models/credit/versions/v20261101t120000-ab12/metadata.json",
    },
    "driftline.model.promoted": {"champion": "v2", "previous": "v1", "reason": "shadow verdict: promote"},
    "driftline.model.rolled_back": {
        "champion": "v1",
        "previous": "v2",
        "reason": "rollback: guard",
        "evidence": {"verdict": "rollback", "n": 2000, "estimate": 0.05, "lower": 0.01, "upper": 0.09, "reasons": []},
    },
}
PAYLOADS["driftline.scoring.failed"] = {
    "batch_id": "b-0042",
    "version": "v3",
    "role": "champion",
    "kind": "integrity",
    "error_type": "IntegrityError",
    "error": "booster sha256 ab != metadata cd",
}
# What a reader must find in the body, beyond the model, the event name and the event id.
KEY_FIELDS = {
    "driftline.drift.detected": ["b-0042", "0.4213", "income, age"],
    "driftline.performance.degraded": ["b-0050", "champion v1", "0.081", "0.032", "0.13", "1500", "lower bound 0.032"],
    "driftline.candidate.rejected": ["v20261101t120000-ab12", "gate failed: auc 0.71 < 0.75", "auc=0.7123"],
    "driftline.model.promoted": ["v2", "v1", "shadow verdict: promote"],
    "driftline.model.rolled_back": ["v1", "v2", "rollback: guard", "2000"],
    "driftline.scoring.failed": ["b-0042", "v3", "integrity", "booster sha256 ab != metadata cd"],
}


def _received(model: str, name: str, payload: dict[str, Any]) -> dict[str, Any]:
    record = new_event(model, name, payload)
    return {
        "id": record.event_id,
        "occurred": record.occurred,
        "event": record.name,
        "resource": {"prefect.resource.id": record.resource_id, "prefect.resource.name": model},
        "payload": record.payload,
    }


def _by_event(definitions: list[AlertDefinition]) -> dict[str, AlertDefinition]:
    return {event: definition for definition in definitions for event in definition.events}


def _write(directory: Path, name: str, text: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / name).write_text(text)


def _automation(name: str, block_document_id: str = BLOCK_ID_PLACEHOLDER, posture: str = "Reactive") -> dict:
    return {
        "name": name,
        "trigger": {
            "type": "event",
            "match": {"prefect.resource.id": "driftline.model.*"},
            "expect": ["driftline.drift.detected"],
            "for_each": ["prefect.resource.id"],
            "posture": posture,
            "threshold": 1,
            "within": 0,
        },
        "actions": [
            {
                "type": "send-notification",
                "block_document_id": block_document_id,
                "subject": "drift on {{ event.payload.model }}",
                "body": "{{ event.event }}",
            }
        ],
    }


# --------------------------------------------------------------------------------------------- shipped files
def test_shipped_automations_cover_each_alerting_event_once() -> None:
    definitions = load_definitions(AUTOMATIONS)
    assert sorted(event for d in definitions for event in d.events) == sorted(ALERTING_EVENTS)
    assert BATCH_PROFILED not in _by_event(definitions)
    assert len({d.name for d in definitions}) == len(definitions) == len(ALERTING_EVENTS)


@pytest.mark.parametrize("event", ALERTING_EVENTS)
def test_shipped_trigger_fires_once_per_event_on_any_model(event: str) -> None:
    trigger = _by_event(load_definitions(AUTOMATIONS))[event].data["trigger"]
    assert trigger["type"] == "event" and trigger["posture"] == "Reactive"
    assert trigger["threshold"] == 1 and trigger["within"] == 0  # nothing is folded into another event
    assert trigger["for_each"] == ["prefect.resource.id"]
    assert trigger["match"] == {"prefect.resource.id": "driftline.model.*"}


def test_block_placeholder_is_replaced_and_the_alert_tag_always_set() -> None:
    definition = load_definitions(AUTOMATIONS)[0]
    data = definition.with_block("6a1f1fd6-77c2-4f61-9d0e-3c7d5cbe3b31")
    assert [a["block_document_id"] for a in data["actions"]] == ["6a1f1fd6-77c2-4f61-9d0e-3c7d5cbe3b31"]
    assert ALERT_TAG in data["tags"]
    assert definition.data["actions"][0]["block_document_id"] == BLOCK_ID_PLACEHOLDER  # the file's data is untouched


# --------------------------------------------------------------------------------------------- templates
@pytest.mark.parametrize("event", ALERTING_EVENTS)
def test_notification_names_model_event_key_fields_and_links_the_ui(event: str) -> None:
    received = _received("credit", event, PAYLOADS[event])
    [notification] = render_notification(_by_event(load_definitions(AUTOMATIONS))[event], received, ui_url=UI)
    assert "credit" in notification["subject"]
    body = notification["body"]
    assert "model: credit" in body and f"event: {event}" in body and received["id"] in body
    missing = [value for value in KEY_FIELDS[event] if value not in body]
    assert missing == []
    assert f"Prefect UI: {UI}/events/event/" in body and body.rstrip().endswith(received["id"])


@pytest.mark.parametrize("event", ALERTING_EVENTS)
def test_notification_without_ui_url_or_payload_fields_still_renders(event: str) -> None:
    """A server that does not know its UI URL, or a payload missing keys, must not break the notification."""
    received = _received("credit", event, {})
    [notification] = render_notification(_by_event(load_definitions(AUTOMATIONS))[event], received, ui_url=None)
    assert "credit" in notification["subject"] and f"event: {event}" in notification["body"]
    assert "Prefect UI" not in notification["body"] and "None" not in notification["body"].split("occurred:")[0]


# --------------------------------------------------------------------------------------------- validation
def test_every_problem_in_every_file_is_reported_together(tmp_path: Path) -> None:
    _write(tmp_path, "a.yaml", yaml.safe_dump(_automation("alert-a")))
    _write(tmp_path, "b.yaml", yaml.safe_dump(_automation("alert-a")))
    _write(tmp_path, "c.yaml", yaml.safe_dump(_automation("alert-c", block_document_id="my-block")))
    _write(tmp_path, "d.yml", yaml.safe_dump(_automation("alert-d", posture="Sideways")))
    _write(tmp_path, "e.yaml", "name: [unclosed")
    with pytest.raises(InputError) as raised:
        load_definitions(tmp_path)
    message = str(raised.value)
    assert "b.yaml (alert-a): name already used in a.yaml" in message
    assert "c.yaml (alert-c): needs a send-notification action" in message
    assert "d.yml (alert-d): not a valid Prefect automation" in message and "posture" in message
    assert "e.yaml: not valid YAML" in message


def test_a_file_may_hold_a_list_of_automations(tmp_path: Path) -> None:
    _write(tmp_path, "both.yaml", yaml.safe_dump({"automations": [_automation("alert-1"), _automation("alert-2")]}))
    assert [d.name for d in load_definitions(tmp_path)] == ["alert-1", "alert-2"]


@pytest.mark.parametrize("make", ["missing", "empty"])
def test_missing_or_empty_directory_is_named(tmp_path: Path, make: str) -> None:
    directory = tmp_path / "automations"
    if make == "empty":
        directory.mkdir()
    with pytest.raises(InputError, match=str(directory)):
        load_definitions(directory)


# --------------------------------------------------------------------------------------------- the block
def test_without_a_url_nothing_is_built_or_read(tmp_path: Path) -> None:
    assert check_alerts(Settings(alert_webhook_url=None), tmp_path / "does-not-exist") == ([], None)


def test_json_block_keeps_the_url_in_its_secrets() -> None:
    from prefect.blocks.notifications import CustomWebhookNotificationBlock

    block = build_block(Settings(alert_webhook_url=SecretStr("http://127.0.0.1:9/hook?token=s3cr3t")))
    assert isinstance(block, CustomWebhookNotificationBlock)
    assert "s3cr3t" not in block.url and "s3cr3t" not in str(block.json_data)
    assert block.secrets.get_secret_value() == {"webhook_url": "http://127.0.0.1:9/hook?token=s3cr3t"}
    request = block._build_request_args(body="the body", subject="the subject")
    assert request["url"] == "http://127.0.0.1:9/hook?token=s3cr3t"
    assert request["json"] == {
        "source": "driftline",
        "subject": "the subject",
        "body": "the body",
        "text": "the subject\n\nthe body",
    }


def test_slack_and_teams_use_prefects_own_blocks() -> None:
    from prefect.blocks.notifications import MicrosoftTeamsWebhook, SlackWebhook

    slack = build_block(
        Settings(alert_webhook_url="https://hooks.slack.com/services/T000/B000/XXXX", alert_webhook_kind="slack")
    )
    assert isinstance(slack, SlackWebhook)
    teams_url = (
        "https://prod-00.westeurope.logic.azure.com:443/workflows/abc123/triggers/manual/paths/invoke"
        "?api-version=2016-06-01&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig=SIGNATURE"
    )
    assert isinstance(
        build_block(Settings(alert_webhook_url=teams_url, alert_webhook_kind="teams")), MicrosoftTeamsWebhook
    )


@pytest.mark.parametrize("kind", ["slack", "teams"])
def test_a_url_that_does_not_fit_the_kind_names_both_settings(kind: str) -> None:
    settings = Settings(alert_webhook_url="https://hooks.example.com/driftline?token=s3cr3t", alert_webhook_kind=kind)
    with pytest.raises(InputError, match="DRIFTLINE_ALERT_WEBHOOK_URL.*DRIFTLINE_ALERT_WEBHOOK_KIND=json") as raised:
        build_block(settings)
    assert "s3cr3t" not in str(raised.value)


def test_a_url_that_is_not_http_is_refused_without_echoing_it() -> None:
    with pytest.raises(InputError, match="DRIFTLINE_ALERT_WEBHOOK_URL is not an http") as raised:
        build_block(Settings(alert_webhook_url="hooks.slack.com/services/T0/B0/t0k3n"))
    assert "t0k3n" not in str(raised.value)
