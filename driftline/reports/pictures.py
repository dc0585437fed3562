"""How a run's figure (a PNG already stored on S3) reaches the Prefect UI, per ``DRIFTLINE_UI_PICTURES``.

What the Prefect 3.9 UI does with each form, checked in headless Chromium by tests/e2e (the default UI, v2 at
``/v2``, and the classic one at ``/``):

* ``inline``: a markdown artifact holding ``![...](data:image/png;base64,...)``. The v2 UI's markdown
  sanitizer allows the ``data:`` scheme for ``img src`` only, so the picture shows, needs no access to the
  bucket and never expires. The price: the PNG (~30-150 KB, a third more as base64) is stored in the Prefect
  database once per run, and anyone who can read the UI sees it (as they see the markdown reports).
* ``link``: an image artifact (``<img src=URL>`` in the UI, the URL printed beneath). The URL is a presigned
  GET of the stored object, or ``DRIFTLINE_UI_PICTURE_BASE_URL`` + key when a CDN or proxy serves the bucket.
  Nothing large enters the Prefect database, but the browser must reach the S3 endpoint the workers use
  (true for the local moto stack and AWS S3; often not for a MinIO on a private network) and a presigned URL
  expires (7 days at most, sooner with temporary credentials), after which the UI shows a broken image.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from urllib.parse import quote

from driftline.errors import InputError
from driftline.settings import Settings
from driftline.storage.store import ObjectStore, S3Store


@dataclass(frozen=True)
class UiPicture:
    """Exactly one of ``markdown`` (the image embedded) and ``image_url`` (the image linked) is set."""

    markdown: str | None = None
    image_url: str | None = None


def inline_markdown(png: bytes, title: str, stored_at: str) -> str:
    """Markdown showing ``png`` itself (a ``data:`` URL), titled, naming where the PNG is stored."""
    alt = title.replace("[", "(").replace("]", ")")
    encoded = base64.b64encode(png).decode()
    return f"# {title}\n\n![{alt}](data:image/png;base64,{encoded})\n\nStored as `{stored_at}`.\n"


def picture_url(store: ObjectStore, key: str, settings: Settings) -> str:
    """The URL a browser opens to see the object ``key``: under the base URL if set, else presigned.

    Raises:
        InputError: no base URL is set and the store cannot presign (not S3).
    """
    if settings.ui_picture_base_url:
        prefix = settings.s3_prefix.strip("/")
        return f"{settings.ui_picture_base_url}/{quote(f'{prefix}/{key}' if prefix else key)}"
    if not isinstance(store, S3Store):
        raise InputError(
            f"DRIFTLINE_UI_PICTURES=link: {store.describe()} cannot presign URLs; "
            "set DRIFTLINE_UI_PICTURE_BASE_URL or DRIFTLINE_UI_PICTURES=inline"
        )
    return store.presigned_get_url(key, settings.ui_picture_url_expiry_seconds)


def picture_for_ui(store: ObjectStore, key: str, png: bytes, title: str, settings: Settings) -> UiPicture | None:
    """How the figure ``png``, stored at ``key``, is shown in the UI (None when pictures are off).

    Args:
        store: the store holding ``key`` (signs the link).
        key: the logical key of the stored PNG.
        png: its bytes (embedded when inline).
        title: a heading for the picture.
        settings: ``ui_pictures``, ``ui_picture_base_url``, ``ui_picture_url_expiry_seconds``.

    Returns:
        The artifact's content, or None for ``off``.
    """
    if settings.ui_pictures == "off":
        return None
    if settings.ui_pictures == "link":
        return UiPicture(image_url=picture_url(store, key, settings))
    return UiPicture(markdown=inline_markdown(png, title, store.location(key)))
