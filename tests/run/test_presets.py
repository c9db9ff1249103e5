"""Presets: the fast default and the paper's settings, and the user's overrides applied on top."""

import pytest

from pipeline.core.errors import UsageError
from pipeline.run.presets import PRESETS, get_preset, with_overrides


def test_the_fast_preset_adapts_and_the_paper_preset_mimics_with_batch_statistics():
    fast, paper = get_preset("fast"), get_preset("paper")
    assert (fast.recovery.method, fast.recovery.batchnorm, fast.recovery.fit.steps) == ("adaptors", "frozen", 200)
    assert (paper.recovery.method, paper.recovery.batchnorm, paper.recovery.fit.steps) == ("mimic", "train", 2000)
    assert paper.scoring_pool_views == paper.scoring.steps * paper.scoring.batch_size  # a fresh view per step
    assert set(PRESETS) == {"fast", "paper"}


def test_an_unknown_preset_names_the_choices():
    with pytest.raises(UsageError, match="unknown preset 'slow'; choose one of: fast, paper"):
        get_preset("slow")


def test_no_override_leaves_the_preset_as_it_is():
    assert with_overrides(get_preset("fast")) == get_preset("fast")


def test_overrides_reach_scoring_and_recovery_and_keep_the_rest():
    fast = get_preset("fast")
    changed = with_overrides(fast, scoring_steps=3, recovery_steps=4, recovery_method="mimic", batch_size=8,
                             point_weight=0.5, mixing="cutmix", synthetic_images=16, blends=(0.5,), views="confident")
    assert (changed.scoring.steps, changed.scoring.batch_size, changed.scoring.lr) == (3, 8, fast.scoring.lr)
    recovery = changed.recovery
    assert (recovery.method, recovery.fit.steps, recovery.fit.batch_size) == ("mimic", 4, 8)
    assert recovery.eval_every == 4  # a held-out check can happen within the steps asked for
    assert (recovery.point_weight, recovery.mixing, recovery.blends) == (0.5, "cutmix", (0.5,))
    assert recovery.synthetic.images == 16 and recovery.views.source == "confident"
    assert changed.scoring_pool_views == 24  # 3 steps x 8 images, fewer than the preset's 240
    assert changed.profile == fast.profile and changed.holdout_fraction == fast.holdout_fraction


def test_the_scoring_pool_holds_at_least_one_batch():
    assert with_overrides(get_preset("fast"), scoring_steps=0).scoring_pool_views == 16


def test_an_override_that_makes_no_sense_is_refused_by_the_settings_it_reaches():
    with pytest.raises(UsageError, match="unknown mixing 'blur'"):
        with_overrides(get_preset("fast"), mixing="blur")


def test_the_fast_preset_tries_the_recipes_unless_one_method_or_step_count_is_named():
    from pipeline.recovery.recipes import DEFAULT_RECIPES

    fast = get_preset("fast")
    assert fast.recipes == DEFAULT_RECIPES and fast.recovery_time_s == 100 and get_preset("paper").recipes == ()
    assert with_overrides(fast, recovery_method="adaptors").recipes == ()
    assert with_overrides(fast, recovery_steps=50).recipes == ()
    assert with_overrides(fast, recovery_time=30).recovery_time_s == 30
    with pytest.raises(UsageError, match="--recovery-time shares time among the recipes"):
        with_overrides(fast, recovery_method="mimic", recovery_time=30)
    with pytest.raises(UsageError, match="the 'paper' preset runs one recipe"):
        with_overrides(get_preset("paper"), recovery_time=30)
