"""Spending latency slack on accuracy: an INT8 (or FP16/BF16) network with its end layers kept in FP32.

When the chosen INT8 plan lands well under the budget, some of the time left can buy agreement back.
The layers at the network's two ends are where INT8 usually hurts most (the stem sees raw pixels; the
last convolutions and the classifier decide the top-1): on EfficientNet-Lite0 here, keeping the first and
last three compute layers in FP32 raised agreement with the FP32 original on the OpenCV photos from 57%
to 78%. Which set helps on this network, and what it costs on this device, is measured: a short ladder of
FP32 sets is quantized, timed end to end beside the original (all rungs in one interleaved measurement) and
checked on the selection split, and the set closest to the original there (lowest KL) that still meets the
budget is kept (none, when none is closer than plain INT8); a set with more FP32 layers must be at least 5%
closer than the smaller one to be worth its time.

KL rather than top-1 agreement ranks the rungs: on a selection split of 16 images agreement moves in steps
of 6%, while KL moves with every image. On Lite0 (u8s8 per-channel, a 2-core Intel Xeon) KL on the 16 selection
images ranked 1/3/6 layers per end as agreement on 91 held-out photos did (plain 0.061 / 86.8%, one per end
0.051 / 86.8%, three 0.018 / 93.4%, six 0.014 / 96.7%).
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from pipeline.core.progress import Log, quiet_log
from pipeline.latency.precision import deployed_file, file_logits, is_half, is_int8
from pipeline.network.evaluation import compare, prediction_kl

LADDER = (1, 3, 6, 10)  # compute layers kept in FP32 at each end of the network
SLACK_TO_SPEND = 0.05  # only when the plan measured this far (fraction of the original) under the budget
# a rung keeping more layers in FP32 must be this much closer (relative KL) than the one kept so far: in the
# benchmark at budget 0.9, 10 layers per end (KL 0.0132, ratio 0.84) agreed no more on held-out photos than 6
# (KL 0.0136, ratio 0.70)
CLOSER_ENOUGH = 0.05

# deployed INT8 files (half precision: networks) by rung -> each one's latency ratio against the FP32 original,
# measured side by side
MeasureFiles = Callable[[dict[int, Path | nn.Module]], dict[int, float]]


@dataclass
class MixedOption:
    kept_fp32_per_end: int  # the choice, as it travels: names are found in each file's own graph
    excluded_nodes: list[str]  # what that meant in this network's graph (for the record)
    measured_ratio: float | None
    agreement: float
    kl: float
    meets_budget: bool

    def to_dict(self) -> dict:
        return asdict(self)


def worth_trying(precision: str, measured_ratio: float | None, target_ratio: float) -> bool:
    """INT8 of any runtime, and FP16/BF16 (the GPU's half precisions: a final softmax or a first layer may cost
    agreement in half precision as in INT8), when the plan measured well under the budget."""
    return (is_int8(precision) or is_half(precision)) and measured_ratio is not None and measured_ratio < target_ratio - SLACK_TO_SPEND


def end_layers(fp32_onnx: Path, per_end: int) -> list[str]:
    """The first and last `per_end` compute nodes, named as quantization sees them (after its pre-processing)."""
    return end_layers_by_rung(fp32_onnx, (per_end,))[per_end]


def end_layers_by_rung(fp32_onnx: Path, rungs: tuple[int, ...]) -> dict[int, list[str]]:
    """`end_layers` for every rung of the ladder from one pre-processing of the graph (it is the same graph)."""
    from exporters.onnx_int8 import end_layer_names, preprocessed_for_quantization

    with preprocessed_for_quantization(fp32_onnx) as prepared:
        return {per_end: end_layer_names(prepared, per_end) for per_end in rungs}


def spend_slack(network: nn.Module, precision: str, calibration: torch.Tensor, images: torch.Tensor,
                reference: torch.Tensor, measure: MeasureFiles | None, target_ratio: float,
                plain: MixedOption, log: Log = quiet_log) -> dict:
    """Quantize and measure every rung of the ladder; return every option tried and the one to deploy
    (`plain`: none kept)."""

    tried = [plain]
    with tempfile.TemporaryDirectory(prefix="practise-mixed-") as tmp:
        names = distinct_rungs(_half_end_layers_by_rung(network, calibration) if is_half(precision) else
                               _end_layers_by_rung(_fp32_file(network, calibration, Path(tmp)), precision, LADDER))
        files = {per_end: deployed_file(network, precision, calibration, Path(tmp), f"mixed{per_end}",
                                        {"fp32_end_layers": per_end}) for per_end in names}
        ratios = measure(files) if measure is not None else {}
        for per_end, path in files.items():
            logits = file_logits(path, images)
            ratio = ratios.get(per_end)
            option = MixedOption(per_end, names[per_end], ratio, compare(logits, reference, None).top1_agreement,
                                 prediction_kl(logits, reference), ratio is None or ratio <= target_ratio)
            log(f"mixed precision: the first and last {per_end} compute layers in FP32 ({len(option.excluded_nodes)} "
                f"layers): KL {option.kl:.4f}, agreement "
                f"{100 * option.agreement:.1f}% (plain {_shown(precision)} {plain.kl:.4f}, {100 * plain.agreement:.1f}%), latency "
                "ratio " + (f"{ratio:.3f}" if ratio is not None else "not measured")
                + ("" if option.meets_budget else " (over the budget)"))
            tried.append(option)
    chosen = closest_worth_its_time([o for o in tried if o.meets_budget])
    return {"tried": [o.to_dict() for o in tried], "fp32_end_layers": chosen.kept_fp32_per_end,
            "excluded_nodes": chosen.excluded_nodes,
            "why": (f"the first and last {chosen.kept_fp32_per_end} compute layers kept in FP32 are closest to the "
                    "original on the selection split (KL; a larger set must be 5% closer) and meet the budget"
                    if chosen.kept_fp32_per_end
                    else f"no FP32 set was closer to the original within the budget: plain {_shown(precision)}")}


def _shown(precision: str) -> str:
    return "INT8" if is_int8(precision) else precision.upper()


def closest_worth_its_time(options: list[MixedOption]) -> MixedOption:
    """From plain INT8 up the ladder, move to a rung with more FP32 layers only when it is at least
    `CLOSER_ENOUGH` closer to the original (KL) than the rung kept so far: KL on a few selection images
    differs by a few percent between near-equal rungs, and a slower rung must buy something."""
    kept = options[0]
    for option in sorted(options[1:], key=lambda o: o.kept_fp32_per_end):
        if option.kl < (1 - CLOSER_ENOUGH) * kept.kl:
            kept = option
    return kept


def _end_layers_by_rung(fp32_onnx: Path, precision: str, rungs: tuple[int, ...]) -> dict[int, list[str]]:
    """Each rung's FP32 layers as the precision's quantizer names them (onnxruntime's or NNCF's graph)."""
    from exporters import openvino_ir

    if openvino_ir.is_openvino(precision):
        return openvino_ir.end_layers_by_rung(fp32_onnx, rungs)
    return end_layers_by_rung(fp32_onnx, rungs)


def _fp32_file(network: nn.Module, calibration: torch.Tensor, folder: Path) -> Path:
    path = deployed_file(network, "fp32", calibration, folder, "network")
    assert isinstance(path, Path)  # FP32 deploys as an ONNX file (for the type checker)
    return path


def _half_end_layers_by_rung(network: nn.Module, calibration: torch.Tensor) -> dict[int, list[str]]:
    """Each rung's FP32 layers in a half-precision network: module names, in the order the forward pass calls them."""
    from exporters.half_precision import end_layers_by_rung as half_end_layers

    return half_end_layers(network, LADDER, calibration[:1])


def distinct_rungs(names: dict[int, list[str]]) -> dict[int, list[str]]:
    """The rungs that keep a new set of layers (a small network runs out: every compute layer already kept)."""
    kept, last = {}, None
    for per_end, nodes in names.items():
        if nodes != last:
            kept[per_end] = nodes
        last = nodes
    return kept
