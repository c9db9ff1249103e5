"""Hardware profilers behind one protocol, chosen by target and backend name."""

from __future__ import annotations

from pipeline.core.errors import UsageError
from profilers.base import Measurement, Profiler, ProfileSettings
from profilers.fingerprint import DeviceFingerprint
from profilers.stats import TimingStats
from profilers.table import LatencyTable, TableStore

# target -> backend name -> "module:Class" (imported only when chosen, so optional runtimes stay optional)
_BACKENDS = {
    "cpu": {
        "inductor": "profilers.inductor_backend:InductorCpuProfiler",
        "onnxruntime": "profilers.onnxruntime_backend:OnnxRuntimeCpuProfiler",
        "torch": "profilers.torch_backend:TorchCpuProfiler",
    },
    "gpu": {
        "inductor": "profilers.inductor_backend:InductorCudaProfiler",
        "onnxruntime": "profilers.onnxruntime_backend:OnnxRuntimeCudaProfiler",
        "tensorrt": "profilers.tensorrt_backend:TensorRTProfiler",
        "torch": "profilers.torch_backend:TorchCudaProfiler",
    },
}


def available_targets() -> list[str]:
    return sorted(_BACKENDS)


def default_backend(target: str) -> tuple[str, str]:
    """The backend a target uses when none is named, and a sentence saying why (for the user)."""
    if target == "gpu":
        from exporters.tensorrt_engine import tensorrt_available

        if tensorrt_available():
            return "tensorrt", "GPU backend: TensorRT (installed)"
        return "torch", ("GPU backend: torch CUDA, because TensorRT is not installed "
                         "(pip install '.[tensorrt]' to profile with TensorRT engines)")
    return "onnxruntime", "CPU backend: onnxruntime"


def get_profiler(target: str, backend: str | None, settings: ProfileSettings) -> Profiler:
    """The profiler for `target` with `backend` (the target's default when None)."""
    if target not in _BACKENDS:
        raise UsageError(f"unsupported target '{target}'; choose one of: {', '.join(available_targets())}.")
    backend = backend or default_backend(target)[0]
    choices = _BACKENDS[target]
    if backend not in choices:
        raise UsageError(
            f"backend '{backend}' is not available for target '{target}'; available: {', '.join(sorted(choices))}."
        )
    module_name, _, class_name = choices[backend].partition(":")
    import importlib

    cls = getattr(importlib.import_module(module_name), class_name)
    if settings.precision not in cls.precisions:
        raise UsageError(f"the {backend} backend on {target} measures {', '.join(cls.precisions)}, not {settings.precision}.")
    if settings.cuda_graphs and not cls.supports_cuda_graphs:
        raise UsageError(f"--cuda-graphs applies to the torch backend on gpu only, not to {backend} on {target}.")
    return cls(settings)


__all__ = [
    "DeviceFingerprint", "LatencyTable", "Measurement", "Profiler", "ProfileSettings", "TableStore",
    "TimingStats", "get_profiler", "available_targets", "default_backend",
]
