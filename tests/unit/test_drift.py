"""Decision quality of drift from profiles, on seeded synthetic data whose truth is known.

Reference and current batches are drawn independently (different seeds) from the same distributions;
each change scenario then alters exactly one column of the current batch by a known amount.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import polars as pl
import pydantic
import pytest

from driftline.data.profiling import profile_frame
from driftline.errors import InputError
from driftline.statistics.drift import DriftPolicy, DriftReport, Hysteresis, compare_profiles, hysteresis_met

if TYPE_CHECKING:
    from whylogs.core import DatasetProfileView

REFERENCE_SEED = 20_240_101
CURRENT_SEED = 20_240_202
SIZES = [1_000, 10_000, 100_000, 1_000_000]
LARGE = 1_000_000

NORMAL_MEAN, NORMAL_SD = 50.0, 10.0
LOGNORMAL_SD = float(np.sqrt((np.e - 1.0) * np.e))  # sd of lognormal(0, 1)
REGIONS = {"north": 0.50, "south": 0.25, "east": 0.15, "west": 0.10}
CHANNELS = {"web": 0.40, "app": 0.30, "store": 0.15, "phone": 0.10, "partner": 0.05}

NUMERIC = ["normal", "lognormal", "uniform", "poisson", "exponential", "student_t", "bimodal", "zero_inflated"]
CATEGORICAL = ["region", "channel"]
# At a million rows only a few columns are profiled, to keep the file fast.
NUMERIC_AT_LARGE = ["normal", "lognormal", "poisson"]
CATEGORICAL_AT_LARGE = ["channel"]


def _draw(rng: np.random.Generator, shares: dict[str, float], n: int) -> np.ndarray:
    return rng.choice(list(shares), size=n, p=list(shares.values()))


def synthetic_frame(
    n: int, seed: int, numeric: list[str] = NUMERIC, categorical: list[str] = CATEGORICAL
) -> pl.DataFrame:
    """Numeric shapes (symmetric, skewed, bounded, integer, heavy-tailed, bimodal, point mass) and categorical
    columns with unequal shares; only the requested columns are returned."""
    rng = np.random.default_rng(seed)
    generators: dict[str, Callable[[], np.ndarray]] = {
        "normal": lambda: rng.normal(NORMAL_MEAN, NORMAL_SD, n),
        "lognormal": lambda: rng.lognormal(0.0, 1.0, n),
        "uniform": lambda: rng.uniform(-3.0, 7.0, n),
        "poisson": lambda: rng.poisson(3.0, n).astype(np.int64),
        "exponential": lambda: rng.exponential(2.0, n),
        "student_t": lambda: rng.standard_t(3, n),
        "bimodal": lambda: np.where(rng.random(n) < 0.3, rng.normal(-2.0, 0.5, n), rng.normal(3.0, 1.0, n)),
        "zero_inflated": lambda: np.where(rng.random(n) < 0.6, 0.0, rng.gamma(2.0, 5.0, n)),
        "region": lambda: _draw(rng, REGIONS, n),
        "channel": lambda: _draw(rng, CHANNELS, n),
    }
    return pl.DataFrame({name: generators[name]() for name in [*numeric, *categorical]})


def _columns(n: int) -> tuple[list[str], list[str]]:
    return (NUMERIC_AT_LARGE, CATEGORICAL_AT_LARGE) if n >= LARGE else (NUMERIC, CATEGORICAL)


@pytest.fixture(scope="module")
def reference_profiles() -> dict[int, DatasetProfileView]:
    """One reference profile per size, profiled once for the module."""
    return {n: profile_frame(synthetic_frame(n, REFERENCE_SEED, *_columns(n))) for n in SIZES}


@pytest.fixture(scope="module")
def current_frames() -> dict[int, pl.DataFrame]:
    """One current batch per size, from the same distributions as the reference (independent seed)."""
    return {n: synthetic_frame(n, CURRENT_SEED, *_columns(n)) for n in SIZES}


@pytest.fixture(scope="module")
def current_profiles(current_frames: dict[int, pl.DataFrame]) -> dict[int, DatasetProfileView]:
    return {n: profile_frame(frame) for n, frame in current_frames.items()}


def _compare(reference: DatasetProfileView, current: DatasetProfileView, n: int, **kwargs: object) -> DriftReport:
    numeric, categorical = _columns(n)
    return compare_profiles(reference, current, numeric=numeric, categorical=categorical, **kwargs)


def _verdicts(report: DriftReport) -> dict[str, str]:
    return {name: feature.verdict for name, feature in report.features.items()}


# ------------------------------------------------------------------------------ identical distributions
@pytest.mark.parametrize("n", SIZES, ids=lambda n: f"{n:_}rows")
def test_identical_distributions_do_not_drift_at_any_size(
    n: int, reference_profiles: dict[int, DatasetProfileView], current_profiles: dict[int, DatasetProfileView]
) -> None:
    report = _compare(reference_profiles[n], current_profiles[n], n)

    allowed = {"none", "possible"} if n < 10_000 else {"none"}
    assert {name: v for name, v in _verdicts(report).items() if v not in allowed} == {}
    assert report.drift is False
    assert report.score == 0.0
    assert report.drifted_features == []
    assert report.n_reference == report.n_current == n
    assert set(report.features) == set(_columns(n)[0]) | set(_columns(n)[1])
    for feature in report.features.values():
        assert feature.value < feature.floor or feature.value < feature.threshold, feature


def test_noise_floor_shrinks_with_sample_size_but_stays_above_sketch_noise(
    reference_profiles: dict[int, DatasetProfileView], current_profiles: dict[int, DatasetProfileView]
) -> None:
    floors = [_compare(reference_profiles[n], current_profiles[n], n).features["normal"].floor for n in SIZES]
    c_alpha = np.sqrt(-np.log((1 - 0.999) / 2) / 2)  # asymptotic KS critical value at 99.9%

    assert floors == sorted(floors, reverse=True)
    # 1k rows: sampling noise alone (1.949 * sqrt(2 / 1000) = 0.087).
    assert floors[0] == pytest.approx(c_alpha * np.sqrt(2 / 1_000), rel=0.01)
    # 1M rows: the sketches' rank error keeps the floor above sampling noise (0.0028), yet far below the
    # 0.05 threshold, so the threshold decides.
    assert 2 * c_alpha * np.sqrt(2 / LARGE) < floors[-1] < 0.02


@pytest.mark.parametrize(
    ("n", "shift_sd", "verdict"),
    [
        (1_000, 0.0, "none"),
        (1_000, 0.15, "possible"),  # KS 0.06 >= threshold 0.05, but within 1k-row noise (0.087)
        (1_000, 0.4, "drift"),
        (LARGE, 0.0, "none"),
        (LARGE, 0.075, "possible"),  # KS 0.03: certainly real at 1M rows, below the threshold
        (LARGE, 0.15, "drift"),
    ],
)
def test_verdict_ladder_separates_noise_small_effects_and_drift(
    n: int,
    shift_sd: float,
    verdict: str,
    reference_profiles: dict[int, DatasetProfileView],
    current_frames: dict[int, pl.DataFrame],
) -> None:
    current = current_frames[n].select(pl.col("normal") + shift_sd * NORMAL_SD)

    feature = compare_profiles(reference_profiles[n], profile_frame(current), numeric=["normal"]).features["normal"]

    assert feature.verdict == verdict, (feature.value, feature.floor)
    assert len(feature.reasons) == (verdict != "none")


@pytest.mark.parametrize(
    ("n", "categories"),
    [
        (10_000, 50),
        (100_000, 50),
        # Rare categories and sketch-evicted ones share the "other" bin, so the chi-square floor holds.
        (10_000, 500),
        (100_000, 5_000),
    ],
)
def test_identical_long_tailed_categories_do_not_drift(n: int, categories: int) -> None:
    """Zip codes, product ids: many categories, a few common and a long tail of rare ones."""

    def codes(seed: int) -> pl.DataFrame:
        values = np.random.default_rng(seed).zipf(1.5, n) % categories
        return pl.DataFrame({"zip_code": pl.Series(values).cast(pl.String)})

    report = compare_profiles(
        profile_frame(codes(REFERENCE_SEED)), profile_frame(codes(CURRENT_SEED)), categorical=["zip_code"]
    )

    feature = report.features["zip_code"]
    assert feature.verdict == "none", (feature.value, feature.floor)


@pytest.mark.parametrize(("n", "categories"), [(10_000, 500), (100_000, 5_000)])
def test_a_shift_among_the_common_values_of_a_long_tail_still_drifts(n: int, categories: int) -> None:
    """Pooling the tail must not blind the check: the most common code's share going up by half is drift."""

    def codes(seed: int, boost: float) -> pl.DataFrame:
        rng = np.random.default_rng(seed)
        values = rng.zipf(1.5, n) % categories
        top = int(np.bincount(values).argmax())
        extra = rng.random(n) < boost * float(np.mean(values == top))
        values = np.where(extra, top, values)
        return pl.DataFrame({"zip_code": pl.Series(values).cast(pl.String)})

    report = compare_profiles(
        profile_frame(codes(REFERENCE_SEED, 0.0)), profile_frame(codes(CURRENT_SEED, 0.5)), categorical=["zip_code"]
    )
    feature = report.features["zip_code"]
    assert feature.verdict == "drift", (feature.value, feature.floor)


