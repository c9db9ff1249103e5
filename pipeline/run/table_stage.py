"""The run's latency table: reused from the store, imported (--latency-table) or measured here.

A run that may settle on a precision alone (`--precision auto`, `--depth-plans auto`) and finds no stored table
measures the whole network only; each block's saving is measured once a plan needs dropped blocks
(`complete_latency_table`), so a run whose precision survey settles the plan never pays for it.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.core import paths
from pipeline.core.errors import UsageError
from pipeline.latency.profiling import obtain_table
from pipeline.run.context import RunContext, save_timings, timed
from pipeline.run.records import TableRecord
from profilers import LatencyTable, TableStore


def stage_latency_table(ctx: RunContext, profiler) -> LatencyTable:
    """The run's table, measured or found once per run folder (the whole network only when blocks may not matter)."""
    folder = ctx.folder
    saved = TableRecord.read_if_there(folder)
    if ctx.config.reprofile and saved is not None and not saved.reprofiled:
        _discard_table_for_reprofile(ctx)
        saved = None
    if saved is None:
        saved = _obtain(ctx, profiler, blocks=not _may_defer_blocks(ctx, profiler), timing="profile_s")
    return saved.table


def complete_latency_table(ctx: RunContext, profiler, why: str) -> LatencyTable:
    """The run's table with every block's saving (found in the store or measured now), replacing a whole-network one."""
    saved = TableRecord.read(ctx.folder)
    if saved.table.has_savings:
        return saved.table
    ctx.log(f"latency table: measuring each block's saving now ({why})")
    return _obtain(ctx, profiler, blocks=True, timing="block_profile_s").table


def _obtain(ctx: RunContext, profiler, blocks: bool, timing: str) -> TableRecord:
    with timed(ctx, timing):
        choice = obtain_table(ctx.loaded, ctx.structure, profiler, TableStore(paths.table_store_dir()),
                              Path(ctx.config.latency_table) if ctx.config.latency_table else None,
                              ctx.config.reprofile, ctx.progress, ctx.log, blocks=blocks)
    record = TableRecord(choice.source, choice.table, str(choice.path) if choice.path else None, ctx.config.reprofile)
    record.write(ctx.folder)
    save_timings(ctx)
    return record


def _may_defer_blocks(ctx: RunContext, profiler) -> bool:
    """Whether the precision survey may settle the plan before any block's saving is needed: it runs here, with more
    than one precision to try, and depth plans are not asked for regardless."""
    config = ctx.config
    return (profiler is not None and ctx.measurable and config.latency_table is None and config.precision == "auto"
            and config.depth_plans == "auto" and len(type(profiler).auto_precisions) > 1)


def _discard_table_for_reprofile(ctx: RunContext) -> None:
    """--reprofile on a folder whose table was not made by --reprofile: measure again, if nothing used it yet."""
    if ctx.folder.has("selection.json"):
        raise UsageError(
            f"--reprofile: the run folder {ctx.folder.path} already selected blocks with its latency table; "
            "measuring again would not change them. Pass --overwrite to redo the run, or --out for a new run folder."
        )
    ctx.log("--reprofile: this run folder's latency table was not made with --reprofile; measuring again")
    ctx.folder.file(TableRecord.FILE).unlink()
