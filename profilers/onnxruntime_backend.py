"""CPU latency through onnxruntime: each variant is exported to ONNX and run in its own session."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from pipeline.core.errors import UsageError
from profilers.base import Profiler, Variant
from profilers.fingerprint import DeviceFingerprint, cpu_model_name


class OnnxRuntimeCpuProfiler(Profiler):
    name = "onnxruntime"
    target = "cpu"

    def activate(self) -> None:
        import onnxruntime  # noqa: F401  (fail here, clearly, if missing)

        self._tmp = tempfile.TemporaryDirectory(prefix="practise-ort-")
        self._sessions = []

    def deactivate(self) -> None:
        self._sessions = []
        self._tmp.cleanup()

    def fingerprint(self) -> DeviceFingerprint:
        import platform

        import onnxruntime

        s = self.settings
        return DeviceFingerprint(
            device_name=cpu_model_name(), device_kind="cpu", compute_capability="", driver="",
            backend="onnxruntime-cpu", backend_version=onnxruntime.__version__, precision=s.precision,
            batch=s.batch, resolution=s.resolution, threads=s.resolved_threads(),
            torch_version=torch.__version__.split("+")[0], machine=platform.machine(),
        )

    def session(self, path: Path):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = self.settings.resolved_threads()
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def _load(self, name: str, variant: Variant) -> Callable[[], object]:
        from exporters.onnx_file import export_onnx

        s = self.settings
        if s.precision != "fp32":
            raise UsageError(f"onnxruntime CPU profiling supports fp32 only, not {s.precision}.")
        example = torch.randn(s.batch, 3, s.resolution, s.resolution)
        if isinstance(variant, Path):
            path = variant
        else:
            path = export_onnx(variant, example, Path(self._tmp.name) / f"variant{len(self._sessions)}.onnx")
        session = self.session(path)
        self._sessions.append(session)
        feed = {session.get_inputs()[0].name: example.numpy().astype(np.float32)}
        return lambda: session.run(None, feed)
