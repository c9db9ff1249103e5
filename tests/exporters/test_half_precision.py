"""Half-precision networks (FP16, BF16) on the CPU: their agreement, FP32 end layers, and every format written in
them, checked against the FP32 network (PyTorch runs FP16 and BF16 convolutions on the CPU)."""

from __future__ import annotations

import onnx
import pytest
import torch

from exporters.formats import ExportInputs, _load_torchscript, export_formats
from exporters.half_precision import InPrecision, compute_layers, end_layers_by_rung
from exporters.onnx_check import onnx_logits
from exporters.onnx_file import export_onnx
from pipeline.latency.mixed_precision import MixedOption, spend_slack, worth_trying
from pipeline.latency.precision import deployed_logits
from tests.tiny_models import tiny_resnet

DTYPE = {"fp16": torch.float16, "bf16": torch.bfloat16}
TOLERANCE = {"fp16": 2e-3, "bf16": 2e-2}  # of the largest FP32 logit


def network_and_images():
    torch.manual_seed(0)
    return tiny_resnet().eval(), torch.randn(6, 3, 32, 32)


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_the_network_computes_in_half_precision_behind_fp32_input_and_output(precision):
    network, images = network_and_images()
    half = InPrecision(network, precision)
    assert {p.dtype for p in half.parameters()} == {DTYPE[precision]}
    assert next(network.parameters()).dtype == torch.float32  # the caller's network is left as it was
    reference = network(images)
    logits = deployed_logits(network, precision, images, images)
    assert logits.dtype == torch.float32
    error = (logits - reference).abs().max().item()
    assert 0 < error <= TOLERANCE[precision] * reference.abs().max().item()  # rounded, yet close
    assert torch.equal(logits.argmax(1), reference.argmax(1))


def test_end_layers_are_the_first_and_last_compute_layers_called_and_stay_fp32():
    network, images = network_and_images()
    layers = compute_layers(network)
    assert layers[0] == "stem.0" and layers[-1] == "fc" and len(layers) == len(set(layers))
    assert end_layers_by_rung(network, (1,))[1] == ["stem.0", "fc"]
    half = InPrecision(network, "fp16", 1, images[:1])
    assert half.module.stem[0].layer.weight.dtype == torch.float32 and half.module.fc.layer.weight.dtype == torch.float32
    assert half.module.layers[0][0].conv1.weight.dtype == torch.float16


def test_an_fp16_onnx_file_keeps_its_fp32_end_layers_and_computes_what_pytorch_does(tmp_path):
    network, images = network_and_images()
    half = InPrecision(network, "fp16", 1, images[:1]).eval()
    path = export_onnx(half, images[:1], tmp_path / "half.onnx")
    types = {i.data_type for i in onnx.load(str(path)).graph.initializer if len(i.dims) == 4}
    assert types == {onnx.TensorProto.FLOAT16, onnx.TensorProto.FLOAT}  # half convolutions, the stem in FP32
    with torch.no_grad():
        expected = half(images)
    assert (onnx_logits(path, images) - expected).abs().max().item() <= 2e-2 * expected.abs().max().item()


def test_the_mixed_precision_ladder_is_tried_on_a_half_precision_plan():
    network, images = network_and_images()
    reference = network(images).detach()
    measured = {}

    def measure(variants):  # latency of each rung (faked: one more FP32 layer, a little slower)
        measured.update(variants)
        return {per_end: 0.5 + 0.01 * per_end for per_end in variants}

    plain = MixedOption(0, [], 0.5, 1.0, 1e-3, True)
    assert worth_trying("fp16", 0.5, 0.78) and not worth_trying("fp16", 0.75, 0.78)
    result = spend_slack(network, "fp16", images, images, reference, measure, 0.78, plain)
    rungs = [t["kept_fp32_per_end"] for t in result["tried"]]
    assert rungs[0] == 0 and 1 in rungs and len(rungs) > 2
    assert all(isinstance(v, InPrecision) and v.precision == "fp16" for v in measured.values())
    one = next(t for t in result["tried"] if t["kept_fp32_per_end"] == 1)
    assert one["excluded_nodes"] == ["stem.0", "fc"] and one["measured_ratio"] == pytest.approx(0.51)


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_every_pytorch_format_and_the_onnx_file_are_written_in_the_deployed_precision(tmp_path, precision):
    network, images = network_and_images()
    with torch.no_grad():
        reference = network(images)
    inputs = ExportInputs(network, 32, images, reference, images, tmp_path, precision=precision,
                          half_fp32_end_layers=1)
    records = export_formats(inputs, ["onnx", "torchscript", "exported-program"])
    scripted = _load_torchscript(tmp_path / "model.torchscript.pt")
    assert {p.dtype for p in scripted.parameters()} == {DTYPE[precision], torch.float32}  # end layers in FP32
    for fmt in ("torchscript", "exported-program"):
        check = records[fmt]["check"]
        assert records[fmt]["precision"] == precision and check["against_pytorch_in_precision"]["passed"], fmt
        assert check["max_abs_error"] > 0 and precision.upper() in check["note"]
    onnx_record = records["onnx"]
    if precision == "fp16":
        assert onnx_record["path"] == "model.fp16.onnx" and onnx_record["precision"] == "fp16"
        assert onnx_record["check"]["against_pytorch_in_precision"]["passed"]
    else:  # ONNX at opset 18 has no BF16 convolution: the file is FP32 and says so
        assert onnx_record["path"] == "model.onnx" and onnx_record["precision"] == "fp32"
        assert "BF16" in onnx_record["note"] and onnx_record["check"]["passed"]
