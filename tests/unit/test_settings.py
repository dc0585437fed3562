from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from driftline.settings import Settings


def test_defaults_point_at_aws_and_the_local_state_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DRIFTLINE_S3_ENDPOINT_URL", "DRIFTLINE_PREFECT_API_URL", "DRIFTLINE_STATE_DIR"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings()
    assert settings.s3_endpoint_url is None
    assert settings.state_dir == Path(".driftline")
    assert settings.host == "127.0.0.1"


def test_environment_variables_with_the_prefix_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRIFTLINE_S3_ENDPOINT_URL", "http://127.0.0.1:9000/")
    monkeypatch.setenv("DRIFTLINE_S3_BUCKET", "ml-state")
    monkeypatch.setenv("DRIFTLINE_S3_PORT", "6000")
    monkeypatch.setenv("DRIFTLINE_AWS_SECRET_ACCESS_KEY", "s3cr3t")
    settings = Settings()
    assert settings.s3_endpoint_url == "http://127.0.0.1:9000"
    assert settings.s3_bucket == "ml-state"
    assert settings.s3_port == 6000
    assert "s3cr3t" not in repr(settings)


@pytest.mark.parametrize(
    ("variable", "value", "named"),
    [
        ("DRIFTLINE_S3_PORT", "70000", "s3_port"),
        ("DRIFTLINE_HOST", "0.0.0.0", "loopback"),
        ("DRIFTLINE_S3_BUCKET", "Bad_Bucket", "s3_bucket"),
        ("DRIFTLINE_S3_ENDPOINT_URL", "localhost:9000", "http"),
        ("DRIFTLINE_S3_PREFIX", "../up", "s3_prefix"),
        ("DRIFTLINE_ALERT_WEBHOOK_KIND", "email", "alert_webhook_kind"),
    ],
)
def test_bad_settings_are_refused_naming_the_field(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, named: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError, match=named):
        Settings()


def test_every_field_is_described() -> None:
    undocumented = [name for name, field in Settings.model_fields.items() if not field.description]
    assert undocumented == []


def test_alert_webhook_url_is_a_secret_and_empty_means_no_alerts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRIFTLINE_ALERT_WEBHOOK_URL", "https://hooks.slack.com/services/T0/B0/t0k3n")
    settings = Settings()
    assert settings.alert_webhook_url is not None and "t0k3n" not in repr(settings)
    assert settings.alert_webhook_kind == "json"
    monkeypatch.setenv("DRIFTLINE_ALERT_WEBHOOK_URL", "")
    assert Settings().alert_webhook_url is None
