"""onnxruntime on a GPU (CUDA execution provider): refused in one line where the provider is missing; on a GPU
with onnxruntime-gpu, FP32 and FP16 variants measured and the ONNX artefact timed beside the original."""

from dataclasses import replace

import pytest

from pipeline.core.errors import UsageError
from profilers import ProfileSettings, get_profiler

QUICK = ProfileSettings(resolution=32, warmup_runs=2, runs_per_round=5, min_rounds=3, max_rounds=4, time_cap_s=20)


def _cuda_provider_available() -> bool:
    import onnxruntime as ort

    return "CUDAExecutionProvider" in ort.get_available_providers()


@pytest.mark.skipif(_cuda_provider_available(), reason="tests the refusal where onnxruntime has no CUDA provider")
def test_without_the_cuda_provider_the_backend_refuses_in_one_line_saying_how_to_install_it():
    import onnxruntime as ort

    with pytest.raises(UsageError) as err:
        with get_profiler("gpu", "onnxruntime", QUICK):
            pass
    message = str(err.value)
    assert "needs onnxruntime's CUDAExecutionProvider" in message and "\n" not in message
    assert all(provider in message for provider in ort.get_available_providers())  # what there is instead
    assert "onnxruntime-gpu" in message and "--backend torch" in message


def test_it_measures_fp32_and_fp16_only():
    with pytest.raises(UsageError, match="measures fp32, fp16, not int8"):
        get_profiler("gpu", "onnxruntime", replace(QUICK, precision="int8"))


@pytest.mark.skipif(_cuda_provider_available(), reason="tests the refusal where onnxruntime has no CUDA provider")
def test_an_onnx_artefact_on_a_gpu_target_says_why_it_was_not_timed(tmp_path):
    from pipeline.latency.artefact_latency import measure_artefact
    from tests.tiny_models import tiny_resnet

    latency = measure_artefact("onnx", tmp_path / "model.onnx", tiny_resnet(), "gpu", QUICK, 0.8)
    assert latency["measured"] is False and "CUDAExecutionProvider" in latency["reason"]


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_on_a_gpu_each_precision_is_measured_on_the_cuda_provider(precision):
    if not _cuda_provider_available():
        pytest.skip("needs onnxruntime-gpu installed instead of onnxruntime (README: onnxruntime on a GPU)")
    from pipeline.network.surgery import drop_blocks
    from tests.tiny_models import tiny_resnet

    network = tiny_resnet().eval()
    variants = {"full": network, "pruned": drop_blocks(network, ["layers.0.1"])}
    with get_profiler("gpu", "onnxruntime", replace(QUICK, precision=precision)) as profiler:
        measurement = profiler.measure(variants)
        fingerprint = profiler.fingerprint()
    assert fingerprint.backend == "onnxruntime-cuda" and fingerprint.precision == precision
    assert all(ms > 0 for rounds in measurement.rounds_ms.values() for ms in rounds)


@pytest.mark.gpu
def test_on_a_gpu_the_onnx_artefact_is_timed_beside_the_original(tmp_path):
    if not _cuda_provider_available():
        pytest.skip("needs onnxruntime-gpu installed instead of onnxruntime (README: onnxruntime on a GPU)")
    import torch

    from exporters.onnx_file import export_onnx
    from pipeline.latency.artefact_latency import measure_artefact
    from tests.tiny_models import tiny_resnet

    network = tiny_resnet().eval()
    path = export_onnx(network, torch.randn(1, 3, 32, 32), tmp_path / "model.onnx")
    latency = measure_artefact("onnx", path, network, "gpu", QUICK, 0.8)
    assert latency["measured"] and latency["backend"] == "onnxruntime-cuda", latency
