"""Hardware profilers behind one protocol, chosen by target and backend name."""

from __future__ import annotations

from pipeline.errors import UsageError
from profilers.base import Measurement, Profiler, ProfileSettings
from profilers.fingerprint import DeviceFingerprint
from profilers.stats import TimingStats
from profilers.table import LatencyTable, TableStore

# target -> backend name -> "module:Class" (imported only when chosen, so optional runtimes stay optional)
_BACKENDS = {
    "cpu": {
        "onnxruntime": "profilers.onnxruntime_backend:OnnxRuntimeCpuProfiler",
        "torch": "profilers.torch_backend:TorchCpuProfiler",
    },
    "gpu": {
        "torch": "profilers.torch_backend:TorchCudaProfiler",
    },
}
DEFAULT_BACKEND = {"cpu": "onnxruntime", "gpu": "torch"}


def available_targets() -> list[str]:
    return sorted(_BACKENDS)


def get_profiler(target: str, backend: str | None, settings: ProfileSettings) -> Profiler:
    """The profiler for `target` with `backend` (the target's default when None)."""
    if target not in _BACKENDS:
        raise UsageError(f"unsupported target '{target}'; choose one of: {', '.join(available_targets())}.")
    backend = backend or DEFAULT_BACKEND[target]
    choices = _BACKENDS[target]
    if backend not in choices:
        raise UsageError(
            f"backend '{backend}' is not available for target '{target}'; available: {', '.join(sorted(choices))}."
        )
    module_name, _, class_name = choices[backend].partition(":")
    import importlib

    cls = getattr(importlib.import_module(module_name), class_name)
    return cls(settings)


__all__ = [
    "DeviceFingerprint", "LatencyTable", "Measurement", "Profiler", "ProfileSettings", "TableStore",
    "TimingStats", "get_profiler", "available_targets",
]
