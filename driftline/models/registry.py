"""The model registry on S3: immutable versions, aliases moved by compare-and-swap, an audit trail.

Write order (so a crash never leaves an alias pointing at nothing):

1. ``models/<model>/versions/<version>/model.ubj`` (conditional create, sha256 in the object metadata);
2. ``models/<model>/versions/<version>/metadata.json`` (lineage, metrics, gate report, model sha256);
3. ``profiles/<model>/reference/<version>.bin`` (the merge of the training batches' profiles);
4. only then an alias (``shadow``, ``champion``, ``previous``) is moved with ``IfMatch``/``IfNoneMatch``, and
5. an audit record ``audit/<model>/<ulid>.json`` is appended.

A crash between 1-3 and 4 leaves an orphan version that no alias names: harmless, and reported by
``doctor``. Two writers moving the same alias: exactly one wins, the other gets ``ConflictError``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import secrets
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from driftline.errors import ConflictError, IntegrityError, ObjectNotFoundError
from driftline.events.records import new_ulid
from driftline.storage import layout
from driftline.storage.store import ObjectStore

Alias = Literal["champion", "shadow", "previous"]
Status = Literal["candidate", "shadow", "champion", "retired", "rejected"]


def new_version_id(now: datetime | None = None) -> str:
    """Sortable, valid version id such as ``v20261126t101500-3fa2``."""
    moment = now or datetime.now(UTC)
    return f"v{moment.strftime('%Y%m%dt%H%M%S')}-{secrets.token_hex(2)}"


@dataclass(frozen=True)
class AliasState:
    """Where an alias points (``version`` None when cleared) and the ETag to move it from."""

    alias: str
    version: str | None
    etag: str
    moved_at: str | None = None
    reason: str | None = None


@dataclass(frozen=True)
class VersionSummary:
    """One version as `driftline models` lists it."""

    version: str
    created_at: str
    status: Status
    metrics: dict[str, float]
    trigger: str
    gates_passed: bool | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_alias(store: ObjectStore, model: str, alias: Alias) -> AliasState | None:
    """The alias's state, or None if it was never set."""
    try:
        stored = store.read(layout.alias(model, alias))
    except ObjectNotFoundError:
        return None
    data = json.loads(stored.data)
    return AliasState(alias, data.get("version"), stored.etag, data.get("moved_at"), data.get("reason"))


def _audit(store: ObjectStore, model: str, record: dict[str, Any]) -> str:
    record_id = new_ulid()
    key = layout.audit_record(model, record_id)
    store.create(key, json.dumps({"id": record_id, **record}, sort_keys=True).encode(), content_type="application/json")
    return key


def move_alias(
    store: ObjectStore,
    model: str,
    alias: Alias,
    version: str | None,
    *,
    expected: AliasState | None,
    reason: str,
) -> AliasState:
    """Point ``alias`` at ``version`` (None clears it) if it has not moved since ``expected`` was read.

    Args:
        expected: the state read before deciding; None means "the alias must not exist yet".
        reason: recorded in the alias and the audit trail.

    Raises:
        ConflictError: another writer moved the alias first (nothing was written).
        ObjectNotFoundError: ``version`` has no metadata (aliases only name complete versions).
    """
    if version is not None and not store.exists(layout.model_metadata(model, version)):
        raise ObjectNotFoundError(f"model {model!r} has no version {version!r}; an alias can only name a stored one")
    moved_at = datetime.now(UTC).isoformat()
    body = json.dumps(
        {
            "version": version,
            "previous_version": expected.version if expected else None,
            "moved_at": moved_at,
            "reason": reason,
        },
        sort_keys=True,
    ).encode()
    key = layout.alias(model, alias)
    if expected is None:
        info = store.create(key, body, content_type="application/json")
    else:
        info = store.replace(key, body, expected.etag, content_type="application/json")
    _audit(
        store,
        model,
        {
            "action": "alias.move",
            "alias": alias,
            "from": expected.version if expected else None,
            "to": version,
            "reason": reason,
            "at": moved_at,
        },
    )
    return AliasState(alias, version, info.etag, moved_at, reason)


def register_version(
    store: ObjectStore, model: str, version: str, booster: bytes, metadata: dict[str, Any]
) -> dict[str, Any]:
    """Store a version's booster, then its metadata (both immutable); return the metadata as stored.

    The metadata gains ``model_sha256``, ``model_bytes``, ``model``, ``version`` and ``created_at``.
    """
    digest = hashlib.sha256(booster).hexdigest()
    store.create(layout.model_booster(model, version), booster)
    stored = {
        **metadata,
        "model": model,
        "version": version,
        "created_at": metadata.get("created_at") or datetime.now(UTC).isoformat(),
        "model_sha256": digest,
        "model_bytes": len(booster),
    }
    store.create(
        layout.model_metadata(model, version),
        json.dumps(stored, indent=2, sort_keys=True, default=str).encode(),
        content_type="application/json",
    )
    return stored


