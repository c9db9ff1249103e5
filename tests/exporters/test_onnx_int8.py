"""INT8 schemes: each writes the graph it names, runs in onnxruntime, and agrees with FP32 on real inputs."""

from __future__ import annotations

import onnx
import pytest
import torch

from exporters.onnx_check import onnx_logits
from exporters.onnx_file import export_onnx
from exporters.onnx_int8 import INT8_SCHEMES, get_scheme, quantize_onnx
from pipeline.core.errors import UsageError
from tests.tiny_models import tiny_resnet


@pytest.fixture(scope="module")
def fp32_file(tmp_path_factory):
    torch.manual_seed(0)
    network = tiny_resnet().eval()
    path = export_onnx(network, torch.randn(1, 3, 32, 32), tmp_path_factory.mktemp("int8") / "net.onnx")
    return network, path


def _ops(path) -> set[str]:
    return {node.op_type for node in onnx.load(str(path)).graph.node}


@pytest.mark.parametrize("name", list(INT8_SCHEMES))
def test_each_scheme_writes_its_own_graph_and_runs(fp32_file, tmp_path, name):
    network, fp32 = fp32_file
    scheme = get_scheme(name)
    images = torch.rand(8, 3, 32, 32)
    target = quantize_onnx(fp32, tmp_path / f"{name}.onnx", images, scheme)
    ops = _ops(target)
    if scheme.quant_format == "qdq":
        assert {"QuantizeLinear", "DequantizeLinear"} <= ops and "QLinearConv" not in ops
    else:
        assert "QLinearConv" in ops  # quantized operators, not quantize/dequantize pairs
    zero_points = [t for t in onnx.load(str(target)).graph.initializer if t.name.endswith("zero_point")]
    activation_types = {t.data_type for t in zero_points}
    expected = onnx.TensorProto.UINT8 if scheme.activations == "uint8" else onnx.TensorProto.INT8
    assert expected in activation_types
    logits = onnx_logits(target, images)
    with torch.no_grad():
        reference = network(images)
    assert logits.shape == reference.shape and torch.isfinite(logits).all()
    assert not list(tmp_path.glob("*-prep*"))  # the pre-processed intermediate is removed


def test_mixed_precision_keeps_the_named_nodes_in_fp32(fp32_file, tmp_path):
    _, fp32 = fp32_file
    convs = [n.name for n in onnx.load(str(fp32)).graph.node if n.op_type == "Conv"]
    scheme = get_scheme("int8-qop-u8s8-channel").with_accuracy_options(excluded_nodes=tuple(convs))
    ops = _ops(quantize_onnx(fp32, tmp_path / "mixed.onnx", torch.rand(4, 3, 32, 32), scheme))
    assert "QLinearConv" not in ops and "Conv" in ops


def test_unknown_schemes_and_calibration_methods_are_refused_with_the_choices():
    with pytest.raises(UsageError, match="int8-qdq-u8s8-channel"):
        get_scheme("int8-fast")
    with pytest.raises(UsageError, match="minmax, entropy, percentile"):
        get_scheme("int8-qdq-u8s8-channel").with_accuracy_options(calibration="kl")


def test_an_export_carries_the_runs_fp32_layers_into_the_int8_artefact(fp32_file, tmp_path):
    from exporters.formats import ExportInputs, export_formats

    network, fp32 = fp32_file
    convs = [n.name for n in onnx.load(str(fp32)).graph.node if n.op_type == "Conv"]
    images = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        reference = network(images)
    inputs = ExportInputs(network, 32, images, reference, images, tmp_path, int8_scheme="int8-qop-u8s8-channel",
                          int8_fp32_end_layers=1)
    record = export_formats(inputs, ["onnx-int8"])["onnx-int8"]
    graph = onnx.load(str(tmp_path / record["path"])).graph
    assert len(convs) > 2 and [n.op_type for n in graph.node].count("Conv") == 1  # the stem kept in FP32, no other
    assert "first and last 1 compute layers kept in FP32" in record["quantization"]
