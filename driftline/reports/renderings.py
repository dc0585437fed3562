"""Renderings of result objects: JSON (the CLI contract), markdown tables and PNG figures."""

from __future__ import annotations

import io
import json
from typing import TYPE_CHECKING, Any

from driftline.statistics.drift import DriftReport

if TYPE_CHECKING:
    from driftline.loop.drift_checks import DriftCheck
    from driftline.loop.retraining import Candidate
    from driftline.statistics.performance import PerformanceState, PerformanceVerdict
    from driftline.statistics.shadow import ShadowState, ShadowVerdict

_VERDICT_MARK = {"none": "ok", "possible": "possible", "drift": "**DRIFT**"}


def drift_json(report: DriftReport) -> dict[str, Any]:
    """The `driftline drift --json` document: the contract's keys first, then every detail."""
    document = report.to_dict()
    document["features"] = {
        name: {
            "name": name,
            "statistic": feature.statistic,
            "value": feature.value,
            "threshold": feature.threshold,
            "floor": feature.floor,
            "verdict": feature.verdict,
            "kind": feature.kind,
            "reasons": feature.reasons,
            "statistics": feature.statistics,
            "n_reference": feature.n_reference,
            "n_current": feature.n_current,
            "quantiles": feature.quantiles,
        }
        for name, feature in report.features.items()
    }
    return document


def drift_json_bytes(report: DriftReport) -> bytes:
    return json.dumps(drift_json(report), indent=2, sort_keys=False).encode()


def drift_markdown(report: DriftReport, title: str = "Drift report") -> str:
    """A markdown summary and one row per feature, most severe first."""
    headline = "drift detected" if report.drift else "no drift"
    lines = [
        f"# {title}",
        "",
        f"**{headline}**: score {report.score:.2f} (threshold {report.score_threshold:.2f}, "
        f"{report.weight_source} weights); reference {report.n_reference:,} rows, current {report.n_current:,} rows.",
        "",
        *[f"- {reason}" for reason in report.reasons],
        "",
        "| feature | kind | statistic | value | threshold | noise floor | missing ref -> cur | weight | verdict |",
        "|---|---|---|---:|---:|---:|---|---:|---|",
    ]
    for feature in sorted(report.features.values(), key=lambda f: (-f.severity, f.name)):
        missing = (
            f"{feature.statistics.get('missing_reference', 0.0):.1%} -> "
            f"{feature.statistics.get('missing_current', 0.0):.1%}"
        )
        name = feature.name.replace("|", "\\|")
        lines.append(
            f"| {name} | {feature.kind} | {feature.statistic} | {feature.value:.4f} | {feature.threshold:.4f} | "
            f"{feature.floor:.4f} | {missing} | {report.weights.get(feature.name, 0.0):.3f} | "
            f"{_VERDICT_MARK[feature.verdict]} |"
        )
    return "\n".join(lines) + "\n"


def drift_table_rows(report: DriftReport) -> list[dict[str, Any]]:
    """Rows for a table artifact."""
    return [
        {
            "feature": feature.name,
            "statistic": feature.statistic,
            "value": round(feature.value, 5),
            "threshold": round(feature.threshold, 5),
            "floor": round(feature.floor, 5),
            "verdict": feature.verdict,
        }
        for feature in sorted(report.features.values(), key=lambda f: (-f.severity, f.name))
    ]


