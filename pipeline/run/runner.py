"""`pipeline run`: profile, score, select under the budget, recover, evaluate, export, report."""

from __future__ import annotations

import contextlib

from pipeline.core.progress import Log, ProgressFactory, quiet_log, silent
from pipeline.run.config import RunConfig, profile_settings
from pipeline.run.context import prepare
from pipeline.run.deployment import stage_evaluation
from pipeline.run.export_step import stage_export
from pipeline.run.plan_stages import stage_mixed_precision, stage_plans, stage_precisions
from pipeline.run.report import write_report
from pipeline.run.runfolder import RunFolder
from pipeline.run.stages import (
    stage_latency_table,
    stage_recoverability,
    stage_recovery,
)
from profilers import get_profiler


def run(config: RunConfig, progress: ProgressFactory = silent, log: Log = quiet_log) -> RunFolder:
    ctx = prepare(config, progress, log)
    folder = ctx.folder
    if folder.is_complete:
        log(f"run folder {folder.path} already holds a finished run with these settings; see {folder.file('report.md')}")
        return folder
    ctx.timings = folder.read_json("timings.json") if folder.has("timings.json") else {}
    settings = profile_settings(config, ctx.preset, ctx.loaded.resolution, ctx.loaded.channels)
    profiler = get_profiler(config.target, config.backend, settings) if ctx.measurable else None
    with profiler or contextlib.nullcontext():
        table = stage_latency_table(ctx, profiler)
        options, tables = stage_precisions(ctx, profiler, table)
        recoverability = stage_recoverability(ctx)
        stage_plans(ctx, options, tables, recoverability, profiler)
        stage_mixed_precision(ctx, profiler if ctx.measurable else None)
    stage_recovery(ctx)
    stage_evaluation(ctx)
    stage_export(ctx)
    folder.write_json("timings.json", ctx.timings)
    write_report(folder, ctx.timings)
    return folder

