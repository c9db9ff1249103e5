"""The torch.compile (inductor) backend: it never times a network half eager, and leaves Dynamo as it found it."""

import pytest
from torch import nn

from pipeline.core.errors import RunFailure
from profilers import ProfileSettings, get_profiler

QUICK = ProfileSettings(resolution=8, threads=1, warmup_runs=1, runs_per_round=2, min_rounds=3, max_rounds=3)


class GraphBreak(nn.Module):
    """A network whose forward leaves the graph (a Python branch on a tensor value)."""

    def forward(self, images):
        if images.sum().item() > 0:
            return images.flatten(1)
        return -images.flatten(1)


def test_a_network_that_does_not_compile_to_one_graph_is_refused_in_one_line():
    with get_profiler("cpu", "inductor", QUICK) as profiler:
        with pytest.raises(RunFailure, match="could not compile this network as one graph") as err:
            profiler.measure({"net": GraphBreak()})
    assert "--backend torch" in str(err.value) and "\n" not in str(err.value)


def test_the_recompile_limit_is_raised_while_active_and_restored_after():
    """Every variant of a table recompiles the same forward: at Dynamo's default limit of 8 the ninth would fail."""
    import torch._dynamo.config as dynamo

    before = dynamo.recompile_limit
    with get_profiler("cpu", "inductor", QUICK) as profiler:
        assert dynamo.recompile_limit >= 1024
        assert profiler.fingerprint().backend == "torch-inductor-cpu"
    assert dynamo.recompile_limit == before


def test_the_gpu_inductor_backend_refuses_cuda_graphs():
    from dataclasses import replace

    from pipeline.core.errors import UsageError

    with pytest.raises(UsageError, match="--cuda-graphs"):
        get_profiler("gpu", "inductor", replace(QUICK, cuda_graphs=True))