# ------------------------------------------------------------------------------ one known change
def _mean_shift(column: str, shift: float) -> Callable[[pl.DataFrame, np.random.Generator], pl.DataFrame]:
    return lambda frame, _: frame.with_columns(pl.col(column) + shift)


def _scale(column: str, centre: float, factor: float) -> Callable[[pl.DataFrame, np.random.Generator], pl.DataFrame]:
    return lambda frame, _: frame.with_columns((pl.col(column) - centre) * factor + centre)


def _redraw(column: str, shares: dict[str, float]) -> Callable[[pl.DataFrame, np.random.Generator], pl.DataFrame]:
    return lambda frame, rng: frame.with_columns(pl.Series(column, _draw(rng, shares, frame.height)))


def _missing_at_random(column: str, share: float) -> Callable[[pl.DataFrame, np.random.Generator], pl.DataFrame]:
    def change(frame: pl.DataFrame, rng: np.random.Generator) -> pl.DataFrame:
        drop = pl.Series(rng.random(frame.height) < share)
        return frame.with_columns(pl.when(drop).then(None).otherwise(pl.col(column)).alias(column))

    return change


PARTNER_DOUBLED = {name: share * 0.90 / 0.95 for name, share in CHANNELS.items() if name != "partner"} | {
    "partner": 0.10
}
NEW_REGION = {name: share * 0.90 for name, share in REGIONS.items()} | {"islands": 0.10}

