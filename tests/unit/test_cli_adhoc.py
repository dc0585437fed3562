"""The ad-hoc commands (no server needed) and CLI errors, run as a user runs them: the console script."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from driftline.replay import synth
from tests.batches import example_batch, write_parquet
from tests.support import REPO

DRIFTLINE = str(Path(sys.executable).parent / "driftline")


def _run(*args: str, env: dict[str, str] | None = None, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    base = {"PATH": str(Path(sys.executable).parent), "DO_NOT_TRACK": "1", "WHYLOGS_NO_ANALYTICS": "1"}
    return subprocess.run(
        [DRIFTLINE, *args], capture_output=True, text=True, env={**base, **(env or {})}, cwd=cwd, timeout=120
    )


@pytest.fixture(scope="module")
def profiles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("adhoc")
    files = {
        "reference": write_parquet(example_batch(1, rows=20_000), folder / "reference.parquet"),
        "same": write_parquet(example_batch(2, rows=20_000), folder / "same.parquet"),
        "shifted": write_parquet(example_batch(3, rows=20_000, income_shift=0.3), folder / "shifted.parquet"),
    }
    out = {}
    for name, path in files.items():
        result = _run("profile", str(path), "-o", str(folder / f"{name}.bin"), "--chunk-rows", "5000")
        assert result.returncode == 0, result.stderr
        assert "20,000 rows" in result.stderr
        out[name] = folder / f"{name}.bin"
    return out


def test_drift_json_follows_the_contract_and_exit_code_says_no_drift(profiles: dict[str, Path]) -> None:
    ids_and_time = ["--exclude", "id", "--exclude", "ts"]
    result = _run("drift", str(profiles["reference"]), str(profiles["same"]), "--json", *ids_and_time)
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["drift"] is False and isinstance(document["score"], float)
    assert set(document["features"]) == set(synth.FEATURES)  # every column but the excluded id and time
    for feature in document["features"].values():
        assert {"statistic", "value", "threshold", "verdict"} <= set(feature)
        assert feature["verdict"] in {"none", "possible", "drift"}


def test_drift_of_a_shifted_batch_exits_1_and_writes_png_and_markdown(
    profiles: dict[str, Path], tmp_path: Path
) -> None:
    png, markdown = tmp_path / "drift.png", tmp_path / "drift.md"
    result = _run(
        "drift",
        str(profiles["reference"]),
        str(profiles["shifted"]),
        "--spec",
        str(REPO / "configs" / "example.yaml"),
        "--png",
        str(png),
        "--markdown",
        str(markdown),
    )
    assert result.returncode == 1, result.stderr
    assert "income" in result.stdout and "drift" in result.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| income |" in markdown.read_text()


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["profile", "missing.parquet", "-o", "x.bin"], "missing.parquet"),
        (["drift", "nope.bin", "nope2.bin"], "nope.bin"),
        (["model", "create", "configs/nope.yaml"], "configs/nope.yaml"),
    ],
)
def test_missing_files_exit_2_naming_the_file(args: list[str], named: str, tmp_path: Path) -> None:
    result = _run(*args, cwd=REPO)  # relative paths, as a user types them
    assert result.returncode == 2
    assert named in result.stderr


def test_a_file_that_is_not_a_profile_exits_2_naming_it(tmp_path: Path) -> None:
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"definitely not whylogs")
    result = _run("drift", str(junk), str(junk))
    assert result.returncode == 2 and "junk.bin" in result.stderr and "not a whylogs profile" in result.stderr


def test_an_invalid_spec_exits_2_listing_every_bad_key(tmp_path: Path) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text(
        "name: Bad Name\ntask: binary\ntarget: y\nid_column: id\ntime_column: ts\n"
        "features: {numeric: [a]}\ndrift: {treshold: 0.1}\n"
    )
    result = _run("model", "create", str(spec))
    assert result.returncode == 2
    assert "bad.yaml" in result.stderr and "name" in result.stderr and "drift.treshold: unknown key" in result.stderr


def test_unreachable_s3_endpoint_exits_3_naming_the_endpoint(tmp_path: Path) -> None:
    result = _run(
        "model",
        "create",
        str(REPO / "configs" / "example.yaml"),
        env={
            "DRIFTLINE_S3_ENDPOINT_URL": "http://127.0.0.1:9",
            "DRIFTLINE_AWS_ACCESS_KEY_ID": "x",
            "DRIFTLINE_AWS_SECRET_ACCESS_KEY": "y",
            "DRIFTLINE_S3_MAX_ATTEMPTS": "1",
            "DRIFTLINE_STATE_DIR": str(tmp_path),
        },
    )
    assert result.returncode == 3
    assert "http://127.0.0.1:9" in result.stderr
