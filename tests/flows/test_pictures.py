"""The figures of a run reach the Prefect UI as artifacts: embedded (default) or linked from S3 (presigned)."""

from __future__ import annotations

import base64
import re
import uuid

import httpx
import pytest

from driftline.settings import Settings
from driftline.storage import layout
from driftline.storage.store import ObjectStore, open_store
from flows.profile_batch import profile_batch
from tests.batches import example_batch, example_spec, parquet_bytes

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def store() -> ObjectStore:
    return open_store(Settings())


def _drifted_model(store: ObjectStore) -> str:
    model = f"p-{uuid.uuid4().hex[:8]}"
    store.put(layout.model_spec(model), example_spec(model).to_yaml().encode())
    store.create(layout.batch_data(model, "b1"), parquet_bytes(example_batch(1)))
    store.create(layout.batch_data(model, "b2"), parquet_bytes(example_batch(2, income_shift=0.3)))
    assert profile_batch(model, "b1")["status"] == "ok"
    assert profile_batch(model, "b2")["status"] == "drift"
    return model


def _latest_artifact(api_url: str, key: str) -> dict:
    query = {"artifacts": {"key": {"any_": [key]}}, "sort": "CREATED_DESC", "limit": 1}
    found = httpx.post(f"{api_url}/artifacts/filter", json=query)
    assert found.status_code == 200 and found.json(), (key, found.text)
    return found.json()[0]


def test_the_drift_picture_is_embedded_in_a_markdown_artifact_by_default(
    store: ObjectStore, prefect_api_url: str
) -> None:
    model = _drifted_model(store)
    artifact = _latest_artifact(prefect_api_url, f"drift-plot-{model}")
    assert artifact["type"] == "markdown"
    assert artifact["description"] == f"Drift of batch b2 ({model})"
    embedded = re.search(r"!\[[^\]]*\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)", artifact["data"])
    assert embedded, artifact["data"][:300]
    # The very PNG stored beside the drift report, not a re-drawing of something else.
    assert base64.b64decode(embedded.group(1)) == store.get(layout.drift_plot(model, "b2"))
    assert store.get(layout.drift_plot(model, "b2")).startswith(PNG_SIGNATURE)


def test_with_link_pictures_the_image_artifact_opens_the_stored_png(
    store: ObjectStore, prefect_api_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DRIFTLINE_UI_PICTURES", "link")
    monkeypatch.setenv("DRIFTLINE_UI_PICTURE_URL_EXPIRY_SECONDS", "900")
    model = _drifted_model(store)
    artifact = _latest_artifact(prefect_api_url, f"drift-plot-{model}")
    assert artifact["type"] == "image"
    url = artifact["data"]
    assert "X-Amz-Expires=900" in url and "X-Amz-Signature=" in url, url
    # What the browser does with <img src=...>: a plain GET, no credentials of its own.
    fetched = httpx.get(url)
    assert fetched.status_code == 200, fetched.text[:300]
    assert fetched.content == store.get(layout.drift_plot(model, "b2"))
    assert fetched.headers["content-type"] == "image/png"


def test_with_pictures_off_nothing_is_drawn(
    store: ObjectStore, prefect_api_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DRIFTLINE_UI_PICTURES", "off")
    model = _drifted_model(store)
    query = {"artifacts": {"key": {"any_": [f"drift-plot-{model}", f"drift-{model}"]}}}
    keys = {artifact["key"] for artifact in httpx.post(f"{prefect_api_url}/artifacts/filter", json=query).json()}
    assert keys == {f"drift-{model}"}
    assert not store.exists(layout.drift_plot(model, "b2"))
