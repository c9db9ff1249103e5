"""What a benchmark ran on: CPU, cores, library versions (written beside every result)."""

from __future__ import annotations

import os
import platform


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
    }
