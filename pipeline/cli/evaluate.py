"""`pipeline evaluate`: accuracy on a labelled folder and a run's agreement with the original."""

from __future__ import annotations

import json
from pathlib import Path

import click

from pipeline.cli.options import model_option, resolution_option, trust_model_code_option, weights_option


@click.command()
@click.argument("run_dir", required=False, type=click.Path(file_okay=False))
@click.option("--data", required=True, type=click.Path(), help="image folder (ImageFolder layout for accuracy).")
@model_option
@weights_option
@resolution_option
@trust_model_code_option
@click.option("--json", "as_json", is_flag=True)
def evaluate(run_dir, data, model, weights, resolution, trust_model_code, as_json) -> None:
    """Accuracy on a labelled folder, and agreement of a run's compressed network with the original."""
    from pipeline.run.evaluate_folder import evaluate_folder

    result = evaluate_folder(Path(run_dir) if run_dir else None, Path(data), model, weights, resolution,
                             trust_model_code)
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    click.echo(f"{result['images']} images from {data} ({'labelled' if result['labelled'] else 'unlabelled'})")
    for name, r in result["networks"].items():
        parts = [f"{name:<12}"]
        if r.get("top1") is not None:
            parts.append(f"top-1 {100 * r['top1']:.1f}%  top-5 {100 * r['top5']:.1f}%")
        if r.get("top1_agreement") is not None:
            parts.append(f"agreement with original {100 * r['top1_agreement']:.1f}%")
        if r.get("file"):
            parts.append(f"({r['file']}, as it ships)")
        click.echo("  ".join(parts))
