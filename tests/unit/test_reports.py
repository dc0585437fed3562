"""Renderings of a drift report: the JSON CLI contract, the markdown table and the PNG figure."""

from __future__ import annotations

import json
import re
import struct

import numpy as np
import polars as pl
import pytest

from driftline.data.profiling import profile_frame
from driftline.reports.renderings import drift_json, drift_json_bytes, drift_markdown, drift_png, drift_table_rows
from driftline.statistics.drift import DriftReport, compare_profiles

N = 10_000
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
VERDICTS = {"none", "possible", "drift"}

# Names with spaces, dots, capitals and a markdown pipe.
CREDIT = "Credit Limit"
INCOME = "income.monthly"
AGE = "AGE"
REGION = "Region | Zone"
SEGMENT = "Segment.Tier 2"
NUMERIC = [CREDIT, INCOME, AGE]
CATEGORICAL = [REGION, SEGMENT]


def _frame(seed: int, *, drifted: bool) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    regions = ["north", "south", "east", "west|coast"] + (["islands"] if drifted else [])
    region_shares = [0.5, 0.25, 0.15, 0.1] if not drifted else [0.45, 0.225, 0.135, 0.09, 0.1]
    return pl.DataFrame(
        {
            CREDIT: rng.normal(5_000.0, 1_000.0, N) + (500.0 if drifted else 0.0),  # +0.5 sd when drifted
            INCOME: rng.lognormal(8.0, 0.5, N),
            AGE: rng.integers(18, 90, N),
            REGION: rng.choice(regions, N, p=region_shares),
            SEGMENT: rng.choice(["A", "B", "C"], N, p=[0.6, 0.3, 0.1]),
        }
    )


@pytest.fixture(scope="module")
def reference_frame() -> pl.DataFrame:
    return _frame(1, drifted=False)


@pytest.fixture(scope="module")
def drifted_report(reference_frame: pl.DataFrame) -> DriftReport:
    """CREDIT shifted by 0.5 sd and a new REGION at 10%: both drift, nothing else does."""
    report = compare_profiles(
        profile_frame(reference_frame),
        profile_frame(_frame(2, drifted=True)),
        numeric=NUMERIC,
        categorical=CATEGORICAL,
    )
    assert report.drift and set(report.drifted_features) == {CREDIT, REGION}
    return report


@pytest.fixture(scope="module")
def quiet_report(reference_frame: pl.DataFrame) -> DriftReport:
    """The same distributions: nothing drifts."""
    report = compare_profiles(
        profile_frame(reference_frame),
        profile_frame(_frame(2, drifted=False)),
        numeric=NUMERIC,
        categorical=CATEGORICAL,
    )
    assert not report.drift and report.drifted_features == []
    return report


@pytest.fixture(scope="module")
def categorical_only_report(reference_frame: pl.DataFrame) -> DriftReport:
    """Only categorical features: no quantile curves to draw."""
    return compare_profiles(
        profile_frame(reference_frame.select(CATEGORICAL)),
        profile_frame(_frame(2, drifted=False).select(CATEGORICAL)),
        categorical=CATEGORICAL,
    )


@pytest.fixture(params=["drifted", "quiet", "categorical_only"])
def report(request: pytest.FixtureRequest) -> DriftReport:
    return request.getfixturevalue(f"{request.param}_report")


# ------------------------------------------------------------------------------ JSON
def test_json_holds_the_cli_contract_with_the_right_types(report: DriftReport) -> None:
    document = drift_json(report)

    assert type(document["drift"]) is bool
    assert type(document["score"]) is float
    assert list(document["features"]) == list(report.features)
    for name, feature in document["features"].items():
        assert type(feature["statistic"]) is str, name
        assert type(feature["value"]) is float, name
        assert type(feature["threshold"]) is float, name
        assert feature["verdict"] in VERDICTS, name


def test_json_agrees_with_the_report(drifted_report: DriftReport) -> None:
    document = drift_json(drifted_report)

    assert document["drift"] is True
    assert document["score"] == drifted_report.score
    assert document["drifted_features"] == drifted_report.drifted_features
    assert {name: f["verdict"] for name, f in document["features"].items()} == {
        CREDIT: "drift",
        INCOME: "none",
        AGE: "none",
        REGION: "drift",
        SEGMENT: "none",
    }
    assert document["features"][CREDIT]["statistic"] == "ks"
    assert document["features"][REGION]["statistic"] == "hellinger"
    assert document["features"][CREDIT]["value"] >= document["features"][CREDIT]["threshold"]


def test_json_is_strict_json_and_the_bytes_say_the_same(report: DriftReport) -> None:
    document = drift_json(report)

    text = json.dumps(document, allow_nan=False)  # NaN or inf would not be valid JSON for other tools

    assert json.loads(text) == document
    assert json.loads(drift_json_bytes(report)) == document


# ------------------------------------------------------------------------------ markdown
def _table_rows(markdown: str) -> list[list[str]]:
    """Cells of each table row (header included), split on unescaped pipes."""
    rows = [line for line in markdown.splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in re.split(r"(?<!\\)\|", row)[1:-1]] for row in rows]


