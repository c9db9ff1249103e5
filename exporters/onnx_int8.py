"""Static INT8 quantization of an ONNX file: quantize/dequantize nodes calibrated on real images.

Which INT8 scheme is fast is a property of the device (on this project's AVX-512 VNNI CPU, uint8
activations with int8 weights ran about 1.6x faster than int8 activations; on x86 without VNNI INT8 can
be slower than FP32), so the schemes onnxruntime offers are a registry the run measures, not a choice
made here. The scheme fixes the graph (and so the latency); the calibration method and the nodes kept in
FP32 change only the accuracy. The QDQ form is also what TensorRT builds as an explicitly quantized
(strongly typed) engine.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from exporters.onnx_file import INPUT_NAME, show_warnings
from pipeline.core.atomic import atomic_path
from pipeline.core.errors import RunFailure, UsageError

CALIBRATION_METHODS = ("minmax", "entropy", "percentile")


@dataclass(frozen=True)
class Int8Scheme:
    """One way onnxruntime can quantize a network statically."""

    name: str  # the precision name latency tables and plans carry, e.g. "int8-qdq-u8s8-channel"
    quant_format: str  # "qdq" (quantize/dequantize pairs) or "qoperator" (quantized operators)
    activations: str  # "uint8" or "int8"
    per_channel: bool  # per-channel weight scales (else one scale per tensor)
    calibration: str = "minmax"
    excluded_nodes: tuple[str, ...] = field(default=())  # kept in FP32 (mixed precision)
    # the first and last N compute nodes kept in FP32, found in each file's own graph when it is quantized
    # (node names differ between two exports of one architecture, so a choice travels as N, not as names)
    fp32_end_layers: int = 0

    def describe(self) -> str:
        weights = "per-channel" if self.per_channel else "per-tensor"
        kept = f", {len(self.excluded_nodes)} nodes kept in FP32" if self.excluded_nodes else ""
        kept += f", first and last {self.fp32_end_layers} compute layers kept in FP32" if self.fp32_end_layers else ""
        return (f"static {self.quant_format.upper()}, {self.activations} activations, {weights} int8 weights, "
                f"{self.calibration} calibration{kept}")

    def with_accuracy_options(self, calibration: str | None = None,
                              excluded_nodes: tuple[str, ...] | None = None,
                              fp32_end_layers: int | None = None) -> "Int8Scheme":
        if calibration is not None and calibration not in CALIBRATION_METHODS:
            raise UsageError(f"unknown calibration method '{calibration}'; choose one of: {', '.join(CALIBRATION_METHODS)}.")
        return replace(self, calibration=calibration or self.calibration,
                       excluded_nodes=self.excluded_nodes if excluded_nodes is None else tuple(excluded_nodes),
                       fp32_end_layers=self.fp32_end_layers if fp32_end_layers is None else int(fp32_end_layers))


INT8_SCHEMES: dict[str, Int8Scheme] = {s.name: s for s in (
    Int8Scheme("int8-qdq-u8s8-channel", "qdq", "uint8", True),
    Int8Scheme("int8-qdq-s8s8-channel", "qdq", "int8", True),
    Int8Scheme("int8-qdq-u8s8-tensor", "qdq", "uint8", False),
    Int8Scheme("int8-qdq-s8s8-tensor", "qdq", "int8", False),
    Int8Scheme("int8-qop-u8s8-channel", "qoperator", "uint8", True),
)}
# what `--format onnx-int8` writes when no run measured the schemes (the export's historical scheme)
DEFAULT_SCHEME = INT8_SCHEMES["int8-qdq-s8s8-channel"]


def get_scheme(name: str) -> Int8Scheme:
    if name not in INT8_SCHEMES:
        raise UsageError(f"unknown INT8 scheme '{name}'; choose one of: {', '.join(INT8_SCHEMES)}.")
    return INT8_SCHEMES[name]


def quantize_onnx(fp32_path: Path, target: Path, calibration_images: torch.Tensor,
                  scheme: Int8Scheme = DEFAULT_SCHEME) -> Path:
    """Write the INT8 version of `fp32_path` at `target` in `scheme`, calibrated on `calibration_images`.

    `quant_pre_process` (shape inference and graph optimisation) runs first: without it the QDQ graph of
    EfficientNet-Lite0 ran 1.75x slower than FP32 here.
    """
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared = target.with_name(target.stem + "-prep.onnx")
    chatter = io.StringIO()
    try:
        with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stdout(chatter), \
                contextlib.redirect_stderr(chatter):
            quant_pre_process(str(fp32_path), str(prepared))
            if scheme.fp32_end_layers:
                scheme = replace(scheme, excluded_nodes=scheme.excluded_nodes
                                 + tuple(end_layer_names(prepared, scheme.fp32_end_layers)))
            with atomic_path(target) as tmp:
                _quantize_static(prepared, tmp, calibration_images, scheme)
    except Exception as exc:
        raise RunFailure(f"INT8 quantization ({scheme.name}) failed ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0][:300] if str(exc) else ''})") from exc
    finally:
        prepared.unlink(missing_ok=True)
        for leftover in target.parent.glob(target.stem + "-prep*"):
            leftover.unlink(missing_ok=True)
    show_warnings(caught)
    return target


COMPUTE_OPS = ("Conv", "Gemm", "MatMul")


def end_layer_names(onnx_path: Path, per_end: int) -> list[str]:
    """The first and last `per_end` compute nodes of a graph, in graph order (all of them in a small graph)."""
    import onnx

    names = [n.name for n in onnx.load(str(onnx_path)).graph.node if n.op_type in COMPUTE_OPS]
    return names if len(names) <= 2 * per_end else names[:per_end] + names[-per_end:]


@contextlib.contextmanager
def preprocessed_for_quantization(fp32_path: Path):
    """The graph quantization works on (`quant_pre_process` output), in a temporary file: node names to keep
    in FP32 (`excluded_nodes`) must be taken from it."""
    import tempfile

    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory(prefix="practise-prep-") as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        chatter = io.StringIO()
        with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stdout(chatter), \
                contextlib.redirect_stderr(chatter):
            quant_pre_process(str(fp32_path), str(prepared))
        show_warnings(caught)
        yield prepared


def _quantize_static(source: Path, target: Path, images: torch.Tensor, scheme: Int8Scheme) -> None:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class ImageReader(CalibrationDataReader):
        def __init__(self, batch: torch.Tensor):
            self._batches = iter([{INPUT_NAME: batch[i : i + 1].numpy()} for i in range(len(batch))])

        def get_next(self):
            return next(self._batches, None)

    method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
              "percentile": CalibrationMethod.Percentile}[scheme.calibration]
    activation = QuantType.QUInt8 if scheme.activations == "uint8" else QuantType.QInt8
    quant_format = QuantFormat.QDQ if scheme.quant_format == "qdq" else QuantFormat.QOperator
    quantize_static(str(source), str(target), ImageReader(images), quant_format=quant_format,
                    per_channel=scheme.per_channel, activation_type=activation, weight_type=QuantType.QInt8,
                    calibrate_method=method, nodes_to_exclude=list(scheme.excluded_nodes) or None)