CHANGES = {
    "normal_mean_plus_0.2sd": ("normal", _mean_shift("normal", 0.2 * NORMAL_SD)),
    "lognormal_mean_plus_0.2sd": ("lognormal", _mean_shift("lognormal", 0.2 * LOGNORMAL_SD)),
    "normal_sd_times_1.5": ("normal", _scale("normal", NORMAL_MEAN, 1.5)),
    "partner_share_5_to_10pct": ("channel", _redraw("channel", PARTNER_DOUBLED)),
    "new_region_at_10pct": ("region", _redraw("region", NEW_REGION)),
    "uniform_missing_0_to_20pct": ("uniform", _missing_at_random("uniform", 0.20)),
}


@pytest.fixture(scope="module")
def changed_reports(
    reference_profiles: dict[int, DatasetProfileView], current_frames: dict[int, pl.DataFrame]
) -> Callable[[str, int], DriftReport]:
    """Report for a change scenario at a size, computed once per (change, size)."""
    cache: dict[tuple[str, int], DriftReport] = {}

    def report(change: str, n: int) -> DriftReport:
        if (change, n) not in cache:
            _, apply = CHANGES[change]
            current = apply(current_frames[n], np.random.default_rng(CURRENT_SEED + 1))
            cache[change, n] = _compare(reference_profiles[n], profile_frame(current), n)
        return cache[change, n]

    return report


@pytest.mark.parametrize("n", [10_000, 100_000], ids=lambda n: f"{n:_}rows")
@pytest.mark.parametrize("change", list(CHANGES))
def test_one_changed_feature_drifts_alone_and_leads_the_report(
    change: str, n: int, changed_reports: Callable[[str, int], DriftReport]
) -> None:
    feature, _ = CHANGES[change]
    report = changed_reports(change, n)

    assert {name: v for name, v in _verdicts(report).items() if v != "none"} == {feature: "drift"}
    assert report.drift is True
    assert report.drifted_features[0] == feature
    assert report.score == pytest.approx(1 / len(report.features))
    assert any(reason.startswith(f"{feature}: ") for reason in report.reasons)


