"""Quantization-aware recovery in a run: which INT8 networks get a candidate trained with fake quantization in
the loop, how its student is made, and what it is called beside the network quantized after recovery.

Two INT8 networks may ship, so two candidates may be made (each only when `--recovery-quantization-aware on`,
the default, and the recovery recipes are tried):
- the chosen plan, when it is INT8: its pruned network recovered through the scheme's rounding
  (`quantization-aware`), against `recovered` (the recipes' pick, quantized after recovery);
- the precision-only plan, when it is INT8 and meets the budget alone: the whole original finetuned through
  the rounding by mimicking the FP32 original (`<scheme>, no block dropped, quantization-aware`), against the
  same network quantized without finetuning.
Each is one more trial within `--recovery-time`, saved and resumed like the recipes; the report images judge it
in its deployed form (its runtime's static quantization of its FP32 weights) beside the others. The rounding in the
loop is the runtime's: onnxruntime's schemes by fake quantization (pipeline/recovery/fake_quant.py), OpenVINO INT8
by NNCF's own quantizers on the PyTorch network (exporters.openvino_ir.quantization_aware_network).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable

from torch import nn

from pipeline.core.errors import UsageError
from pipeline.latency.precision import Precision
from pipeline.network.surgery import drop_blocks
from pipeline.recovery.fake_quant import fake_quantized
from pipeline.recovery.recipes import QUANTIZATION_AWARE, QUANTIZATION_AWARE_WHOLE, Recipe
from pipeline.run.records import Form, Selection

SETTING_VALUES = ("on", "off")
CHOSEN_PLAN_CANDIDATE = "quantization-aware"


@dataclass(frozen=True)
class QuantizationAwareTarget:
    """One INT8 network that gets a quantization-aware candidate."""

    recipe: str  # the trial's name (recipe_<name>.json in the run folder)
    precision: str  # the INT8 scheme it is rounded in, and deployed in
    dropped: list[str]
    candidate: str  # its name among the report images' candidates
    compared_with: str  # the candidate with the same blocks quantized after recovery (or without finetuning)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "QuantizationAwareTarget":
        return cls(**data)


def check_setting(value: str) -> bool:
    """--recovery-quantization-aware: True for on, False for off; anything else is a usage error."""
    if value not in SETTING_VALUES:
        raise UsageError(f"--recovery-quantization-aware '{value}' is not understood; choose one of: "
                         f"{', '.join(SETTING_VALUES)}.")
    return value == "on"


def whole_network_candidate(precision: str) -> str:
    return f"{precision}, no block dropped, quantization-aware"


def trains_quantized(precision: str) -> bool:
    """An INT8 precision whose rounding recovery can train through: onnxruntime's schemes and OpenVINO INT8 (not
    TensorRT's, whose engine builder quantizes as it likes)."""
    return Precision(precision).is_int8 and Precision(precision).runtime in ("onnxruntime", "openvino")


def targets(selection: Selection, enabled: bool) -> list[QuantizationAwareTarget]:
    """The INT8 networks that may ship (the chosen plan, the precision-only plan) and so get a candidate."""
    if not enabled:
        return []
    found = []
    if selection.dropped and trains_quantized(selection.precision):
        found.append(QuantizationAwareTarget(QUANTIZATION_AWARE.name, selection.precision, selection.dropped,
                                             CHOSEN_PLAN_CANDIDATE, "recovered"))
    plan = selection.precision_only
    # a plan at a smaller input size keeps its whole-network finetune out: it would train at the model's own size
    if plan is not None and trains_quantized(plan.precision) and plan.resolution is None:
        precision = plan.precision
        found.append(QuantizationAwareTarget(QUANTIZATION_AWARE_WHOLE.name, precision, [],
                                             whole_network_candidate(precision), Form.of([], precision).describe()))
    return found


def recipe_of(target: QuantizationAwareTarget) -> Recipe:
    return {r.name: r for r in (QUANTIZATION_AWARE, QUANTIZATION_AWARE_WHOLE)}[target.recipe]


def student_maker(teacher: nn.Module, dropped: list[str], found: list[QuantizationAwareTarget], calibration,
                  fp32_end_layers: Callable[[QuantizationAwareTarget], int]) -> Callable[[Recipe], tuple]:
    """`student_for` of try_recipes: the plan's pruned network for the FP32 recipes; for a quantization-aware one,
    its network computing through its runtime's INT8 rounding, calibrated on `calibration` (the images INT8
    calibration uses)."""
    by_recipe = {t.recipe: t for t in found}

    def make(recipe: Recipe) -> tuple[nn.Module, list[str]]:
        target = by_recipe.get(recipe.name)
        if target is None:
            return drop_blocks(teacher, dropped), dropped
        student = drop_blocks(teacher, target.dropped)
        device = next(student.parameters()).device
        if Precision(target.precision).is_openvino:
            from exporters.openvino_ir import quantization_aware_network

            return quantization_aware_network(student, calibration.to(device), fp32_end_layers(target)), target.dropped
        fake_quantized(student, target.precision, calibration.to(device), fp32_end_layers(target))
        return student, target.dropped

    return make
