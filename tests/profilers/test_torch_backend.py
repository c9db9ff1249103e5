"""The torch CUDA backend (GPU only)."""

from dataclasses import replace

import pytest
import torch

from pipeline.latency.profiling import profile_candidates
from pipeline.models import load_model
from pipeline.network.blocks import analyse
from profilers import ProfileSettings, get_profiler

QUICK = ProfileSettings(resolution=32, threads=2, warmup_runs=1, runs_per_round=3, min_rounds=3, max_rounds=5,
                        time_cap_s=20)


def _tiny():
    loaded = load_model("tests.tiny_models:tiny_resnet", resolution=32)
    return loaded, analyse(loaded.module, 32)


@pytest.mark.gpu
def test_torch_cuda_profiler_measures_fp16():
    loaded, structure = _tiny()
    with get_profiler("gpu", "torch", replace(QUICK, precision="fp16")) as profiler:
        table = profile_candidates(loaded, structure, profiler)
    assert table.fingerprint.device_kind == "gpu" and table.fingerprint.compute_capability
    assert table.full.median_ms > 0
    # the profiled network itself stays on the CPU in FP32 (found: .to() moved the teacher, breaking export)
    assert all(p.device.type == "cpu" and p.dtype == torch.float32 for p in loaded.module.parameters())


@pytest.mark.gpu
def test_torch_cuda_profiler_replays_cuda_graphs():
    loaded, structure = _tiny()
    with get_profiler("gpu", "torch", replace(QUICK, cuda_graphs=True)) as profiler:
        table = profile_candidates(loaded, structure, profiler)
    assert table.fingerprint.options == "cuda-graphs" and table.full.median_ms > 0
