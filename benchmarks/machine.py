"""What a benchmark ran on: CPU, cores, library versions (written beside every result)."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def machine_info() -> dict:
    import onnxruntime
    import torch
    import torchvision

    from profilers.fingerprint import cpu_model_name

    return {
        "cpu": cpu_model_name(),
        "cores": os.cpu_count(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "onnxruntime": onnxruntime.__version__,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "cpu_flags": cpu_flags(),
        "openvino": _openvino_version(),
    }


# the instruction sets that decide which precision is fast (INT8 dot products, native BF16, Intel AMX)
SPEED_FLAGS = ("avx512_vnni", "avx512_bf16", "amx_tile")


def cpu_flags() -> dict[str, bool]:
    """Which of SPEED_FLAGS this CPU reports (Linux /proc/cpuinfo; all False where it cannot be read)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {flag: False for flag in SPEED_FLAGS}
    flags = set(next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), []))
    return {flag: flag in flags for flag in SPEED_FLAGS}


def _openvino_version() -> str | None:
    from exporters.openvino_ir import openvino_available, openvino_version

    return openvino_version() if openvino_available() else None
