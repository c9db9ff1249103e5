"""Precision as a lever, measured on the device: how fast and how faithful each deployable precision is.

Which INT8 scheme is fast is a property of the hardware, like block savings are, so every precision the
profiler's backend can deploy is timed on the original network beside FP32 in one interleaved measurement
(the same method as the latency table), and its top-1 agreement and KL with the FP32 original are measured
on the selection split. Precisions slower than FP32, or far less faithful than another as fast, are
dropped with the reason; the kept ones each get their own latency table and plan.
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from pipeline.core.progress import Log, ProgressFactory, quiet_log, silent
from pipeline.latency.profiling import measure_variants
from pipeline.network.evaluation import compare, predict_logits, prediction_kl
from profilers import Profiler

FP32 = "fp32"
# a precision must save at least this fraction of the FP32 latency to be worth its accuracy cost
MIN_SAVING = 0.03
# among precisions this much apart in latency ratio, only the most faithful is kept
SAME_SPEED = 0.05
CALIBRATION_IMAGES = 64


@dataclass
class PrecisionOption:
    """One deployable precision of the original network, measured here."""

    precision: str
    latency_ratio: float  # median per-round latency against the FP32 original, measured side by side
    latency_ms: float
    agreement: float  # top-1 agreement with the FP32 original on the selection split
    kl: float  # KL(FP32 original || this precision) on the selection split
    kept: bool = True
    reason: str = ""
    resolution: int | None = None  # the input size, when smaller than the model's own (--min-resolution)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "PrecisionOption":
        return cls(**data)


# TensorRT's INT8: a QDQ ONNX graph in the default onnxruntime scheme (what exporters.formats writes for an engine)
TENSORRT_INT8 = "int8"


def is_quantized(precision: str) -> bool:
    """An onnxruntime INT8 scheme (what mixed precision and quantization-aware recovery know how to handle)."""
    return precision.startswith("int8") and precision != TENSORRT_INT8


def is_int8(precision: str) -> bool:
    """Any INT8 precision, of any runtime: what the mixed-precision ladder (FP32 end layers) applies to."""
    from exporters.openvino_ir import INT8

    return is_quantized(precision) or precision in (INT8, TENSORRT_INT8)


def is_half(precision: str) -> bool:
    """FP16 or BF16: the network cast as a whole (a GPU backend's precisions), judged on the CPU in PyTorch."""
    from exporters.half_precision import is_half as half

    return half(precision)


class Precision(str):
    """A deployable precision's name that knows what it is: INT8 (and whose), half, OpenVINO; the runtime the name pins
    and the export format that carries a network deployed in it. A `str`, so records store and compare it as the name.
    """

    @property
    def is_int8(self) -> bool:
        return is_int8(self)

    @property
    def is_quantized(self) -> bool:
        """An onnxruntime INT8 scheme (mixed precision and quantization-aware recovery handle these)."""
        return is_quantized(self)

    @property
    def is_half(self) -> bool:
        return is_half(self)

    @property
    def is_openvino(self) -> bool:
        from exporters.openvino_ir import is_openvino

        return is_openvino(self)

    @property
    def runtime(self) -> str | None:
        """The runtime the name itself pins (None: FP32, FP16 and BF16 run where the run's backend runs them)."""
        if self.is_openvino:
            return "openvino"
        if self == TENSORRT_INT8:
            return "tensorrt"
        return "onnxruntime" if self.is_quantized else None

    @property
    def export_format(self) -> str:
        """The artefact that carries a network deployed in this precision (exporters.formats.FORMATS)."""
        if self.is_openvino:
            return "openvino"
        if self == "bf16":
            return "exported-program"  # ONNX has no BF16 convolution: the BF16 network ships as a PyTorch format
        if self == TENSORRT_INT8:
            return "tensorrt"  # TensorRT's INT8 plan: the engine built from the QDQ ONNX is what was timed
        return "onnx-int8" if self.is_quantized else "onnx"


def runs_in_pytorch_as_is(precision: str) -> bool:
    """FP32 on onnxruntime computes what PyTorch computes (to float tolerance); every other precision is judged
    on its deployed file."""
    return precision == FP32


def file_logits(path: Path | nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Logits of a deployed file on `images`: an OpenVINO IR (`.xml`) in OpenVINO, an ONNX file in onnxruntime; a
    network in half precision (deployed_file's module) in PyTorch on the CPU."""
    if isinstance(path, nn.Module):
        return predict_logits(path, images)
    if path.suffix == ".xml":
        from exporters.openvino_ir import ir_logits

        return ir_logits(path, images)
    from exporters.onnx_check import onnx_logits

    return onnx_logits(path, images)


def deployed_file(module: nn.Module, precision: str, calibration: torch.Tensor, folder: Path, name: str,
                  scheme_options: dict | None = None) -> Path | nn.Module:
    """The network as it would be deployed in `precision`: its ONNX file, quantized on `calibration` (FP16 and
    BF16: the half-precision module itself, which each GPU profiler turns into its own form).

    The FP32 export in `folder` is reused when it is there (one export serves every scheme)."""
    from exporters import openvino_ir
    from exporters.onnx_file import export_onnx
    from exporters.onnx_int8 import DEFAULT_SCHEME, get_scheme, quantize_onnx

    if is_half(precision):
        return half_network(module, precision, calibration, scheme_options)
    fp32 = folder / f"{name}.onnx"
    if not fp32.exists():
        export_onnx(module, calibration[:1], fp32)
    if openvino_ir.is_openvino(precision):
        end_layers = int((scheme_options or {}).get("fp32_end_layers", 0))
        return openvino_ir.write_ir(fp32, folder / f"{name}.{precision}.xml", precision, calibration, end_layers)
    if not is_int8(precision):
        return fp32
    scheme = (DEFAULT_SCHEME if precision == TENSORRT_INT8 else get_scheme(precision)).with_accuracy_options(
        **(scheme_options or {}))
    return quantize_onnx(fp32, folder / f"{name}.{precision}.onnx", calibration[:CALIBRATION_IMAGES], scheme)


def half_network(module: nn.Module, precision: str, calibration: torch.Tensor,
                 scheme_options: dict | None = None) -> nn.Module:
    """The network in FP16 or BF16 as every GPU backend deploys it (exporters.half_precision): a module, not a file,
    which the torch profilers time as it is and the ONNX-based ones (onnxruntime CUDA, TensorRT) export as it is."""
    from exporters.half_precision import in_precision

    end_layers = int((scheme_options or {}).get("fp32_end_layers", 0))
    return in_precision(module.eval(), precision, end_layers, calibration[:1]).eval()


def deployed_logits(module: nn.Module, precision: str, images: torch.Tensor, calibration: torch.Tensor,
                    scheme_options: dict | None = None) -> torch.Tensor:
    """Logits of `module` in its deployed precision: PyTorch for FP32, its deployed file's runtime otherwise
    (onnxruntime for an INT8 scheme, OpenVINO for an OpenVINO precision)."""
    if runs_in_pytorch_as_is(precision):
        return predict_logits(module, images)
    with tempfile.TemporaryDirectory(prefix="practise-precision-") as tmp:
        path = deployed_file(module, precision, calibration, Path(tmp), "network", scheme_options)
        return file_logits(path, images)


def survey_precisions(original: nn.Module, profiler: Profiler, precisions: tuple[str, ...],
                      selection_images: torch.Tensor, calibration: torch.Tensor,
                      progress: ProgressFactory = silent, log: Log = quiet_log,
                      target_ratio: float | None = None) -> list[PrecisionOption]:
    """Time every precision of the original beside the reference and measure its agreement; mark which are kept.

    `profiler` is the active profiler in the reference precision (its runtime's FP32: the budget's scale), which
    times the original as it is; each other precision is timed in its deployed form (a file run by onnxruntime or
    OpenVINO; FP16 and BF16 a half-precision module, which a GPU profiler runs or exports as it is), in the same
    interleaved rounds. Agreement is against the FP32 PyTorch original.
    """
    base = profiler.settings.precision
    reference = predict_logits(original, selection_images)
    options = {base: (1.0, 0.0)}
    variants: dict[str, Path | nn.Module] = {base: original}
    with tempfile.TemporaryDirectory(prefix="practise-precision-") as tmp:
        for precision in precisions:
            if precision == base:
                continue
            log(f"converting the original network: {precision}")
            path = deployed_file(original, precision, calibration, Path(tmp), "original")
            variants[precision] = path
            logits = file_logits(path, selection_images)
            options[precision] = (compare(logits, reference, None).top1_agreement, prediction_kl(logits, reference))
        log(f"timing the original network in {len(variants)} precisions side by side")
        rounds = measure_variants(variants, profiler, progress, reference=base)
    measured = [PrecisionOption(p, rounds.ratio(p, base), rounds.median_ms(p), *options[p]) for p in variants]
    return keep_precisions(measured, target_ratio)


def keep_precisions(options: list[PrecisionOption], target_ratio: float | None = None) -> list[PrecisionOption]:
    """The reference (the first option) always; another precision when it saves at least MIN_SAVING and no
    precision about as fast is more faithful (lower KL, then agreement), unless that one misses `target_ratio`
    alone where this one meets it (the budget then needs the faster one: without it a plan would drop blocks).

    KL before top-1 agreement: on a selection split of 16 images agreement moves in steps of 6%, while KL moves with
    every image. On Lite0 (AMD EPYC, embedded tiny set) agreement ranked OpenVINO's NNCF INT8 (81.2%, KL 0.096) over
    onnxruntime's u8s8 (68.8%, KL 0.061); on 172 held-out images it was the other way round (70.3/82.0% against
    86.8/86.9%), as KL said."""
    base = options[0].precision
    for option in options:
        if option.precision == base:
            option.kept, option.reason = True, "the reference precision"
        elif option.latency_ratio > 1 - MIN_SAVING:
            option.kept = False
            shown = "FP32" if base == FP32 else base
            option.reason = (f"not faster than {shown} on this device (latency ratio {option.latency_ratio:.3f})")
    fast = sorted((o for o in options if o.precision != base and o.reason == ""), key=lambda o: o.latency_ratio)
    for option in fast:
        rivals = [o for o in fast if o is not option and abs(o.latency_ratio - option.latency_ratio) <= SAME_SPEED]
        closer = [o for o in rivals if (-o.kl, o.agreement, -o.latency_ratio) > (-option.kl, option.agreement,
                                                                                   -option.latency_ratio)]
        better = [o for o in closer if not _only_this_meets(option, o, target_ratio)]
        faster_and_as_good = [o for o in fast if o.latency_ratio < option.latency_ratio - SAME_SPEED
                              and (-o.kl, o.agreement) >= (-option.kl, option.agreement)]
        if better:
            option.kept, option.reason = False, (f"{better[0].precision} is about as fast and closer to the original "
                                                 "(KL on the selection split)")
        elif faster_and_as_good:
            option.kept = False
            option.reason = (f"{faster_and_as_good[0].precision} is faster and at least as close to the original "
                             "(KL on the selection split)")
        elif closer:
            option.kept, option.reason = True, (f"{closer[0].precision} is about as fast and closer to the original "
                                                f"but misses the target {target_ratio:.3f} alone, where this one meets it")
        else:
            option.kept, option.reason = True, "faster than the reference, and no precision as fast is closer"
    return options


def _only_this_meets(option: PrecisionOption, rival: PrecisionOption, target_ratio: float | None) -> bool:
    return target_ratio is not None and option.latency_ratio <= target_ratio < rival.latency_ratio
