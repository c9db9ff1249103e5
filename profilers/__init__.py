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
        "auto": "profilers.openvino_backend:AutoCpuProfiler",
        "inductor": "profilers.inductor_backend:InductorCpuProfiler",
        "onnxruntime": "profilers.onnxruntime_backend:OnnxRuntimeCpuProfiler",
        "openvino": "profilers.openvino_backend:OpenVinoCpuProfiler",
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
    from exporters.openvino_ir import INSTALL, openvino_available

    if openvino_available():
        return "auto", "CPU backend: auto (onnxruntime and OpenVINO, every plan measured on one clock)"
    return "auto", ("CPU backend: auto, onnxruntime only because OpenVINO is not installed "
                    f"({INSTALL} to plan with OpenVINO's precisions too)")


def available_backends(target: str) -> list[str]:
    """The backend names a target offers (the CLI's choices)."""
    return sorted(_BACKENDS.get(target, {}))


def all_backends() -> list[str]:
    return sorted({name for choices in _BACKENDS.values() for name in choices})


def all_precisions() -> list[str]:
    """Every precision some backend measures, in registry order (the CLI's --precision choices)."""
    found: list[str] = []
    for target, choices in _BACKENDS.items():
        for backend in choices:
            found += [p for p in backend_class(target, backend).precisions if p not in found]
    return found


def backend_class(target: str, backend: str | None) -> type[Profiler]:
    """The profiler class of `backend` on `target` (the target's default when None), imported now."""
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

    return getattr(importlib.import_module(module_name), class_name)


def reference_precision(target: str, backend: str | None) -> str:
    """The precision a backend's budgets are relative to under --precision auto (its runtime's FP32)."""
    return backend_class(target, backend).reference_precision


def get_profiler(target: str, backend: str | None, settings: ProfileSettings) -> Profiler:
    """The profiler for `target` with `backend` (the target's default when None)."""
    cls = backend_class(target, backend)
    backend = backend or default_backend(target)[0]
    if settings.precision not in cls.precisions:
        raise UsageError(f"the {backend} backend on {target} measures {', '.join(cls.precisions)}, not {settings.precision}.")
    if settings.cuda_graphs and not cls.supports_cuda_graphs:
        raise UsageError(f"--cuda-graphs applies to the torch backend on gpu only, not to {backend} on {target}.")
    return cls(settings)


__all__ = [
    "DeviceFingerprint", "LatencyTable", "Measurement", "Profiler", "ProfileSettings", "TableStore",
    "TimingStats", "get_profiler", "backend_class", "all_precisions", "reference_precision", "available_backends", "all_backends", "available_targets", "default_backend",
]
