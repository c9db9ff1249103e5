"""`pipeline run`: profile, score, select under the budget, recover, evaluate, export, report.

Under torchrun (pipeline/run/ranks.py) every rank runs this; the stages that are not distributed run on
rank 0 (`main_only`) while the others wait; in a single process `main_only` simply calls through.
"""

from __future__ import annotations

import contextlib

from pipeline.core.distributed import World
from pipeline.core.progress import Log, ProgressFactory, quiet_log, silent
from pipeline.run.config import RunConfig, profile_settings
from pipeline.run.context import RunContext, prepare
from pipeline.run.deployment import stage_evaluation
from pipeline.run.export_step import stage_export
from pipeline.run.plan_stages import settling_plan, stage_mixed_precision, stage_plans, stage_precisions
from pipeline.run.ranks import join_ranks, rank_log, rank_progress
from pipeline.run.report import write_report
from pipeline.run.reselection import reselect_after_a_miss
from pipeline.run.resolution_hint import stage_resolution_hint
from pipeline.run.stages import stage_recoverability, stage_recovery
from pipeline.run.summary import RunResult
from pipeline.run.table_stage import stage_latency_table
from profilers import get_profiler


def run(config: RunConfig, progress: ProgressFactory = silent, log: Log = quiet_log) -> RunResult:
    """The whole run; its records (the report's content, typed) on the process that wrote the report."""
    world = join_ranks(config, log)
    log, progress = rank_log(world, log), rank_progress(world, progress)
    ctx = _prepare(config, progress, log, world)
    folder = ctx.folder
    if world.on_main(lambda: folder.is_complete, "is the run already finished?"):
        if world.is_main:
            log(f"run folder {folder.path} already holds a finished run with these settings; see "
                f"{folder.file('report.md')}")
        return _result(folder, world)
    ctx.timings = folder.read_json("timings.json") if world.is_main and folder.has("timings.json") else {}
    settings = profile_settings(config, ctx.preset, ctx.loaded.resolution, ctx.loaded.channels)
    measures = ctx.measurable and world.is_main
    profiler = get_profiler(config.target, config.backend, settings) if measures else None
    if profiler is not None:
        profiler.log = log  # a fallback the profiler takes (a variant exported after all) goes to the run's log
    with profiler or contextlib.nullcontext():
        profiled = world.main_only(lambda: _profile(ctx, profiler), "latency table and precisions (profiling is "
                                   "not distributed: ranks would disturb each other's timings)", log)
        settled = world.on_main(lambda: _settled(ctx, profiled, profiler), "whether a precision alone settles the plan",
                                log)
        recoverability = {} if settled else stage_recoverability(ctx)
        world.main_only(lambda: _plan(ctx, profiled, recoverability, profiler),
                        "plans and their end-to-end measurements (timing runs on one rank)", log)
    stage_recovery(ctx)
    world.main_only(lambda: _finish(ctx), "evaluation, export and the report", log)
    return _result(folder, world)


def _result(folder, world: World) -> RunResult:
    """The run folder, with its records on the rank that wrote the report (the others only wait for it)."""
    return RunResult.of(folder) if world.is_main else RunResult(folder)


def _prepare(config: RunConfig, progress: ProgressFactory, log: Log, world: World) -> RunContext:
    """Rank 0 validates and opens the run folder first (one error line if anything is wrong); then the others."""
    prepared = world.main_only(lambda: prepare(config, progress, log, world=world),
                               "checking the settings and opening the run folder", log)
    if prepared is not None:
        return prepared
    ctx = prepare(config, progress, quiet_log, world=world)  # rank 0 has said what prepare says
    ctx.log = log
    return ctx


def _profile(ctx: RunContext, profiler):
    table = stage_latency_table(ctx, profiler)
    return stage_precisions(ctx, profiler, table)


def _settled(ctx: RunContext, profiled, profiler) -> bool:
    """Whether a lossless precision-only plan makes scoring pointless (said in the log once, by stage_plans)."""
    options, tables = profiled
    plan = settling_plan(ctx, options, tables, profiler)
    if plan is not None and not ctx.folder.has("selection.json"):
        ctx.log(f"{plan.name} meets the budget and changes no prediction on the selection split: skipping the "
                "recoverability scoring")
    return plan is not None


def _plan(ctx: RunContext, profiled, recoverability: dict, profiler) -> None:
    options, tables = profiled
    stage_plans(ctx, options, tables, recoverability, profiler)
    stage_mixed_precision(ctx, profiler)
    stage_resolution_hint(ctx, profiled[0], profiler)


def _finish(ctx: RunContext) -> None:
    stage_evaluation(ctx)
    stage_export(ctx)
    while reselect_after_a_miss(ctx):  # the shipped file missed the budget: the next candidate
        stage_evaluation(ctx)
        stage_export(ctx)
    ctx.folder.write_json("timings.json", ctx.timings)
    write_report(ctx.folder, ctx.timings)
