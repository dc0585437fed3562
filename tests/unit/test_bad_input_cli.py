"""Bad input at the CLI and the domain functions behind it (issue #13): every case names what is wrong.

The CLI runs in-process through typer's CliRunner and ``driftline.cli.app.run``, the console script's
error handler, so exit codes and one-line messages are those a user sees.
"""

from __future__ import annotations

import json
import os
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from driftline.cli import app as cli
from driftline.cli import context
from driftline.data import profiling
from driftline.errors import InputError
from driftline.loop.drift_checks import check_batch_drift
from driftline.models.spec import SpecError, parse_spec
from driftline.settings import Settings, redact_url
from driftline.statistics.drift import compare_profiles
from driftline.storage import layout
from driftline.storage.store import MemoryStore, ObjectStore, open_store
from tests.batches import example_batch, example_spec, write_parquet

SECRET = "s3cr3t-pw"
MINIMAL_SPEC = "name: m\ntask: binary\ntarget: y\nid_column: id\ntime_column: ts\nfeatures: {numeric: [a]}\n"


@dataclass(frozen=True)
class Outcome:
    code: int
    stdout: str
    stderr: str

    @property
    def text(self) -> str:
        return self.stdout + self.stderr


Cli = Callable[..., Outcome]


@pytest.fixture
def cli_run(tmp_path: Path) -> Cli:
    """Run ``driftline ARGS`` with no DRIFTLINE_* setting but a private state dir (no local stack)."""

    def invoke(*args: str, env: dict[str, str] | None = None) -> Outcome:
        cleared: dict[str, str | None] = {name: None for name in os.environ if name.startswith("DRIFTLINE_")}
        base = {
            **cleared,
            "COLUMNS": "250",  # rich tables would otherwise shorten long names
            "DRIFTLINE_STATE_DIR": str(tmp_path / "state"),
            "DRIFTLINE_S3_MAX_ATTEMPTS": "1",
            "DRIFTLINE_S3_CONNECT_TIMEOUT": "1",
            "AWS_EC2_METADATA_DISABLED": "true",
        }
        with CliRunner().isolation(env={**base, **(env or {})}) as (stdout, stderr, _):
            code = cli.run(list(args))
            sys.stdout.flush()
            sys.stderr.flush()
            return Outcome(code, stdout.getvalue().decode(), stderr.getvalue().decode())

    return invoke


@dataclass(frozen=True)
class Remote:
    store: ObjectStore
    env: dict[str, str]


