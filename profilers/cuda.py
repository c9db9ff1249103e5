"""What every GPU backend shares: timing work with CUDA events (the GPU's identity is in pipeline.core.devices).

Buffers, streams and events come from torch (no pycuda), so TensorRT engines and eager networks
are timed the same way: a burst of runs enqueued on one stream between two events.
"""

from __future__ import annotations

from typing import Callable

import torch


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
