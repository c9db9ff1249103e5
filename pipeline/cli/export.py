"""`pipeline export RUN_DIR --format ...`: more artefacts of a finished run, each checked and timed."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from pipeline.cli.options import EXPORT_FORMATS, export_options, log, progress_bar, trust_model_code_option

if TYPE_CHECKING:
    from pipeline.run.records import ArtefactLatency


@click.command("export")
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--format", "formats", multiple=True, required=True, type=click.Choice(EXPORT_FORMATS),
              help="artefact format (repeatable).")
@export_options
@trust_model_code_option
def export_command(run_dir: str, formats: tuple[str, ...], dynamic_batch: bool, max_batch: int,
                   tensorrt_precision: str, trust_model_code: bool) -> None:
    """Write a finished run's compressed network in more formats, each checked against PyTorch and timed."""
    from pipeline.run.export_step import export_existing_run

    records = export_existing_run(Path(run_dir), list(formats), progress_bar, log, trust_model_code, dynamic_batch=dynamic_batch,
                                  max_batch=max_batch, tensorrt_precision=tensorrt_precision)
    for fmt, art in records.items():
        check = art.check
        click.echo(f"{fmt:<17} {Path(run_dir) / art.path}  max abs error {check['max_abs_error']:.2e}, "
                   f"top-1 agreement {100 * check['top1_agreement_with_pytorch']:.1f}%"
                   + (f"  ({check['note']})" if "note" in check else ""))
        click.echo(f"{'':<17} latency: {describe_artefact_latency(art.latency)}")


def describe_artefact_latency(latency: ArtefactLatency | None) -> str:
    if latency is None or not latency.measured:
        return f"not measured ({latency.reason if latency else 'no record'})"
    verdict = "meets" if latency.meets_budget else "MISSES"
    return (f"{latency.artefact_ms:.3f} ms vs original {latency.original_ms:.3f} ms in {latency.backend} "
            f"({latency.precision}): ratio {latency.ratio:.3f}, {verdict} the target {latency.target_ratio:.3f}")
