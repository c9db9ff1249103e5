"""`pipeline blocks`: list the droppable blocks of a model."""

from __future__ import annotations

import json

import click

from pipeline.cli.options import model_option, resolution_option, weights_option


@click.command()
@model_option
@weights_option
@resolution_option
@click.option("--json", "as_json", is_flag=True, help="print JSON instead of a table.")
def blocks(model: str, weights: str | None, resolution: int | None, as_json: bool) -> None:
    """List the droppable blocks of a model."""
    from pipeline.models import load_model
    from pipeline.network.blocks import analyse

    loaded = load_model(model, weights, resolution)
    structure = analyse(loaded.module, loaded.resolution)
    if as_json:
        click.echo(json.dumps({"model": loaded.spec, "resolution": loaded.resolution,
                               "macs_total": structure.macs_total,
                               "candidates": [c.to_dict() for c in structure.candidates]}, indent=2))
        return
    click.echo(f"{loaded.spec} at {loaded.resolution}px: {len(structure.candidates)} droppable blocks, "
               f"{structure.macs_total / 1e6:.1f} M MACs in all")
    click.echo(f"{'block':<40} {'input (C,H,W)':<18} {'MMACs':>9} {'params':>10}")
    for c in structure.candidates:
        click.echo(f"{c.name:<40} {str(tuple(c.input_shape)):<18} {c.macs / 1e6:>9.2f} {c.params:>10,}")
