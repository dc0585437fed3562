"""The MLflow mirror in CLI commands: after `driftline promote` / `rollback`, and in `driftline doctor`."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape

from driftline.models import mlflow_export
from driftline.settings import Settings
from driftline.storage.store import ObjectStore


def mirror_after_move(settings: Settings, store: ObjectStore, model: str, console: Console) -> None:
    """Mirror ``model`` after an alias moved by hand; a failure is a note, the move already stands."""
    report = mlflow_export.export_from_settings(store, model, settings)
    if report is None:
        return
    if report.ok:
        console.print(f"[dim]·[/dim] {escape(report.summary())}")
    else:
        console.print(
            f"[yellow]MLflow not updated[/yellow]: {escape(report.summary())} (`driftline doctor {model}` re-tries)"
        )


def add_doctor_findings(document: dict[str, Any], settings: Settings, store: ObjectStore, model: str) -> None:
    """Re-try a pending MLflow export and add what is still behind to the doctor's ``document``."""
    findings = mlflow_export.doctor(store, model, settings)
    document["mlflow"] = findings.document
    document["problems"].extend(findings.problems)
    document["warnings"].extend(findings.warnings)
    if findings.problems:
        document["healthy"] = False
