"""Named bundles of settings: a fast CPU default and the paper's reference settings.

The fast preset's numbers come from measurements on this project's 2-core CPU machines with
EfficientNet-Lite0 (see benchmarks/results/); the paper preset follows the PRACTISE paper's reference settings.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from pipeline.core.errors import UsageError
from pipeline.recovery.mimic import FitSettings
from pipeline.recovery.recipes import DEFAULT_RECIPES
from pipeline.recovery.recover import RecoverySettings
from pipeline.recovery.schedule import ScheduleSettings
from profilers import ProfileSettings


@dataclass(frozen=True)
class Preset:
    name: str
    scoring: FitSettings  # adaptor fit per candidate (recoverability)
    scoring_pool_views: int  # augmented views whose teacher features are computed once for all candidates
    recovery: RecoverySettings
    profile: ProfileSettings
    holdout_fraction: float = 0.3
    # recipes tried (recipes.py) within recovery_time_s, each on the schedule; () = the single recipe `recovery`
    recipes: tuple[str, ...] = ()
    recovery_time_s: float = 0.0
    schedule: ScheduleSettings = ScheduleSettings()


# the embedded default's 200 adaptor steps took about 100 s on 2 CPU cores (benchmarks/results/gpu_h100.md): the
# recipes share about that time, so trying them does not lengthen the default run; 100 s keeps the whole embedded
# default under 5 minutes on 2 Xeon cores, and trains in the faster (timed) memory layout, 1.4x faster here
DEFAULT_RECOVERY_TIME_S = 100.0

PRESETS = {
    "fast": Preset(
        name="fast",
        scoring=FitSettings(steps=30, batch_size=16, lr=0.005),
        scoring_pool_views=240,
        recovery=RecoverySettings(
            method="adaptors", fit=FitSettings(steps=200, batch_size=16, lr=0.005), batchnorm="frozen", eval_every=20
        ),
        profile=ProfileSettings(warmup_runs=10, runs_per_round=20, min_rounds=10, max_rounds=60, tolerance=0.02,
                                time_cap_s=90),
        recipes=DEFAULT_RECIPES,
        recovery_time_s=DEFAULT_RECOVERY_TIME_S,
    ),
    "paper": Preset(
        name="paper",
        scoring=FitSettings(steps=1000, batch_size=64, lr=0.02),
        scoring_pool_views=64 * 1000,
        recovery=RecoverySettings(
            method="mimic", fit=FitSettings(steps=2000, batch_size=64, lr=0.02), batchnorm="train", eval_every=200
        ),
        profile=ProfileSettings(warmup_runs=10, runs_per_round=50, min_rounds=10, max_rounds=100, tolerance=0.02,
                                time_cap_s=600),
    ),
}


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise UsageError(f"unknown preset '{name}'; choose one of: {', '.join(PRESETS)}.")
    return PRESETS[name]


def with_overrides(preset: Preset, scoring_steps: int | None = None, recovery_steps: int | None = None,
                   recovery_method: str | None = None, batch_size: int | None = None,
                   point_weight: float | None = None, mixing: str | None = None,
                   synthetic_images: int | None = None, blends: tuple[float, ...] | None = None,
                   views: str | None = None, recovery_time: float | None = None) -> Preset:
    """The preset with the user's explicit overrides applied.

    An explicit recovery method or step count means that one recipe, as before recipes were tried.
    """
    scoring, recovery = preset.scoring, preset.recovery
    recipes, recovery_time_s = preset.recipes, preset.recovery_time_s
    if recovery_method is not None or recovery_steps is not None:
        if recovery_time is not None:
            raise UsageError("--recovery-time shares time among the recipes the run tries; with --recovery or "
                             "--recovery-steps one recipe runs for its steps: drop one of them.")
        recipes = ()
    elif recovery_time is not None:
        if not recipes:
            raise UsageError(f"--recovery-time: the '{preset.name}' preset runs one recipe; use --preset fast to "
                             "try the recipes within a time.")
        recovery_time_s = recovery_time
    if scoring_steps is not None:
        scoring = replace(scoring, steps=scoring_steps)
    if batch_size is not None:
        scoring = replace(scoring, batch_size=batch_size)
        recovery = replace(recovery, fit=replace(recovery.fit, batch_size=batch_size))
    if recovery_steps is not None:
        recovery = replace(recovery, fit=replace(recovery.fit, steps=recovery_steps),
                           eval_every=max(1, min(recovery.eval_every, recovery_steps)))
    if recovery_method is not None:
        recovery = replace(recovery, method=recovery_method)
    if point_weight is not None:
        recovery = replace(recovery, point_weight=point_weight)
    if mixing is not None:
        recovery = replace(recovery, mixing=mixing)
    if synthetic_images is not None:
        recovery = replace(recovery, synthetic=replace(recovery.synthetic, images=synthetic_images))
    if blends is not None:
        recovery = replace(recovery, blends=blends)
    if views is not None:
        recovery = replace(recovery, views=replace(recovery.views, source=views))
    pool = min(preset.scoring_pool_views, scoring.steps * scoring.batch_size)
    return replace(preset, scoring=scoring, recovery=recovery, scoring_pool_views=max(pool, scoring.batch_size),
                   recipes=recipes, recovery_time_s=recovery_time_s)
