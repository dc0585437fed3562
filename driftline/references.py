"""Which profile a batch is compared with.

The reference is the champion's training-data profile (``profiles/<model>/reference/<version>.bin``).
Before any champion exists, the model's first profiled batch becomes a *provisional* reference
(``profiles/<model>/reference/provisional.bin``, created with a conditional write so exactly one batch
wins); the first promotion replaces it with the champion's own reference.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from driftline import layout
from driftline.errors import ConflictError, ObjectNotFoundError
from driftline.store import ObjectStore


@dataclass(frozen=True)
class Reference:
    """The reference profile in force for a model."""

    key: str
    version: str | None
    provisional: bool
    established_by: str | None = None  # the batch that became the provisional reference


def champion_version(store: ObjectStore, model: str) -> str | None:
    """The champion alias's version, None before the first promotion."""
    try:
        return json.loads(store.get(layout.alias(model, "champion")))["version"]
    except ObjectNotFoundError:
        return None


def resolve_reference(store: ObjectStore, model: str) -> Reference | None:
    """The champion's reference profile, else the provisional one, else None."""
    version = champion_version(store, model)
    if version is not None:
        return Reference(key=layout.reference_profile(model, version), version=version, provisional=False)
    key = layout.reference_profile(model, layout.PROVISIONAL_REFERENCE)
    if store.exists(key):
        return Reference(key=key, version=None, provisional=True)
    return None


def establish_provisional(store: ObjectStore, model: str, batch_id: str, profile: bytes) -> Reference:
    """Make this batch's profile the provisional reference unless another batch already is."""
    key = layout.reference_profile(model, layout.PROVISIONAL_REFERENCE)
    try:
        store.create(key, profile)
        return Reference(key=key, version=None, provisional=True, established_by=batch_id)
    except ConflictError:
        return Reference(key=key, version=None, provisional=True)
