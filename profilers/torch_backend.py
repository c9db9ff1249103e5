"""Latency of eager PyTorch, on the CPU or on a CUDA GPU (CUDA events, optional FP16)."""

from __future__ import annotations

import platform
from typing import Callable

import torch

from pipeline.errors import UsageError
from profilers.base import Profiler, Variant
from profilers.fingerprint import DeviceFingerprint, cpu_model_name


class TorchCpuProfiler(Profiler):
    name = "torch"
    target = "cpu"

    def activate(self) -> None:
        self._previous_threads = torch.get_num_threads()
        torch.set_num_threads(self.settings.resolved_threads())

    def deactivate(self) -> None:
        torch.set_num_threads(self._previous_threads)

    def fingerprint(self) -> DeviceFingerprint:
        s = self.settings
        return DeviceFingerprint(
            device_name=cpu_model_name(), device_kind="cpu", compute_capability="", driver="",
            backend="torch-cpu", backend_version=torch.__version__.split("+")[0], precision=s.precision,
            batch=s.batch, resolution=s.resolution, threads=s.resolved_threads(),
            torch_version=torch.__version__.split("+")[0], machine=platform.machine(),
        )

    def _load(self, name: str, variant: Variant) -> Callable[[], object]:
        if not isinstance(variant, torch.nn.Module):
            raise UsageError(f"the torch backend runs PyTorch networks, not the file {variant}.")
        if self.settings.precision != "fp32":
            raise UsageError(f"torch CPU profiling supports fp32 only, not {self.settings.precision}.")
        module = variant.eval()
        s = self.settings
        example = torch.randn(s.batch, 3, s.resolution, s.resolution)

        def run():
            with torch.inference_mode():
                return module(example)

        return run


class TorchCudaProfiler(Profiler):
    name = "torch-cuda"
    target = "gpu"
    precisions = ("fp32", "fp16")

    def activate(self) -> None:
        if not torch.cuda.is_available():
            raise UsageError(
                "--target gpu needs a CUDA GPU, and torch sees none on this machine "
                f"(torch {torch.__version__}, CUDA build {torch.version.cuda}). Use --target cpu, or run on a GPU machine."
            )
        self._device = torch.device("cuda")

    def fingerprint(self) -> DeviceFingerprint:
        s = self.settings
        props = torch.cuda.get_device_properties(0)
        return DeviceFingerprint(
            device_name=props.name, device_kind="gpu", compute_capability=f"{props.major}.{props.minor}",
            driver=f"cuda-{torch.version.cuda}", backend="torch-cuda", backend_version=torch.__version__.split("+")[0],
            precision=s.precision, batch=s.batch, resolution=s.resolution, threads=s.resolved_threads(),
            torch_version=torch.__version__.split("+")[0], machine=platform.machine(),
        )

    def _load(self, name: str, variant: Variant) -> Callable[[], object]:
        if not isinstance(variant, torch.nn.Module):
            raise UsageError(f"the torch backend runs PyTorch networks, not the file {variant}.")
        s = self.settings
        if s.precision not in self.precisions:
            raise UsageError(f"torch CUDA profiling supports {', '.join(self.precisions)}, not {s.precision}.")
        dtype = torch.float16 if s.precision == "fp16" else torch.float32
        module = variant.eval().to(self._device, dtype)
        example = torch.randn(s.batch, 3, s.resolution, s.resolution, device=self._device, dtype=dtype)

        def run():
            with torch.inference_mode():
                return module(example)

        return run

    def _time_runs(self, run: Callable[[], object], count: int) -> list[float]:
        """One CUDA-event timing of `count` back-to-back runs, as the mean per run."""
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(count):
            run()
        end.record()
        end.synchronize()
        return [start.elapsed_time(end) / count]
