"""Switchover: promote a candidate to champion, roll a champion back. Compare-and-swap on the aliases.

The champion alias is the linearisation point: it moves first, with ``IfMatch`` on the ETag read at the
start, so of any number of concurrent promotions exactly one moves it and the others change nothing.
Then ``previous`` records the champion it replaced and ``shadow`` is cleared if it named the promoted
version. The new champion's reference profile becomes the drift reference from then on (references are
resolved through the champion alias), so the drift that caused the retrain does not retrigger it.
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass

from driftline.errors import ConflictError, InputError, ObjectNotFoundError
from driftline.models import registry
from driftline.storage.store import ObjectStore


@dataclass(frozen=True)
class Switchover:
    """An alias move that happened: who is champion now and who was before."""

    model: str
    champion: str
    previous: str | None
    reason: str

    def to_dict(self) -> dict:
        return asdict(self)


def _set_previous(store: ObjectStore, model: str, version: str | None, reason: str) -> None:
    if version is None:
        return
    for _ in range(10):
        state = registry.read_alias(store, model, "previous")
        try:
            registry.move_alias(store, model, "previous", version, expected=state, reason=reason)
            return
        except ConflictError:
            continue  # another switchover recorded its previous champion: read again


def promote(store: ObjectStore, model: str, version: str, reason: str) -> Switchover:
    """Make ``version`` champion.

    Raises:
        ObjectNotFoundError: no such version.
        InputError: it is already champion, or its gates failed.
        ConflictError: another switchover moved the champion first (nothing changed here).
    """
    metadata = registry.read_metadata(store, model, version)
    if metadata.get("decision") == "rejected":
        raise InputError(f"{model} {version} was rejected by its gates and cannot be promoted")
    champion = registry.read_alias(store, model, "champion")
    if champion is not None and champion.version == version:
        raise InputError(f"{model} {version} is already champion")
    registry.move_alias(store, model, "champion", version, expected=champion, reason=reason)
    old = champion.version if champion else None
    _set_previous(store, model, old, f"replaced by {version}")
    with contextlib.suppress(ConflictError):
        registry.clear_alias_if(store, model, "shadow", version, f"promoted to champion: {reason}")
    return Switchover(model, version, old, reason)


def rollback(store: ObjectStore, model: str, reason: str, to: str | None = None) -> Switchover:
    """Make ``to`` (default: the ``previous`` alias) champion again; the demoted one becomes ``previous``.

    Raises:
        InputError: no previous champion to return to, or ``to`` is already champion.
        ConflictError: the champion moved meanwhile.
    """
    champion = registry.read_alias(store, model, "champion")
    if champion is None or champion.version is None:
        raise InputError(f"model {model!r} has no champion to roll back")
    if to is None:
        previous = registry.read_alias(store, model, "previous")
        if previous is None or previous.version is None:
            raise InputError(f"model {model!r} has no previous champion; name one with --to VERSION")
        to = previous.version
    if to == champion.version:
        raise InputError(f"{model} {to} is already champion")
    try:
        registry.read_metadata(store, model, to)
    except ObjectNotFoundError as error:
        raise InputError(f"model {model!r} has no version {to!r} to roll back to") from error
    registry.move_alias(store, model, "champion", to, expected=champion, reason=f"rollback: {reason}")
    _set_previous(store, model, champion.version, f"rolled back: {reason}")
    return Switchover(model, to, champion.version, f"rollback: {reason}")
