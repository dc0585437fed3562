"""Settings: one pydantic-settings class, environment prefix ``DRIFTLINE_``.

Every field is described; ``driftline --help`` and docs/architecture.md list them. Nothing here reads
files or touches the network: settings are built when a command or flow asks for them.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# scheme://user:password@ inside any text: the password part is what must never be shown.
_USERINFO_PASSWORD = re.compile(r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*):(?P<password>[^@/\s]*)@")
REDACTED = "***"


def redact_url(url: str) -> str:
    """``url`` with the password of its userinfo replaced by ``***`` (user, host and path kept).

    Works on URLs too malformed to parse (a bad port, no host), since those are the ones echoed in errors.
    """
    return redact_urls(url)


def redact_urls(text: str) -> str:
    """``text`` with every ``scheme://user:password@`` password replaced by ``***``."""
    return _USERINFO_PASSWORD.sub(lambda match: f"{match['head']}:{REDACTED}@", text)


def describe_settings_error(error: ValidationError) -> str:
    """One line per invalid setting, naming its environment variable, without echoing the input.

    pydantic's own text repeats the input value, which for an endpoint can hold a password.
    """
    lines = []
    for item in error.errors(include_input=False, include_url=False):
        field = ".".join(str(part) for part in item["loc"])
        name = "DRIFTLINE_" + field.replace(".", "_").upper()
        lines.append(f"{name} ({field}): {redact_urls(item['msg'].removeprefix('Value error, '))}")
    return "; ".join(lines) or redact_urls(str(error))


