"""Alerts: Prefect automations that send a notification on the events people must hear about.

``deployments/automations/*.yaml`` holds one automation per file, in the format of
``prefect automation create --from-file`` except for one placeholder: a ``send-notification`` action names
its block as ``block_document_id: "{{ driftline.alert_block_id }}"``, which ``apply_alerts`` replaces with
the id of the webhook block it keeps in step with the settings:

    DRIFTLINE_ALERT_WEBHOOK_URL   where notifications go; unset means no alerts
    DRIFTLINE_ALERT_WEBHOOK_KIND  json (default, CustomWebhookNotificationBlock) | slack | teams

``apply_alerts`` is idempotent: the block is saved under one name (updated in place, so its id and the
automations pointing at it stay), automations are matched by name among those tagged ``driftline-alert``,
updated in place, duplicates and automations whose file is gone are deleted. Without a URL it removes
the block and every alert automation, so the server always reflects the settings.

Prefect is imported inside the functions: ``driftline --help`` stays fast.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
import yaml

from driftline.cli.context import JsonOption, local_settings
from driftline.errors import InfrastructureError, InputError
from driftline.events.records import (
    CANDIDATE_REJECTED,
    DRIFT_DETECTED,
    MODEL_PROMOTED,
    MODEL_ROLLED_BACK,
    PERFORMANCE_DEGRADED,
    SCORING_FAILED,
)
from driftline.settings import Settings

if TYPE_CHECKING:
    from prefect.blocks.abstract import NotificationBlock
    from prefect.client.orchestration import SyncPrefectClient

ALERT_TAG = "driftline-alert"
BLOCK_NAME = "driftline-alerts"
BLOCK_ID_PLACEHOLDER = "{{ driftline.alert_block_id }}"
ALERTING_EVENTS = (
    DRIFT_DETECTED,
    PERFORMANCE_DEGRADED,
    CANDIDATE_REJECTED,
    MODEL_PROMOTED,
    MODEL_ROLLED_BACK,
    SCORING_FAILED,
)
# Prefect block type slug per DRIFTLINE_ALERT_WEBHOOK_KIND.
BLOCK_TYPES = {"json": "custom-webhook", "slack": "slack-webhook", "teams": "ms-teams-webhook"}
# What the `json` kind POSTs: subject and body apart for programs, `text` for chat webhooks (Slack,
# Mattermost, Rocket.Chat read it), `source` so a shared endpoint can route.
JSON_PAYLOAD = {"source": "driftline", "subject": "{{subject}}", "body": "{{body}}", "text": "{{subject}}\n\n{{body}}"}
_SLACK_URL = re.compile(r"^https://hooks\.slack(-gov)?\.com/services/[A-Za-z0-9]+/[A-Za-z0-9]+/[A-Za-z0-9]+/?$")
_PLACEHOLDER_ID = "00000000-0000-0000-0000-000000000000"


def default_directory(settings: Settings) -> Path:
    """Where the alert automations live: ``deployments/automations`` under the project directory."""
    return settings.project_dir / "deployments" / "automations"


# --------------------------------------------------------------------------------------------- definitions
@dataclass(frozen=True)
class AlertDefinition:
    """One automation as written in its file, block id still a placeholder."""

    name: str
    path: Path
    data: dict[str, Any]

    @property
    def events(self) -> list[str]:
        return sorted(self.data.get("trigger", {}).get("expect", []))

    def with_block(self, block_document_id: str) -> dict[str, Any]:
        """The automation with every placeholder block id replaced and the ``driftline-alert`` tag set."""
        data = json.loads(json.dumps(self.data))
        for action in _notification_actions(data):
            if action.get("block_document_id") == BLOCK_ID_PLACEHOLDER:
                action["block_document_id"] = block_document_id
        data["tags"] = sorted({*data.get("tags", []), ALERT_TAG})
        return data


def _notification_actions(data: dict[str, Any]) -> list[dict[str, Any]]:
    actions = [*data.get("actions", []), *data.get("actions_on_trigger", []), *data.get("actions_on_resolve", [])]
    return [a for a in actions if isinstance(a, dict) and a.get("type") == "send-notification"]


def _documents(path: Path) -> list[Any]:
    data = yaml.safe_load(path.read_text())
    if isinstance(data, dict) and "automations" in data:
        data = data["automations"]
    return data if isinstance(data, list) else [data]


def load_definitions(directory: Path) -> list[AlertDefinition]:
    """Read and validate every automation in ``directory`` (``*.yaml``/``*.yml``, a mapping or a list each).

    Every problem in every file is collected and reported together.

    Raises:
        InputError: the directory is missing or empty, or a file is not a valid Prefect automation, lacks a
            ``send-notification`` action with the block placeholder, or repeats another file's name.
    """
    from prefect.events.schemas.automations import AutomationCore
    from pydantic import ValidationError

    if not directory.is_dir():
        raise InputError(f"alert automations directory {directory} does not exist (run from the project directory)")
    paths = sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")])
    if not paths:
        raise InputError(f"no *.yaml automations in {directory}")
    problems: list[str] = []
    definitions: list[AlertDefinition] = []
    seen: dict[str, Path] = {}
    for path in paths:
        try:
            documents = _documents(path)
        except yaml.YAMLError as error:
            problems.append(f"{path.name}: not valid YAML ({' '.join(str(error).split())})")
            continue
        for index, data in enumerate(documents):
            where = f"{path.name}[{index}]"
            if not isinstance(data, dict) or not isinstance(data.get("name"), str) or not data["name"]:
                problems.append(f"{where}: an automation is a mapping with a non-empty `name`")
                continue
            name = data["name"]
            where = f"{path.name} ({name})"
            if name in seen:
                problems.append(f"{where}: name already used in {seen[name].name}")
                continue
            seen[name] = path
            definition = AlertDefinition(name, path, data)
            if not any(a.get("block_document_id") == BLOCK_ID_PLACEHOLDER for a in _notification_actions(data)):
                problems.append(
                    f"{where}: needs a send-notification action with block_document_id: '{BLOCK_ID_PLACEHOLDER}'"
                )
                continue
            try:
                AutomationCore.model_validate(definition.with_block(_PLACEHOLDER_ID))
            except ValidationError as error:
                details = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors()[:5])
                problems.append(f"{where}: not a valid Prefect automation: {details}")
                continue
            definitions.append(definition)
    if problems:
        raise InputError(f"alert automations in {directory}: " + "; ".join(problems))
    return definitions


def render_notification(definition: AlertDefinition, event: dict[str, Any], ui_url: str | None = None) -> list[dict]:
    """Subject and body of each notification ``definition`` sends for ``event``, rendered as the server would.

    Uses Prefect's own sandboxed template environment and filters, with ``PREFECT_UI_URL`` = ``ui_url`` (the
    server adds a link to the event when it knows its UI URL). For previews and tests.
    """
    from prefect.server.events.jinja_filters import all_filters
    from prefect.server.events.schemas.events import ReceivedEvent
    from prefect.server.utilities.user_templates import register_user_template_filters, render_user_template_sync
    from prefect.settings import PREFECT_UI_URL, temporary_settings

    register_user_template_filters(all_filters)
    received = ReceivedEvent.model_validate(event)
    rendered = []
    with temporary_settings(updates={PREFECT_UI_URL: ui_url}):
        for action in _notification_actions(definition.data):
            context = {"event": received}
            rendered.append(
                {
                    "subject": render_user_template_sync(action.get("subject", ""), context),
                    "body": render_user_template_sync(action["body"], context),
                }
            )
    return rendered


# --------------------------------------------------------------------------------------------- the block
def build_block(settings: Settings) -> NotificationBlock:
    """The notification block for the configured webhook.

    Raises:
        InputError: no URL is set, or it does not fit the configured kind.
    """
    from prefect.blocks.notifications import CustomWebhookNotificationBlock, MicrosoftTeamsWebhook, SlackWebhook

    if settings.alert_webhook_url is None:
        raise InputError("DRIFTLINE_ALERT_WEBHOOK_URL is not set")
    url = settings.alert_webhook_url.get_secret_value().strip()
    kind = settings.alert_webhook_kind
    if not re.match(r"^https?://[^/\s]+", url):
        # The URL may carry a token (Slack, Teams): name the setting, never echo the value.
        raise InputError("DRIFTLINE_ALERT_WEBHOOK_URL is not an http(s) URL")
    if kind == "json":
        # The URL goes into the block's secrets (stored obfuscated, hidden in the UI) and the block's url
        # refers to it: generic webhooks often carry a token in the URL.
        return CustomWebhookNotificationBlock(
            name=BLOCK_NAME, url="{{webhook_url}}", secrets={"webhook_url": url}, json_data=JSON_PAYLOAD
        )
    if kind == "slack":
        if not _SLACK_URL.match(url):
            raise InputError(
                "DRIFTLINE_ALERT_WEBHOOK_URL is not a Slack incoming webhook (https://hooks.slack.com/services/T/B/X); "
                "for any other endpoint set DRIFTLINE_ALERT_WEBHOOK_KIND=json"
            )
        return SlackWebhook(url=url)
    try:
        return MicrosoftTeamsWebhook(url=url)
    except ValueError as error:
        raise InputError(
            "DRIFTLINE_ALERT_WEBHOOK_URL is not a Microsoft Teams Workflows URL "
            "(https://<region>.logic.azure.com/workflows/...); for any other endpoint set "
            "DRIFTLINE_ALERT_WEBHOOK_KIND=json"
        ) from error


def check_alerts(
    settings: Settings, directory: Path | None = None
) -> tuple[list[AlertDefinition], NotificationBlock | None]:
    """The automations and the block ``apply_alerts`` would install; nothing (``[], None``) without a URL.

    Raises:
        InputError: an automation file or the webhook setting is wrong.
    """
    if settings.alert_webhook_url is None:
        return [], None
    return load_definitions(directory or default_directory(settings)), build_block(settings)


# --------------------------------------------------------------------------------------------- apply / show
@dataclass
class AlertsReport:
    """What ``apply_alerts`` did (or ``show_alerts`` found): the block and each alert automation."""

    api_url: str
    enabled: bool
    kind: str | None = None
    block: dict[str, Any] | None = None
    automations: dict[str, dict[str, Any]] = field(default_factory=dict)
    removed: list[str] = field(default_factory=list)
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        if not self.enabled:
            removed = f"; removed {len(self.removed)} alert automation(s)" if self.removed else ""
            return f"alerts off: {self.detail}{removed}"
        counts: dict[str, int] = {}
        for automation in self.automations.values():
            counts[automation["action"]] = counts.get(automation["action"], 0) + 1
        done = ", ".join(f"{n} {action}" for action, n in sorted(counts.items()))
        removed = f", {len(self.removed)} removed" if self.removed else ""
        block = self.block["slug"] if self.block else "(none)"
        return f"alerts on: {len(self.automations)} automation(s) ({done}{removed}) -> {self.kind} webhook {block}"


@contextlib.contextmanager
def _client(url: str) -> Iterator[SyncPrefectClient]:
    """A Prefect client for ``url``; its failures become driftline errors naming the server."""
    import httpx
    from prefect.client.orchestration import get_client
    from prefect.exceptions import PrefectHTTPStatusError
    from prefect.settings import PREFECT_API_URL, temporary_settings

    # Block.save reads PREFECT_API_URL itself, hence the temporary setting around the whole session.
    try:
        with temporary_settings(updates={PREFECT_API_URL: url}), get_client(sync_client=True) as client:
            yield client
    except PrefectHTTPStatusError as error:
        raise InfrastructureError(
            f"Prefect API {url} refused an alerts change: {error.response.status_code} {error.response.text[:300]}"
        ) from error
    except httpx.HTTPError as error:
        raise InfrastructureError(f"Prefect API {url} is unreachable ({error})") from error


def _alert_automations(client) -> list:
    """Every automation tagged ``driftline-alert``, by name and, within a name, oldest first."""
    from prefect.client.schemas.sorting import AutomationSort
    from prefect.events.filters import AutomationFilter, AutomationFilterTags

    found, offset = [], 0
    while page := client.read_automations(
        automations=AutomationFilter(tags=AutomationFilterTags(any_=[ALERT_TAG])),
        sort=AutomationSort.CREATED_DESC,
        limit=200,
        offset=offset,
    ):
        found.extend(page)
        offset += len(page)
        if len(page) < 200:
            break
    # Oldest first within a name: that one is kept and updated, later copies are the duplicates.
    return sorted(reversed(found), key=lambda automation: automation.name)


def _block_documents(client) -> dict[str, Any]:
    """Our block document per block type slug, where one exists."""
    from prefect.exceptions import ObjectNotFound

    documents = {}
    for slug in BLOCK_TYPES.values():
        try:
            documents[slug] = client.read_block_document_by_name(BLOCK_NAME, block_type_slug=slug)
        except ObjectNotFound:
            continue
    return documents


def _comparable(automation) -> dict[str, Any]:
    from prefect.events.schemas.automations import AutomationCore

    data = AutomationCore.model_validate(automation.model_dump(exclude={"id"})).model_dump(mode="json")
    data["trigger"] = {k: sorted(v) if isinstance(v, list) else v for k, v in data["trigger"].items()}
    data["tags"] = sorted(data["tags"])
    return data


def apply_alerts(api_url: str | None, settings: Settings, directory: Path | None = None) -> AlertsReport:
    """Make the server's alert block and automations match the settings and ``directory``; idempotent.

    With ``DRIFTLINE_ALERT_WEBHOOK_URL`` set: save the webhook block (in place), create or update each
    automation by name, delete duplicates and alert automations whose file is gone. Unset: delete the
    block and every automation tagged ``driftline-alert``.

    Raises:
        InputError: an automation file or the webhook setting is wrong (nothing was changed then).
        InfrastructureError: the Prefect server is unreachable or refuses a change.
    """
    from driftline.cli.prefect_api import check_server

    # Validate everything before touching the server, so a bad file or URL changes nothing.
    definitions, block = check_alerts(settings, directory)
    url = check_server(api_url)
    report = AlertsReport(api_url=url, enabled=block is not None)
    with _client(url) as client:
        existing = _alert_automations(client)
        documents = _block_documents(client)
        if block is None:
            for automation in existing:
                client.delete_automation(automation.id)
                report.removed.append(automation.name)
            for document in documents.values():
                client.delete_block_document(document.id)
            report.detail = "DRIFTLINE_ALERT_WEBHOOK_URL is not set, no alert automations on the server"
            return report
        slug = BLOCK_TYPES[settings.alert_webhook_kind]
        block_id = str(block.save(BLOCK_NAME, overwrite=True))
        for other_slug, document in documents.items():
            if other_slug != slug:  # the kind changed: the old block would linger unused
                client.delete_block_document(document.id)
        report.kind = settings.alert_webhook_kind
        report.block = {"slug": f"{slug}/{BLOCK_NAME}", "id": block_id}
        by_name: dict[str, list] = {}
        for automation in existing:
            by_name.setdefault(automation.name, []).append(automation)
        for definition in definitions:
            current, *duplicates = by_name.pop(definition.name, [None])
            for duplicate in duplicates:  # e.g. from `prefect automation create` run by hand
                client.delete_automation(duplicate.id)
                report.removed.append(duplicate.name)
            report.automations[definition.name] = _upsert(client, definition, block_id, current)
        for automation in (a for stale in by_name.values() for a in stale):
            client.delete_automation(automation.id)
            report.removed.append(automation.name)
    return report


def _upsert(client: SyncPrefectClient, definition: AlertDefinition, block_id: str, current: Any) -> dict[str, Any]:
    """Create the automation, or update ``current`` (the one of that name on the server) in place."""
    from prefect.events.schemas.automations import AutomationCore

    desired = AutomationCore.model_validate(definition.with_block(block_id))
    if current is None:
        automation_id, action = client.create_automation(desired), "created"
    elif _comparable(current) == _comparable(desired):
        automation_id, action = current.id, "unchanged"
    else:
        client.update_automation(current.id, desired)
        automation_id, action = current.id, "updated"
    return {"id": str(automation_id), "action": action, "events": definition.events, "file": definition.path.name}


def show_alerts(api_url: str | None) -> AlertsReport:
    """What the server holds: the webhook block (URL never shown) and every alert automation."""
    from driftline.cli.prefect_api import check_server

    url = check_server(api_url)
    with _client(url) as client:
        automations = _alert_automations(client)
        documents = _block_documents(client)
    kinds = {slug: kind for kind, slug in BLOCK_TYPES.items()}
    report = AlertsReport(api_url=url, enabled=bool(documents and automations))
    if documents:
        slug, document = next(iter(documents.items()))
        report.kind = kinds[slug]
        report.block = {"slug": f"{slug}/{BLOCK_NAME}", "id": str(document.id)}
    for automation in automations:
        report.automations.setdefault(
            automation.name,
            {
                "id": str(automation.id),
                "action": "enabled" if automation.enabled else "paused",
                "events": sorted(getattr(automation.trigger, "expect", [])),
            },
        )
    if not report.enabled:
        report.detail = "no alert block or automations on the server (set DRIFTLINE_ALERT_WEBHOOK_URL, then apply)"
    return report


# --------------------------------------------------------------------------------------------- CLI
app = typer.Typer(
    help=(
        "Alert notifications (Slack, Teams or any HTTP endpoint) on drift, performance drops, rejected "
        "candidates, promotions and rollbacks, as Prefect automations from deployments/automations/."
    ),
    no_args_is_help=True,
)


def _print(report: AlertsReport, json_output: bool) -> None:
    if json_output:
        typer.echo(json.dumps(report.to_dict(), indent=2))
        return
    typer.echo(report.summary())
    for name, automation in report.automations.items():
        typer.echo(f"  {name:<40} {automation['action']:<10} {', '.join(automation['events'])}")
    for name in report.removed:
        typer.echo(f"  {name:<40} removed")


@app.command("apply")
def apply_command(
    directory: Annotated[
        Path | None,
        typer.Option("--dir", help="Automation files (default: deployments/automations under DRIFTLINE_PROJECT_DIR)."),
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Create or update the webhook block and alert automations; remove them when no URL is set.

    Example:  DRIFTLINE_ALERT_WEBHOOK_URL=https://hooks.example/driftline driftline alerts apply
    """
    settings = local_settings()
    _print(apply_alerts(settings.prefect_api_url, settings, directory), json_output)


@app.command("show")
def show_command(json_output: JsonOption = False) -> None:
    """The alert block and automations on the Prefect server.

    Example:  driftline alerts show --json
    """
    _print(show_alerts(local_settings().prefect_api_url), json_output)
