"""`pipeline tables list|show|export|import`: the latency tables stored on this machine."""

from __future__ import annotations

from pathlib import Path

import click

from pipeline.cli.profile import print_table


@click.group()
def tables() -> None:
    """Latency tables stored on this machine."""


@tables.command("list")
def tables_list() -> None:
    from pipeline.core import paths
    from pipeline.run.tables import stored_tables

    found = stored_tables()
    if not found:
        click.echo(f"no latency tables in {paths.table_store_dir()}")
    for path, table in found:
        click.echo(f"{path.name}: {table.model}, {table.full.median_ms:.3f} ms, [{table.fingerprint.describe()}]")


@tables.command("export")
@click.argument("table_file", type=click.Path(dir_okay=False))
@click.argument("destination", type=click.Path(dir_okay=False))
def tables_export(table_file: str, destination: str) -> None:
    """Copy a stored table (a file name from `tables list`, or a path) to DESTINATION."""
    from pipeline.run.tables import export_table

    table = export_table(table_file, Path(destination))
    click.echo(f"exported {table.model} [{table.fingerprint.describe()}] to {destination}")


@tables.command("import")
@click.argument("table_file", type=click.Path(dir_okay=False))
def tables_import(table_file: str) -> None:
    """Add a table measured elsewhere to this machine's store (`run --latency-table` also takes the file)."""
    from pipeline.run.tables import import_table

    table, path = import_table(Path(table_file))
    click.echo(f"imported {table.model} [{table.fingerprint.describe()}] as {path}")


@tables.command("show")
@click.argument("path", type=click.Path(dir_okay=False))
def tables_show(path: str) -> None:
    from profilers import LatencyTable

    print_table(LatencyTable.read(Path(path)))


@tables.command("fit")
@click.argument("table_file", type=click.Path(dir_okay=False))
@click.argument("validation_file", type=click.Path(dir_okay=False))
@click.option("--output", "-o", type=click.Path(dir_okay=False), default=None,
              help="write the table with its fitted latency model here (default: TABLE_FILE itself).")
def tables_fit(table_file: str, validation_file: str, output: str | None) -> None:
    """Fit a table's latency model (interactions between dropped blocks) on its validation drops."""
    from pipeline.run.tables import fit_table_model

    table, path = fit_table_model(Path(table_file), Path(validation_file), Path(output) if output else None)
    click.echo(f"latency model: {table.latency_model.describe()}")
    click.echo(f"table: {path}")
