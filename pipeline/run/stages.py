"""The stages of `pipeline run` around the plans: latency table, recoverability, recovery.

Each stage writes its result into the run folder before the next starts; a rerun of the same command
skips finished stages (and, inside scoring and recovery, finished blocks and steps).
"""

from __future__ import annotations

import contextlib
import tempfile
from dataclasses import dataclass
from pathlib import Path

from pipeline.core.distributed import averaged_gradients, balanced_shards
from pipeline.core.errors import RunFailure
from pipeline.data.tiny_set import augmented_views, eval_tensors
from pipeline.latency.precision import Precision
from pipeline.network.compute import cpu_state, faster_layout, in_layout, on_device
from pipeline.network.surgery import drop_blocks
from pipeline.recovery.recipes import get_recipes
from pipeline.recovery.recover import RecoveryResult, recover
from pipeline.recovery.recoverability import score_recoverability, scoring_cost
from pipeline.recovery.trials import best_by_selection, try_recipes
from pipeline.run.context import PARTIAL_SCORES, RunContext, save_timings, timed
from pipeline.run.deployment import COMPRESSED, RECOVERED
from pipeline.run.plan_stages import calibration_images
from pipeline.run.quantization_aware import (
    QuantizationAwareTarget,
    check_setting,
    recipe_of,
    student_maker,
    targets,
)
from pipeline.run.records import DeployedNetwork, RecipeTrial, Recovery, Selection


def stage_recoverability(ctx: RunContext) -> dict[str, float]:
    """Each candidate's recoverability (feature MSE after the adaptor fit), scored block by block.

    Under torchrun the blocks left to score are split over the ranks by expected cost; each rank saves
    every block it finishes (rank 0 in recoverability.json, the others in recoverability.rank<r>.json),
    so a kill loses at most one block per rank, and a rerun with any number of processes reads them all.
    """
    folder, world = ctx.folder, ctx.world
    done = _scored_so_far(ctx)
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
            mine = _my_blocks(ctx, [b for b in ctx.structure.candidate_names() if b not in done], len(train_eval))
            own_file = "recoverability.json" if world.is_main else f"recoverability.rank{world.rank}.json"

            def save_partial(block: str, result: dict) -> None:
                done[block] = result
                folder.write_json(own_file, _scores_record(ctx, done))

            with on_device(ctx.loaded.module, ctx.train_device) as teacher, \
                    in_layout(teacher, world.on_main(lambda: training_layout(ctx, teacher, pool[: scoring.batch_size]),
                                                     "the training layout", ctx.log)):
                score_recoverability(teacher, ctx.structure, pool, train_eval, scoring, done,
                                     on_block=save_partial, progress=ctx.progress, seed=ctx.config.seed, blocks=mine)
            if world.distributed:
                for scored in world.gather({b: done[b] for b in mine}):
                    done.update(scored)
        world.main_only(lambda: save_timings(ctx), "timings")
    world.main_only(lambda: _consolidate_scores(ctx, done), "gathering the scores into recoverability.json")
    _remove_partial_scores(ctx.folder, f"recoverability.rank{world.rank}.json")
    return {b: done[b]["recoverability"] for b in ctx.structure.candidate_names()}


def _scored_so_far(ctx: RunContext) -> dict[str, dict]:
    """Blocks scored before, from recoverability.json and every rank's partial file (any earlier world size)."""
    folder, done = ctx.folder, {}
    for name in ["recoverability.json", *sorted(p.name for p in folder.path.glob(PARTIAL_SCORES))]:
        if folder.has(name):
            done.update(folder.read_json(name)["blocks"])
    for seen in ctx.world.gather(done) if ctx.world.distributed else []:  # a rank may see files others cannot
        done.update(seen)
    return {b: done[b] for b in ctx.structure.candidate_names() if b in done}


def _my_blocks(ctx: RunContext, todo: list[str], eval_images: int) -> list[str]:
    """This rank's share of `todo`, balanced by expected cost over the ranks (all of it in a single process)."""
    world = ctx.world
    if not world.distributed:
        return todo
    costs = scoring_cost(ctx.loaded.module, ctx.structure, ctx.preset.scoring, eval_images)
    shards = balanced_shards({b: costs[b] for b in todo}, world.size)
    share = sum(costs[b] for b in shards[world.rank]) / max(sum(costs[b] for b in todo), 1.0)
    ctx.log(f"scoring {len(shards[world.rank])} of the {len(todo)} blocks left ({100 * share:.0f}% of the expected "
            f"work): {', '.join(shards[world.rank]) or 'none'}")
    return shards[world.rank]


