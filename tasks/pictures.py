"""A run's figures in the Prefect UI: drawn, stored on S3, published as artifacts (how: driftline.reports.pictures)."""

from __future__ import annotations

from collections.abc import Callable
from uuid import UUID

from prefect.artifacts import create_image_artifact, create_markdown_artifact

from driftline.reports import pictures
from driftline.settings import Settings
from tasks.common import store


def publish_picture(artifact: str, object_key: str, draw: Callable[[], bytes], title: str) -> UUID | None:
    """Draw the figure, store it at ``object_key`` and show it under the artifact key ``artifact``.

    Called inside a task, beside the run's markdown and table artifacts; returns the artifact's id, or None
    when DRIFTLINE_UI_PICTURES=off (then nothing is drawn).
    """
    settings = Settings()
    if settings.ui_pictures == "off":
        return None
    png = draw()
    store().put(object_key, png, content_type="image/png")
    picture = pictures.picture_for_ui(store(), object_key, png, title, settings)
    if picture is None:
        return None
    if picture.image_url is not None:
        return create_image_artifact(image_url=picture.image_url, key=artifact, description=title)
    return create_markdown_artifact(key=artifact, markdown=picture.markdown, description=title)
