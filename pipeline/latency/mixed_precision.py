"""Spending latency slack on accuracy: an INT8 network with its end layers kept in FP32.

When the chosen INT8 plan lands well under the budget, some of the time left can buy agreement back.
The layers at the network's two ends are where INT8 usually hurts most (the stem sees raw pixels; the
last convolutions and the classifier decide the top-1): on EfficientNet-Lite0 here, keeping the first and
last three compute layers in FP32 raised agreement with the FP32 original on the OpenCV photos from 57%
to 78%. Which set helps on this network, and what it costs on this device, is measured: a short ladder of
FP32 sets is quantized, timed end to end beside the original and checked on the selection split, and the
best-agreeing set that still meets the budget is kept (none, when none agrees more).
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from pipeline.core.progress import Log, quiet_log
from pipeline.latency.precision import deployed_file, is_quantized
from pipeline.network.evaluation import compare, prediction_kl

LADDER = (1, 3, 6)  # compute layers kept in FP32 at each end of the network
SLACK_TO_SPEND = 0.05  # only when the plan measured this far (fraction of the original) under the budget

MeasureFile = Callable[[Path], float]  # a deployed INT8 file -> its latency ratio against the FP32 original


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
    return is_quantized(precision) and measured_ratio is not None and measured_ratio < target_ratio - SLACK_TO_SPEND


def end_layers(fp32_onnx: Path, per_end: int) -> list[str]:
    """The first and last `per_end` compute nodes, named as quantization sees them (after its pre-processing)."""
    return end_layers_by_rung(fp32_onnx, (per_end,))[per_end]


def end_layers_by_rung(fp32_onnx: Path, rungs: tuple[int, ...]) -> dict[int, list[str]]:
    """`end_layers` for every rung of the ladder from one pre-processing of the graph (it is the same graph)."""
    from exporters.onnx_int8 import end_layer_names, preprocessed_for_quantization

    with preprocessed_for_quantization(fp32_onnx) as prepared:
        return {per_end: end_layer_names(prepared, per_end) for per_end in rungs}


def spend_slack(network: nn.Module, precision: str, calibration: torch.Tensor, images: torch.Tensor,
                reference: torch.Tensor, measure: MeasureFile | None, target_ratio: float,
                plain: MixedOption, log: Log = quiet_log) -> dict:
    """Try each rung of the ladder; return every option tried and the one to deploy (`plain`: none kept)."""
    from exporters.onnx_check import onnx_logits

    tried = [plain]
    with tempfile.TemporaryDirectory(prefix="practise-mixed-") as tmp:
        fp32 = deployed_file(network, "fp32", calibration, Path(tmp), "network")
        names = end_layers_by_rung(fp32, LADDER)
        for per_end in LADDER:
            nodes = names[per_end]
            if tried[-1].excluded_nodes == nodes:
                break  # a small network: every compute layer already kept
            path = deployed_file(network, precision, calibration, Path(tmp), f"mixed{per_end}",
                                 {"fp32_end_layers": per_end})
            logits = onnx_logits(path, images)
            ratio = measure(path) if measure is not None else None
            option = MixedOption(per_end, nodes, ratio, compare(logits, reference, None).top1_agreement,
                                 prediction_kl(logits, reference), ratio is None or ratio <= target_ratio)
            log(f"mixed precision: {len(nodes)} end layers in FP32: agreement {100 * option.agreement:.1f}% "
                f"(plain INT8 {100 * plain.agreement:.1f}%), latency ratio "
                + (f"{ratio:.3f}" if ratio is not None else "not measured"))
            tried.append(option)
            if not option.meets_budget:
                break  # more FP32 layers only cost more time
    chosen = max((o for o in tried if o.meets_budget), key=lambda o: (o.agreement, -o.kl, -o.kept_fp32_per_end))
    return {"tried": [o.to_dict() for o in tried], "fp32_end_layers": chosen.kept_fp32_per_end,
            "excluded_nodes": chosen.excluded_nodes,
            "why": (f"the first and last {chosen.kept_fp32_per_end} compute layers kept in FP32 agree most on the "
                    "selection split and meet the budget" if chosen.kept_fp32_per_end
                    else "no FP32 set agreed more within the budget: plain INT8")}