def drift_png(report: DriftReport, max_curves: int = 3) -> bytes:
    """PNG: each feature's value against its bound, and quantile curves of the most drifted numeric features."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    features = sorted(report.features.values(), key=lambda f: (-f.severity, f.name))
    curves = [f for f in features if f.quantiles and f.verdict != "none"][:max_curves]
    if not curves:
        curves = [f for f in features if f.quantiles][:1]
    columns = 1 + len(curves)
    figure, axes = plt.subplots(1, columns, figsize=(5.5 * columns, max(3.0, 0.35 * len(features) + 1.5)))
    axes = list(axes) if columns > 1 else [axes]
    colours = {"none": "#4c9a2a", "possible": "#e0a100", "drift": "#c0392b"}
    names = [f.name for f in features][::-1]
    severities = [min(f.severity, 5.0) for f in features][::-1]
    axes[0].barh(names, severities, color=[colours[f.verdict] for f in features][::-1])
    axes[0].axvline(1.0, color="black", linestyle="--", linewidth=1)
    axes[0].set_xlabel("value / max(threshold, noise floor)  (>= 1: drift)")
    axes[0].set_title(f"{'DRIFT' if report.drift else 'no drift'}: score {report.score:.2f}")
    for axis, feature in zip(axes[1:], curves, strict=False):
        quantiles = feature.quantiles or {}
        axis.plot(quantiles["probabilities"], quantiles["reference"], label="reference", color="#34495e")
        axis.plot(quantiles["probabilities"], quantiles["current"], label="current", color="#c0392b")
        axis.set_xlabel("quantile")
        axis.set_title(f"{feature.name}: {feature.statistic} {feature.value:.3f} ({feature.verdict})")
        axis.legend()
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90)
    plt.close(figure)
    return buffer.getvalue()


def bounds_png(history: list[dict], title: str) -> bytes:
    """PNG of a sequential test's running estimate and anytime-valid bounds over labelled rows."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    points = [p for p in history if p.get("lower") is not None and p.get("upper") is not None]
    figure, axis = plt.subplots(figsize=(7, 3.5))
    if points:
        rows = [p["n"] for p in points]
        axis.fill_between(
            rows,
            [p["lower"] for p in points],
            [p["upper"] for p in points],
            alpha=0.25,
            color="#2c7fb8",
            label="anytime-valid bounds",
        )
        axis.plot(rows, [p["estimate"] for p in points], color="#2c7fb8", marker="o", label="estimate")
    axis.axhline(0.0, color="black", linewidth=1, linestyle="--")
    axis.set_xlabel("paired labelled rows")
    axis.set_ylabel("loss(candidate) - loss(champion)")
    axis.set_title(title, fontsize=10)
    axis.legend(loc="upper right")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90)
    plt.close(figure)
    return buffer.getvalue()