@pytest.mark.parametrize(("fixture", "headline"), [("drifted_report", "drift detected"), ("quiet_report", "no drift")])
def test_markdown_has_the_headline_and_one_row_per_feature(
    fixture: str, headline: str, request: pytest.FixtureRequest
) -> None:
    report: DriftReport = request.getfixturevalue(fixture)

    markdown = drift_markdown(report, title="Drift of batch b1")
    header, separator, *rows = _table_rows(markdown)

    assert markdown.startswith("# Drift of batch b1\n")
    assert f"**{headline}**" in markdown
    assert all(f"- {reason}" in markdown for reason in report.reasons)
    assert all(len(row) == len(header) == len(separator) for row in rows)
    assert sorted(row[0].replace("\\|", "|") for row in rows) == sorted(report.features)
    severities = [report.features[row[0].replace("\\|", "|")].severity for row in rows]
    assert severities == sorted(severities, reverse=True)
    verdict_column = header.index("verdict")
    assert {row[0].replace("\\|", "|") for row in rows if row[verdict_column] == "**DRIFT**"} == set(
        report.drifted_features
    )


def test_markdown_escapes_the_pipe_in_a_feature_name(drifted_report: DriftReport) -> None:
    markdown = drift_markdown(drifted_report)

    assert "| Region \\| Zone |" in markdown
    assert "| Region | Zone |" not in markdown


# ------------------------------------------------------------------------------ PNG
def _png_size(data: bytes) -> tuple[int, int]:
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_png_is_drawn_for_every_report(report: DriftReport) -> None:
    data = drift_png(report)

    assert data.startswith(PNG_SIGNATURE)
    width, height = _png_size(data)
    assert width > 0 and height > 0


@pytest.mark.parametrize(
    ("fixture", "panels"),
    [
        ("drifted_report", 2),  # severity bars + the drifted numeric feature's quantiles
        ("quiet_report", 2),  # nothing drifted: still the most severe numeric feature's quantiles
        ("categorical_only_report", 1),  # no quantiles to draw: bars only
    ],
)
def test_png_draws_quantile_curves_of_numeric_features(
    fixture: str, panels: int, categorical_only_report: DriftReport, request: pytest.FixtureRequest
) -> None:
    single_panel_width, _ = _png_size(drift_png(categorical_only_report))

    width, _ = _png_size(drift_png(request.getfixturevalue(fixture)))

    assert width == panels * single_panel_width


# ------------------------------------------------------------------------------ table rows
def test_table_rows_keep_names_and_put_the_most_severe_first(drifted_report: DriftReport) -> None:
    rows = drift_table_rows(drifted_report)

    assert sorted(row["feature"] for row in rows) == sorted(drifted_report.features)
    assert [row["feature"] for row in rows[:2]] == drifted_report.drifted_features
    assert {row["verdict"] for row in rows[2:]} == {"none"}


def test_bounds_png_draws_history_and_survives_an_empty_one() -> None:
    from driftline.reports.renderings import bounds_png

    history = [{"n": 500 * i, "estimate": -0.02, "lower": -0.02 - 1 / i, "upper": -0.02 + 1 / i} for i in range(1, 6)]
    assert bounds_png(history, "shadow").startswith(b"\x89PNG")
    assert bounds_png([{"n": 1, "estimate": None, "lower": None, "upper": None}], "empty").startswith(b"\x89PNG")


# ------------------------------------------------------------------- the loop's results as UI artifacts
def test_the_shadow_and_performance_summaries_say_what_the_tests_found() -> None:
    from datetime import UTC, datetime

    from driftline.reports.renderings import (
        performance_markdown,
        performance_table_rows,
        shadow_markdown,
        shadow_table_rows,
    )
    from driftline.statistics import performance, shadow
    from tests.batches import example_spec

    spec, now = example_spec("m"), datetime(2026, 12, 1, tzinfo=UTC)
    rng = np.random.default_rng(3)
    state = shadow.start_shadow("m", "v2", "v1", now=now)
    state = shadow.fold_batch(state, rng.normal(-0.05, 0.2, 2_000), "b1", policy=spec.shadow, now=now)
    verdict = shadow.decide(state, spec.shadow, now)
    assert verdict.verdict == "promote"  # 2,000 rows with the candidate 0.05 better, sd 0.2
    text = shadow_markdown(verdict, "Shadow test")
    assert (
        text.startswith("# Shadow test\n\n2,000 paired rows") and f"[{verdict.lower:.5f}, {verdict.upper:.5f}]" in text
    )
    assert all(f"- {reason}" in text for reason in verdict.reasons)
    assert [row["batch_id"] for row in shadow_table_rows(state)] == ["b1"]

    monitor = performance.start_monitor("m", "v1", 0.5, 10_000, now, 0.3)
    monitor = performance.fold_batch(monitor, rng.normal(0.9, 0.3, 3_000), "b1", spec.performance, now)
    decided = performance.decide(monitor, spec.performance)
    assert decided.verdict == "degraded"  # losses 0.4 above the baseline's 0.5, sd 0.3
    quiet = performance_markdown(monitor, decided, "Performance")
    assert "3,000 labelled rows over 1 batch(es)" in quiet and "Announced" not in quiet
    alerted, claimed = performance.mark_alerted(monitor, decided, "b1", now)
    assert claimed and "Announced degraded after batch b1" in performance_markdown(alerted, decided, "Performance")
    assert [row["batch_id"] for row in performance_table_rows(alerted)] == ["b1"]
