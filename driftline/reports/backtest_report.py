"""The backtest's outputs: plain sentences (did drift-triggered retraining pay?), markdown, a PNG and the
files ``driftline backtest`` writes (``backtest.json``, ``backtest.md``, ``backtest.png``)."""

from __future__ import annotations

import io
import json
import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from driftline.replay.backtest import BacktestResult, captured_share


def _number(value: float, digits: int = 4) -> str:
    return f"{value:.{digits}f}" if math.isfinite(value) else "n/a"


def _change(gain: float) -> str:
    if not math.isfinite(gain):
        return "not comparable"
    if abs(gain) < 5e-5:
        return "no different"
    return f"{abs(gain):.4f} {'better' if gain > 0 else 'worse'}"


def summary_lines(result: BacktestResult) -> list[str]:
    """Plain sentences: did drift-triggered retraining pay, and at what cost (compared with never/periodic)."""
    policies = result.policies
    better = 1.0 if result.higher_is_better else -1.0
    lines = []
    drift = policies.get("drift")
    never = policies.get("never")
    periodic = [p for p in policies.values() if p.policy.kind == "periodic"]
    if drift is not None and never is not None:
        gain = better * (drift.mean_metric - never.mean_metric)
        verdict = "paid" if gain > 0 else "did not pay"
        lines.append(
            f"Drift-triggered retraining {verdict}: mean {result.metric} {_number(drift.mean_metric)} vs "
            f"{_number(never.mean_metric)} without retraining ({_change(gain)}), for {drift.retrains} retrain(s), "
            f"{drift.promotions} promotion(s) and {drift.train_seconds:.1f} s of training and gates."
        )
    promoted = [o.batch + 1 for o in drift.per_batch if o.promoted] if drift is not None else []
    if drift is not None and never is not None and promoted and promoted[0] < result.batches:
        since = promoted[0]
        gain = better * (drift.mean_metric_from(since) - never.mean_metric_from(since))
        lines.append(
            f"From batch {since} on, when its first drift-triggered promotion served: mean {result.metric} "
            f"{_number(drift.mean_metric_from(since))} vs {_number(never.mean_metric_from(since))} ({_change(gain)})."
        )
    oracle = policies.get("oracle")
    share = captured_share(result)
    if share is not None and oracle is not None and never is not None and drift is not None:
        lines.append(
            f"Against the oracle (XGBoost defaults retrained every batch, served without gates: mean "
            f"{_number(oracle.mean_metric)}): the drift policy captured {100 * share:.0f}% of the gap between never "
            f"and the oracle, with {drift.retrains} retrain(s) to its {oracle.retrains}."
        )
    for other in periodic:
        if drift is None:
            break
        gap = better * (drift.mean_metric - other.mean_metric)
        lines.append(
            f"Against {other.policy.name}: {result.metric} {_change(gap)}, with {drift.retrains} retrain(s) instead "
            f"of {other.retrains} ({drift.train_seconds:.1f} s vs {other.train_seconds:.1f} s of training and gates)."
        )
    if not lines:
        best = max(policies.values(), key=lambda p: better * p.mean_metric if math.isfinite(p.mean_metric) else -1e9)
        lines.append(f"Best mean {result.metric}: {best.policy.name} ({_number(best.mean_metric)}).")
    return lines


