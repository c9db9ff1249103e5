"""`pipeline run`: the whole compression of a model under a latency budget."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

from pipeline.cli.options import (
    EXPORT_FORMATS,
    backend_option,
    batch_option,
    cuda_graphs_option,
    export_options,
    log,
    model_option,
    progress_bar,
    resolution_option,
    run_precision_option,
    target_option,
    threads_option,
    time_cap_option,
    weights_option,
)

from pipeline.latency.selection import SELECTORS
from pipeline.recovery.confident_views import VIEW_SOURCES
from pipeline.recovery.mixing import MIXING
from pipeline.recovery.recover import METHODS
from pipeline.run.config import DEPTH_PLANS, REFERENCE_BACKENDS
from pipeline.run.presets import PRESETS
from pipeline.run.quantization_aware import SETTING_VALUES

if TYPE_CHECKING:
    from pipeline.run.summary import DeployedSummary, RunRecords


@click.command()
@model_option
@weights_option
@click.option("--data", type=click.Path(), default=None,
              help="folder of tiny-set images (default: the embedded set from pip-packaged images).")
@click.option("--val", "val_data", type=click.Path(), default=None,
              help="folder of held-out images for the report (labelled in ImageFolder layout or not).")
@target_option
@backend_option
@click.option("--latency-budget", "budget", default="0.78", show_default=True,
              help="fraction of the original latency to keep (0.78, 78%) or a time (12ms).")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="run folder (default: runs/<model>-<target>-<budget>-<settings hash>).")
@click.option("--preset", type=click.Choice(list(PRESETS)), default="fast", show_default=True)
@click.option("--selector", type=click.Choice(SELECTORS), default="greedy", show_default=True)
@click.option("--recovery", "--recovery-method", "recovery_method", type=click.Choice(METHODS),
              default=None, help="one recovery method, on the preset's fixed steps (default: the fast preset tries "
                                 "every recipe within --recovery-time and the report images choose).")
@click.option("--recovery-time", type=click.FloatRange(min=0, min_open=True), default=None, metavar="SECONDS",
              help="time the recovery recipes share (default: 100 s with the fast preset).")
@click.option("--scoring-steps", type=click.IntRange(0, 10**6), default=None, help="adaptor-fit steps per candidate.")
@click.option("--recovery-steps", type=click.IntRange(0, 10**6), default=None, help="recovery steps.")
@click.option("--recovery-points", "recovery_point_weight", type=click.FloatRange(0), default=None,
              help="weight of also mimicking each dropped block's output (multi-point; default: the preset's, 0).")
@click.option("--recovery-mixing", type=click.Choice(MIXING), default=None,
              help="mix half of each recovery batch (default: the preset's, none).")
@click.option("--recovery-synthetic", type=click.IntRange(0, 100000), default=None, metavar="N",
              help="make N tiny-set views match the original's BatchNorm statistics and draw half of each "
                   "recovery batch from them (default: the preset's, 0; costly on a CPU).")
@click.option("--recovery-blends", default=None, metavar="W[,W...]|none",
              help="blends of the recovered and unrecovered weights also offered for deployment (weights of the "
                   "recovered change, between 0 and 1, e.g. 0.5); the report images choose among the unrecovered "
                   "network, these blends and the recovered one (default: none).")
@click.option("--recovery-views", type=click.Choice(VIEW_SOURCES), default=None,
              help="tiny-set views recovery mimics on: fresh random crops, or the quarter of 1024 random crops the "
                   "original classifies most confidently (default: the preset's, random).")
@click.option("--recovery-quantization-aware", type=click.Choice(SETTING_VALUES), default="on", show_default=True,
              help="when an INT8 network may ship, also recover it with the INT8 scheme's rounding in the loop (fake "
                   "quantization; one more trial within --recovery-time); the report images choose.")
@click.option("--reference-backend", type=click.Choice(list(REFERENCE_BACKENDS)), default=None,
              help="--backend auto: the runtime whose FP32 original the budget is relative to (default: onnxruntime).")
@click.option("--depth-plans", type=click.Choice(DEPTH_PLANS), default="auto", show_default=True,
              help="auto: skip scoring, depth plans and recovery when a precision alone meets the budget clearly and "
                   "changes no prediction on the selection split (dropping blocks could at best tie it); always: "
                   "plan and recover with dropped blocks anyway.")
@click.option("--min-resolution", type=click.IntRange(16, 4096), default=None, metavar="PX",
              help="also plan with smaller input images, down to PX pixels, with the model's own preprocessing at "
                   "each size (off by default: it changes what the deployment must feed the network).")
@click.option("--latency-margin", type=click.FloatRange(0, 0.5), default=None, metavar="FRACTION",
              help="how far under the budget a plan must measure to count as meeting it clearly, as a fraction of the "
                   "original's latency (default: the measurement's own precision, 0.01); raise it (e.g. 0.05) where "
                   "latencies drift between sessions.")
@click.option("--batch-size", type=click.IntRange(1, 4096), default=None, help="training batch size.")
@click.option("--train-device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
              help="where scoring and recovery train (auto: the GPU when --target gpu and one is present, else the CPU).")
@click.option("--latency-table", type=click.Path(), default=None,
              help="use this latency table instead of profiling here: a table file, or a run folder (or its "
                   "latency_table.json) whose table to reuse.")
@batch_option
@threads_option
@run_precision_option
@cuda_graphs_option
@time_cap_option
@resolution_option
@click.option("--mean", default=None, metavar="M[,M,M]",
              help="per-channel mean the model's inputs are normalised with (default: the model's own, e.g. ImageNet's).")
@click.option("--std", default=None, metavar="S[,S,S]", help="per-channel standard deviation (default: the model's own).")
@click.option("--crop-fraction", type=float, default=None,
              help="evaluation centre crop: resize to resolution / fraction, crop the resolution (default: the model's "
                   "own, 0.875 for torchvision).")
@click.option("--interpolation", type=click.Choice(["bilinear", "bicubic", "nearest"]), default=None,
              help="resize filter (default: the model's own, bilinear for torchvision).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--allow-random-weights", is_flag=True, help="accept a model without trained weights (testing only).")
@click.option("--reprofile", is_flag=True, help="measure the latency table again.")
@click.option("--overwrite", is_flag=True, help="replace an existing run folder with other settings or a finished run.")
@click.option("--export", "export", multiple=True, default=("onnx",), show_default=True,
              type=click.Choice(EXPORT_FORMATS), help="artefacts to write at the end (repeatable).")
@export_options
@click.option("--json", "as_json", is_flag=True,
              help="print the final summary as one JSON object on stdout (the log stays on stderr).")
def run(as_json: bool = False, **kwargs) -> None:
    """Compress a model under a latency budget: profile, score, select, recover, evaluate, export."""
    from pipeline.core import distributed
    from pipeline.run.config import RunConfig
    from pipeline.run.runner import run as run_pipeline

    kwargs["export"] = tuple(kwargs["export"])
    result = run_pipeline(RunConfig(**kwargs), progress_bar, log)
    world = distributed.current()
    distributed.shutdown()
    if not world.is_main or result.records is None:  # under torchrun rank 0 prints the summary
        return
    if as_json:
        click.echo(json.dumps(json_summary(result.records, result.path)))
        return
    for line in summary_lines(result.records, result.path):
        click.echo(line)


def summary_lines(records: RunRecords, run_dir: Path) -> list[str]:
    """What `pipeline run` prints last: what was planned and deployed, how it agreed, what ships and where."""
    lat, sel, ev = records.latency, records.selection, records.evaluation
    report = ev.report
    lines = []
    if sel.depth_planned:
        lines.append(f"dropped {len(sel.dropped)} blocks: {', '.join(sel.dropped)}")
        measured = "n/a" if lat.measured_ratio is None else f"{lat.measured_ratio:.3f}"
        lines.append(f"latency ratio: predicted {lat.predicted_ratio:.3f}, measured {measured}, "
                     f"target {lat.target_ratio:.3f}")
        others = [n for n in ev.candidates if n != "unrecovered"]
        lines.append(f"top-1 agreement with the original on {report.images} held-out images: "
                     f"{100 * report.top1('unrecovered'):.1f}% unrecovered -> "
                     + ", ".join(f"{100 * report.top1(n):.1f}% {n}" for n in others))
    else:  # nothing was recovered: only the original in each offered precision competed
        lines.append(f"no plan drops blocks: a precision of the original meets the target {lat.target_ratio:.3f}")
        offered = [n for n in ev.candidates if n not in ("unrecovered", "recovered")] or ["unrecovered"]
        lines.append(f"top-1 agreement with the original on {report.images} held-out images: "
                     + ", ".join(f"{100 * report.top1(n):.1f}% {n}" for n in offered))
    lines.append(f"verdict: {ev.verdict}")
    if ev.report_source != "validation folder":
        lines.append("note: the held-out images are part of the tiny set; pass --val with a few deployment images "
                     "to judge recovery on them (see report.md)")
    if sel.why:
        lines.append(f"plans: {sel.why}")
    shipped = records.exports.shipped
    lines.append("deployed network: " + deployed_line(records.deployed, records.deployed_name,
                                                      timed_file=shipped is not None))
    if shipped is not None:
        from pipeline.run.report import shipped_verdict

        lines.append(f"shipped: {run_dir / shipped.path} ({shipped.format}), {shipped_verdict(shipped.latency)}")
    lines.append(f"report: {run_dir / 'report.md'}")
    return lines


def deployed_line(deployed: DeployedSummary, name: str, timed_file: bool) -> str:
    """The deployed network once: its candidate name, its form when the name does not say it, and the plan's measured
    ratio only when no shipped file was timed (the `shipped:` line gives the file's own)."""
    form = deployed.form.describe()
    text = name if name == form else f"{name} ({form})"
    if not timed_file and deployed.measured_ratio is not None:
        text += f", plan measured at {deployed.measured_ratio:.3f}"
    return text


def json_summary(records: RunRecords, run_dir: Path) -> dict:
    """The final summary for scripts and CI: the same facts as the text lines, and where the files are."""
    lat, ev, deployed = records.latency, records.evaluation, records.deployed
    return {
        "run_dir": str(run_dir), "report_md": str(run_dir / "report.md"), "report_html": str(run_dir / "report.html"),
        "report_json": str(run_dir / "report.json"), "model": records.settings.get("model"),
        "target": records.settings.get("target"), "budget": records.selection.budget,
        "dropped": records.selection.dropped, "predicted_ratio": lat.predicted_ratio,
        "measured_ratio": lat.measured_ratio, "target_ratio": lat.target_ratio, "meets_budget": lat.meets_budget,
        "report_source": ev.report_source, "report_images": ev.report.images,
        "top1_agreement": {n: ev.report.top1(n) for n in ev.candidates},
        "deployed": records.deployed_name, "verdict": ev.verdict,
        "deployed_precision": str(deployed.precision), "deployed_dropped": deployed.dropped,
    }
