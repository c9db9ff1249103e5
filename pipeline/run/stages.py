"""The stages of `pipeline run` up to recovery: latency table, recoverability, selection, recovery.

Each stage writes its result into the run folder before the next starts; a rerun of the same command
skips finished stages (and, inside scoring and recovery, finished blocks and steps).
"""

from __future__ import annotations

from pathlib import Path

from pipeline.core import paths
from pipeline.core.errors import UsageError
from pipeline.data.tiny_set import augmented_views, eval_tensors
from pipeline.latency.measured_selection import select_by_measurement
from pipeline.latency.profiling import measure_end_to_end, obtain_table
from pipeline.latency.selection import (
    best_reachable_ratio,
    score_blocks,
    select_blocks,
    smallest_budget_text,
)
from pipeline.network.compute import on_device
from pipeline.network.surgery import drop_blocks
from pipeline.recovery.recover import recover
from pipeline.recovery.recoverability import score_recoverability
from pipeline.run.context import RunContext, save_timings, timed
from pipeline.run.deployment import COMPRESSED, RECOVERED
from profilers import LatencyTable, TableStore


def stage_latency_table(ctx: RunContext, profiler) -> LatencyTable:
    folder = ctx.folder
    if ctx.config.reprofile and folder.has("latency_table.json") and not folder.read_json(
            "latency_table.json").get("reprofiled"):
        _discard_table_for_reprofile(ctx)
    if not folder.has("latency_table.json"):
        with timed(ctx, "profile_s"):
            choice = obtain_table(ctx.loaded, ctx.structure, profiler, TableStore(paths.table_store_dir()),
                                  Path(ctx.config.latency_table) if ctx.config.latency_table else None,
                                  ctx.config.reprofile, ctx.progress, ctx.log)
        folder.write_json("latency_table.json", {
            "source": choice.source, "path": str(choice.path) if choice.path else None, "table": choice.table.to_dict(),
            "reprofiled": ctx.config.reprofile,  # a resumed --reprofile run keeps the table it measured
        })
        save_timings(ctx)
    table = LatencyTable.from_dict(folder.read_json("latency_table.json")["table"])
    target_ratio = ctx.budget.target_ratio(table.full.median_ms)
    reachable = best_reachable_ratio(table)
    if target_ratio < reachable:
        raise UsageError(
            f"latency budget {ctx.budget.describe()} cannot be reached: dropping every candidate block is predicted "
            f"to keep {reachable:.3f} of the original latency ({table.full.median_ms:.3f} ms). "
            f"Choose a budget of at least {smallest_budget_text(reachable)}."
        )
    return table


def _discard_table_for_reprofile(ctx: RunContext) -> None:
    """--reprofile on a folder whose table was not made by --reprofile: measure again, if nothing used it yet."""
    if ctx.folder.has("selection.json"):
        raise UsageError(
            f"--reprofile: the run folder {ctx.folder.path} already selected blocks with its latency table; "
            "measuring again would not change them. Pass --overwrite to redo the run, or --out for a new run folder."
        )
    ctx.log("--reprofile: this run folder's latency table was not made with --reprofile; measuring again")
    ctx.folder.file("latency_table.json").unlink()


def stage_recoverability(ctx: RunContext, table: LatencyTable):
    folder = ctx.folder
    done = folder.read_json("recoverability.json")["blocks"] if folder.has("recoverability.json") else {}
    if len(done) < len(ctx.structure.candidates):
        scoring = ctx.preset.scoring
        with timed(ctx, "recoverability_s"):
            if done:
                ctx.log(f"resuming scoring: {len(done)} of {len(ctx.structure.candidates)} blocks already scored")
            ctx.log(f"scoring recoverability of {len(ctx.structure.candidates)} blocks on {len(ctx.train)} images "
                    f"(training on {ctx.train_device.type})")
            pool = augmented_views(ctx.train, ctx.prep, ctx.preset.scoring_pool_views, scoring.min_crop_scale,
                                   ctx.config.seed)
            train_eval = eval_tensors(ctx.train, ctx.prep)

            def save_partial(block: str, result: dict) -> None:
                done[block] = result
                folder.write_json("recoverability.json", {"settings": scoring.to_dict(), "blocks": done,
                                                          "train_device": ctx.train_device.type})

            with on_device(ctx.loaded.module, ctx.train_device) as teacher:
                score_recoverability(teacher, ctx.structure, pool, train_eval, scoring, done,
                                     on_block=save_partial, progress=ctx.progress)
        save_timings(ctx)
    recoverability = {b: done[b]["recoverability"] for b in ctx.structure.candidate_names()}
    return score_blocks(recoverability, table)


