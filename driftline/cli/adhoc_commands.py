"""``driftline profile`` and ``driftline drift``: ad-hoc, on local files; no server needed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from driftline.cli.context import JsonOption, console, out, safe


def profile(
    file: Annotated[Path, typer.Argument(help="Parquet file to profile.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Where to write the whylogs profile (.bin).")],
    chunk_rows: Annotated[int, typer.Option(min=1000, help="Rows per streamed chunk (bounds memory).")] = 250_000,
) -> None:
    """Profile a parquet file with whylogs, streamed in chunks; no server needed.

    Example:  driftline profile data/reference.parquet -o reference.bin
    """
    import time as clock

    import pyarrow.parquet as pq
    from rich.progress import Progress

    from driftline.data import profiling

    schema = profiling.parquet_schema(file)
    total = pq.ParquetFile(str(file)).metadata.num_rows  # pyarrow opens the path itself: no glob
    profiler = profiling.Profiler(schema)
    started = clock.perf_counter()
    with Progress(console=console, transient=True) as progress:
        bar = progress.add_task(f"profiling {safe(file.name)}", total=total)
        for chunk in profiling.iter_parquet_chunks(file, chunk_rows):
            profiler.update(chunk)
            progress.update(bar, advance=chunk.height)
    data = profiling.serialize(profiler.view())
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_bytes(data)
    seconds = clock.perf_counter() - started
    console.print(
        f"{profiler.rows:,} rows x {len(profiler.kinds)} columns in {seconds:.2f} s "
        f"({profiler.rows / max(seconds, 1e-9):,.0f} rows/s) -> {safe(output)} ({len(data) / 1024:.0f} KiB)"
    )
    if profiler.skipped:
        console.print(f"[yellow]skipped[/yellow] (no sketch for these types): {safe(profiler.skipped)}")


def drift(
    reference: Annotated[Path, typer.Argument(help="Reference whylogs profile (.bin).")],
    current: Annotated[Path, typer.Argument(help="Current whylogs profile (.bin).")],
    json_output: JsonOption = False,
    png: Annotated[Path | None, typer.Option("--png", help="Also write a PNG of the report.")] = None,
    markdown: Annotated[Path | None, typer.Option("--markdown", help="Also write the markdown report.")] = None,
    spec_file: Annotated[
        Path | None, typer.Option("--spec", help="Use a spec's features and drift policy (default: all columns).")
    ] = None,
    exclude: Annotated[
        list[str] | None,
        typer.Option("--exclude", help="Column to leave out (repeatable), e.g. ids and timestamps, which always move."),
    ] = None,
) -> None:
    """Compare two profiles; no server needed. Exit 0 no drift, 1 drift.

    Without --spec every shared column is compared, with its kind inferred; leave out ids and
    timestamps with --exclude.

    Example:  driftline drift reference.bin today.bin --exclude id --exclude ts --png drift.png
    """
    from driftline.data import profiling
    from driftline.models.spec import load_spec
    from driftline.reports import renderings
    from driftline.statistics.drift import compare_profiles

    reference_view = profiling.read_profile(reference)
    current_view = profiling.read_profile(current)
    options: dict = {}
    if spec_file is not None:
        spec = load_spec(spec_file)
        options = {
            "numeric": spec.features.numeric,
            "categorical": spec.features.categorical,
            "policy": spec.drift,
        }
    if not options:
        from driftline.statistics.drift import infer_kind

        shared = sorted(set(reference_view.get_columns()) & set(current_view.get_columns()) - set(exclude or []))
        kinds = {name: infer_kind(reference_view, name) for name in shared}
        options = {
            "numeric": [name for name, kind in kinds.items() if kind == "numeric"],
            "categorical": [name for name, kind in kinds.items() if kind == "categorical"],
        }
    report = compare_profiles(reference_view, current_view, **options)
    if png is not None:
        png.write_bytes(renderings.drift_png(report))
        console.print(f"wrote {safe(png)}")
    if markdown is not None:
        markdown.write_text(renderings.drift_markdown(report))
        console.print(f"wrote {safe(markdown)}")
    if json_output:
        out.print_json(json.dumps(renderings.drift_json(report)))
    else:
        table = Table("feature", "statistic", "value", "threshold", "floor", "verdict")
        for row in renderings.drift_table_rows(report):
            colour = {"drift": "red", "possible": "yellow", "none": "green"}[row["verdict"]]
            table.add_row(
                safe(row["feature"]),
                row["statistic"],
                f"{row['value']:.4f}",
                f"{row['threshold']:.4f}",
                f"{row['floor']:.4f}",
                f"[{colour}]{row['verdict']}[/{colour}]",
            )
        out.print(table)
        for warning in report.warnings:
            out.print(f"[yellow]warning[/yellow]: {safe(warning)}")
        for reason in report.reasons:
            if reason not in report.warnings:  # warnings lead the reasons: shown once, as warnings
                out.print(f"- {safe(reason)}")
    if report.drift:
        raise typer.Exit(1)
