"""Try each recovery recipe within a time budget, keep each one's result, and resume without redoing any.

Each recipe gets an equal share of the time still left (time a recipe does not use, because patience
stopped it, goes to the later ones). A finished recipe is saved in `folder` as `recipe_<name>.json`
(summary and time) beside `recipe_<name>_state_dict.pt`; a rerun loads it instead of training again, and
a recipe killed midway continues from `recipe_<name>_checkpoint.pt`. A recipe whose loss diverges is
dropped with the reason; one that cannot apply (no adaptor site) is recorded as unavailable.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from pipeline.core.atomic import save_torch_atomic, write_json_atomic
from pipeline.core.errors import UsageError
from pipeline.core.progress import Log, ProgressFactory, quiet_log, silent
from pipeline.data.tiny_set import Preprocessing, TinySet
from pipeline.network.blocks import NetworkStructure
from pipeline.recovery.recipes import Recipe
from pipeline.recovery.recover import RecoverySettings, recover
from pipeline.recovery.schedule import Diverged, Schedule, ScheduleSettings


@dataclass
class Trial:
    """One recipe's outcome: its summary (what the reports list) and, when it finished, its state."""

    summary: dict  # recipe, status, reason, seconds, steps, lr, stopped, kept, selection KLs, checks
    state_dict: dict | None = None
    losses: list[float] | None = None

    @property
    def name(self) -> str:
        return self.summary["recipe"]

    @property
    def finished(self) -> bool:
        return self.summary["status"] == "finished"


def recipe_files(folder: Path, name: str) -> tuple[Path, Path, Path]:
    """(summary, state, checkpoint) paths of recipe `name`."""
    return folder / f"recipe_{name}.json", folder / f"recipe_{name}_state_dict.pt", folder / f"recipe_{name}_checkpoint.pt"


def try_recipes(teacher: nn.Module, make_student: Callable[[], nn.Module], dropped: list[str],
                structure: NetworkStructure, train_set: TinySet, selection_images: torch.Tensor, prep: Preprocessing,
                base: RecoverySettings, recipes: list[Recipe], time_budget_s: float, folder: Path | None,
                schedule: ScheduleSettings = ScheduleSettings(), seed: int = 0, progress: ProgressFactory = silent,
                log: Log = quiet_log, clock=time.monotonic,
                student_for: Callable[[Recipe], tuple[nn.Module, list[str]]] | None = None) -> list[Trial]:
    """Every recipe's trial, in order; finished ones found in `folder` are loaded, not redone.

    `student_for(recipe)`, when given, makes each recipe's student and the blocks it lacks (a recipe may train
    another network than `make_student()` without `dropped`: the quantization-aware ones train a fake-quantized one).
    """
    loaded = [_load(folder, r.name) for r in recipes]
    spent = sum(t.summary["seconds"] for t in loaded if t is not None)
    trials: list[Trial] = []
    for i, recipe in enumerate(recipes):
        earlier = loaded[i]
        if earlier is not None:
            log(f"recipe {recipe.name}: already {earlier.summary['status']} in an earlier run, not redone")
            trials.append(earlier)
            continue
        left = time_budget_s - spent
        share = left / sum(1 for t in loaded[i:] if t is None)
        if share <= 0:
            trial = Trial({"recipe": recipe.name, "status": "skipped", "seconds": 0.0,
                           "reason": f"no recovery time left of {time_budget_s:g} s"})
        else:
            log(f"recipe {recipe.name} ({recipe.description}): up to {share:.0f} s")
            student, without = student_for(recipe) if student_for is not None else (make_student(), dropped)
            trial = _run(teacher, student, without, structure, train_set, selection_images, prep, base,
                         recipe, clock() + share, folder, schedule, seed, progress, log, clock)
            spent += trial.summary["seconds"]
        _save(folder, trial)
        if not trial.finished:
            log(f"recipe {recipe.name} {trial.summary['status'].upper()}: {trial.summary['reason']}")
        trials.append(trial)
    return trials


def best_by_selection(trials: list[Trial]) -> Trial | None:
    """The finished trial with the lowest selection-split KL that beat the unrecovered network, if any."""
    useful = [t for t in trials if t.finished and t.summary["kept"] == "recovered"]
    return min(useful, key=lambda t: t.summary["selection_kl_after"]) if useful else None


def _run(teacher, student, dropped, structure, train_set, selection_images, prep, base, recipe: Recipe,
         deadline: float, folder: Path | None, schedule: ScheduleSettings, seed, progress, log, clock) -> Trial:
    start = clock()
    checkpoint = recipe_files(folder, recipe.name)[2] if folder is not None else None
    settings = recipe.settings(base, schedule.max_steps)
    summary: dict = {"recipe": recipe.name, "description": recipe.description, "settings": settings.to_dict()}
    try:
        result = recover(teacher, student, dropped, structure, train_set, selection_images, prep, settings, seed,
                         checkpoint, progress=progress, log=log, schedule=Schedule(schedule, deadline, clock))
    except Diverged as exc:
        _forget(checkpoint)
        return Trial(summary | {"status": "diverged", "reason": exc.reason, "seconds": round(clock() - start, 2)})
    except UsageError as exc:
        _forget(checkpoint)
        return Trial(summary | {"status": "unavailable", "reason": str(exc), "seconds": round(clock() - start, 2)})
    _forget(checkpoint)  # an interruption (kill, Ctrl-C) leaves it for the rerun
    lr = (result.lr_search or {}).get("chosen_lr")
    summary |= {"status": "finished", "reason": None, "seconds": round(clock() - start, 2), "steps": len(result.losses),
                "lr": lr, **result.summary()}
    summary |= {"stopped": result.stopped or f"step cap {schedule.max_steps}", "lr_search": result.lr_search}
    return Trial(summary, result.state_dict, result.losses)


def _forget(checkpoint: Path | None) -> None:
    if checkpoint is not None:
        checkpoint.unlink(missing_ok=True)


def _save(folder: Path | None, trial: Trial) -> None:
    if folder is None:
        return
    summary_path, state_path, _ = recipe_files(folder, trial.name)
    if trial.state_dict is not None:
        save_torch_atomic(state_path, trial.state_dict)
    write_json_atomic(summary_path, trial.summary | {"losses": trial.losses})


def _load(folder: Path | None, name: str) -> Trial | None:
    """A trial an earlier run finished (or dropped); None when it has to run."""
    if folder is None:
        return None
    summary_path, state_path, _ = recipe_files(folder, name)
    if not summary_path.exists():
        return None
    summary = json.loads(summary_path.read_text())
    losses = summary.pop("losses", None)
    if summary["status"] == "skipped":  # skipped for want of time: a rerun may have time for it
        return None
    state = torch.load(state_path, map_location="cpu", weights_only=True) if state_path.exists() else None
    if summary["status"] == "finished" and state is None:
        return None
    return Trial(summary, state, losses)