def stage_selection(ctx: RunContext, table: LatencyTable, scores, profiler) -> None:
    """Select from the table, then correct the selection by measuring it end to end (measured_selection)."""
    folder = ctx.folder
    if folder.has("selection.json"):
        return
    config, teacher = ctx.config, ctx.loaded.module

    def select(extra_ms: float):
        return select_blocks(scores, table, ctx.budget, config.selector, extra_ms)

    def measure(dropped: list[str]):
        return measure_end_to_end(teacher, drop_blocks(teacher, dropped), profiler, ctx.progress)

    same_device = profiler is not None and table.fingerprint == profiler.fingerprint()
    with timed(ctx, "selection_and_measurement_s"):
        attempts, chosen = select_by_measurement(select, measure if same_device else None, ctx.budget,
                                                 table.full.median_ms, config.max_budget_attempts, ctx.log)
    if attempts[0]["measured"] is not None:
        _warn_if_the_table_disagrees(ctx, table, attempts[0]["measured"]["original"]["median_ms"], attempts[0])
    folder.write_json("selection.json", {
        "budget": ctx.budget.describe(), "target_ratio": ctx.budget.target_ratio(table.full.median_ms),
        "selector": config.selector, "scores": [s.to_dict() for s in scores],
        "dropped": attempts[chosen]["dropped"], "attempts": attempts, "chosen_attempt": chosen,
    })
    save_timings(ctx)


# the original measured end to end this far from the table's figure means the table was made in other conditions
TABLE_DISAGREEMENT_TO_WARN = 0.3  # the H100 eager table differed by 22% with accurate ratios; a slow VM by 37%


def _warn_if_the_table_disagrees(ctx: RunContext, table: LatencyTable, measured_ms: float, record: dict) -> None:
    """Say so when the original network now measures far from the table's latency (found: a table profiled
    while the VM was slow said 7.75 ms for an original that measured 4.90 ms minutes later)."""
    difference = measured_ms / table.full.median_ms - 1
    if abs(difference) <= TABLE_DISAGREEMENT_TO_WARN:
        return
    message = (f"warning: the original network measures {measured_ms:.3f} ms now and {table.full.median_ms:.3f} ms in the "
               f"latency table ({100 * difference:+.0f}%): the table was measured in other conditions (a busy or "
               "throttled machine?), so its per-block savings may be off. The selection is corrected by measurement; "
               "to rebuild the table, rerun with --reprofile (and --out for a new run folder).")
    ctx.log(message)
    record["table_disagreement"] = message


def stage_recovery(ctx: RunContext) -> None:
    folder = ctx.folder
    if folder.has("recovery.json") and (folder.has(RECOVERED) or folder.has(COMPRESSED)):
        return
    dropped = folder.read_json("selection.json")["dropped"]
    selection_images = eval_tensors(ctx.selection, ctx.prep)
    ctx.log(f"recovering the network without {len(dropped)} blocks (training on {ctx.train_device.type})")
    with timed(ctx, "recovery_s"), on_device(ctx.loaded.module, ctx.train_device) as teacher:
        result = recover(teacher, drop_blocks(teacher, dropped), dropped, ctx.structure, ctx.train, selection_images,
                         ctx.prep, ctx.preset.recovery, ctx.config.seed, folder.file("recovery_checkpoint.pt"),
                         progress=ctx.progress, log=ctx.log)
    folder.save_tensors(RECOVERED, result.state_dict)
    folder.write_json("dropped_blocks.json", {
        "model": ctx.loaded.spec, "weights_source": ctx.loaded.weights_source, "resolution": ctx.loaded.resolution,
        "dropped": dropped,
        "rebuild": f"load the original model, replace each dropped block by nn.Identity(), load {COMPRESSED}",
    })
    folder.write_json("recovery.json", {"settings": ctx.preset.recovery.to_dict(), "losses": result.losses,
                                        "train_device": ctx.train_device.type, **result.summary()})
    folder.file("recovery_checkpoint.pt").unlink(missing_ok=True)
    folder.file("synthetic_images.pt").unlink(missing_ok=True)
    save_timings(ctx)