def read_metadata(store: ObjectStore, model: str, version: str) -> dict[str, Any]:
    try:
        return json.loads(store.get(layout.model_metadata(model, version)))
    except ObjectNotFoundError as error:
        raise ObjectNotFoundError(f"model {model!r} has no version {version!r}") from error


def load_model(store: ObjectStore, model: str, version: str) -> tuple[bytes, dict[str, Any]]:
    """A version's booster bytes and metadata, the booster checked against the sha256 in the metadata.

    Raises:
        IntegrityError: the booster does not match (on top of the store's own per-object check).
    """
    metadata = read_metadata(store, model, version)
    booster = store.get(layout.model_booster(model, version))
    actual = hashlib.sha256(booster).hexdigest()
    if actual != metadata.get("model_sha256"):
        raise IntegrityError(
            f"model {model!r} version {version!r}: booster sha256 {actual} != metadata {metadata.get('model_sha256')}"
        )
    return booster, metadata


def list_version_ids(store: ObjectStore, model: str) -> list[str]:
    """Every version with metadata, oldest first (ids sort by creation time)."""
    prefix = layout.versions_prefix(model)
    versions = {key[len(prefix) :].split("/", 1)[0] for key in store.list(prefix) if key.endswith("/metadata.json")}
    return sorted(versions)


def audit_trail(store: ObjectStore, model: str) -> list[dict[str, Any]]:
    """Every audit record of the model, oldest first."""
    return [json.loads(store.get(key)) for key in store.list(layout.audit_prefix(model))]


def version_status(
    version: str, metadata: dict[str, Any], aliases: dict[str, str | None], ever_champion: set[str]
) -> Status:
    if aliases.get("champion") == version:
        return "champion"
    if aliases.get("shadow") == version:
        return "shadow"
    if version in ever_champion:
        return "retired"
    gates = metadata.get("gate_report") or {}
    if gates and not gates.get("passed", True) or metadata.get("decision") == "rejected":
        return "rejected"
    return "candidate"


def describe_model(store: ObjectStore, model: str) -> dict[str, Any]:
    """The `driftline models <model> --json` document."""
    aliases = {name: (state.version if (state := read_alias(store, model, name)) else None) for name in layout.ALIASES}
    trail = audit_trail(store, model)
    ever_champion = {r["to"] for r in trail if r.get("alias") == "champion" and r.get("to")}
    versions = []
    for version in list_version_ids(store, model):
        metadata = read_metadata(store, model, version)
        gates = metadata.get("gate_report") or {}
        versions.append(
            VersionSummary(
                version=version,
                created_at=metadata.get("created_at", ""),
                status=version_status(version, metadata, aliases, ever_champion),
                metrics={k: float(v) for k, v in (metadata.get("metrics") or {}).items()},
                trigger=metadata.get("trigger", "manual"),
                gates_passed=gates.get("passed") if gates else None,
            ).to_dict()
        )
    return {"model": model, "aliases": aliases, "versions": versions}


@dataclass(frozen=True)
class DoctorReport:
    """Registry integrity: every alias names an intact version; orphans and stuck events listed."""

    model: str
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    checked_versions: int = 0

    @property
    def healthy(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "healthy": self.healthy}


def doctor(store: ObjectStore, model: str) -> DoctorReport:
    """Check that aliases point at intact versions (booster sha256 matches) and find orphan versions."""
    problems: list[str] = []
    warnings: list[str] = []
    named: set[str] = set()
    for alias in layout.ALIASES:
        state = read_alias(store, model, alias)
        if state is None or state.version is None:
            continue
        named.add(state.version)
        try:
            load_model(store, model, state.version)
        except (ObjectNotFoundError, IntegrityError) as error:
            problems.append(f"alias {alias} -> {state.version}: {error}")
    prefix = layout.versions_prefix(model)
    files: dict[str, set[str]] = {}
    for key in store.list(prefix):
        version, _, name = key[len(prefix) :].partition("/")
        files.setdefault(version, set()).add(name)
    trail = audit_trail(store, model)
    ever_named = {r.get("to") for r in trail} | named
    for version, names in sorted(files.items()):
        if "metadata.json" not in names:
            warnings.append(
                f"orphan {version}: model.ubj without metadata.json (a write was interrupted); no alias names it"
            )
            continue
        if version not in ever_named:
            metadata = read_metadata(store, model, version)
            if metadata.get("decision") in ("shadow", "champion"):
                warnings.append(
                    f"orphan {version}: registered for {metadata['decision']} but no alias ever named it "
                    "(interrupted before the alias move)"
                )
    return DoctorReport(model, problems, warnings, checked_versions=len(files))


def clear_alias_if(store: ObjectStore, model: str, alias: Alias, version: str, reason: str) -> bool:
    """Clear ``alias`` if it still names ``version``; False when it names something else or moved meanwhile."""
    state = read_alias(store, model, alias)
    if state is None or state.version != version:
        return False
    with contextlib.suppress(ConflictError):
        move_alias(store, model, alias, None, expected=state, reason=reason)
        return True
    return False
