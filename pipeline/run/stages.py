"""The stages of `pipeline run` around the plans: latency table, recoverability, recovery.

Each stage writes its result into the run folder before the next starts; a rerun of the same command
skips finished stages (and, inside scoring and recovery, finished blocks and steps).
"""

from __future__ import annotations

from pathlib import Path

from pipeline.core import paths
from pipeline.core.errors import UsageError
from pipeline.data.tiny_set import augmented_views, eval_tensors
from pipeline.latency.profiling import obtain_table
from pipeline.network.compute import cpu_state, on_device
from pipeline.network.surgery import drop_blocks
from pipeline.recovery.recover import recover
from pipeline.recovery.recipes import get_recipes
from pipeline.recovery.recoverability import score_recoverability
from pipeline.recovery.trials import best_by_selection, try_recipes
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
    return LatencyTable.from_dict(folder.read_json("latency_table.json")["table"])


def _discard_table_for_reprofile(ctx: RunContext) -> None:
    """--reprofile on a folder whose table was not made by --reprofile: measure again, if nothing used it yet."""
    if ctx.folder.has("selection.json"):
        raise UsageError(
            f"--reprofile: the run folder {ctx.folder.path} already selected blocks with its latency table; "
            "measuring again would not change them. Pass --overwrite to redo the run, or --out for a new run folder."
        )
    ctx.log("--reprofile: this run folder's latency table was not made with --reprofile; measuring again")
    ctx.folder.file("latency_table.json").unlink()


def stage_recoverability(ctx: RunContext) -> dict[str, float]:
    """Each candidate's recoverability (feature MSE after the adaptor fit), scored block by block."""
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
    return {b: done[b]["recoverability"] for b in ctx.structure.candidate_names()}


def stage_recovery(ctx: RunContext) -> None:
    folder = ctx.folder
    if folder.has("recovery.json") and (folder.has(RECOVERED) or folder.has(COMPRESSED)):
        return
    selection = folder.read_json("selection.json")
    dropped = selection["dropped"]
    if not dropped:
        _skip_recovery(ctx, selection)
        return
    selection_images = eval_tensors(ctx.selection, ctx.prep)
    ctx.log(f"recovering the network without {len(dropped)} blocks (training on {ctx.train_device.type})")
    with timed(ctx, "recovery_s"), on_device(ctx.loaded.module, ctx.train_device) as teacher:
        if ctx.preset.recipes:
            state, record = _recover_by_recipes(ctx, teacher, dropped, selection_images)
        else:
            result = recover(teacher, drop_blocks(teacher, dropped), dropped, ctx.structure, ctx.train,
                             selection_images, ctx.prep, ctx.preset.recovery, ctx.config.seed,
                             folder.file("recovery_checkpoint.pt"), progress=ctx.progress, log=ctx.log)
            state, record = result.state_dict, {"losses": result.losses, **result.summary()}
    folder.save_tensors(RECOVERED, state)
    _write_dropped_blocks(ctx, dropped, selection.get("precision", "fp32"))
    folder.write_json("recovery.json", {"settings": ctx.preset.recovery.to_dict(),
                                        "train_device": ctx.train_device.type, **record})
    folder.file("recovery_checkpoint.pt").unlink(missing_ok=True)
    folder.file("synthetic_images.pt").unlink(missing_ok=True)
    save_timings(ctx)


def _recover_by_recipes(ctx: RunContext, teacher, dropped: list[str], selection_images) -> tuple[dict, dict]:
    """Every recipe within the recovery time; the state recovery.json calls "recovered" is the recipe with the
    lowest selection-split KL; every finished recipe's state stays in the folder for the report images to judge."""
    preset = ctx.preset
    ctx.log(f"trying {len(preset.recipes)} recovery recipes within {preset.recovery_time_s:g} s: "
            + ", ".join(preset.recipes))
    trials = try_recipes(teacher, lambda: drop_blocks(teacher, dropped), dropped, ctx.structure, ctx.train,
                         selection_images, ctx.prep, preset.recovery, get_recipes(preset.recipes),
                         preset.recovery_time_s, ctx.folder.path, preset.schedule, ctx.config.seed, ctx.progress,
                         ctx.log)
    best = best_by_selection(trials)
    summaries = [{k: v for k, v in t.summary.items() if k != "settings"} for t in trials]
    record = {"recipes": summaries, "recipe": best.name if best else None, "recovery_time_s": preset.recovery_time_s,
              "schedule": preset.schedule.to_dict()}
    if best is None:
        kl = next((t.summary["selection_kl_before"] for t in trials if t.finished), None)
        return cpu_state(drop_blocks(teacher, dropped).state_dict()), record | {
            "losses": [], "kept": "unrecovered", "best_step": None, "selection_kl_before": kl,
            "selection_kl_after": kl, "checks": []}
    chosen = best.summary
    return best.state_dict, record | {"losses": best.losses or [], "kept": "recovered", "best_step": chosen["best_step"],
                                      "selection_kl_before": chosen["selection_kl_before"],
                                      "selection_kl_after": chosen["selection_kl_after"], "checks": chosen["checks"]}


def _skip_recovery(ctx: RunContext, selection: dict) -> None:
    """No block dropped (a precision alone meets the budget): nothing to recover, the original's state is kept."""
    ctx.log("no block dropped in any plan that needs recovery: recovery is skipped")
    ctx.folder.save_tensors(RECOVERED, ctx.loaded.module.state_dict())
    _write_dropped_blocks(ctx, [], selection.get("precision", "fp32"))
    ctx.folder.write_json("recovery.json", {"settings": ctx.preset.recovery.to_dict(), "losses": [],
                                            "kept": "unrecovered", "best_step": 0, "selection_kl_before": 0.0,
                                            "selection_kl_after": 0.0, "checks": [], "skipped": "no block dropped"})


def _write_dropped_blocks(ctx: RunContext, dropped: list[str], precision: str) -> None:
    ctx.folder.write_json("dropped_blocks.json", {
        "model": ctx.loaded.spec, "weights_source": ctx.loaded.weights_source, "resolution": ctx.loaded.resolution,
        "dropped": dropped, "precision": precision,
        "rebuild": f"load the original model, replace each dropped block by nn.Identity(), load {COMPRESSED}",
    })

