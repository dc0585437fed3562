"""The one way to read a model's spec from S3, and what doctor says when it is missing (``driftline.models.spec``)."""

from __future__ import annotations

import pytest

from driftline.errors import InputError, ObjectNotFoundError
from driftline.models.spec import SpecError, missing_spec_problem, read_spec
from driftline.storage import layout
from driftline.storage.store import MemoryStore
from tests.batches import example_spec


def test_a_stored_spec_is_read_back_validated() -> None:
    store = MemoryStore()
    spec = example_spec("credit")
    store.put(layout.model_spec("credit"), spec.to_yaml().encode())
    assert read_spec(store, "credit") == spec


def test_a_missing_spec_says_how_to_create_one_and_exits_as_bad_input() -> None:
    with pytest.raises(ObjectNotFoundError, match=r"model 'credit' has no spec; run `driftline model create") as raised:
        read_spec(MemoryStore(), "credit")
    assert isinstance(raised.value, InputError) and raised.value.exit_code == 2


def test_an_invalid_stored_spec_names_its_key() -> None:
    store = MemoryStore()
    store.put(layout.model_spec("credit"), b"name: credit\ntask: nope\n")
    with pytest.raises(SpecError, match=r"models/credit/spec.yaml"):
        read_spec(store, "credit")


def test_doctor_names_a_missing_spec_and_what_is_stranded_without_it() -> None:
    store = MemoryStore()
    assert missing_spec_problem(store, "credit") == (
        f"missing spec {store.location(layout.model_spec('credit'))}: nothing is stored for this model "
        "(create it: driftline model create <spec.yaml> with name: credit)"
    )
    store.put(layout.batch_data("credit", "b1"), b"parquet")
    assert " although batches exist for it " in missing_spec_problem(store, "credit")
    store.put(layout.alias("credit", "champion"), b"{}")
    assert " although registry objects and batches exist for it " in missing_spec_problem(store, "credit")
    store.put(layout.model_spec("credit"), example_spec("credit").to_yaml().encode())
    assert missing_spec_problem(store, "credit") is None
