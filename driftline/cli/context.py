"""What every command shares: the two consoles, safe text, the settings (their errors named here, once), the
store and the event sink. Errors become exit codes in one place too: ``driftline.cli.app.run`` maps each
``DriftlineError`` to its ``exit_code`` (0 ok, 1 a decision said no, 2 bad input, 3 infrastructure down).
"""

from __future__ import annotations

import json
from typing import Annotated, NamedTuple

import typer
from pydantic import SecretStr, ValidationError
from rich.console import Console
from rich.markup import escape

from driftline.errors import InputError, StackError
from driftline.settings import Settings, describe_settings_error, redact_urls
from driftline.storage.store import ObjectStore

console = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout.")]


def safe(value: object) -> str:
    """User-controlled text (paths, columns, names, notes, errors) for a rich string: passwords in URLs
    redacted, brackets escaped so that rich shows them instead of reading them as markup."""
    return escape(redact_urls(str(value)))


def progress_printer(quiet: bool = False):
    """Progress lines on stderr (``·`` message), or none with ``quiet``."""
    if quiet:
        return lambda message: None
    return lambda message: console.print(f"[dim]·[/dim] {safe(message)}")


# --------------------------------------------------------------------------------------------- settings
def load_settings() -> Settings:
    """The DRIFTLINE_* settings; an invalid one is an ``InputError`` naming it (never echoing its value)."""
    try:
        return Settings()
    except ValidationError as error:
        raise InputError(f"invalid DRIFTLINE_* setting: {describe_settings_error(error)}") from error


def resolve_settings(settings: Settings | None = None) -> Settings:
    """Settings for CLI commands: unset endpoints fall back to the local stack when it is up.

    Explicit settings always win, so the same commands work against AWS, MinIO or a remote Prefect
    server by setting ``DRIFTLINE_S3_ENDPOINT_URL`` / ``DRIFTLINE_PREFECT_API_URL``.
    """
    settings = settings or Settings()
    state_file = settings.state_dir / "stack.json"
    try:
        state = json.loads(state_file.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return settings
    updates: dict = {}
    # DRIFTLINE_S3_USE_AWS=true chose AWS S3: a running local stack must not take its place.
    aws_chosen = settings.s3_use_aws or "s3_endpoint_url" in settings.model_fields_set
    if settings.s3_endpoint_url is None and not aws_chosen:
        updates["s3_endpoint_url"] = state["s3_endpoint_url"]
        if settings.aws_access_key_id is None:
            updates["aws_access_key_id"] = SecretStr(state["aws_access_key_id"])
            updates["aws_secret_access_key"] = SecretStr(state["aws_secret_access_key"])
    if settings.prefect_api_url is None and "prefect_api_url" not in settings.model_fields_set:
        updates["prefect_api_url"] = state["prefect_api_url"]
    if state.get("mlflow_tracking_uri") and "mlflow_tracking_uri" not in settings.model_fields_set:
        updates["mlflow_tracking_uri"] = state["mlflow_tracking_uri"]
    return settings.model_copy(update=updates) if updates else settings


def local_settings(requested: Settings | None = None) -> Settings:
    """``resolve_settings`` of the DRIFTLINE_* settings (or ``requested``), errors named.

    Raises:
        InputError: a setting is invalid, or the local stack's state file is damaged.
    """
    requested = requested or load_settings()
    try:
        return resolve_settings(requested)
    except Exception as error:  # a damaged stack.json: name it, never echo a URL's password
        raise InputError(f"invalid local stack state in {requested.state_dir}: {redact_urls(str(error))}") from error


class Remote(NamedTuple):
    """Settings and store of a command that uses S3."""

    settings: Settings
    store: ObjectStore


def remote() -> Remote:
    """Settings and store for commands that use S3 (the local stack fills in unset endpoints).

    Raises:
        InputError: a setting is invalid or the local stack's state is damaged.
        StackError: no endpoint is set, the local stack is not up and AWS was not chosen explicitly.
    """
    from driftline.storage.store import open_store

    requested = load_settings()
    settings = local_settings(requested)
    if requested.s3_endpoint_url is None and requested.s3_use_aws:
        # AWS was asked for: the local stack's endpoint (and its dummy keys) must not replace it.
        settings = settings.model_copy(
            update={
                "s3_endpoint_url": None,
                "aws_access_key_id": requested.aws_access_key_id,
                "aws_secret_access_key": requested.aws_secret_access_key,
            }
        )
    elif settings.s3_endpoint_url is None and "s3_endpoint_url" not in requested.model_fields_set:
        # An endpoint set empty (the README's way to ignore a running stack) chooses AWS explicitly too.
        # Falling back to AWS otherwise would let `driftline promote` after `driftline down` act on a
        # real bucket with whatever credentials the machine has.
        raise StackError(
            f"the local stack is not up (no {requested.state_dir / 'stack.json'}) and no S3 endpoint is set: "
            "start it with `driftline up`, point at an S3-compatible store with DRIFTLINE_S3_ENDPOINT_URL, "
            "or set DRIFTLINE_S3_USE_AWS=true to use AWS S3"
        )
    return Remote(settings, open_store(settings))
