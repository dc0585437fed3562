"""What a user opening the stack's Prefect UI sees after the loop ran, checked in headless Chromium: a
profile-batch run's drift artifacts with the report's picture, the loop's triggers, the driftline.* events.

Prefect 3.9 serves its default UI (v2) under /v2; its flow run page lists artifacts as cards, and a card opens
the artifact's page, which renders it (the picture: a markdown image with a data: URL)."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import quote

import httpx

from tests.e2e.browser import ui_page

PICTURE = 'img[src^="data:image/png;base64,"]'


def _latest_artifact(api_url: str, key: str) -> dict:
    query = {"artifacts": {"key": {"any_": [key]}}, "sort": "CREATED_DESC", "limit": 1}
    found = httpx.post(f"{api_url}/artifacts/filter", json=query).json()
    assert found, f"no artifact {key!r} on the server"
    return found[0]


def check_prefect_ui(api_url: str, output: Path, model: str = "example") -> None:
    """Open the UI's flow run, artifact, automations and event feed pages; screenshots and DOM dumps land in
    ``output`` (``<page>.png`` / ``<page>.html``)."""
    ui = api_url.removesuffix("/api")
    picture = _latest_artifact(api_url, f"drift-plot-{model}")
    assert picture["type"] == "markdown", picture["type"]
    run = httpx.get(f"{api_url}/flow_runs/{picture['flow_run_id']}").json()
    flow = httpx.get(f"{api_url}/flows/{run['flow_id']}").json()
    assert flow["name"] == "profile-batch", flow
    automations = sorted(a["name"] for a in httpx.post(f"{api_url}/automations/filter", json={}).json())
    assert any(name.startswith("retrain") for name in automations), automations

    with ui_page(output) as browser:
        dom = browser.open(
            f"{ui}/v2/runs/flow-run/{run['id']}?tab=Artifacts",
            "flow-run-artifacts",
            run["name"],
            f"drift-plot-{model}",
        )
        for key in (f"drift-{model}", f"drift-table-{model}", f"drift-plot-{model}"):
            assert key in dom, key
        dom = browser.click(f"drift-plot-{model}", "drift-picture", picture["description"], selector=PICTURE)
        shown = browser.image_sizes(PICTURE)
        assert shown and all(width > 300 and height > 100 for width, height in shown), shown  # decoded, not broken

        dom = browser.open(f"{ui}/v2/automations", "automations", *automations)
        assert all(name in dom for name in automations)

        # The feed filtered as its Resource and Events pickers do: prefect.* events, and later models' own,
        # would push this model's past the feed's first page.
        search = (
            f"resource={quote(json.dumps([f'driftline.model.{model}']))}&events={quote(json.dumps(['driftline.*']))}"
        )
        dom = browser.open(f"{ui}/v2/events?{search}", "event-feed", "driftline.drift.detected")
        for name in ("driftline.batch.profiled", "driftline.drift.detected"):
            assert name in dom, name
