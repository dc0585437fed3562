"""The realism suite: the demo's ``default`` stream and every scenario of ``driftline.replay.synth.REALISM``, each
backtested with the minimal spec.

    .venv/bin/python -m benchmarks.realism [--scenarios a,b] [--seeds 0,1] [--out docs/realism]

Per scenario and seed: ``driftline.replay.backtest.run_backtest`` with the policies never, periodic:1, periodic:4,
drift and oracle (XGBoost defaults retrained every batch, served directly), label delay 1. Writes each
backtest (JSON, markdown, PNG) under ``--out/<scenario>/`` and prints (and writes ``--out/README.md``) the
table the README shows: mean metric per policy, the drift policy's retrains and promotions, and the share
of the never-to-oracle gap the drift policy captured.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

from driftline.replay import backtest, synth
from driftline.reports import backtest_report

POLICIES = "never,periodic:1,periodic:4,drift,oracle"


def run(name: str, seed: int, out: Path | None) -> dict:
    scenario = synth.get_scenario(name, seed=seed)
    spec = synth.default_spec(scenario, name.replace("_", "-"))
    frame = synth.history(scenario)
    started = time.perf_counter()
    result = backtest.run_backtest(frame, spec, batches=scenario.batches, policies=POLICIES, label_delay=1)
    if out is not None:
        backtest_report.write_outputs(result, out / name, title=f"{name} (seed {seed}), default spec")
    policies = result.policies
    return {
        "scenario": name,
        "seed": seed,
        "metric": result.metric,
        "batches": scenario.batches,
        "rows": scenario.rows,
        "seconds": round(time.perf_counter() - started, 1),
        "means": {p: policies[p].mean_metric for p in policies},
        "retrains": {p: policies[p].retrains for p in policies},
        "promotions": {p: policies[p].promotions for p in policies},
        "captured": backtest.captured_share(result),
    }


def _f(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def table(rows: list[dict]) -> str:
    lines = [
        "| scenario | metric | never | periodic:1 | periodic:4 | drift | oracle | captured | drift retrains "
        "(periodic:1) | drift promotions |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        m, r = row["means"], row["retrains"]
        captured = "n/a (no gap)" if row["captured"] is None else f"{100 * row['captured']:.0f}%"
        lines.append(
            f"| {row['scenario']} ({row['batches']} x {row['rows']:,}) | {row['metric']} | {_f(m['never'])} | "
            f"{_f(m['periodic:1'])} | {_f(m['periodic:4'])} | {_f(m['drift'])} | {_f(m['oracle'])} | {captured} | "
            f"{r['drift']} ({r['periodic:1']}) | {row['promotions']['drift']} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--scenarios", default=",".join(["default", *synth.REALISM]), help="comma-separated scenario names"
    )
    parser.add_argument("--seeds", default="0", help="comma-separated seeds")
    parser.add_argument("--out", default=None, help="directory for each backtest's outputs and the table")
    args = parser.parse_args()
    out = Path(args.out) if args.out else None
    rows = []
    for name in [n.strip() for n in args.scenarios.split(",") if n.strip()]:
        for seed in [int(s) for s in args.seeds.split(",")]:
            row = run(name, seed, out)
            rows.append(row)
            print(json.dumps(row, default=str), flush=True)
    print(table(rows))
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "README.md").write_text("# Realism suite (default spec)\n\n" + table(rows) + "\n")
        (out / "realism.json").write_text(json.dumps(rows, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