@pytest.fixture
def remote(s3_endpoint: str) -> Iterator[Remote]:
    """A fresh bucket on the session's moto server and the settings that point the CLI at it."""
    env = {
        "DRIFTLINE_S3_ENDPOINT_URL": s3_endpoint,
        "DRIFTLINE_S3_BUCKET": f"t-{uuid.uuid4().hex[:12]}",
        "DRIFTLINE_AWS_ACCESS_KEY_ID": "x",
        "DRIFTLINE_AWS_SECRET_ACCESS_KEY": "y",
    }
    store = open_store(
        Settings(
            s3_endpoint_url=env["DRIFTLINE_S3_ENDPOINT_URL"],
            s3_bucket=env["DRIFTLINE_S3_BUCKET"],
            aws_access_key_id=env["DRIFTLINE_AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["DRIFTLINE_AWS_SECRET_ACCESS_KEY"],
        )
    )
    store.create_bucket()
    yield Remote(store, env)


def _write_profile(frame: pl.DataFrame, path: Path) -> Path:
    path.write_bytes(profiling.serialize(profiling.profile_frame(frame)))
    return path


def _spec_file(tmp_path: Path, text: str, name: str = "spec.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# ------------------------------------------------------------------------------- 1. rich markup
def test_missing_file_named_like_a_closing_tag_exits_2_and_prints_the_name(cli_run: Cli) -> None:
    result = cli_run("profile", "[/foo].parquet", "-o", "x.bin")
    assert result.code == 2
    assert "[/foo].parquet: no such file" in result.stderr


def test_bracketed_file_and_column_names_are_printed_literally_by_profile_and_drift(
    cli_run: Cli, tmp_path: Path
) -> None:
    rng = np.random.default_rng(1)
    frame = pl.DataFrame({"[/x]": rng.normal(size=3000), "[red]y": rng.normal(size=3000)})
    data = write_parquet(frame, tmp_path / "data[red].parquet")
    output = tmp_path / "out[1].bin"
    profiled = cli_run("profile", str(data), "-o", str(output), "--chunk-rows", "1000")
    assert profiled.code == 0, profiled.text
    assert "out[1].bin" in profiled.stderr
    compared = cli_run("drift", str(output), str(output))
    assert compared.code == 0, compared.text
    assert "[/x]" in compared.stdout and "[red]y" in compared.stdout


def test_spec_name_error_keeps_the_pattern_brackets(cli_run: Cli, tmp_path: Path) -> None:
    spec = _spec_file(tmp_path, MINIMAL_SPEC.replace("name: m", "name: Bad"))
    result = cli_run("model", "create", str(spec))
    assert result.code == 2
    assert "[a-z0-9][a-z0-9._-]{0,62}" in result.stderr


def test_error_text_with_markup_is_shown_verbatim_not_styled(cli_run: Cli, tmp_path: Path) -> None:
    # A YAML parse error quotes the offending text, brackets and all.
    spec = _spec_file(tmp_path, "name: [red]x\n  bad: [/]\n")
    result = cli_run("model", "create", str(spec))
    assert result.code == 2
    assert "not valid YAML" in result.stderr and "spec.yaml" in result.stderr


# ------------------------------------------------------------------------------- 2. paths are not globs
@pytest.fixture
def glob_twins(tmp_path: Path) -> Path:
    """``g1.parquet`` (a valid example batch) and ``g[1].parquet`` (other columns), the one a glob would hide."""
    write_parquet(example_batch(1, rows=200), tmp_path / "g1.parquet")
    return write_parquet(pl.DataFrame({"only": [1.0, 2.0, 3.0]}), tmp_path / "g[1].parquet")


def test_schema_and_profile_read_the_file_named_not_the_glob_match(glob_twins: Path) -> None:
    assert list(profiling.parquet_schema(glob_twins)) == ["only"]
    view = profiling.profile_parquet(glob_twins)
    assert set(view.get_columns()) == {"only"} and profiling.row_count(view) == 3


def test_ingest_checks_the_bracketed_file_itself(cli_run: Cli, remote: Remote, glob_twins: Path) -> None:
    spec = example_spec("globbed")
    remote.store.put(layout.model_spec(spec.name), spec.to_yaml().encode())
    result = cli_run("ingest", spec.name, str(glob_twins), "--no-wait", env=remote.env)
    assert result.code == 2, result.text
    assert "missing column" in result.stderr and "unexpected column(s): 'only'" in result.stderr


def test_batch_check_counts_the_rows_of_the_bracketed_file(tmp_path: Path) -> None:
    from driftline.data.batches import check_batch_file

    write_parquet(example_batch(1, rows=200), tmp_path / "g1.parquet")
    named = write_parquet(example_batch(2, rows=50), tmp_path / "g[1].parquet")
    assert check_batch_file(named, example_spec()).rows == 50


# ------------------------------------------------------------------------------- 3. infinities
def _numeric_frame(seed: int, rows: int = 5000) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    return pl.DataFrame({"x": rng.normal(size=rows), "y": rng.normal(size=rows)})


def _with_infinity(frame: pl.DataFrame, share: float, seed: int) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    x = frame.get_column("x").to_numpy().copy()
    x[rng.random(len(x)) < share] = np.inf
    return frame.with_columns(pl.Series("x", x))


@pytest.mark.parametrize(
    ("share", "drifts"),
    [(0.0, False), (0.3, True), (1.0, True)],
    ids=["clean", "30-percent-inf", "all-inf"],
)
def test_infinities_count_as_missing_share_drift(share: float, drifts: bool) -> None:
    reference = profiling.profile_frame(_numeric_frame(1))
    current = profiling.profile_frame(_with_infinity(_numeric_frame(2), share, seed=3))
    report = compare_profiles(reference, current, numeric=["x", "y"])
    assert report.drift is drifts
    assert report.drifted_features == (["x"] if drifts else [])
    if drifts:
        assert any(reason.startswith("x: missing share 0.0% ->") for reason in report.reasons)


def test_drift_command_flags_a_column_of_negative_infinity(cli_run: Cli, tmp_path: Path) -> None:
    reference = _write_profile(_numeric_frame(1), tmp_path / "ref.bin")
    frame = _numeric_frame(2).with_columns(pl.lit(-np.inf).alias("x"))
    current = _write_profile(frame, tmp_path / "cur.bin")
    result = cli_run("drift", str(reference), str(current), "--json")
    assert result.code == 1, result.text
    assert json.loads(result.stdout)["drifted_features"] == ["x"]


# ------------------------------------------------------------------------------- 4. empty current profile
def test_zero_row_current_profile_is_no_drift_with_a_warning_in_the_reasons() -> None:
    reference = profiling.profile_frame(_numeric_frame(1))
    current = profiling.profile_frame(_numeric_frame(2).head(0))
    report = compare_profiles(reference, current, numeric=["x", "y"])
    assert report.drift is False
    assert report.warnings == ["the current profile has 0 rows: nothing to compare, drift not checked"]
    assert report.reasons[0] == report.warnings[0]
    assert not any(reason.startswith("no drift") for reason in report.reasons)
    assert report.to_dict()["warnings"] == report.warnings


def test_zero_row_batch_drift_check_says_so_in_its_reasons() -> None:
    store, spec = MemoryStore(), example_spec("empty")
    for batch_id, frame in (("b1", example_batch(1, rows=2000)), ("b2", example_batch(2, rows=2000).head(0))):
        store.put(layout.batch_profile(spec.name, batch_id), profiling.serialize(profiling.profile_frame(frame)))
        check = check_batch_drift(store, spec, batch_id)
    assert check.report.drift is False and check.triggered is False
    assert "the current profile has 0 rows: nothing to compare, drift not checked" in check.reasons


def test_drift_command_prints_the_zero_row_warning(cli_run: Cli, tmp_path: Path) -> None:
    reference = _write_profile(_numeric_frame(1), tmp_path / "ref.bin")
    current = _write_profile(_numeric_frame(2).head(0), tmp_path / "cur.bin")
    result = cli_run("drift", str(reference), str(current))
    assert result.code == 0
    assert "warning: the current profile has 0 rows" in result.stdout


# ------------------------------------------------------------------------------- 5. specs
@pytest.mark.parametrize(
    ("text", "message"),
    [
        (MINIMAL_SPEC + "target: z\n", "duplicate key 'target' on line 7 (first on line 3)"),
        (
            MINIMAL_SPEC + "drift:\n  bins: 5\n  top_k: 2\n  bins: 20\n",
            "duplicate key 'bins' on line 10 (first on line 8)",
        ),
    ],
    ids=["top-level", "nested"],
)
def test_duplicate_yaml_keys_are_refused_naming_key_and_line(text: str, message: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec(text, "dup.yaml")
    assert isinstance(caught.value, InputError)
    assert str(caught.value) == f"dup.yaml: {message}"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name: m\nfeatures: {numeric: [a\n", "not valid YAML"),
        (MINIMAL_SPEC + "colour: blue\n", "colour: unknown key"),
        (MINIMAL_SPEC.replace("[a]", "[a, b, a]"), "feature 'a' is listed twice"),
        (MINIMAL_SPEC.replace("[a]", "[a, y]"), "target 'y' is also listed as a feature"),
        (MINIMAL_SPEC.replace("name: m", "name: Example"), "name: Value error, 'Example' must match"),
        (MINIMAL_SPEC.replace("name: m", "name: ../evil"), "name: Value error, '../evil' must match"),
    ],
    ids=["malformed-yaml", "unknown-key", "feature-twice", "target-is-feature", "uppercase-name", "dotdot-name"],
)
def test_invalid_spec_exits_2_naming_file_and_problem(cli_run: Cli, tmp_path: Path, text: str, message: str) -> None:
    result = cli_run("model", "create", str(_spec_file(tmp_path, text)))
    assert result.code == 2, result.text
    assert "spec.yaml" in result.stderr and message in result.stderr


@pytest.mark.parametrize("model", ["../evil", "Example", "a/b"])
def test_bad_model_name_on_the_command_line_exits_2_before_any_store(cli_run: Cli, tmp_path: Path, model: str) -> None:
    data = write_parquet(example_batch(1, rows=100), tmp_path / "batch.parquet")
    result = cli_run("ingest", model, str(data))
    assert result.code == 2
    assert f"invalid model {model!r}" in result.stderr


# ------------------------------------------------------------------------------- 6. doctor
@pytest.mark.parametrize(
    ("stored_key", "found"),
    [
        ("models/orphaned/versions/v1/model.ubj", "registry objects"),
        ("datasets/orphaned/batches/b1.parquet", "batches"),
    ],
    ids=["registry-without-spec", "batches-without-spec"],
)
def test_doctor_reports_a_model_without_spec_as_a_problem(
    cli_run: Cli, remote: Remote, stored_key: str, found: str
) -> None:
    remote.store.put(stored_key, b"bytes")
    result = cli_run("doctor", "orphaned", "--json", env=remote.env)
    assert result.code == 1, result.text
    document = json.loads(result.stdout)
    assert document["healthy"] is False
    assert "models/orphaned/spec.yaml" in document["problems"][0]
    assert f"although {found} exist" in document["problems"][0]


def test_doctor_of_a_model_with_its_spec_stays_healthy(cli_run: Cli, remote: Remote) -> None:
    spec = example_spec("kept")
    remote.store.put(layout.model_spec(spec.name), spec.to_yaml().encode())
    result = cli_run("doctor", spec.name, "--json", env=remote.env)
    assert result.code == 0, result.text
    assert json.loads(result.stdout)["problems"] == []


# ------------------------------------------------------------------------------- 7. redaction
def test_redact_url_hides_only_the_password() -> None:
    assert redact_url(f"http://user:{SECRET}@host:99999/x") == "http://user:***@host:99999/x"
    assert redact_url("http://127.0.0.1:9") == "http://127.0.0.1:9"


def test_invalid_endpoint_url_never_echoes_its_password(
    cli_run: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    endpoint = f"http://user:{SECRET}@host:99999"
    result = cli_run("models", "example", env={"DRIFTLINE_S3_ENDPOINT_URL": endpoint})
    assert result.code == 2, result.text
    assert "DRIFTLINE_S3_ENDPOINT_URL" in result.stderr and "user:***@host:99999" in result.stderr
    assert SECRET not in result.text
    monkeypatch.setenv("DRIFTLINE_S3_ENDPOINT_URL", endpoint)
    with pytest.raises(Exception) as caught:
        Settings()
    assert SECRET not in str(caught.value)


def test_unreachable_endpoint_with_a_password_is_redacted_in_cli_output(cli_run: Cli, tmp_path: Path) -> None:
    spec = _spec_file(tmp_path, example_spec("redacted").to_yaml())
    env = {
        "DRIFTLINE_S3_ENDPOINT_URL": f"http://user:{SECRET}@127.0.0.1:9",
        "DRIFTLINE_AWS_ACCESS_KEY_ID": "x",
        "DRIFTLINE_AWS_SECRET_ACCESS_KEY": "y",
    }
    result = cli_run("model", "create", str(spec), env=env)
    assert result.code == 3, result.text
    assert "http://user:***@127.0.0.1:9" in result.stderr and SECRET not in result.text


def test_store_descriptions_redact_the_endpoint_password() -> None:
    store = open_store(Settings(s3_endpoint_url=f"http://user:{SECRET}@127.0.0.1:9", s3_use_aws=False))
    assert SECRET not in store.describe() and SECRET not in store.location("k")


# ------------------------------------------------------------------------------- 8. no silent AWS
def test_after_down_promote_refuses_to_fall_back_to_aws(cli_run: Cli) -> None:
    result = cli_run("promote", "example", "v1")
    assert result.code == 3, result.text
    assert "the local stack is not up" in result.stderr
    assert "DRIFTLINE_S3_USE_AWS=true" in result.stderr and "DRIFTLINE_S3_ENDPOINT_URL" in result.stderr


def test_an_endpoint_set_empty_still_chooses_aws_explicitly(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in [n for n in os.environ if n.startswith("DRIFTLINE_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("DRIFTLINE_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("DRIFTLINE_S3_ENDPOINT_URL", "")
    settings, store = context.remote()  # no network: the store connects on first use
    assert settings.s3_endpoint_url is None and store.describe().endswith("at AWS S3")


def test_explicit_aws_choice_ignores_the_local_stack_endpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("DRIFTLINE_")]:
        monkeypatch.delenv(name)
    (tmp_path / "stack.json").write_text(
        json.dumps(
            {
                "s3_endpoint_url": "http://127.0.0.1:5250",
                "aws_access_key_id": "local",
                "aws_secret_access_key": "local",
                "prefect_api_url": "http://127.0.0.1:4250/api",
            }
        )
    )
    monkeypatch.setenv("DRIFTLINE_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("DRIFTLINE_S3_USE_AWS", "true")
    settings, store = context.remote()  # no network: the store connects on first use
    assert settings.s3_endpoint_url is None and settings.aws_access_key_id is None
    assert store.describe().endswith("at AWS S3")
    assert settings.prefect_api_url == "http://127.0.0.1:4250/api"


# ------------------------------------------------------------------------------- profiles given to drift
def test_truncated_and_foreign_profiles_exit_2_naming_the_file(cli_run: Cli, tmp_path: Path) -> None:
    good = profiling.serialize(profiling.profile_frame(_numeric_frame(1)))
    truncated = tmp_path / "truncated.bin"
    truncated.write_bytes(good[: len(good) // 2])
    foreign = write_parquet(_numeric_frame(2), tmp_path / "foreign.parquet")
    for bad in (truncated, foreign):
        result = cli_run("drift", str(bad), str(bad))
        assert result.code == 2, result.text
        assert f"{bad}: not a whylogs profile" in result.stderr


def test_profiles_with_disjoint_columns_exit_2(cli_run: Cli, tmp_path: Path) -> None:
    left = _write_profile(pl.DataFrame({"a": [1.0, 2.0]}), tmp_path / "left.bin")
    right = _write_profile(pl.DataFrame({"b": [1.0, 2.0]}), tmp_path / "right.bin")
    result = cli_run("drift", str(left), str(right))
    assert result.code == 2
    assert "share no columns" in result.stderr


# ------------------------------------------------------------------------------- categories and time
def test_a_hundred_thousand_distinct_categories_keep_the_profile_bounded() -> None:
    rows = 100_000
    reference = pl.DataFrame({"zip": [f"z{i:06d}" for i in range(rows)]})
    current = pl.DataFrame({"zip": [f"z{i:06d}" for i in range(rows, 2 * rows)]})
    reference_view = profiling.profile_frame(reference)
    assert len(profiling.serialize(reference_view)) < 256 * 1024  # sketches, not the values
    report = compare_profiles(reference_view, profiling.profile_frame(current), categorical=["zip"])
    assert report.features["zip"].n_current == rows  # compared without error, every row counted


def test_unseen_categories_are_named_and_drift() -> None:
    rng = np.random.default_rng(5)
    reference = pl.DataFrame({"colour": rng.choice(["red", "green", "blue"], size=6000)})
    current_values = rng.choice(["red", "green", "blue"], size=6000).astype(object)
    current_values[rng.random(6000) < 0.3] = "mauve"
    current = pl.DataFrame({"colour": current_values.astype(str)})
    report = compare_profiles(
        profiling.profile_frame(reference), profiling.profile_frame(current), categorical=["colour"]
    )
    assert report.drifted_features == ["colour"]
    assert any("of current values are unseen categories" in reason for reason in report.reasons)


def test_timezone_naive_and_aware_batches_of_the_same_instants_do_not_drift() -> None:
    start = datetime(2026, 1, 1)
    instants = [start + timedelta(minutes=i) for i in range(5000)]
    naive = pl.DataFrame({"ts": instants})
    aware = pl.DataFrame({"ts": [t.replace(tzinfo=UTC) for t in instants]})
    assert naive.schema["ts"] != aware.schema["ts"]
    naive_view, aware_view = profiling.profile_frame(naive), profiling.profile_frame(aware)
    report = compare_profiles(naive_view, aware_view, numeric=["ts"])
    # Same instants, same epoch seconds: only the sketch's own rank error separates the two.
    assert report.drift is False and report.features["ts"].verdict == "none"
    assert report.features["ts"].value < 0.005
    merged = profiling.merge([naive_view, aware_view])
    assert profiling.row_count(merged) == 10_000