def _scores_record(ctx: RunContext, done: dict) -> dict:
    ordered = {b: done[b] for b in ctx.structure.candidate_names() if b in done}
    return {"settings": ctx.preset.scoring.to_dict(), "blocks": ordered, "train_device": ctx.train_device.type}


def _consolidate_scores(ctx: RunContext, done: dict) -> None:
    """Rank 0: every block's score in recoverability.json, then the partial files are no longer needed."""
    folder = ctx.folder
    if not folder.has("recoverability.json") or len(folder.read_json("recoverability.json")["blocks"]) < len(done):
        folder.write_json("recoverability.json", _scores_record(ctx, done))
    _remove_partial_scores(folder, PARTIAL_SCORES)


def _remove_partial_scores(folder, pattern: str) -> None:
    for path in folder.path.glob(pattern):
        path.unlink(missing_ok=True)


def stage_recovery(ctx: RunContext) -> None:
    """Recover the chosen plan's network; under torchrun data-parallel (each rank its own views, gradients
    averaged by `averaged_gradients`), rank 0 saving the result."""
    world = ctx.world
    todo = world.on_main(lambda: _recovery_todo(ctx), "the chosen plan", ctx.log)
    if todo is None:
        return
    if ctx.preset.recipes:  # each recipe's share of --recovery-time is wall time: ranks would not agree on it
        world.main_only(lambda: _recover_by_recipes_and_save(ctx, todo.dropped, todo.precision),
                        "recovery recipes (tried on one rank; an explicit --recovery-method recovers data-parallel)",
                        ctx.log)
        return
    selection_images = eval_tensors(ctx.selection, ctx.prep)
    ctx.log(f"recovering the network without {len(todo.dropped)} blocks (training on {ctx.train_device.type})")
    with timed(ctx, "recovery_s"), _rank_checkpoint(ctx, todo.checkpoint) as checkpoint, \
            on_device(ctx.loaded.module, ctx.train_device) as teacher, \
            in_layout(teacher, world.on_main(lambda: training_layout(ctx, teacher, _example_batch(ctx)),
                                             "the training layout", ctx.log)):
        student = drop_blocks(teacher, todo.dropped)
        syncing = student if ctx.preset.recovery.batchnorm == "train" else None  # running statistics: rank 0's
        with averaged_gradients(world, buffers_of=syncing):
            result = recover(teacher, student, todo.dropped, ctx.structure, ctx.train, selection_images,
                             ctx.prep, ctx.preset.recovery, world.seed(ctx.config.seed), checkpoint,
                             progress=ctx.progress, log=ctx.log)
    _check_ranks_agree(world, result)
    world.main_only(lambda: _save_recovery(ctx, todo.dropped, todo.precision, result), "saving the recovery")


@dataclass(frozen=True)
class RecoveryTodo:
    """What recovery runs on: the plan's blocks and precision, and (other ranks of a resumed torchrun launch) rank
    0's checkpoint bytes."""

    dropped: list[str]
    precision: str
    checkpoint: bytes | None = None


def _recovery_todo(ctx: RunContext) -> RecoveryTodo | None:
    """Rank 0: None when recovery is done or not needed, else the blocks to recover without (and, for the
    other ranks of a resumed torchrun launch, the recovery checkpoint's bytes)."""
    folder = ctx.folder
    if folder.has("recovery.json") and (folder.has(RECOVERED) or folder.has(COMPRESSED)):
        return None
    selection = Selection.read(folder)
    if not selection.dropped and not quantization_aware_targets(ctx, selection):
        _skip_recovery(ctx, selection)
        return None
    checkpoint = folder.file("recovery_checkpoint.pt")
    shared = checkpoint.read_bytes() if ctx.world.distributed and checkpoint.exists() else None
    return RecoveryTodo(selection.dropped, selection.precision, shared)


