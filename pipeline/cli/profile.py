"""`pipeline profile`: build (or reuse) a model's latency table on this device, optionally validate it."""

from __future__ import annotations

import click

from pipeline.cli.options import (
    backend_option,
    batch_option,
    cuda_graphs_option,
    log,
    model_option,
    precision_option,
    progress_bar,
    resolution_option,
    target_option,
    threads_option,
    time_cap_option,
    weights_option,
)


@click.command()
@model_option
@weights_option
@resolution_option
@target_option
@backend_option
@batch_option
@threads_option
@precision_option
@cuda_graphs_option
@time_cap_option
@click.option("--reprofile", is_flag=True, help="measure again even if a table for this device exists.")
@click.option("--preset", type=click.Choice(["fast", "paper"]), default="fast", show_default=True,
              help="measurement effort (rounds, time cap).")
@click.option("--validate", type=click.IntRange(0, 1000), default=0, show_default=True,
              help="also measure K random multi-block drops end to end against the table's prediction.")
def profile(**options) -> None:
    """Build (or reuse) the latency table of a model on this device."""
    from pipeline.run.tables import ProfileRequest, profile_table

    result = profile_table(ProfileRequest(**options), progress_bar, log)
    print_table(result.choice.table)
    if result.validation is not None:
        print_validation(result.validation)
        click.echo(f"validation: {result.validation_path}")
    click.echo(f"table: {result.choice.path} ({result.choice.source})")


def print_table(table) -> None:
    click.echo(f"{table.model} on [{table.fingerprint.describe()}]")
    click.echo(f"full network: {table.full.median_ms:.3f} ms (IQR {table.full.spread_ms:.3f} ms, {table.full.rounds} rounds)")
    click.echo(f"latency model: {table.latency_model.describe()}")
    click.echo(f"{'block':<40} {'saved (ms)':>11} {'saved %':>8} {'IQR (ms)':>9}")
    for block, s in table.savings.items():
        click.echo(f"{block:<40} {s.median_ms:>11.3f} {100 * s.median_ms / table.full.median_ms:>7.1f}% {s.spread_ms:>9.3f}")


def print_validation(validation: dict) -> None:
    click.echo(f"{'validation: dropped blocks':<60} {'predicted':>9} {'measured':>9} {'error':>7}")
    for check in validation["checks"]:
        click.echo(f"{', '.join(check['dropped'])[:60]:<60} {check['predicted_ratio']:>9.3f} "
                   f"{check['measured_ratio']:>9.3f} {100 * check['relative_error']:>6.1f}%")
    click.echo(f"median |error| {100 * validation['median_abs_relative_error']:.1f}%, worst "
               f"{100 * validation['worst_abs_relative_error']:.1f}%")
