"""What every GPU backend shares: finding the GPU, describing it, and timing work with CUDA events.

Buffers, streams and events come from torch (no pycuda), so TensorRT engines and eager networks
are timed the same way: a burst of runs enqueued on one stream between two events.
"""

from __future__ import annotations

import platform
from typing import Callable

import torch

from pipeline.errors import UsageError


def require_cuda(what: str) -> torch.device:
    """The CUDA device, or a clear error naming what needed it."""
    if not torch.cuda.is_available():
        raise UsageError(
            f"{what} needs a CUDA GPU, and torch sees none on this machine (torch {torch.__version__}, "
            f"CUDA build {torch.version.cuda}). Use --target cpu, or run on a GPU machine."
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


def time_bursts_ms(run: Callable[[], object], count: int, stream: torch.cuda.Stream) -> list[float]:
    """Mean milliseconds per run of `count` back-to-back runs enqueued on `stream`, by CUDA events.

    One burst, not `count` separately synchronised runs: host round trips would otherwise dominate
    small networks, and deployment pipelines keep the GPU fed the same way.
    """
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    with torch.cuda.stream(stream):
        start.record(stream)
        for _ in range(count):
            run()
        end.record(stream)
    end.synchronize()
    return [start.elapsed_time(end) / count]