@contextlib.contextmanager
def _rank_checkpoint(ctx: RunContext, saved: bytes | None):
    """Rank 0 checkpoints in the run folder; the other ranks in a private folder, started from rank 0's
    checkpoint so every rank resumes from the same step, weights and optimizer state."""
    if ctx.world.is_main:
        yield ctx.folder.file("recovery_checkpoint.pt")
        return
    with tempfile.TemporaryDirectory(prefix=f"practise-rank{ctx.world.rank}-") as private:
        path = Path(private) / "recovery_checkpoint.pt"
        if saved is not None:
            path.write_bytes(saved)
        yield path


def _check_ranks_agree(world, result: RecoveryResult) -> None:
    """Every rank held the same weights at every check, so they must have kept the same state; say so if not."""
    if not world.distributed:
        return
    decisions = world.gather((result.kept, result.best_step, round(result.selection_kl_after, 6)))
    if any(d != decisions[0] for d in decisions):
        raise RunFailure(f"the ranks disagree about the recovered network (kept, best step, selection KL per rank: "
                         f"{decisions}); this is a bug: rerun in one process to resume, and report it")


def _save_recovery(ctx: RunContext, dropped: list[str], precision: str, result: RecoveryResult) -> None:
    folder = ctx.folder
    folder.save_tensors(RECOVERED, result.state_dict)
    _write_dropped_blocks(ctx, dropped, precision)
    Recovery.from_dict({"settings": ctx.preset.recovery.to_dict(), "losses": result.losses,
                        "train_device": ctx.train_device.type, **_world_record(ctx), **result.summary()}).write(folder)
    folder.file("recovery_checkpoint.pt").unlink(missing_ok=True)
    folder.file("synthetic_images.pt").unlink(missing_ok=True)
    save_timings(ctx)


def _world_record(ctx: RunContext) -> dict:
    """How many ranks recovered, and the batch that made each step (the learning rate is not scaled)."""
    if not ctx.world.distributed:
        return {}
    batch = ctx.preset.recovery.fit.batch_size
    return {"ranks": ctx.world.size, "batch_per_rank": batch, "effective_batch": batch * ctx.world.size}


def quantization_aware_targets(ctx: RunContext, selection: Selection) -> list[QuantizationAwareTarget]:
    """The INT8 networks that get a quantization-aware candidate: none unless the recipes are tried (the fast
    preset without an explicit --recovery or --recovery-steps) and --recovery-quantization-aware is on."""
    if not ctx.preset.recipes:
        return []
    return targets(selection, check_setting(ctx.config.recovery_quantization_aware))


def _recover_by_recipes_and_save(ctx: RunContext, dropped: list[str], precision: str) -> None:
    selection_images = eval_tensors(ctx.selection, ctx.prep)
    ctx.log(f"recovering the network without {len(dropped)} blocks (training on {ctx.train_device.type})" if dropped
            else f"no block dropped: only quantization-aware finetuning (training on {ctx.train_device.type})")
    with timed(ctx, "recovery_s"), on_device(ctx.loaded.module, ctx.train_device) as teacher, \
            in_layout(teacher, training_layout(ctx, teacher, _example_batch(ctx))):  # rank 0 alone runs this
        state, record = _recover_by_recipes(ctx, teacher, dropped, selection_images)
    folder = ctx.folder
    folder.save_tensors(RECOVERED, state)
    _write_dropped_blocks(ctx, dropped, precision)
    Recovery.from_dict({"settings": ctx.preset.recovery.to_dict(), "train_device": ctx.train_device.type,
                        **record}).write(folder)
    folder.file("recovery_checkpoint.pt").unlink(missing_ok=True)
    folder.file("synthetic_images.pt").unlink(missing_ok=True)
    save_timings(ctx)


LAYOUT_FILE = "training_layout.json"


def training_layout(ctx: RunContext, teacher, example) -> str:
    """The memory layout scoring and recovery train in, timed once per run folder (rank 0; `LAYOUT_FILE`): a
    resumed run and every torchrun rank then train as the first measurement chose, so their results are the
    same to the bit (the layouts differ in rounding)."""
    if ctx.folder.has(LAYOUT_FILE):
        return ctx.folder.read_json(LAYOUT_FILE)["layout"]
    choice, times = faster_layout(teacher, example)
    ctx.log(f"training layout: {choice} ({', '.join(f'{n} {t:.0f} ms' for n, t in times.items())} per forward of "
            f"{len(example)} images on {ctx.train_device.type})")
    ctx.folder.write_json(LAYOUT_FILE, {"layout": choice, "forward_ms": times, "images": len(example),
                                        "device": ctx.train_device.type})
    return choice