@pytest.mark.parametrize(
    ("change", "statistic", "expected", "tolerance"),
    [
        # Phi(0.1) - Phi(-0.1) = 0.0797: the KS distance of a 0.2-sd shift of a normal.
        ("normal_mean_plus_0.2sd", "ks", 0.0797, 0.02),
        # max |F(x) - F(x - 0.2 sd)| of lognormal(0, 1) = 0.2697.
        ("lognormal_mean_plus_0.2sd", "ks", 0.2697, 0.02),
        # max |Phi(x) - Phi(x / 1.5)| = 0.0968 at x = 1.21 sd.
        ("normal_sd_times_1.5", "ks", 0.0968, 0.02),
        # sqrt(1 - 0.95 * sqrt(0.9 / 0.95) - sqrt(0.05 * 0.10)) = 0.0680.
        ("partner_share_5_to_10pct", "hellinger", 0.0680, 0.02),
        ("new_region_at_10pct", "unseen_share", 0.10, 0.01),
        ("uniform_missing_0_to_20pct", "missing_current", 0.20, 0.01),
    ],
)
def test_deciding_statistic_matches_the_known_change(
    change: str, statistic: str, expected: float, tolerance: float, changed_reports: Callable[[str, int], DriftReport]
) -> None:
    feature, _ = CHANGES[change]
    drifted = changed_reports(change, 10_000).features[feature]

    assert drifted.statistics[statistic] == pytest.approx(expected, abs=tolerance)


def test_drifted_features_are_listed_most_severe_first(
    reference_profiles: dict[int, DatasetProfileView], current_frames: dict[int, pl.DataFrame]
) -> None:
    n = 10_000
    current = current_frames[n].with_columns(pl.col("normal") + 0.2 * NORMAL_SD, pl.col("uniform") + 3.0)

    report = _compare(reference_profiles[n], profile_frame(current), n)

    # uniform: KS ~0.30 (a 30%-of-range shift); normal: KS ~0.08. Alphabetical order would be the reverse.
    assert report.drifted_features == ["uniform", "normal"]
    assert report.features["uniform"].severity > report.features["normal"].severity > 1.0
    assert report.score == pytest.approx(2 / len(report.features))


def test_new_category_is_reported_as_unseen(changed_reports: Callable[[str, int], DriftReport]) -> None:
    region = changed_reports("new_region_at_10pct", 10_000).features["region"]

    assert region.statistics["unseen_share"] == pytest.approx(0.10, abs=0.01)
    assert any("unseen categories" in reason for reason in region.reasons)


def test_missing_share_change_drifts_even_with_unchanged_values(
    changed_reports: Callable[[str, int], DriftReport],
) -> None:
    uniform = changed_reports("uniform_missing_0_to_20pct", 10_000).features["uniform"]

    assert uniform.verdict == "drift"
    assert uniform.value < uniform.threshold  # the present values are still the same distribution
    assert uniform.statistics["missing_reference"] == 0.0
    assert any("missing share" in reason for reason in uniform.reasons)


@pytest.mark.parametrize(
    ("reference_missing", "current_missing", "verdict"),
    [
        (0.0, 0.0, "none"),
        (0.0, 0.02, "none"),
        (0.0, 0.04, "none"),
        (0.0, 0.08, "drift"),
        (0.0, 0.20, "drift"),
        (0.0, 0.60, "drift"),
        (0.20, 0.20, "none"),
        (0.20, 0.23, "none"),
        (0.20, 0.0, "drift"),
        (0.20, 0.30, "drift"),
    ],
)
def test_missing_share_drifts_only_beyond_its_threshold(
    reference_missing: float,
    current_missing: float,
    verdict: str,
    reference_profiles: dict[int, DatasetProfileView],
    current_frames: dict[int, pl.DataFrame],
) -> None:
    n = 10_000
    reference = synthetic_frame(n, REFERENCE_SEED, ["uniform"], [])
    reference = _missing_at_random("uniform", reference_missing)(reference, np.random.default_rng(6))
    current = current_frames[n].select("uniform")
    current = _missing_at_random("uniform", current_missing)(current, np.random.default_rng(7))

    report = compare_profiles(profile_frame(reference), profile_frame(current), numeric=["uniform"])

    uniform = report.features["uniform"]

    assert uniform.verdict == verdict
    assert any("missing share" in r for r in uniform.reasons) is (verdict == "drift")
    assert uniform.statistics["missing_reference"] == pytest.approx(reference_missing, abs=0.01)
    assert uniform.statistics["missing_current"] == pytest.approx(current_missing, abs=0.01)


