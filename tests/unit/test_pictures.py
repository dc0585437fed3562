"""driftline.reports.pictures: how a stored figure is shown in the Prefect UI, per DRIFTLINE_UI_PICTURES."""

from __future__ import annotations

import base64
import re
from urllib.parse import parse_qs, urlsplit

import pytest
from pydantic import ValidationError

from driftline.errors import InputError
from driftline.reports import pictures
from driftline.settings import Settings
from driftline.storage.store import MemoryStore, S3Store

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
KEY = "drift/example/b2.png"


def _settings(**values: object) -> Settings:
    return Settings.model_validate(values)


def test_inline_markdown_embeds_the_png_itself_under_its_title() -> None:
    markdown = pictures.inline_markdown(PNG, "Drift of batch b2 [example]", "s3://driftline/drift/example/b2.png")
    assert markdown.startswith("# Drift of batch b2 [example]\n")
    embedded = re.search(r"!\[([^\]]*)\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)", markdown)
    assert embedded, markdown
    assert embedded.group(1) == "Drift of batch b2 (example)"  # brackets in the alt text would end it early
    assert base64.b64decode(embedded.group(2)) == PNG
    assert "`s3://driftline/drift/example/b2.png`" in markdown


def test_the_default_is_inline_and_off_gives_nothing() -> None:
    store = MemoryStore()
    inline = pictures.picture_for_ui(store, KEY, PNG, "t", Settings())
    assert inline is not None and inline.image_url is None and "data:image/png;base64," in inline.markdown
    assert pictures.picture_for_ui(store, KEY, PNG, "t", _settings(ui_pictures="off")) is None


def test_a_link_is_presigned_for_the_configured_lifetime_and_keeps_the_secret_out() -> None:
    # Signing is local to botocore: this endpoint is never contacted.
    store = S3Store("driftline", prefix="team/a", endpoint_url="http://127.0.0.1:9", access_key_id="AKIDEXAMPLE",
                    secret_access_key="wJalrXUtnFEMI-secret")  # fmt: skip
    settings = _settings(ui_pictures="link", ui_picture_url_expiry_seconds=3600)
    picture = pictures.picture_for_ui(store, KEY, PNG, "t", settings)
    assert picture is not None and picture.markdown is None
    url = urlsplit(picture.image_url)
    assert (url.scheme, url.netloc, url.path) == ("http", "127.0.0.1:9", "/driftline/team/a/drift/example/b2.png")
    query = parse_qs(url.query)
    assert query["X-Amz-Expires"] == ["3600"]
    assert query["X-Amz-Credential"][0].startswith("AKIDEXAMPLE/")
    assert "wJalrXUtnFEMI-secret" not in picture.image_url


def test_a_base_url_links_the_key_under_it_unsigned_for_any_store() -> None:
    settings = _settings(
        ui_pictures="link", ui_picture_base_url="https://pictures.example.com/driftline/", s3_prefix="team/a"
    )
    picture = pictures.picture_for_ui(MemoryStore(), "drift/my model/b 2.png", PNG, "t", settings)
    assert picture is not None
    assert picture.image_url == "https://pictures.example.com/driftline/team/a/drift/my%20model/b%202.png"


def test_a_link_from_a_store_that_cannot_presign_names_the_settings_to_change() -> None:
    with pytest.raises(InputError, match="DRIFTLINE_UI_PICTURE_BASE_URL or DRIFTLINE_UI_PICTURES=inline"):
        pictures.picture_for_ui(MemoryStore(), KEY, PNG, "t", _settings(ui_pictures="link"))


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DRIFTLINE_UI_PICTURES", "svg"),
        ("DRIFTLINE_UI_PICTURE_URL_EXPIRY_SECONDS", "604801"),  # beyond SigV4's 7 days
        ("DRIFTLINE_UI_PICTURE_URL_EXPIRY_SECONDS", "59"),
        ("DRIFTLINE_UI_PICTURE_BASE_URL", "pictures.example.com"),
        ("DRIFTLINE_UI_MONITOR_BATCHES", "1"),
    ],
)
def test_bad_picture_settings_are_refused_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError, match=variable.removeprefix("DRIFTLINE_").lower()):
        Settings()
