"""GPU latency through TensorRT: an engine per network variant, built from its ONNX, timed with CUDA events.

Each PyTorch variant is exported to ONNX in the profiled precision (FP32, FP16 graph, or INT8 QDQ),
built into a fixed-shape engine (builds share one timing cache per GPU and TensorRT version, so
repeated layers are timed once), and run on torch tensors and a torch stream.

INT8 variants are calibrated on random images: latency does not depend on the scale values, and the
profiler has no tiny set. The exported INT8 artefact itself is calibrated on the run's tiny set.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Callable

import torch

from pipeline.core import paths
from pipeline.core.devices import gpu_identity, require_cuda
from pipeline.core.errors import UsageError
from profilers.base import Profiler, Variant
from profilers.cuda import time_bursts_ms
from profilers.fingerprint import DeviceFingerprint

INT8_CALIBRATION_IMAGES = 8


class TensorRTProfiler(Profiler):
    name = "tensorrt"
    target = "gpu"
    precisions = ("fp32", "fp16", "int8")
    auto_precisions = precisions

    def activate(self) -> None:
        from exporters.tensorrt_engine import require_tensorrt, timing_cache_path

        self._version = require_tensorrt()
        self._device = require_cuda("--target gpu with --backend tensorrt")
        if self.settings.precision not in self.precisions:
            raise UsageError(f"TensorRT profiling supports {', '.join(self.precisions)}, not {self.settings.precision}.")
        self._stream = torch.cuda.Stream(self._device)
        self._tmp = tempfile.TemporaryDirectory(prefix="practise-trt-")
        self._cache = timing_cache_path(paths.home() / "tensorrt", self._version)
        self._runners: list = []

    def deactivate(self) -> None:
        self._runners = []
        self._tmp.cleanup()

    def fingerprint(self) -> DeviceFingerprint:
        s = self.settings
        return DeviceFingerprint(
            **gpu_identity(), backend="tensorrt", backend_version=self._version, precision=s.precision,
            batch=s.batch, resolution=s.resolution, threads=s.resolved_threads(),
        )

    def _engine_for(self, variant: Variant) -> Path:
        """An engine file for `variant`: as given, built from a given ONNX, or exported and built."""
        from exporters.tensorrt_engine import EngineShapes, build_engine

        s = self.settings
        if isinstance(variant, Path) and variant.suffix == ".engine":
            return variant
        work = Path(self._tmp.name) / f"variant{len(self._runners)}"
        onnx_path = variant if isinstance(variant, Path) else self._export(variant, work)
        engine = work.with_suffix(".engine")
        build_engine(onnx_path, engine, s.precision, EngineShapes(s.resolution, s.batch, s.batch, s.batch, s.channels), self._cache)
        return engine

    def prepared(self, variant: Variant) -> Variant:
        """The network's ONNX file in this profiler's precision, so a sibling in another precision builds its engine
        from it as it is (strongly typed: the graph's types are the engine's precision)."""
        if isinstance(variant, Path):
            return variant
        return self._export(variant, Path(self._tmp.name) / f"prepared{id(variant)}")

    def _export(self, module: torch.nn.Module, work: Path) -> Path:
        from exporters.onnx_file import export_onnx
        from exporters.onnx_int8 import quantize_onnx

        s = self.settings
        example = torch.randn(s.input_shape())
        if s.precision == "int8":
            fp32 = export_onnx(module, example, work.with_suffix(".fp32.onnx"))
            calibration = torch.randn(s.input_shape(INT8_CALIBRATION_IMAGES))
            return quantize_onnx(fp32, work.with_suffix(".int8.onnx"), calibration)
        return export_onnx(module, example, work.with_suffix(".onnx"), precision=s.precision)

    def _load(self, name: str, variant: Variant) -> Callable[[], object]:
        from exporters.tensorrt_engine import EngineRunner

        runner = EngineRunner(self._engine_for(variant))
        inputs, _ = runner.bind(self.settings.batch)
        inputs.normal_()
        self._runners.append(runner)
        return lambda: runner.enqueue(self._stream)

    def _time_runs(self, run: Callable[[], object], count: int) -> list[float]:
        return time_bursts_ms(run, count, self._stream)