# ------------------------------------------------------------------------------ order does not matter
def test_shuffled_rows_give_the_same_statistics_and_no_drift(
    reference_profiles: dict[int, DatasetProfileView],
    current_frames: dict[int, pl.DataFrame],
    current_profiles: dict[int, DatasetProfileView],
) -> None:
    n = 100_000
    shuffled = profile_frame(current_frames[n].sample(fraction=1.0, shuffle=True, seed=3))

    against_original = _compare(current_profiles[n], shuffled, n)
    assert _verdicts(against_original) == dict.fromkeys(against_original.features, "none")
    for feature in against_original.features.values():
        assert feature.value == pytest.approx(0.0, abs=0.01), feature.name

    unshuffled = _compare(reference_profiles[n], current_profiles[n], n)
    reshuffled = _compare(reference_profiles[n], shuffled, n)
    assert _verdicts(reshuffled) == _verdicts(unshuffled)
    for name, feature in reshuffled.features.items():
        # The KLL sketch is order dependent only within its rank error (0.3%).
        assert feature.value == pytest.approx(unshuffled.features[name].value, abs=0.01), name


# ------------------------------------------------------------------------------ importance weights
OTHERS_DESCENDING = {name: 10.0 - i for i, name in enumerate(f for f in [*NUMERIC, *CATEGORICAL] if f != "normal")}


@pytest.mark.parametrize(
    ("weights", "policy", "drift", "reason"),
    [
        pytest.param(None, DriftPolicy(), True, "a feature drifted: normal", id="uniform-any-drifted-feature"),
        pytest.param(
            {**OTHERS_DESCENDING, "normal": 0.01}, DriftPolicy(), False, "no drift", id="negligible-weight-outside-top3"
        ),
        pytest.param(
            {name: w for name, w in OTHERS_DESCENDING.items() if name != "normal"},
            DriftPolicy(),
            False,
            "no drift",
            id="unweighted-feature-counts-as-zero",
        ),
        pytest.param(
            {**OTHERS_DESCENDING, "normal": 9.5}, DriftPolicy(), True, "a top-3 feature drifted: normal", id="in-top3"
        ),
        pytest.param(
            {**OTHERS_DESCENDING, "normal": 9.5},
            DriftPolicy(top_k=1),
            False,
            "no drift",
            id="outside-top1-and-score-below",
        ),
        pytest.param(
            {"normal": 3.0, "lognormal": 4.0, "region": 3.0},
            DriftPolicy(top_k=0),
            True,
            "drift score 0.30 >= 0.25",
            id="score-above-threshold-alone",
        ),
        pytest.param(
            {**OTHERS_DESCENDING, "normal": -5.0}, DriftPolicy(), False, "no drift", id="negative-weight-is-zero"
        ),
        pytest.param(dict.fromkeys(NUMERIC, 0.0), DriftPolicy(), True, "a feature drifted", id="all-zero-is-uniform"),
    ],
)
def test_importance_weights_decide_overall_drift(
    weights: dict[str, float] | None,
    policy: DriftPolicy,
    drift: bool,
    reason: str,
    reference_profiles: dict[int, DatasetProfileView],
    current_frames: dict[int, pl.DataFrame],
) -> None:
    n = 10_000
    shifted = _mean_shift("normal", 0.2 * NORMAL_SD)(current_frames[n], np.random.default_rng(0))
    report = _compare(reference_profiles[n], profile_frame(shifted), n, weights=weights, policy=policy)

    assert report.drifted_features == ["normal"]
    assert report.drift is drift
    assert any(r.startswith(reason) for r in report.reasons), report.reasons
    # The drifted feature is explained even when it does not decide the batch.
    assert any(r.startswith("normal: ks") for r in report.reasons)
    assert report.score == pytest.approx(report.weights["normal"])
    assert sum(report.weights.values()) == pytest.approx(1.0)
    assert min(report.weights.values()) >= 0.0
    if report.drift is False:
        assert report.score < policy.score_threshold
        assert "normal" not in report.top_features


def test_uniform_weights_list_every_feature_as_top(
    reference_profiles: dict[int, DatasetProfileView], current_profiles: dict[int, DatasetProfileView]
) -> None:
    report = _compare(reference_profiles[10_000], current_profiles[10_000], 10_000)

    assert report.weight_source == "uniform"
    assert report.top_features == sorted([*NUMERIC, *CATEGORICAL])
    assert report.reasons == ["no drift: score 0.00 < 0.25 and no top feature drifted"]


# ------------------------------------------------------------------------------ hysteresis
@pytest.mark.parametrize(
    ("recent", "k", "m", "met"),
    [
        ([True, False, True], 2, 3, True),
        ([True, False, False, True], 2, 2, False),
        ([True, True, False, False], 2, 2, False),
        ([False, False, True, True], 2, 2, True),
        ([True], 1, 1, True),
        ([False], 1, 1, False),
        ([], 1, 3, False),
        ([True], 2, 3, False),
        ([True, True], 2, 5, True),
        ([True] * 10 + [False] * 5, 1, 5, False),
    ],
)
def test_hysteresis_counts_drifted_batches_in_the_last_m(recent: list[bool], k: int, m: int, met: bool) -> None:
    assert hysteresis_met(recent, k, m) is met


