"""Latency of networks compiled by `torch.compile` (TorchInductor), as a PyTorch deployment runs them.

Each variant is compiled once when it is prepared (not during the timed rounds), with `fullgraph=True`
and static shapes: a network that does not compile to one graph is refused rather than timed half eager.
The variants of a table share their Python `forward` code, so each is a recompilation of the same code
object for Dynamo; its recompile limit (8 by default, after which it would fall back to eager without
saying so) is raised while the profiler is active and restored after. Compiling takes seconds to
minutes per variant on a CPU, so a table costs more to build than with the eager backends.
"""

from __future__ import annotations

from typing import Callable

import torch

from pipeline.core.errors import RunFailure
from profilers.torch_backend import TorchCpuProfiler, TorchCudaProfiler

RECOMPILE_LIMIT = 1024  # variants of one network the profiler may compile while active


class _Compiling:
    """Raise Dynamo's recompile limit while active; compile each variant before its rounds."""

    def _raise_recompile_limit(self) -> None:
        import torch._dynamo.config as dynamo

        self._previous_limit = dynamo.recompile_limit
        dynamo.recompile_limit = max(RECOMPILE_LIMIT, dynamo.recompile_limit)

    def _restore_recompile_limit(self) -> None:
        import torch._dynamo.config as dynamo

        dynamo.recompile_limit = self._previous_limit

    def activate(self) -> None:
        super().activate()  # type: ignore[misc]  # the profiler class this mixes into
        self._raise_recompile_limit()

    def deactivate(self) -> None:
        self._restore_recompile_limit()
        super().deactivate()  # type: ignore[misc]

    def _runnable(self, module: torch.nn.Module, example: torch.Tensor) -> Callable[[torch.Tensor], object]:
        return self._compiled(module, example)

    def _compiled(self, module: torch.nn.Module, example: torch.Tensor) -> Callable[[torch.Tensor], object]:
        compiled = torch.compile(module, backend="inductor", fullgraph=True, dynamic=False)
        try:
            with torch.inference_mode():
                compiled(example)  # compile now, so no round pays for it
        except Exception as exc:
            first_line = (str(exc).strip().splitlines() or [""])[0][:300]
            raise RunFailure(f"torch.compile could not compile this network as one graph ({type(exc).__name__}: "
                             f"{first_line}); profile it with --backend torch instead.") from exc
        return compiled


class InductorCpuProfiler(_Compiling, TorchCpuProfiler):
    name = "inductor"
    fingerprint_backend = "torch-inductor-cpu"


class InductorCudaProfiler(_Compiling, TorchCudaProfiler):
    name = "inductor-cuda"
    supports_cuda_graphs = False  # torch.compile's own CUDA graphs ("reduce-overhead") are not measured yet
    fingerprint_backend = "torch-inductor-cuda"
