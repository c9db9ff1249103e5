"""`pipeline runs [DIR]`: the run folders under DIR with their model, target, budget, ratio and agreement."""

from __future__ import annotations

import json
from pathlib import Path

import click


@click.command()
@click.argument("directory", required=False, default="runs", type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="print the summaries as one JSON list.")
def runs(directory: str, as_json: bool) -> None:
    """List the run folders under DIRECTORY (default: runs) as a Markdown table."""
    from pipeline.run.compare import list_runs

    found = list_runs(Path(directory))
    if as_json:
        click.echo(json.dumps([r.to_dict() for r in found], indent=2))
        return
    if not found:
        click.echo(f"no run folders under {directory}")
        return
    click.echo("| run | model | target | budget | measured ratio | agreement | deployed | state |")
    click.echo("|---|---|---|---|---|---|---|---|")
    for r in found:
        ratio = "n/a" if r.measured_ratio is None else f"{r.measured_ratio:.3f}"
        agreement = "n/a" if r.agreement is None else f"{100 * r.agreement:.1f}%"
        click.echo(f"| `{r.path}` | {r.model} | {r.target} | {r.budget} | {ratio} | {agreement} | "
                   f"{r.deployed or 'n/a'} | {'finished' if r.finished else 'unfinished'} |")
