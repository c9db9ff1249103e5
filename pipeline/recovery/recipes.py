"""The recovery recipes a run tries when the user does not name one, and the registry that holds them.

A recipe fixes what trains and what the student mimics (method, BatchNorm handling, logit term); its
length and learning rate come from the schedule (schedule.py), and which recipe ships is decided by
measurement (trials.py, then the report images in pipeline/run/deployment.py). Order matters: under a
tight recovery time the first recipes get their share first.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from pipeline.core.errors import UsageError
from pipeline.recovery.recover import RecoverySettings


@dataclass(frozen=True)
class Recipe:
    name: str
    description: str
    method: str  # "adaptors" or "mimic"
    batchnorm: str = "frozen"  # "frozen" (running statistics) or "train" (batch statistics, re-estimated)
    logit_weight: float = 0.0  # logit MSE beside the final features
    # None: the preset's (the user's --recovery-points / --recovery-mixing reach every recipe that sets neither)
    point_weight: float | None = None  # MSE at each dropped block's output (multi-point mimicking)
    mixing: str | None = None  # "cutmix"/"mixup": half of each batch mixes two views

    def settings(self, base: RecoverySettings, max_steps: int) -> RecoverySettings:
        """`base` (the preset's options: batch, views, mixing ...) with this recipe's choices and a step cap."""
        return replace(base, method=self.method, batchnorm=self.batchnorm, logit_weight=self.logit_weight,
                       point_weight=base.point_weight if self.point_weight is None else self.point_weight,
                       mixing=self.mixing or base.mixing,
                       fit=replace(base.fit, steps=max_steps, lr_milestones=()))

    def to_dict(self) -> dict:
        return {"name": self.name, "description": self.description, "method": self.method,
                "batchnorm": self.batchnorm, "logit_weight": self.logit_weight, "point_weight": self.point_weight,
                "mixing": self.mixing}


RECIPES: dict[str, Recipe] = {r.name: r for r in (
    Recipe("adaptors", "1x1 adaptors around the dropped blocks, folded afterwards; BatchNorm frozen", "adaptors"),
    Recipe("all-bn-frozen", "every parameter trains; BatchNorm keeps the original's running statistics", "mimic"),
    Recipe("all-bn-reestimated", "every parameter trains with BatchNorm in training mode: batch statistics, "
           "running statistics re-estimated on the tiny set (the paper's recovery)", "mimic", batchnorm="train"),
    Recipe("all-logits", "every parameter trains, BatchNorm frozen; the logits are mimicked beside the features",
           "mimic", logit_weight=1.0),
    # variants of all-bn-reestimated, measured on the inverted-residual Fashion-MNIST teacher (100 images, 3 seeds,
    # benchmarks/results/recovery_recipes_notes.md) and not in the default set: none beat it by more than the
    # seeds' spread once its patience was 10, and each recipe tried takes a share of --recovery-time
    Recipe("all-bn-reestimated-cutmix", "all-bn-reestimated; half of each batch CutMix of two views", "mimic",
           batchnorm="train", mixing="cutmix"),
    Recipe("all-bn-reestimated-mixup", "all-bn-reestimated; half of each batch MixUp of two views", "mimic",
           batchnorm="train", mixing="mixup"),
    Recipe("all-bn-reestimated-logits", "all-bn-reestimated; the logits are mimicked beside the features", "mimic",
           batchnorm="train", logit_weight=1.0),
    Recipe("all-bn-reestimated-points", "all-bn-reestimated; each dropped block's output is mimicked too "
           "(multi-point)", "mimic", batchnorm="train", point_weight=1.0),
)}

# what a run tries by default, in this order
DEFAULT_RECIPES = ("adaptors", "all-bn-frozen", "all-bn-reestimated", "all-logits")

# Quantization-aware recovery (issue 15): all-bn-frozen with the deployed INT8 scheme's rounding in the loop
# (fake_quant.py), so "recover, then quantize" and "recover while quantized" differ only in that rounding. Not
# in RECIPES: the run tries them only when an INT8 network may ship, on a student it fake-quantizes, and each
# competes on the report images as a candidate of its own, never as `recovered`.
QUANTIZATION_AWARE = Recipe(
    "quantization-aware", "every parameter trains through the INT8 scheme's rounding (fake quantization), BatchNorm "
    "frozen, mimicking the FP32 original's features; quantized by its runtime afterwards like the others", "mimic")
QUANTIZATION_AWARE_WHOLE = Recipe(
    "quantization-aware-whole-network", "the original network, no block dropped, finetuned the same way "
    "(quantization-aware finetuning by mimicking) for the INT8 plan that meets the budget alone", "mimic")


def get_recipes(names: tuple[str, ...] | list[str]) -> list[Recipe]:
    unknown = [n for n in names if n not in RECIPES]
    if unknown:
        raise UsageError(f"unknown recovery recipe(s) {', '.join(unknown)}; choose from: {', '.join(RECIPES)}.")
    return [RECIPES[n] for n in names]
