"""The profiler registry: targets, backends and the options each can honour."""

from dataclasses import replace

import pytest
import torch

from pipeline.core.errors import UsageError
from profilers import ProfileSettings, get_profiler

QUICK = ProfileSettings(resolution=32, threads=2, warmup_runs=1, runs_per_round=3, min_rounds=3, max_rounds=5,
                        time_cap_s=20)


def test_unknown_target_and_backend_are_usage_errors():
    with pytest.raises(UsageError, match="unsupported target 'tpu'"):
        get_profiler("tpu", None, QUICK)
    with pytest.raises(UsageError, match="available: auto, inductor, onnxruntime, openvino, torch"):
        get_profiler("cpu", "tensorflow", QUICK)


def test_gpu_target_without_a_gpu_says_so():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(UsageError, match="needs a CUDA GPU"):
        with get_profiler("gpu", None, QUICK):
            pass


def test_options_a_backend_cannot_honour_are_refused():
    with pytest.raises(UsageError, match="--cuda-graphs applies to the torch backend on gpu only"):
        get_profiler("cpu", "torch", replace(QUICK, cuda_graphs=True))
    with pytest.raises(UsageError, match=r"measures fp32(, int8-\S+)*, not fp16"):
        get_profiler("cpu", "onnxruntime", replace(QUICK, precision="fp16"))
    with pytest.raises(UsageError, match="measures fp32, fp16, bf16, not int8"):
        get_profiler("gpu", "torch", replace(QUICK, precision="int8"))


def test_gpu_target_names_the_backend_it_uses():
    from exporters.tensorrt_engine import tensorrt_available
    from profilers import default_backend

    backend, sentence = default_backend("gpu")
    if tensorrt_available():
        assert backend == "tensorrt" and "TensorRT" in sentence
    else:
        assert backend == "torch" and "TensorRT is not installed" in sentence and ".[tensorrt]" in sentence
