"""Recovery recipes: the registry (every recipe the same checks), trials within a time budget, divergence
dropped with its reason, and a rerun that does not redo finished recipes."""

from dataclasses import replace

import pytest
import torch

import pipeline.recovery.trials as trials_module
from pipeline.network.surgery import drop_blocks
from pipeline.recovery.mimic import FitSettings
from pipeline.recovery.recipes import DEFAULT_RECIPES, RECIPES, Recipe, get_recipes
from pipeline.recovery.recover import RecoverySettings
from pipeline.recovery.schedule import ScheduleSettings
from pipeline.recovery.trials import best_by_selection, recipe_files, try_recipes
from tests.recovery.setup import tiny_recovery_setup

BASE = RecoverySettings("adaptors", FitSettings(steps=4, batch_size=4, lr=0.01), eval_every=2)
SHORT = ScheduleSettings(patience=1, lr_drops=0, max_steps=4, range_steps=3)
DROPPED = ["layers.1.1", "layers.2.1"]


def _try(setup, recipes, folder=None, budget=600.0, base=BASE, schedule=SHORT):
    loaded, structure, prep, train, sel = setup
    return try_recipes(loaded.module, lambda: drop_blocks(loaded.module, DROPPED), DROPPED, structure, train, sel,
                       prep, base, recipes, budget, folder, schedule)


@pytest.mark.parametrize("name", list(RECIPES))
def test_every_recipe_trains_and_returns_the_pruned_networks_state(name, image_folder):
    recipe = RECIPES[name]
    assert recipe.name == name and recipe.description and recipe.method in ("adaptors", "mimic")
    settings = recipe.settings(BASE, 7)
    assert (settings.method, settings.batchnorm, settings.logit_weight) == (recipe.method, recipe.batchnorm,
                                                                           recipe.logit_weight)
    assert settings.point_weight == (BASE.point_weight if recipe.point_weight is None else recipe.point_weight)
    assert settings.mixing == (recipe.mixing or BASE.mixing)
    assert settings.fit.steps == 7 and settings.fit.lr_milestones == () and settings.fit.batch_size == 4
    setup = tiny_recovery_setup(image_folder)
    (trial,) = _try(setup, [recipe])
    assert trial.finished and trial.summary["recipe"] == name and trial.summary["seconds"] >= 0
    assert 1 <= trial.summary["steps"] <= 4 and trial.summary["lr"] > 0
    drop_blocks(setup[0].module, DROPPED).load_state_dict(trial.state_dict)  # a plain state of the pruned network


def test_a_recipe_that_sets_no_point_weight_or_mixing_keeps_the_users():
    users = replace(BASE, point_weight=0.5, mixing="cutmix")  # --recovery-points 0.5 --recovery-mixing cutmix
    kept = RECIPES["all-bn-frozen"].settings(users, 7)
    assert (kept.point_weight, kept.mixing) == (0.5, "cutmix")
    own = RECIPES["all-bn-reestimated-points"].settings(users, 7)
    assert (own.point_weight, own.mixing) == (1.0, "cutmix")


def test_the_recipes_differ_and_the_default_tries_them_all():
    kinds = {(r.method, r.batchnorm, r.logit_weight, r.point_weight, r.mixing) for r in RECIPES.values()}
    assert len(kinds) == len(RECIPES) and set(DEFAULT_RECIPES) <= set(RECIPES)
    assert DEFAULT_RECIPES == ("adaptors", "all-bn-frozen", "all-bn-reestimated", "all-logits")
    with pytest.raises(Exception, match="unknown recovery recipe"):
        get_recipes(["adaptors", "sgd-on-labels"])


def test_a_diverging_recipe_is_dropped_with_its_reason_and_the_others_stand(image_folder):
    setup = tiny_recovery_setup(image_folder)
    exploding = Recipe("exploding", "every parameter at lr 1e6", "mimic")
    fixed_lr = replace(SHORT, range_steps=0, max_steps=6)  # no range test: the base lr applies
    base = replace(BASE, fit=replace(BASE.fit, lr=1e6))
    gentle = replace(BASE, fit=replace(BASE.fit, lr=1e-3))
    dropped_trial, = _try(setup, [exploding], base=base, schedule=fixed_lr)
    kept_trial, = _try(setup, [RECIPES["adaptors"]], base=gentle, schedule=fixed_lr)
    assert dropped_trial.summary["status"] == "diverged" and dropped_trial.state_dict is None
    assert "loss" in dropped_trial.summary["reason"] and "step" in dropped_trial.summary["reason"]
    assert best_by_selection([dropped_trial, kept_trial]) in (kept_trial, None)
    assert kept_trial.finished


def test_a_rerun_loads_finished_recipes_and_runs_only_the_rest(image_folder, tmp_path, monkeypatch):
    setup = tiny_recovery_setup(image_folder)
    recipes = get_recipes(["adaptors", "all-bn-frozen"])
    real_recover, calls = trials_module.recover, []

    def interrupted_on_the_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_recover(*args, **kwargs)

    monkeypatch.setattr(trials_module, "recover", interrupted_on_the_second)
    with pytest.raises(KeyboardInterrupt):
        _try(setup, recipes, tmp_path)
    assert recipe_files(tmp_path, "adaptors")[0].exists() and not recipe_files(tmp_path, "all-bn-frozen")[0].exists()
    first = torch.load(recipe_files(tmp_path, "adaptors")[1], weights_only=True)

    ran = []
    monkeypatch.setattr(trials_module, "recover", lambda *a, **k: ran.append(a[7].method) or real_recover(*a, **k))
    done = _try(setup, recipes, tmp_path)
    assert ran == ["mimic"]  # adaptors finished before the interruption: loaded, not redone
    assert [t.summary["status"] for t in done] == ["finished", "finished"]
    assert all(torch.equal(first[k], done[0].state_dict[k]) for k in first)


def test_no_time_left_skips_the_remaining_recipes_and_says_so(image_folder):
    setup = tiny_recovery_setup(image_folder)
    ticks = iter(range(0, 10_000, 50))  # every clock reading is 50 s later: the first recipe uses up the budget
    loaded, structure, prep, train, sel = setup
    done = try_recipes(loaded.module, lambda: drop_blocks(loaded.module, DROPPED), DROPPED, structure, train, sel,
                       prep, BASE, get_recipes(["adaptors", "all-bn-frozen"]), 60.0, None, SHORT,
                       clock=lambda: float(next(ticks)))
    assert done[0].finished and done[0].summary["stopped"].startswith("time")
    assert done[1].summary["status"] == "skipped" and "no recovery time left of 60 s" in done[1].summary["reason"]
