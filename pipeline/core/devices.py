"""The identity of the CUDA device, and one clear error when a CUDA device is needed and absent."""

from __future__ import annotations

import platform

import torch

from pipeline.core.errors import UsageError


def require_cuda(what: str, fix: str = "Use --target cpu, or run on a GPU machine.") -> torch.device:
    """The CUDA device, or a clear error naming what needed it and how to proceed."""
    if not torch.cuda.is_available():
        raise UsageError(
            f"{what} needs a CUDA GPU, and torch sees none on this machine (torch {torch.__version__}, "
            f"CUDA build {torch.version.cuda}). {fix}"
        )
    return torch.device("cuda", torch.cuda.current_device())


def gpu_identity() -> dict:
    """Device name, compute capability and CUDA version of the current GPU (fingerprint fields)."""
    props = torch.cuda.get_device_properties(torch.cuda.current_device())
    return {
        "device_name": props.name, "device_kind": "gpu", "compute_capability": f"{props.major}.{props.minor}",
        "driver": f"cuda-{torch.version.cuda}", "torch_version": torch.__version__.split("+")[0],
        "machine": platform.machine(),
    }
