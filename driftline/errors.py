"""The error hierarchy: every error names the thing at fault and carries the CLI exit code.

Exit codes follow the CLI contract: 1 a decision said no, 2 bad input or usage, 3 infrastructure down.
"""

from __future__ import annotations


class DriftlineError(Exception):
    """Base of every error driftline raises on purpose."""

    exit_code: int = 2


class InputError(DriftlineError):
    """Bad input: a file, column, key, name or setting is wrong. Exit code 2."""

    exit_code = 2


class InvalidNameError(InputError, ValueError):
    """A model, batch or version name does not match the allowed pattern."""


class InfrastructureError(DriftlineError):
    """A service driftline needs is down, unreachable or refuses us. Exit code 3."""

    exit_code = 3


class StoreUnavailableError(InfrastructureError):
    """The S3 endpoint cannot be reached."""


class BucketNotFoundError(InfrastructureError):
    """The configured bucket does not exist."""


class CredentialsError(InfrastructureError):
    """No usable credentials for the object store, or they were refused."""


class ObjectNotFoundError(InputError, KeyError):
    """The key does not exist in the store."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ConflictError(DriftlineError):
    """A conditional write lost: the key already exists, or its ETag moved since it was read.

    Exit code 1: another writer won, which is a decision, not a fault.
    """

    exit_code = 1


class IntegrityError(InfrastructureError):
    """A stored object's bytes do not match the sha256 recorded when it was written."""


class StackError(InfrastructureError):
    """The local stack could not be started, stopped or reached."""