def to_markdown(result: BacktestResult) -> str:
    """The backtest as markdown: settings, a summary table, whether drift retraining paid, a table per policy."""
    lines = [
        f"# Backtest of {result.model!r}",
        "",
        f"{result.rows:,} rows in {result.batches} batches; labels usable {result.label_delay} batch(es) after "
        f"arrival; promotion by {'shadow test' if result.promotion == 'shadow' else 'gates alone'}; "
        f"metric {result.metric} ({'higher' if result.higher_is_better else 'lower'} is better); "
        f"{result.seconds:.1f} s.",
        "",
        *[f"- {note}" for note in result.notes],
        "",
        f"| policy | mean {result.metric} | retrains | promotions | training + gates (s) | rows trained |",
        "|---|---|---|---|---|---|",
    ]
    for name, policy in result.policies.items():
        lines.append(
            f"| {name} | {_number(policy.mean_metric)} | {policy.retrains} | {policy.promotions} | "
            f"{policy.train_seconds:.1f} | {policy.rows_trained:,} |"
        )
    lines += ["", "## Did drift-triggered retraining pay?", "", *summary_lines(result), ""]
    for name, policy in result.policies.items():
        lines += [
            f"## {name}",
            "",
            f"| batch | start | {result.metric} | version | retrained | promoted | drift | degraded | events |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for outcome in policy.per_batch:
            notes = "; ".join(event.replace("|", "/") for event in outcome.events)
            lines.append(
                f"| {outcome.batch_id} | {outcome.start} | {_number(outcome.metric)} | {outcome.version} | "
                f"{'yes' if outcome.retrained else ''} | {'yes' if outcome.promoted else ''} | "
                f"{'yes' if outcome.drift else ''} | {'yes' if outcome.degraded else ''} | {notes} |"
            )
        lines.append("")
    return "\n".join(lines)


def to_png(result: BacktestResult, title: str | None = None, marks: Mapping[str, int] | None = None) -> bytes:
    """PNG: the metric of the model in service per batch and policy (retrains and promotions marked), and the
    cumulative retrains per policy below it.

    Args:
        result: the backtest.
        title: the figure's title (default names the model).
        marks: labelled vertical lines at batch indices, e.g. a known drift onset ``{"concept drift": 14}``.
    """
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    figure, (top, bottom) = plt.subplots(2, 1, figsize=(9, 5.8), sharex=True, gridspec_kw={"height_ratios": [3, 1.3]})
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for label, batch in (marks or {}).items():
        for axis in (top, bottom):
            axis.axvline(batch - 0.5, color="grey", linestyle="--", linewidth=1)
        top.annotate(label, (batch - 0.4, 1.0), xycoords=("data", "axes fraction"), va="top", fontsize=8)
    for number, (name, policy) in enumerate(result.policies.items()):
        colour = colours[number % len(colours)]
        x = [o.batch for o in policy.per_batch]
        y = [o.metric for o in policy.per_batch]
        top.plot(x, y, color=colour, marker=".", linewidth=1.6, label=f"{name} (mean {_number(policy.mean_metric, 3)})")
        retrained = [(o.batch, o.metric) for o in policy.per_batch if o.retrained]
        if retrained:
            top.scatter(*zip(*retrained, strict=True), marker="^", s=42, color=colour, zorder=3)
        for outcome in policy.per_batch:
            if outcome.promoted:
                top.axvline(outcome.batch + 0.5, color=colour, alpha=0.25, linewidth=3)
        bottom.step(x, np.cumsum([o.retrained for o in policy.per_batch]), where="post", color=colour, label=name)
    top.set_ylabel(f"{result.metric} of the model in service")
    top.set_title(title or f"Backtest of {result.model}", fontsize=10)
    top.legend(loc="lower left", fontsize=8, title="▲ retrain   ▌ promotion", title_fontsize=8)
    top.grid(alpha=0.3)
    bottom.set_ylabel("retrains so far")
    bottom.set_xlabel("batch")
    bottom.xaxis.set_major_locator(MaxNLocator(integer=True))
    bottom.grid(alpha=0.3)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    return buffer.getvalue()


def write_outputs(
    result: BacktestResult, directory: str | Path, title: str | None = None, marks: Mapping[str, int] | None = None
) -> dict[str, Path]:
    """Write ``backtest.json``, ``backtest.md`` and ``backtest.png`` (see ``to_png``) into ``directory``."""
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    paths = {"json": root / "backtest.json", "markdown": root / "backtest.md", "png": root / "backtest.png"}
    paths["json"].write_text(json.dumps(result.to_dict(), indent=2) + "\n")
    paths["markdown"].write_text(to_markdown(result))
    paths["png"].write_bytes(to_png(result, title, marks))
    return paths