@pytest.mark.parametrize(("k", "m"), [(3, 2), (0, 3), (-1, 1), (2, 0)])
def test_invalid_hysteresis_is_refused_naming_k_and_m(k: int, m: int) -> None:
    with pytest.raises(InputError, match=f"k={k}, m={m}"):
        hysteresis_met([True, True, True], k, m)


# ------------------------------------------------------------------------------ serialisation and policy
def test_report_survives_a_json_round_trip(changed_reports: Callable[[str, int], DriftReport]) -> None:
    report = changed_reports("normal_mean_plus_0.2sd", 10_000)

    document = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    restored = DriftReport.from_dict(document)

    assert restored == report
    assert restored.drifted_features == report.drifted_features == document["drifted_features"]
    assert restored.features["normal"].severity == report.features["normal"].severity
    assert restored.features["normal"].quantiles is not None
    assert restored.features["channel"].quantiles is None


@pytest.mark.parametrize(
    ("spec", "location"),
    [
        ({"numeric_statistc": "ks"}, "numeric_statistc"),
        ({"thresholds": {"kss": 0.1}}, "thresholds.kss"),
        ({"hysteresis": {"k": 1, "m": 1, "n": 2}}, "hysteresis.n"),
    ],
)
def test_policy_rejects_unknown_keys_naming_them(spec: dict[str, object], location: str) -> None:
    with pytest.raises(pydantic.ValidationError, match="Extra inputs are not permitted") as raised:
        DriftPolicy.model_validate(spec)
    assert location in str(raised.value)


@pytest.mark.parametrize(
    "spec",
    [
        {"hysteresis": {"k": 3, "m": 2}},
        {"hysteresis": {"k": 0, "m": 2}},
        {"thresholds": {"ks": 0.0}},
        {"thresholds": {"hellinger": 1.5}},
        {"noise_confidence": 0.5},
        {"numeric_statistic": "chi2"},
        {"bins": 1},
        {"top_k": -1},
    ],
)
def test_policy_rejects_out_of_range_values(spec: dict[str, object]) -> None:
    with pytest.raises(pydantic.ValidationError):
        DriftPolicy.model_validate(spec)


def test_hysteresis_with_k_above_m_is_refused_naming_both() -> None:
    with pytest.raises(pydantic.ValidationError, match="k=3 cannot exceed m=2"):
        Hysteresis(k=3, m=2)


# ------------------------------------------------------------------------------ kinds and absent columns
def test_kinds_are_inferred_from_the_profiles_when_not_given() -> None:
    rng = np.random.default_rng(11)
    n = 5_000
    frame = pl.DataFrame(
        {
            "amount": rng.lognormal(3.0, 1.0, n),
            "items": rng.poisson(4.0, n).astype(np.int64),
            "country": rng.choice(["de", "fr", "it"], n),
            "member": rng.random(n) < 0.3,
        }
    )
    shifted = frame.with_columns(pl.Series("member", rng.random(n) < 0.6))

    report = compare_profiles(profile_frame(frame), profile_frame(shifted))

    assert {name: f.kind for name, f in report.features.items()} == {
        "amount": "numeric",
        "items": "numeric",
        "country": "categorical",
        "member": "categorical",
    }
    assert {name: f.statistic for name, f in report.features.items()} == {
        "amount": "ks",
        "items": "ks",
        "country": "hellinger",
        "member": "hellinger",
    }
    assert report.drifted_features == ["member"]


def test_profiles_sharing_no_column_are_refused() -> None:
    left = profile_frame(pl.DataFrame({"a": [1.0, 2.0]}))
    right = profile_frame(pl.DataFrame({"b": [1.0, 2.0]}))

    with pytest.raises(InputError, match="share no columns"):
        compare_profiles(left, right)


def test_feature_absent_from_the_current_profile_drifts(
    reference_profiles: dict[int, DatasetProfileView], current_frames: dict[int, pl.DataFrame]
) -> None:
    current = profile_frame(current_frames[10_000].drop("lognormal"))

    report = _compare(reference_profiles[10_000], current, 10_000)

    assert report.drifted_features == ["lognormal"]
    assert report.features["lognormal"].reasons == ["lognormal: column absent from the current profile"]