class Settings(BaseSettings):
    """Where driftline keeps its state and how it reaches S3 and Prefect."""

    # hide_input_in_errors: an invalid endpoint URL may carry a password; messages name the setting instead.
    model_config = SettingsConfigDict(
        env_prefix="DRIFTLINE_", extra="ignore", validate_default=True, hide_input_in_errors=True
    )

    # --- object store -------------------------------------------------------------------------
    s3_endpoint_url: str | None = Field(
        default=None,
        description=(
            "S3-compatible endpoint, e.g. http://127.0.0.1:5250 (local moto) or https://minio.example:9000. "
            "Unset means the local stack when it is up; with neither, the CLI stops unless DRIFTLINE_S3_USE_AWS "
            "is true (flows and workers always take unset as AWS S3)."
        ),
    )
    s3_use_aws: bool = Field(
        default=False,
        description=(
            "Use AWS S3 (the default credential chain) when DRIFTLINE_S3_ENDPOINT_URL is unset. Without it the "
            "CLI refuses to fall back to AWS when the local stack is down, so a `promote` after `driftline down` "
            "never acts on a real bucket by accident; it also keeps the local stack's endpoint from being used."
        ),
    )
    s3_bucket: str = Field(
        default="driftline",
        min_length=3,
        max_length=63,
        pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$",
        description="Bucket holding every driftline object (one bucket, see the storage layout).",
    )
    s3_prefix: str = Field(
        default="",
        pattern=r"^([A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*)?$",
        description="Key prefix inside the bucket, e.g. 'team-a/prod'; empty puts the layout at the root.",
    )
    s3_region: str = Field(default="us-east-1", min_length=1, description="Region of the bucket.")
    aws_access_key_id: SecretStr | None = Field(
        default=None,
        description="Access key id; unset uses the AWS default credential chain (env, profile, role).",
    )
    aws_secret_access_key: SecretStr | None = Field(
        default=None, description="Secret access key; unset uses the AWS default credential chain."
    )
    s3_max_attempts: int = Field(
        default=5, ge=1, le=20, description="botocore attempts (adaptive retry mode) for transient errors."
    )
    s3_connect_timeout: float = Field(
        default=5.0, gt=0, le=120, description="Seconds to wait for a TCP connection to the S3 endpoint."
    )
    s3_read_timeout: float = Field(
        default=60.0, gt=0, le=3600, description="Seconds to wait for an S3 response once connected."
    )

    # --- compute ------------------------------------------------------------------------------
    nthread: int = Field(
        default=2, ge=1, le=512, description="Threads for XGBoost training and prediction (models do not depend on it)."
    )

    # --- large batches on Dask ----------------------------------------------------------------
    dask_address: str | None = Field(
        default=None,
        description=(
            "Dask scheduler for large batches: tcp://host:8786 for an existing cluster, 'local' for a "
            "LocalCluster started per flow run. Unset means single-process unless a batch reaches "
            "DRIFTLINE_DASK_MIN_ROWS (then a LocalCluster is used)."
        ),
    )
    dask_min_rows: int | None = Field(
        default=None,
        ge=1,
        description=(
            "Batches (profiling) and training windows (retrain) with at least this many rows go to Dask "
            "(DRIFTLINE_DASK_ADDRESS, or a LocalCluster when it is unset). Unset means only "
            "DRIFTLINE_DASK_ADDRESS turns Dask on."
        ),
    )
    dask_workers: int = Field(
        default=2,
        ge=1,
        le=256,
        description="Workers of a LocalCluster (one thread each); models are reproducible for a fixed count.",
    )

    # --- Prefect ------------------------------------------------------------------------------
    prefect_api_url: str | None = Field(
        default=None,
        description=(
            "Prefect API, e.g. http://127.0.0.1:4250/api or a Prefect Cloud workspace URL. Unset means the "
            "local stack's server when it is up (driftline never falls back to an ephemeral server)."
        ),
    )
    work_pool: str = Field(
        default="driftline-process",
        min_length=1,
        description="Work pool the local stack creates and its worker polls (prefect.yaml uses the same name).",
    )

    # --- alerts -------------------------------------------------------------------------------
    alert_webhook_url: SecretStr | None = Field(
        default=None,
        description=(
            "Where alert notifications go (drift, performance drop, rejected candidate, promotion, rollback): "
            "any HTTP(S) endpoint taking JSON, a Slack incoming webhook or a Teams Workflows URL, see "
            "DRIFTLINE_ALERT_WEBHOOK_KIND. Unset means no alerts: `driftline alerts apply` removes them."
        ),
    )
    alert_webhook_kind: Literal["json", "slack", "teams"] = Field(
        default="json",
        description=(
            "Format of the alert webhook: 'json' POSTs {subject, body, text, source} (also accepted by Slack, "
            "Mattermost and most chat webhooks), 'slack' and 'teams' use Prefect's Slack / Microsoft Teams blocks."
        ),
    )

    # --- MLflow mirror (optional) ------------------------------------------------------------
    mlflow_tracking_uri: str | None = Field(
        default=None,
        description=(
            "MLflow tracking server that mirrors the registry, e.g. http://127.0.0.1:5350: every candidate "
            "becomes a run and a registered model version, aliases champion/challenger/previous follow "
            "driftline's. Unset means no export. Needs the `mlflow` extra; the S3 registry stays the source of "
            "truth and a failing MLflow never blocks a decision (`driftline doctor` reports it)."
        ),
    )
    mlflow_experiment_prefix: str = Field(
        default="driftline-",
        max_length=200,
        description="Prefix of the MLflow experiment holding each model's runs: '<prefix><model>'.",
    )
    mlflow_model_prefix: str = Field(
        default="",
        max_length=200,
        pattern=r"^[A-Za-z0-9._ -]*$",
        description="Prefix of each model's MLflow registered model ('<prefix><model>'), e.g. 'team-a-'.",
    )
    mlflow_attempts: int = Field(
        default=3,
        ge=1,
        le=10,
        description=(
            "Attempts of one MLflow export before it is recorded as pending on S3 (re-tried by the next flow "
            "run or `driftline doctor`); the waits between them double from 1 s, at most 30 s."
        ),
    )
    mlflow_timeout: float = Field(
        default=10.0,
        gt=0,
        le=600,
        description="Seconds one MLflow HTTP request may take (MLFLOW_HTTP_REQUEST_TIMEOUT, unless that is set).",
    )

    # --- pictures in the Prefect UI -----------------------------------------------------------
    ui_pictures: Literal["inline", "link", "off"] = Field(
        default="inline",
        description=(
            "How the figures of a run (drift report, shadow-test bounds, monitor) reach the Prefect UI: "
            "'inline' embeds the PNG in a markdown artifact (shows wherever the UI is opened and never expires, "
            "but stores ~30-150 KB per run in the Prefect database); 'link' makes an image artifact pointing "
            "at the PNG on S3 (a presigned URL, or DRIFTLINE_UI_PICTURE_BASE_URL; the browser must reach the "
            "S3 endpoint, and a presigned URL expires); 'off' draws none."
        ),
    )
    ui_picture_url_expiry_seconds: int = Field(
        default=604_800,
        ge=60,
        le=604_800,
        description=(
            "Lifetime of the presigned URL of a 'link' picture (SigV4 allows 7 days at most; with temporary "
            "credentials, e.g. an IAM role, the URL dies with them). After it the UI shows a broken image; "
            "the PNG stays on S3."
        ),
    )
    ui_picture_base_url: str | None = Field(
        default=None,
        description=(
            "For 'link' pictures: a URL the browser can open that serves the bucket's keys without signing "
            "(a CDN, a reverse proxy with its own access control), e.g. https://pictures.example.com/driftline; "
            "the link is <base>/<prefix>/<key> and never expires. Unset means presigned URLs."
        ),
    )
    ui_monitor_batches: int = Field(
        default=50,
        ge=2,
        le=1000,
        description="Batches the monitor figure of a shadow-evaluate run shows (the last N; only they are read).",
    )

    # --- local stack --------------------------------------------------------------------------
    host: str = Field(default="127.0.0.1", description="Address the local stack binds to; loopback only by design.")
    s3_port: int = Field(default=5250, ge=1, le=65535, description="Port of the local moto S3 server.")
    prefect_port: int = Field(default=4250, ge=1, le=65535, description="Port of the local Prefect server.")
    state_dir: Path = Field(
        default=Path(".driftline"),
        description="Directory of the local stack's state: pid files, logs, the Prefect SQLite database.",
    )
    project_dir: Path = Field(
        default=Path("."),
        description="Directory holding prefect.yaml; flows are pulled from here by the local worker.",
    )
    workers: int = Field(
        default=1,
        ge=1,
        le=16,
        description="Process workers the local stack runs on its work pool (`driftline up --workers N`).",
    )
    prefect_database: Literal["sqlite", "postgresql"] = Field(
        default="sqlite",
        description=(
            "Database of the local Prefect server: 'sqlite' (embedded, under the state directory) or "
            "'postgresql' (a PostgreSQL server the stack starts under <state_dir>/postgres, loopback only, "
            "or DRIFTLINE_PREFECT_DATABASE_URL when set)."
        ),
    )
    prefect_database_url: SecretStr | None = Field(
        default=None,
        description=(
            "An external PostgreSQL for the local Prefect server, e.g. "
            "postgresql+asyncpg://prefect:secret@db.internal:5432/prefect; implies "
            "DRIFTLINE_PREFECT_DATABASE=postgresql and the stack starts no PostgreSQL of its own."
        ),
    )
    postgres_port: int = Field(
        default=5450, ge=1, le=65535, description="Port of the PostgreSQL server the local stack starts."
    )
    mlflow: bool = Field(
        default=False,
        description=(
            "Start a local MLflow server with the stack (`driftline up --mlflow`), data under <state_dir>/mlflow, "
            "and point the stack's workers at it (DRIFTLINE_MLFLOW_TRACKING_URI)."
        ),
    )
    mlflow_port: int = Field(default=5350, ge=1, le=65535, description="Port of the local MLflow server.")
    mlflow_venv: Path = Field(
        default=Path(".venv-mlflow"),
        description=(
            "Virtualenv whose `mlflow server` the local stack runs (relative to DRIFTLINE_PROJECT_DIR); "
            "`make mlflow-server` creates it (full MLflow does not fit driftline's own pins)."
        ),
    )
    startup_timeout: float = Field(
        default=90.0, gt=0, le=900, description="Seconds to wait for each local service to become healthy."
    )

    @field_validator("host")
    @classmethod
    def _loopback_only(cls, value: str) -> str:
        try:
            is_loopback = ipaddress.ip_address(value).is_loopback
        except ValueError:
            is_loopback = value == "localhost"
        if not is_loopback:
            raise ValueError(f"DRIFTLINE_HOST={value!r}: the local stack binds to loopback only (e.g. 127.0.0.1)")
        return value

    @field_validator("s3_prefix")
    @classmethod
    def _no_parent_segments(cls, value: str) -> str:
        if any(segment in (".", "..") for segment in value.split("/")):
            raise ValueError(f"DRIFTLINE_S3_PREFIX={value!r}: '.' and '..' segments are not allowed")
        return value

    @field_validator("alert_webhook_url")
    @classmethod
    def _empty_means_unset(cls, value: SecretStr | None) -> SecretStr | None:
        # No scheme check here: pydantic's error would echo the URL and its token. driftline.cli.alerts
        # checks it, naming the setting only.
        return value if value is not None and value.get_secret_value().strip() else None

    @field_validator("mlflow_tracking_uri")
    @classmethod
    def _blank_is_off(cls, value: str | None) -> str | None:
        # Any scheme MLflow knows (http(s), databricks, file, sqlite ...); an empty value switches export off.
        if value is None or not value.strip():
            return None
        value = value.strip()
        return value.rstrip("/") if value.startswith(("http://", "https://")) else value

    @field_validator("s3_endpoint_url", "prefect_api_url", "ui_picture_base_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        shown = redact_url(value)
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"{shown!r} is not an http(s) URL")
        parts = urlsplit(value)
        try:
            parts.port  # noqa: B018 (urlsplit checks the port only when asked)
        except ValueError as error:
            raise ValueError(f"{shown!r} is not a valid URL: {redact_urls(str(error))}") from None
        if not parts.hostname:
            raise ValueError(f"{shown!r} is not a valid URL: no host")
        return value.rstrip("/")
