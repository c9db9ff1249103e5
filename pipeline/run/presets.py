"""Named bundles of settings: a fast CPU default and the paper's reference settings.

The fast preset's numbers come from measurements on this project's 2-core CPU machines with
EfficientNet-Lite0 (see benchmarks/results/); the paper preset follows ../shared/PRACTISE.md.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from pipeline.core.errors import UsageError
from pipeline.recovery.mimic import FitSettings
from pipeline.recovery.recover import RecoverySettings
from profilers import ProfileSettings


@dataclass(frozen=True)
class Preset:
    name: str
    scoring: FitSettings  # adaptor fit per candidate (recoverability)
    scoring_pool_views: int  # augmented views whose teacher features are computed once for all candidates
    recovery: RecoverySettings
    profile: ProfileSettings
    holdout_fraction: float = 0.3


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
                   views: str | None = None) -> Preset:
    """The preset with the user's explicit overrides applied."""
    scoring, recovery = preset.scoring, preset.recovery
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
    return replace(preset, scoring=scoring, recovery=recovery, scoring_pool_views=max(pool, scoring.batch_size))