def _example_batch(ctx: RunContext):
    """A training batch's worth of the tiny set's images, to time the training layouts on."""
    count = min(len(ctx.train), ctx.preset.recovery.fit.batch_size)
    return eval_tensors(ctx.train.subset(list(range(count))), ctx.prep)


def _recover_by_recipes(ctx: RunContext, teacher, dropped: list[str], selection_images) -> tuple[dict, dict]:
    """Every recipe within the recovery time; the state recovery.json calls "recovered" is the recipe with the
    lowest selection-split KL; every finished recipe's state stays in the folder for the report images to judge."""
    preset, selection = ctx.preset, Selection.read(ctx.folder)
    found = quantization_aware_targets(ctx, selection)
    fp32_recipes = get_recipes(preset.recipes) if dropped else []  # no block dropped: nothing to recover in FP32
    recipes = fp32_recipes + [recipe_of(t) for t in found]
    ctx.log(f"trying {len(recipes)} recovery recipes within {preset.recovery_time_s:g} s: "
            + ", ".join(r.name for r in recipes))
    make = student_maker(teacher, dropped, found, calibration_images(ctx),
                         lambda target: selection.fp32_end_layers(target.precision, target.dropped))
    trials = try_recipes(teacher, lambda: drop_blocks(teacher, dropped), dropped, ctx.structure, ctx.train,
                         selection_images, ctx.prep, preset.recovery, recipes,
                         preset.recovery_time_s, ctx.folder.path, preset.schedule, ctx.config.seed, ctx.progress,
                         ctx.log, student_for=make)
    best = best_by_selection([t for t in trials if t.name in {r.name for r in fp32_recipes}])
    summaries = [{k: v for k, v in t.summary.items() if k != "settings"} for t in trials]
    record = {"recipes": summaries, "recipe": best.name if best else None, "recovery_time_s": preset.recovery_time_s,
              "schedule": preset.schedule.to_dict(), "quantization_aware": [t.to_dict() for t in found]}
    if not dropped:
        return cpu_state(teacher.state_dict()), record | _NOTHING_RECOVERED
    if best is None:
        kl = next((RecipeTrial.from_dict(t.summary).selection_kl_before for t in trials if t.finished), None)
        return cpu_state(drop_blocks(teacher, dropped).state_dict()), record | {
            "losses": [], "kept": "unrecovered", "best_step": None, "selection_kl_before": kl,
            "selection_kl_after": kl, "checks": []}
    chosen = RecipeTrial.from_dict(best.summary)
    assert best.state_dict is not None  # a finished trial keeps its state
    return best.state_dict, record | {"losses": best.losses or [], "kept": "recovered", "best_step": chosen.best_step,
                                      "selection_kl_before": chosen.selection_kl_before,
                                      "selection_kl_after": chosen.selection_kl_after, "checks": chosen.checks}


# recovery.json's figures when no block was dropped (the original's state is kept; only a quantization-aware
# finetune, judged as a candidate of its own, may have trained)
_NOTHING_RECOVERED = {"losses": [], "kept": "unrecovered", "best_step": 0, "selection_kl_before": 0.0,
                      "selection_kl_after": 0.0, "checks": [], "skipped": "no block dropped"}


def _skip_recovery(ctx: RunContext, selection: Selection) -> None:
    """No block dropped (a precision alone meets the budget): nothing to recover, the original's state is kept."""
    ctx.log("no block dropped in any plan that needs recovery: recovery is skipped")
    ctx.folder.save_tensors(RECOVERED, ctx.loaded.module.state_dict())
    _write_dropped_blocks(ctx, [], selection.precision)
    Recovery.from_dict({"settings": ctx.preset.recovery.to_dict(), **_NOTHING_RECOVERED}).write(ctx.folder)


def _write_dropped_blocks(ctx: RunContext, dropped: list[str], precision: str) -> None:
    DeployedNetwork(dropped, ctx.loaded.spec, ctx.loaded.weights_source, ctx.loaded.resolution, Precision(precision),
                    rebuild=f"load the original model, replace each dropped block by nn.Identity(), load "
                            f"{COMPRESSED}").write(ctx.folder)

