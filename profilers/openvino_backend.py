"""CPU latency through OpenVINO, and across runtimes: one clock for onnxruntime and OpenVINO plans.

A variant's precision says which runtime runs it: onnxruntime's (`fp32`, the INT8 schemes) run in an
onnxruntime session, OpenVINO's (`openvino-fp32`, `openvino-bf16`, `openvino-int8`) as an IR compiled by
OpenVINO with the LATENCY hint, the run's thread count and the IR's recorded inference precision. A file
given as a variant runs by its suffix (`.onnx` in onnxruntime, `.xml` in OpenVINO), so an onnxruntime FP32
original and OpenVINO files are timed in the same interleaved rounds. Every OpenVINO file is converted from
the variant's FP32 ONNX export, which is shared with onnxruntime (and, for a variant that is its base network
minus blocks, edited from the base's export as onnxruntime's profiler does).

`--backend openvino` plans in OpenVINO's precisions only, the budget relative to OpenVINO FP32; `--backend auto`
plans in every precision of both runtimes, the budget relative to onnxruntime FP32 (the reference runtime).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch

from exporters import openvino_ir
from pipeline.core.errors import UsageError
from profilers.base import Variant
from profilers.fingerprint import DeviceFingerprint
from profilers.onnxruntime_backend import TIMING_CALIBRATION_IMAGES, OnnxRuntimeCpuProfiler, _input_for


def _onnxruntime_precisions() -> tuple[str, ...]:
    return OnnxRuntimeCpuProfiler.precisions


class _WithOfferedOpenVino:
    """`auto_precisions` that adds OpenVINO's offered precisions when first read, not when the module is imported
    (asking OpenVINO what the CPU offers starts its runtime)."""

    def __init__(self, *fixed: str):
        self.fixed = fixed

    def __get__(self, instance, owner) -> tuple[str, ...]:
        return (*self.fixed, *openvino_ir.offered_precisions())


class OpenVinoCpuProfiler(OnnxRuntimeCpuProfiler):
    """OpenVINO's precisions, each variant an IR; onnxruntime's FP32 stays measurable beside them."""

    name = "openvino"
    target = "cpu"
    # fp32 (onnxruntime) stays measurable so that artefacts can be timed against the reference runtime
    precisions: tuple[str, ...] = ("fp32", *openvino_ir.PRECISIONS)
    auto_precisions = _WithOfferedOpenVino()
    reference_precision = openvino_ir.FP32

    def activate(self) -> None:
        openvino_ir.require_openvino(f"--backend {self.name}")
        super().activate()

    def fingerprint(self) -> DeviceFingerprint:
        base = super().fingerprint()
        if not openvino_ir.is_openvino(self.settings.precision):
            return base
        from dataclasses import replace

        return replace(base, backend="openvino-cpu", backend_version=openvino_ir.openvino_version())

    def _load(self, name: str, variant: Variant) -> Callable[[], object]:
        s = self.settings
        if s.precision not in self.precisions:
            raise UsageError(f"the {self.name} backend measures {', '.join(self.precisions)}, not {s.precision}.")
        example = torch.randn(s.input_shape())
        path = variant if isinstance(variant, Path) else self._file_for(variant, example)
        if path.suffix != ".xml":
            return super()._load(name, path)
        compiled = openvino_ir.compile_ir(path, s.resolved_threads())
        request = compiled.create_infer_request()
        self._sessions.append(compiled)
        shape = compiled.input(0).get_partial_shape()
        dims = [d.get_length() if d.is_static else -1 for d in shape] if shape.rank.is_static else None
        feed = {0: _input_for(dims, example)}
        return lambda: request.infer(feed)

    def _file_for(self, module: torch.nn.Module, example: torch.Tensor) -> Path:
        """The module's file in the profiler's precision: an IR for OpenVINO's, onnxruntime's file otherwise."""
        precision = self.settings.precision
        if not openvino_ir.is_openvino(precision):
            return super()._file_for(module, example)
        fp32 = self._fp32_file(module, example)
        target = fp32.with_name(f"{fp32.stem}.{precision}.xml")
        if not target.exists():
            calibration = torch.randn(TIMING_CALIBRATION_IMAGES, *example.shape[1:])
            openvino_ir.write_ir(fp32, target, precision, calibration)
        return target


class AutoCpuProfiler(OpenVinoCpuProfiler):
    """Every CPU runtime installed here, on one clock: onnxruntime's precisions and, when OpenVINO is installed,
    OpenVINO's. Without OpenVINO it is onnxruntime's profiler, and the run's log says how to add OpenVINO."""

    name = "auto"
    precisions = (*_onnxruntime_precisions(), *openvino_ir.PRECISIONS)
    auto_precisions = _WithOfferedOpenVino(*_onnxruntime_precisions())
    reference_precision = "fp32"

    def activate(self) -> None:
        if openvino_ir.is_openvino(self.settings.precision):
            openvino_ir.require_openvino(f"the {self.settings.precision} precision")
        OnnxRuntimeCpuProfiler.activate(self)
