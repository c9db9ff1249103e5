"""AOTInductor packages: refusals without a compiler or a GPU, and the CUDA path on a GPU."""

import copy

import pytest
import torch

from pipeline.core.errors import UsageError


def test_without_a_cpp_compiler_the_export_is_refused_in_one_line(monkeypatch):
    from exporters.aoti_package import compile_package

    monkeypatch.setenv("CXX", "no-such-compiler-xyz")
    with pytest.raises(UsageError, match="needs a C.. compiler, but 'no-such-compiler-xyz' is not on PATH") as err:
        compile_package(torch.nn.Linear(2, 2), torch.randn(1, 2), "unused.pt2")
    assert "\n" not in str(err.value)


@pytest.mark.skipif(torch.cuda.is_available(), reason="tests the refusal on a machine without a GPU")
def test_a_gpu_package_without_a_gpu_is_refused():
    from exporters.aoti_package import device_for

    with pytest.raises(UsageError, match="needs a CUDA GPU"):
        device_for("gpu")


def test_a_loaded_package_is_shared_not_copied_by_the_profilers():
    """The torch CUDA profiler deep-copies what it times; native code loaded once must not be copied."""
    from exporters.aoti_package import AotiModule

    module = AotiModule(lambda images: images * 2)
    assert copy.deepcopy(module) is module and list(module.parameters()) == []
    assert torch.equal(module(torch.ones(1, 3)), torch.full((1, 3), 2.0))


@pytest.mark.gpu
def test_a_cuda_package_matches_pytorch_and_times_beside_the_original_compiled_for_cuda(tmp_path):
    from exporters.formats import ExportInputs, export_formats
    from pipeline.latency.artefact_latency import measure_artefact
    from pipeline.models import load_model
    from pipeline.network.evaluation import predict_logits
    from profilers import ProfileSettings

    module = load_model("tests.tiny_models:tiny_resnet").module.eval()
    images = torch.randn(4, 3, 32, 32)
    inputs = ExportInputs(module, 32, images, predict_logits(module, images), images, tmp_path, target="gpu")
    record = export_formats(inputs, ["aoti"])["aoti"]
    assert record["device"] == "cuda" and record["check"]["passed"], record
    quick = ProfileSettings(resolution=32, warmup_runs=2, runs_per_round=5, min_rounds=3, max_rounds=5)
    latency = measure_artefact("aoti", tmp_path / record["path"], module, "gpu", quick, 0.8)
    assert latency["measured"] and latency["backend"] == "torch-cuda" and latency["original_form"] == "aoti", latency
