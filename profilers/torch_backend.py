"""Latency of eager PyTorch, on the CPU or on a CUDA GPU (CUDA events; FP32, FP16 or BF16 on the GPU)."""

from __future__ import annotations

import copy
import platform
from typing import Callable

import torch

from exporters.half_precision import in_precision
from pipeline.core.devices import gpu_identity, require_cuda
from pipeline.core.errors import UsageError
from profilers.base import Profiler, Variant
from profilers.cuda import time_bursts_ms
from profilers.fingerprint import DeviceFingerprint, cpu_model_name


def _for_inference(module: torch.nn.Module) -> torch.nn.Module:
    """eval() where it exists: programs loaded from torch.export refuse it, being inference graphs already."""
    try:
        return module.eval()
    except NotImplementedError:
        return module


class TorchCpuProfiler(Profiler):
    name = "torch"
    target = "cpu"
    fingerprint_backend = "torch-cpu"

    def activate(self) -> None:
        self._previous_threads = torch.get_num_threads()
        torch.set_num_threads(self.settings.resolved_threads())

    def deactivate(self) -> None:
        torch.set_num_threads(self._previous_threads)

    def fingerprint(self) -> DeviceFingerprint:
        s = self.settings
        return DeviceFingerprint(
            device_name=cpu_model_name(), device_kind="cpu", compute_capability="", driver="",
            backend=self.fingerprint_backend, backend_version=torch.__version__.split("+")[0], precision=s.precision,
            batch=s.batch, resolution=s.resolution, threads=s.resolved_threads(),
            torch_version=torch.__version__.split("+")[0], machine=platform.machine(),
        )

    def _load(self, name: str, variant: Variant) -> Callable[[], object]:
        if not isinstance(variant, torch.nn.Module):
            raise UsageError(f"the torch backend runs PyTorch networks, not the file {variant}.")
        if self.settings.precision != "fp32":
            raise UsageError(f"torch CPU profiling supports fp32 only, not {self.settings.precision}.")
        s = self.settings
        example = torch.randn(s.input_shape())
        module = self._runnable(_for_inference(variant), example)

        def run():
            with torch.inference_mode():
                return module(example)

        return run

    def _runnable(self, module: torch.nn.Module, example: torch.Tensor) -> Callable[[torch.Tensor], object]:
        """The module as this backend runs it (eager here; compiled in the inductor backend)."""
        return module


class TorchCudaProfiler(Profiler):
    """Eager PyTorch on the GPU in FP32 or FP16, optionally replayed as CUDA graphs (no launch overhead)."""

    name = "torch-cuda"
    target = "gpu"
    precisions = ("fp32", "fp16", "bf16")
    auto_precisions = precisions  # --precision auto surveys and plans with each (exporters.half_precision)
    supports_cuda_graphs = True
    fingerprint_backend = "torch-cuda"

    def activate(self) -> None:
        self._device = require_cuda("--target gpu")
        self._stream = torch.cuda.Stream(self._device)
        self._graphs: list[torch.cuda.CUDAGraph] = []

    def deactivate(self) -> None:
        self._graphs = []

    def fingerprint(self) -> DeviceFingerprint:
        s = self.settings
        return DeviceFingerprint(
            **gpu_identity(), backend=self.fingerprint_backend, backend_version=torch.__version__.split("+")[0],
            precision=s.precision, batch=s.batch, resolution=s.resolution, threads=s.resolved_threads(),
            options="cuda-graphs" if s.cuda_graphs else "",
        )

    def _load(self, name: str, variant: Variant) -> Callable[[], object]:
        if not isinstance(variant, torch.nn.Module):
            raise UsageError(f"the torch backend runs PyTorch networks, not the file {variant}.")
        s = self.settings
        if s.precision not in self.precisions:
            raise UsageError(f"torch CUDA profiling supports {', '.join(self.precisions)}, not {s.precision}.")
        # the network in the profiler's precision behind FP32 input and output, as it deploys; a network pinned to
        # another precision (the FP32 reference beside an FP16 plan) runs as it is. A copy: Module.to() moves in
        # place, and the caller's network (the teacher) must stay where it is
        on_device = _for_inference(copy.deepcopy(in_precision(variant, s.precision))).to(self._device)
        example = torch.randn(s.input_shape(), device=self._device)
        runnable = self._runnable(on_device, example)

        def run():
            with torch.inference_mode():
                return runnable(example)

        return self._capture(run) if s.cuda_graphs else run

    def prepared(self, variant: Variant) -> Variant:
        """The network pinned to this profiler's precision, so a sibling in another precision times it as it is."""
        return in_precision(variant, self.settings.precision) if isinstance(variant, torch.nn.Module) else variant

    def _runnable(self, module: torch.nn.Module, example: torch.Tensor) -> Callable[[torch.Tensor], object]:
        """The module as this backend runs it (eager here; compiled in the inductor backend)."""
        return module

    def _capture(self, run: Callable[[], object]) -> Callable[[], object]:
        """Record `run` once as a CUDA graph (after warm-up on a side stream, as capture requires)."""
        with torch.cuda.stream(self._stream):
            for _ in range(3):
                run()
        torch.cuda.current_stream().wait_stream(self._stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            run()
        self._graphs.append(graph)
        return graph.replay

    def _time_runs(self, run: Callable[[], object], count: int) -> list[float]:
        return time_bursts_ms(run, count, self._stream)
