"""The TensorRT backend: a clear error without TensorRT, one engine per variant with it."""

from dataclasses import replace

import pytest
import torch

from pipeline.core.errors import UsageError
from pipeline.latency.profiling import profile_candidates
from pipeline.models import load_model
from pipeline.network.blocks import analyse
from profilers import ProfileSettings, get_profiler

QUICK = ProfileSettings(resolution=32, threads=2, warmup_runs=1, runs_per_round=3, min_rounds=3, max_rounds=5,
                        time_cap_s=20)


def _tiny():
    loaded = load_model("tests.tiny_models:tiny_resnet", resolution=32)
    return loaded, analyse(loaded.module, 32)


def test_tensorrt_backend_without_tensorrt_says_how_to_install_it(without_tensorrt):
    from profilers import default_backend

    with pytest.raises(UsageError, match=r"pip install '\.\[tensorrt\]'"):
        with get_profiler("gpu", "tensorrt", QUICK):
            pass
    backend, sentence = default_backend("gpu")  # a GPU target then uses torch, and says why
    assert backend == "torch" and "TensorRT is not installed" in sentence


def _require_tensorrt():
    from exporters.tensorrt_engine import tensorrt_available

    if not torch.cuda.is_available() or not tensorrt_available():
        pytest.skip("needs a CUDA GPU with TensorRT installed (pip install '.[tensorrt]')")


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_tensorrt_profiler_builds_an_engine_per_variant(precision):
    _require_tensorrt()
    loaded, structure = _tiny()
    with get_profiler("gpu", "tensorrt", replace(QUICK, precision=precision)) as profiler:
        table = profile_candidates(loaded, structure, profiler)
    assert table.fingerprint.backend == "tensorrt" and table.fingerprint.precision == precision
    assert set(table.savings) == set(structure.candidate_names()) and table.full.median_ms > 0
