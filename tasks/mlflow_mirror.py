"""The MLflow mirror's hook: called by the tasks that register a version or move an alias (a no-op when off)."""

from __future__ import annotations

import logging

from prefect import get_run_logger
from prefect.exceptions import MissingContextError

from driftline.models import mlflow_export
from tasks.common import store


def _logger() -> logging.Logger | logging.LoggerAdapter:
    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger(__name__)


def mirror_to_mlflow(model: str) -> mlflow_export.MirrorReport | None:
    """Mirror ``model``'s registry to DRIFTLINE_MLFLOW_TRACKING_URI; never raises (the decision is already made)."""
    try:
        report = mlflow_export.export_from_settings(store(), model)
    except Exception as error:  # e.g. S3 unreachable for the pending record: the caller's result must stand
        _logger().warning("MLflow mirror of %s skipped: %s: %s", model, type(error).__name__, error)
        return None
    if report is not None:
        (_logger().info if report.ok else _logger().warning)("%s", report.summary())
    return report
