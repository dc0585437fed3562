"""ModelSpec: the per-model YAML (docs/architecture.md section 9), validated with every problem named.

Minimal form::

    name: example
    task: binary                 # binary | regression
    target: label
    id_column: id
    time_column: ts
    features:
      numeric: [f0, f1]
      categorical: [c0]
    drift: {...}                 # optional, see driftline.drift.DriftPolicy for defaults

Unknown keys are rejected with their path (``drift.treshold``), so a typo never silently falls back to
a default. Column names are the user's: any string a parquet column may have.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from driftline.drift import DriftPolicy
from driftline.errors import InputError
from driftline.layout import NAME_PATTERN


class SpecError(InputError):
    """The spec is not valid; the message lists every problem with its key."""


class Features(BaseModel):
    """Feature columns by kind."""

    model_config = ConfigDict(extra="forbid")

    numeric: list[str] = Field(default_factory=list, description="Numeric feature columns.")
    categorical: list[str] = Field(default_factory=list, description="Categorical feature columns.")

    @model_validator(mode="after")
    def _distinct(self) -> Features:
        if not self.numeric and not self.categorical:
            raise ValueError("at least one numeric or categorical feature is required")
        seen: set[str] = set()
        for name in [*self.numeric, *self.categorical]:
            if name == "":
                raise ValueError("a feature name is empty")
            if name in seen:
                raise ValueError(f"feature {name!r} is listed twice")
            seen.add(name)
        return self

    @property
    def all(self) -> list[str]:
        return [*self.numeric, *self.categorical]


class ModelSpec(BaseModel):
    """A model's contract: its columns, task and policies."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="Model name: [a-z0-9][a-z0-9._-]{0,62}.")
    task: Literal["binary", "regression"] = Field(description="binary classification or regression.")
    target: str = Field(min_length=1, description="Label column (in labels files, not in batches).")
    id_column: str = Field(min_length=1, description="Row id joining batches, labels and predictions.")
    time_column: str = Field(min_length=1, description="Event time; windows and holdouts are by time.")
    features: Features = Field(description="Feature columns by kind.")
    drift: DriftPolicy = Field(default_factory=DriftPolicy, description="How drift is measured and decided.")

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        if not NAME_PATTERN.fullmatch(value) or ".." in value:
            raise ValueError(f"{value!r} must match [a-z0-9][a-z0-9._-]{{0,62}} without '..'")
        return value

    @model_validator(mode="after")
    def _columns_do_not_collide(self) -> ModelSpec:
        special = {"target": self.target, "id_column": self.id_column, "time_column": self.time_column}
        names = list(special.values())
        if len(set(names)) != len(names):
            raise ValueError(f"target, id_column and time_column must differ, got {special}")
        for key, column in special.items():
            if column in self.features.all:
                raise ValueError(f"{key} {column!r} is also listed as a feature")
        return self

    @property
    def batch_columns(self) -> list[str]:
        """Columns a features batch must have: id, time and every feature."""
        return [self.id_column, self.time_column, *self.features.all]

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False, allow_unicode=True)

    def content_hash(self) -> str:
        """sha256 of the canonical YAML (recorded in lineage)."""
        return hashlib.sha256(self.to_yaml().encode()).hexdigest()


def _format_errors(error: ValidationError, source: str) -> str:
    problems = []
    for item in error.errors():
        location = ".".join(str(part) for part in item["loc"]) or "(top level)"
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown key"
        elif item["type"] == "missing":
            message = "required key is missing"
        problems.append(f"  {location}: {message}")
    return f"{source}: invalid model spec\n" + "\n".join(problems)


def parse_spec(text: str | bytes, source: str = "spec") -> ModelSpec:
    """Parse and validate spec YAML.

    Args:
        text: YAML text.
        source: where it came from (file path or S3 key), used in errors.

    Raises:
        SpecError: listing every problem with its key path.
    """
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise SpecError(f"{source}: not valid YAML ({error})") from error
    if not isinstance(data, dict):
        raise SpecError(f"{source}: a model spec is a YAML mapping, got {type(data).__name__}")
    try:
        return ModelSpec.model_validate(data)
    except ValidationError as error:
        raise SpecError(_format_errors(error, source)) from error


def load_spec(path: str | Path) -> ModelSpec:
    """Read and validate a spec file."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError as error:
        raise SpecError(f"{path}: no such file") from error
    return parse_spec(text, str(path))