def history_png(history: dict[str, Any]) -> bytes:
    """PNG of a model over its batches (a ``ModelHistory.to_dict()``): drift scores, served metric with the
    performance monitor's bounds, p99 latency; switchovers as vertical markers."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    batches = history["batches"]
    xs = list(range(len(batches)))
    labels = [b["batch_id"] for b in batches]
    figure, axes = plt.subplots(3, 1, figsize=(10, 7.5), sharex=True)
    drift_axis, metric_axis, latency_axis = axes

    def series(key: str, source: list[dict]) -> list[float]:
        return [b.get(key) if b.get(key) is not None else float("nan") for b in source]

    drift_axis.plot(xs, series("input_score", batches), marker="o", color="#34495e", label="input drift score")
    drift_axis.plot(xs, series("prediction_score", batches), marker="s", color="#8e44ad", label="prediction drift")
    drifted = [x for x, b in zip(xs, batches, strict=True) if b.get("input_drift") or b.get("prediction_drift")]
    if drifted:
        drift_axis.scatter(drifted, [0] * len(drifted), marker="^", color="#c0392b", label="drift declared", zorder=3)
    drift_axis.set_ylabel("drift score")
    drift_axis.legend(loc="upper left", fontsize=8)

    metric_axis.plot(xs, series("metric", batches), marker="o", color="#2c7fb8", label=f"served {history['metric']}")
    metric_axis.set_ylabel(history["metric"])
    performance = [(x, b["performance"]) for x, b in zip(xs, batches, strict=True) if b.get("performance")]
    if performance:
        twin = metric_axis.twinx()
        px = [x for x, _ in performance]
        twin.fill_between(
            px,
            [p.get("lower") or float("nan") for _, p in performance],
            [p.get("upper") or float("nan") for _, p in performance],
            alpha=0.2,
            color="#e67e22",
            label="loss increase vs holdout (bounds)",
        )
        twin.plot(px, [p.get("estimate") or float("nan") for _, p in performance], color="#e67e22", linewidth=1)
        twin.axhline(0.0, color="#e67e22", linewidth=0.8, linestyle=":")
        twin.set_ylabel("loss increase", color="#e67e22")
        twin.legend(loc="lower right", fontsize=8)
    metric_axis.legend(loc="lower left", fontsize=8)

    latency = [b.get("latency_ms") or {} for b in batches]
    for name, colour in (("p50", "#95a5a6"), ("p95", "#7f8c8d"), ("p99", "#2c3e50")):
        latency_axis.plot(xs, series(name, latency), marker=".", color=colour, label=f"{name} ms")
    latency_axis.set_ylabel("single-row latency (ms)")
    latency_axis.legend(loc="upper left", fontsize=8)

    colours = {"promotion": "#27ae60", "rollback": "#c0392b", "bootstrap": "#7f8c8d"}
    for switch in history["switches"]:
        if switch.get("batch_id") not in labels:
            continue
        x = labels.index(switch["batch_id"]) - 0.5
        for axis in axes:
            axis.axvline(x, color=colours.get(switch["kind"], "black"), linestyle="--", linewidth=1)
        drift_axis.annotate(
            f"{switch['kind']} {switch['version'][-4:]}",
            (x, 1.0),
            xycoords=("data", "axes fraction"),
            fontsize=7,
            rotation=90,
            va="top",
            ha="right",
        )
    latency_axis.set_xticks(xs)
    latency_axis.set_xticklabels(labels, rotation=90, fontsize=7)
    figure.suptitle(f"{history['model']}: drift, served {history['metric']}, latency, switchovers", fontsize=11)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90)
    plt.close(figure)
    return buffer.getvalue()


# ------------------------------------------------------------------------- the loop's results in the Prefect UI


def drift_check_markdown(check: DriftCheck, title: str) -> str:
    """A batch's drift report as markdown, with the reference and report keys and the check's own reasons."""
    markdown = drift_markdown(check.report, title=title)
    markdown += f"\nReference: `{check.reference.key}`; report: `{check.report_key}`.\n"
    if check.reasons:
        markdown += "\n" + "\n".join(f"- {reason}" for reason in check.reasons if reason not in check.report.reasons)
    return markdown


def gates_markdown(candidate: Candidate, title: str) -> str:
    """A candidate's decision, its reasons and the gate report's table."""
    markdown = f"# {title}\n\n" + "\n".join(f"- {r}" for r in candidate.reasons) + "\n\n"
    return markdown + candidate.gate_report.to_markdown()


def shadow_markdown(verdict: ShadowVerdict, title: str) -> str:
    """The shadow test's running estimate, its anytime-valid interval and the verdict's reasons."""
    return (
        f"# {title}\n\n{verdict.n:,} paired rows; mean loss difference (candidate - champion) "
        f"{verdict.estimate:.5f}, anytime-valid interval [{verdict.lower:.5f}, {verdict.upper:.5f}]\n\n"
        + "\n".join(f"- {reason}" for reason in verdict.reasons)
    )


def shadow_table_rows(state: ShadowState) -> list[dict[str, Any]]:
    """One row per folded batch: the shadow test's n, estimate and bounds after it."""
    return [{k: point.get(k) for k in ("batch_id", "n", "estimate", "lower", "upper")} for point in state.history]


def performance_markdown(state: PerformanceState, verdict: PerformanceVerdict, title: str) -> str:
    """The champion's performance monitor: rows seen, its holdout baseline, the verdict and any announcement."""
    markdown = (
        f"# {title}\n\n{state.n:,} labelled rows over {len(state.batch_ids)} batch(es); holdout baseline "
        f"loss {state.baseline_loss:.5f} ({state.baseline_rows:,} rows), tolerance {verdict.tolerance:.5f}\n\n"
        + "\n".join(f"- {reason}" for reason in verdict.reasons)
    )
    if state.alerted:
        markdown += f"\n\nAnnounced degraded after batch {state.alerted_batch_id} at {state.alerted_at}.\n"
    return markdown


def performance_table_rows(state: PerformanceState) -> list[dict[str, Any]]:
    """One row per folded batch of the performance monitor."""
    columns = ("batch_id", "rows", "loss", "n", "estimate", "lower", "upper", "tolerance", "verdict", "since")
    return [{k: point.get(k) for k in columns} for point in state.history]
