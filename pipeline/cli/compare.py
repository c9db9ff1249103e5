"""`pipeline compare RUN_DIR...`: finished runs side by side, a table and a Pareto plot (Markdown and HTML)."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path())
@click.option("--out", type=click.Path(file_okay=False), default="comparison", show_default=True,
              help="folder for comparison.md, comparison.html and pareto.png.")
def compare(run_dirs: tuple[str, ...], out: str) -> None:
    """Compare finished runs: model, target, precision, budget, latency ratio, agreement, Pareto front."""
    from pipeline.run.compare import compare_runs

    comparison = compare_runs([Path(d) for d in run_dirs], Path(out))
    click.echo(comparison.markdown.read_text(), nl=False)
    if comparison.plot is None:
        click.echo("note: the Pareto plot was skipped: matplotlib is not installed (pip install '.[plots]')", err=True)
    click.echo(f"comparison: {comparison.markdown} and {comparison.html}")
