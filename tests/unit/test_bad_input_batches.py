"""Bad input, batch by batch: each case names the file, column or key at fault, quarantines the batch when a
batch is concerned, and never stops the next good batch from profiling (issue #13)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest
import yaml

from driftline.cli.uploads import submit_batch, submit_labels
from driftline.data.batches import (
    ProfiledBatch,
    check_batch_file,
    pending_batches,
    profile_stored_batch,
    quarantine,
    quarantine_misnamed,
    scan_batches,
)
from driftline.errors import InputError, IntegrityError, InvalidNameError
from driftline.events.sink import MemoryEventSink
from driftline.loop import drift_checks, retraining
from driftline.loop.cooldown import RetrainRequest
from driftline.models.spec import ModelSpec, parse_spec
from driftline.storage import layout
from driftline.storage.store import MemoryStore
from tests.batches import example_batch, example_labels, example_spec, parquet_bytes

SPEC = example_spec("m")
ROWS = 200


@pytest.fixture
def store() -> MemoryStore:
    store = MemoryStore()
    store.put(layout.model_spec(SPEC.name), SPEC.to_yaml().encode())
    return store


def events(store: MemoryStore) -> MemoryEventSink:
    """Events still go to the outbox; no Prefect server (none in unit tests) is sent them."""
    return MemoryEventSink(store)


def _good(seed: int = 1, rows: int = ROWS) -> pl.DataFrame:
    return example_batch(seed, rows=rows)


def _process(store: MemoryStore, spec: ModelSpec, batch_id: str) -> ProfiledBatch:
    """What profile-batch does in the domain: profile, or quarantine when the batch is rejected."""
    profiled = profile_stored_batch(store, spec, batch_id)
    if not profiled.check.ok:
        quarantine(store, spec.name, batch_id, profiled.check)
    return profiled


def _record(store: MemoryStore, model: str, batch_id: str) -> dict:
    return json.loads(store.get(layout.batch_quarantine(model, batch_id)))


def _assert_rejected(store: MemoryStore, batch_id: str, *expected: str, spec: ModelSpec = SPEC) -> ProfiledBatch:
    profiled = _process(store, spec, batch_id)
    assert not profiled.check.ok and profiled.profile_key is None
    message = profiled.check.message()
    assert message.startswith(f"{layout.batch_data(spec.name, batch_id)}: batch rejected")
    for text in expected:
        assert text in message, message
    record = _record(store, spec.name, batch_id)
    assert record["batch_key"] == layout.batch_data(spec.name, batch_id)
    assert record["problems"] == profiled.check.problems
    assert not store.exists(layout.batch_profile(spec.name, batch_id))
    return profiled


def _assert_next_good_batch_profiles(store: MemoryStore, spec: ModelSpec = SPEC, seed: int = 7) -> None:
    """The next good batch is pending on its own and profiles; the bad one is no longer pending."""
    store.create(layout.batch_data(spec.name, "next-good"), parquet_bytes(_good(seed)))
    assert pending_batches(store, spec.name) == {spec.name: ["next-good"]}
    profiled = _process(store, spec, "next-good")
    assert profiled.check.ok, profiled.check.message()
    assert store.exists(layout.batch_profile(spec.name, "next-good"))
    assert pending_batches(store, spec.name) == {}


# --- batches whose content is wrong -------------------------------------------------------------------------


def test_a_zero_row_batch_is_quarantined_as_empty(store: MemoryStore) -> None:
    store.create(layout.batch_data("m", "empty"), parquet_bytes(_good().head(0)))
    _assert_rejected(store, "empty", "the batch is empty")
    _assert_next_good_batch_profiles(store)


def test_a_one_row_batch_profiles(store: MemoryStore) -> None:
    store.create(layout.batch_data("m", "single"), parquet_bytes(_good(rows=1)))
    profiled = _process(store, SPEC, "single")
    assert profiled.check.ok and profiled.rows == 1
    assert store.exists(layout.batch_profile("m", "single"))
    _assert_next_good_batch_profiles(store)


def test_all_null_and_constant_feature_columns_profile(store: MemoryStore) -> None:
    frame = _good().with_columns(
        pl.lit(None, dtype=pl.Float64).alias("income"),
        pl.lit(3, dtype=pl.Int64).alias("credit_lines"),
        pl.lit("north").alias("region"),
    )
    store.create(layout.batch_data("m", "flat"), parquet_bytes(frame))
    profiled = _process(store, SPEC, "flat")
    assert profiled.check.ok, profiled.check.message()
    assert store.exists(layout.batch_profile("m", "flat"))
    _assert_next_good_batch_profiles(store)


def test_a_numeric_feature_arriving_as_strings_is_quarantined_naming_the_column(store: MemoryStore) -> None:
    frame = _good().with_columns(pl.col("income").cast(pl.String))
    store.create(layout.batch_data("m", "strings"), parquet_bytes(frame))
    _assert_rejected(store, "strings", "column 'income' is String, the spec says numeric")
    _assert_next_good_batch_profiles(store)


def test_missing_and_extra_columns_are_named_together(store: MemoryStore) -> None:
    frame = _good().drop("income", "region").with_columns(pl.lit(1.0).alias("Surprise Column"))
    store.create(layout.batch_data("m", "columns"), parquet_bytes(frame))
    _assert_rejected(
        store,
        "columns",
        "missing column(s): 'income', 'region'",
        "unexpected column(s): 'Surprise Column' (not in the spec)",
    )
    _assert_next_good_batch_profiles(store)


def test_a_truncated_parquet_file_is_quarantined_as_unreadable(store: MemoryStore) -> None:
    data = parquet_bytes(_good())
    store.create(layout.batch_data("m", "truncated"), data[: len(data) // 2])
    _assert_rejected(store, "truncated", "not a readable parquet file")
    _assert_next_good_batch_profiles(store)


def test_a_non_parquet_file_is_quarantined_as_unreadable(store: MemoryStore) -> None:
    store.create(layout.batch_data("m", "csv"), b"id,ts,income\n1,2026-01-01,3.5\n")
    _assert_rejected(store, "csv", "not a readable parquet file")
    _assert_next_good_batch_profiles(store)


def test_duplicate_ids_are_named_with_a_sample(store: MemoryStore) -> None:
    frame = _good()
    frame = pl.concat([frame, frame.head(2)])
    store.create(layout.batch_data("m", "dupes"), parquet_bytes(frame))
    first_ids = frame.get_column("id").head(2).to_list()
    profiled = _assert_rejected(store, "dupes", "2 duplicate id(s) in 'id'")
    assert all(str(i) in profiled.check.message() for i in first_ids)
    _assert_next_good_batch_profiles(store)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        pytest.param(
            lambda n: [float("inf") if i % 10 < 3 else 1.0 for i in range(n)],
            f"column 'income' has 60 non-finite value(s) (+-inf) in {ROWS} row(s) (30.0%)",
            id="30-percent-plus-inf",
        ),
        pytest.param(
            lambda n: [float("-inf")] * n,
            f"column 'income' has {ROWS} non-finite value(s) (+-inf) in {ROWS} row(s) (100.0%)",
            id="whole-column-minus-inf",
        ),
    ],
)
def test_infinite_values_in_a_numeric_feature_are_quarantined_with_their_share(
    store: MemoryStore, values, expected: str
) -> None:
    frame = _good().with_columns(
        pl.Series("income", values(ROWS), dtype=pl.Float64),
        pl.Series("utilization", [float("inf")] + [0.5] * (ROWS - 1), dtype=pl.Float64),
    )
    store.create(layout.batch_data("m", "inf"), parquet_bytes(frame))
    _assert_rejected(
        store, "inf", expected, f"column 'utilization' has 1 non-finite value(s) (+-inf) in {ROWS} row(s) (0.5%)"
    )
    _assert_next_good_batch_profiles(store)


def test_integer_ids_of_any_width_pass_and_their_labels_join(store: MemoryStore) -> None:
    frame = _good().with_columns(pl.col("id").cast(pl.Int32))
    store.create(layout.batch_data("m", "int32"), parquet_bytes(frame))
    assert _process(store, SPEC, "int32").check.ok
    labels = example_labels(_good(), seed=1).with_columns(pl.col("id").cast(pl.UInt64))
    key, rows, share = submit_labels(events(store), SPEC, "int32", labels, "labels.parquet")
    assert key == layout.batch_labels("m", "int32") and rows == ROWS and share == 1.0
    _assert_next_good_batch_profiles(store)


def test_column_names_with_spaces_dots_capitals_and_unicode_profile_and_check_drift() -> None:
    document = yaml.safe_load(example_spec("weird").to_yaml())
    document.update(
        id_column="Customer ID",
        time_column="event.ts",
        features={"numeric": ["Income (€)", "debt.ratio", "Ünïcode Âge"], "categorical": ["Region Name"]},
        slices=[],
    )
    spec = parse_spec(yaml.safe_dump(document, allow_unicode=True), "weird.yaml")
    store = MemoryStore()
    store.put(layout.model_spec("weird"), spec.to_yaml().encode())

    def batch(seed: int) -> pl.DataFrame:
        frame = _good(seed)
        return frame.select(
            pl.col("id").alias("Customer ID"),
            pl.col("ts").alias("event.ts"),
            pl.col("income").alias("Income (€)"),
            pl.col("debt_ratio").alias("debt.ratio"),
            pl.col("age").alias("Ünïcode Âge"),
            pl.col("region").alias("Region Name"),
        )

    for seed, batch_id in [(1, "b1"), (2, "b2")]:
        store.create(layout.batch_data("weird", batch_id), parquet_bytes(batch(seed)))
        profiled = _process(store, spec, batch_id)
        assert profiled.check.ok, profiled.check.message()
        check = drift_checks.check_batch_drift(store, spec, batch_id)
        assert set(check.report.features) == {"Income (€)", "debt.ratio", "Ünïcode Âge", "Region Name"}
    misnamed = batch(3).rename({"Income (€)": "income (€)"})  # capitals matter: a different column
    store.create(layout.batch_data("weird", "b3"), parquet_bytes(misnamed))
    _assert_rejected(store, "b3", "missing column(s): 'Income (€)'", "unexpected column(s): 'income (€)'", spec=spec)


def test_a_path_with_glob_characters_is_read_as_that_one_file(tmp_path: Path) -> None:
    """polars expands paths as globs: 'g[1].parquet' would read g1.parquet."""
    other = _good(seed=5, rows=ROWS + 1).with_columns(pl.lit(float("inf")).alias("income"))
    other.write_parquet(tmp_path / "g1.parquet")
    _good().write_parquet(tmp_path / "g[1].parquet")
    check = check_batch_file(tmp_path / "g[1].parquet", SPEC)
    assert check.ok and check.rows == ROWS, check.problems
    store = MemoryStore()
    store.create(layout.batch_data("m", "g1"), parquet_bytes(_good()))
    profiled = profile_stored_batch(store, SPEC, "g1")  # its time range is read from a temp path too
    assert profiled.event_time_min == _good().get_column("ts").min().isoformat()


# --- objects other tools wrote ------------------------------------------------------------------------------


def test_a_batch_written_by_another_tool_without_sha256_is_verified_and_adopted(store: MemoryStore) -> None:
    store.put_foreign(layout.batch_data("m", "foreign"), parquet_bytes(_good()))
    assert pending_batches(store) == {"m": ["foreign"]}
    profiled = _process(store, SPEC, "foreign")
    assert profiled.check.ok and profiled.adopted
    assert store.info(layout.batch_data("m", "foreign")).sha256  # reads are verified from now on
    assert store.exists(layout.batch_profile("m", "foreign"))
    _assert_next_good_batch_profiles(store)


def test_a_bad_batch_written_by_another_tool_is_quarantined_and_never_given_a_sha256(store: MemoryStore) -> None:
    store.put_foreign(layout.batch_data("m", "foreign-bad"), parquet_bytes(_good().drop("income")))
    profiled = _assert_rejected(store, "foreign-bad", "missing column(s): 'income'")
    assert not profiled.adopted
    assert store.info(layout.batch_data("m", "foreign-bad")).sha256 == ""
    _assert_next_good_batch_profiles(store)


def test_a_tampered_batch_with_a_mismatching_sha256_still_raises_integrity_error(store: MemoryStore) -> None:
    store.create(layout.batch_data("m", "tampered"), parquet_bytes(_good()))
    store.tamper(layout.batch_data("m", "tampered"), parquet_bytes(_good(seed=2)))
    with pytest.raises(IntegrityError, match=r"datasets/m/batches/tampered.parquet.*tampered"):
        profile_stored_batch(store, SPEC, "tampered")
    assert not store.exists(layout.batch_profile("m", "tampered"))


# --- object names -------------------------------------------------------------------------------------------


def test_a_misnamed_batch_object_is_quarantined_by_its_key_and_other_models_still_profile(store: MemoryStore) -> None:
    other = example_spec("other")
    store.put(layout.model_spec("other"), other.to_yaml().encode())
    bad_key = "datasets/m/batches/Bad Name.parquet"
    store.create(bad_key, parquet_bytes(_good()))
    store.create(layout.batch_data("m", "fine"), parquet_bytes(_good(2)))
    store.create(layout.batch_data("other", "fine"), parquet_bytes(_good(3)))

    scan = scan_batches(store)
    assert scan.pending == {"m": ["fine"], "other": ["fine"]}
    assert scan.misnamed == {"m": [bad_key]}
    record_key = quarantine_misnamed(store, "m", bad_key)
    assert record_key == layout.batch_quarantine("m", layout.misnamed_batch_id(bad_key))
    record = json.loads(store.get(record_key))
    assert record["batch_key"] == bad_key
    assert "invalid batch id 'Bad Name'" in record["problems"][0]
    assert scan_batches(store).misnamed == {}  # recorded once, then left alone
    for spec in (SPEC, other):
        assert _process(store, spec, "fine").check.ok
    assert pending_batches(store) == {}
    _assert_next_good_batch_profiles(store)


def test_a_parquet_file_in_a_sub_folder_is_not_a_batch(store: MemoryStore) -> None:
    store.create("datasets/m/batches/sub/x.parquet", parquet_bytes(_good()))
    assert layout.batch_id_from_key("datasets/m/batches/sub/x.parquet") is None
    assert scan_batches(store).pending == {} and scan_batches(store).misnamed == {}
    _assert_next_good_batch_profiles(store)


def test_a_spec_under_an_invalid_model_name_does_not_stop_the_other_models(store: MemoryStore) -> None:
    store.put("models/Bad Model/spec.yaml", b"name: whatever")
    store.create(layout.batch_data("m", "fine"), parquet_bytes(_good()))
    assert pending_batches(store) == {"m": ["fine"]}


@pytest.mark.parametrize("batch_id", ["a/b", "../escape", "Bad Name", "_history"])
def test_a_batch_id_that_is_not_a_valid_name_is_refused_naming_it(store: MemoryStore, batch_id: str) -> None:
    with pytest.raises(InvalidNameError, match=rf"invalid batch id {batch_id!r}"):
        submit_batch(events(store), "m", batch_id, parquet_bytes(_good()))
    with pytest.raises(InvalidNameError, match=rf"invalid batch id {batch_id!r}"):
        profile_stored_batch(store, SPEC, batch_id)
    assert list(store.list("datasets/")) == []


# --- labels -------------------------------------------------------------------------------------------------


@pytest.fixture
def profiled_batch(store: MemoryStore) -> pl.DataFrame:
    frame = _good()
    store.create(layout.batch_data("m", "b1"), parquet_bytes(frame))
    assert _process(store, SPEC, "b1").check.ok
    return frame


def test_an_empty_labels_file_is_refused_and_the_real_labels_are_accepted_after(
    store: MemoryStore, profiled_batch: pl.DataFrame
) -> None:
    empty = example_labels(profiled_batch, seed=1).head(0)
    with pytest.raises(InputError, match=r"empty.parquet: labels rejected: the file has 0 rows; nothing was stored"):
        submit_labels(events(store), SPEC, "b1", empty, "empty.parquet")
    assert not store.exists(layout.batch_labels("m", "b1"))
    key, rows, _ = submit_labels(events(store), SPEC, "b1", example_labels(profiled_batch, seed=1), "real.parquet")
    assert rows == ROWS and store.exists(key)


def test_labels_with_unknown_ids_are_refused_and_nothing_is_stored(
    store: MemoryStore, profiled_batch: pl.DataFrame
) -> None:
    labels = example_labels(profiled_batch, seed=1).with_columns(pl.col("id") + 10**9)
    with pytest.raises(InputError, match=rf"l.parquet: labels rejected: {ROWS} id\(s\) are not in the batch"):
        submit_labels(events(store), SPEC, "b1", labels, "l.parquet")
    assert not store.exists(layout.batch_labels("m", "b1"))


def test_labels_whose_ids_have_another_type_than_the_batch_are_refused_naming_both(
    store: MemoryStore, profiled_batch: pl.DataFrame
) -> None:
    labels = example_labels(profiled_batch, seed=1).with_columns(pl.col("id").cast(pl.String))
    with pytest.raises(
        InputError, match=r"l.parquet: labels rejected: ids in 'id' are String, the batch's ids are Int64"
    ):
        submit_labels(events(store), SPEC, "b1", labels, "l.parquet")
    assert not store.exists(layout.batch_labels("m", "b1"))


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        (pl.lit(2), "binary target 'default' has values ['2'] (need 0/1)"),
        (pl.lit("1"), "binary target 'default' is String (need 0/1 numbers)"),
    ],
    ids=["two-for-binary", "strings-for-binary"],
)
def test_wrong_label_values_are_refused_naming_the_target(
    store: MemoryStore, profiled_batch: pl.DataFrame, target: pl.Expr, expected: str
) -> None:
    labels = example_labels(profiled_batch, seed=1).with_columns(target.alias("default"))
    with pytest.raises(InputError) as caught:
        submit_labels(events(store), SPEC, "b1", labels, "l.parquet")
    assert str(caught.value).startswith("l.parquet: labels rejected") and expected in str(caught.value)
    assert not store.exists(layout.batch_labels("m", "b1"))


def test_labels_for_a_batch_that_does_not_exist_are_refused(store: MemoryStore) -> None:
    labels = example_labels(_good(), seed=1)
    with pytest.raises(InputError, match="batch 'nope' of model 'm' does not exist; ingest it first"):
        submit_labels(events(store), SPEC, "nope", labels, "l.parquet")
    assert list(store.list(layout.labels_prefix("m"))) == []


def test_labels_for_a_quarantined_batch_are_refused_naming_the_record_and_its_problems(store: MemoryStore) -> None:
    frame = _good().with_columns(pl.col("income").cast(pl.String))
    store.create(layout.batch_data("m", "bad"), parquet_bytes(frame))
    _assert_rejected(store, "bad", "column 'income' is String")
    with pytest.raises(InputError) as caught:
        submit_labels(events(store), SPEC, "bad", example_labels(_good(), seed=1), "l.parquet")
    message = str(caught.value)
    assert "l.parquet: labels refused: batch 'bad' of model 'm' is quarantined" in message
    assert layout.batch_quarantine("m", "bad") in message
    assert "column 'income' is String, the spec says numeric" in message
    assert not store.exists(layout.batch_labels("m", "bad"))


def test_labels_for_a_foreign_batch_not_yet_verified_wait_for_the_watch(store: MemoryStore) -> None:
    frame = _good()
    store.put_foreign(layout.batch_data("m", "foreign"), parquet_bytes(frame))
    with pytest.raises(InputError, match=r"l.parquet: batch 'foreign' .* is not verified yet"):
        submit_labels(events(store), SPEC, "foreign", example_labels(frame, seed=1), "l.parquet")
    assert _process(store, SPEC, "foreign").check.ok
    assert submit_labels(events(store), SPEC, "foreign", example_labels(frame, seed=1), "l.parquet")[1] == ROWS


def test_a_retrain_window_skips_a_labelled_batch_that_was_quarantined_and_notes_it(store: MemoryStore) -> None:
    good = _good(1, rows=SPEC.window.min_labelled_rows)
    store.create(layout.batch_data("m", "b1"), parquet_bytes(good))
    store.create(layout.labels_prefix("m") + "b1.parquet", parquet_bytes(example_labels(good, seed=1)))
    # Labels that got in before the batch was quarantined (older driftline, or written by another tool).
    bad = _good(2).with_columns(pl.col("income").cast(pl.String))
    store.create(layout.batch_data("m", "b2"), parquet_bytes(bad))
    store.create(layout.batch_labels("m", "b2"), parquet_bytes(example_labels(_good(2), seed=2)))
    _assert_rejected(store, "b2", "column 'income' is String")

    assert retraining.labelled_batch_ids(store, "m") == ["b1"]
    request = RetrainRequest(model="m", trigger="manual", requested_at=datetime.now(UTC).isoformat())
    window = retraining.prepare_window(store, SPEC, request)
    assert window.batch_ids == ["b1"]
    assert window.notes == [f"skipped labelled batch 'b2': quarantined ({layout.batch_quarantine('m', 'b2')})"]
