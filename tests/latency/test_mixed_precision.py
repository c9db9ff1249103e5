"""Spending slack on accuracy: end layers kept in FP32, each set measured, the best one that meets the budget kept."""

from __future__ import annotations

import onnx
import torch

from exporters.onnx_file import export_onnx
from pipeline.latency.mixed_precision import (
    LADDER,
    MixedOption,
    closest_worth_its_time,
    distinct_rungs,
    end_layers,
    spend_slack,
    worth_trying,
)
from tests.tiny_models import tiny_resnet

SCHEME = "int8-qop-u8s8-channel"


def _network_and_images():
    torch.manual_seed(0)
    network = tiny_resnet().eval()
    images = torch.rand(12, 3, 32, 32)
    with torch.no_grad():
        reference = network(images)
    return network, images, reference


def test_end_layers_are_the_first_and_last_compute_nodes_of_the_quantized_graph(tmp_path):
    network, images, _ = _network_and_images()
    path = export_onnx(network, images[:1], tmp_path / "net.onnx")
    compute = [n.name for n in onnx.load(str(path)).graph.node if n.op_type in ("Conv", "Gemm", "MatMul")]
    two = end_layers(path, 1)
    assert two == [compute[0], compute[-1]]  # the stem and the classifier, as quantization names them
    assert end_layers(path, 100) == end_layers(path, len(compute))  # a small network: every compute layer


def test_every_rung_is_measured_in_one_go_and_the_closest_set_within_the_budget_is_kept(tmp_path):
    network, images, reference = _network_and_images()
    plain = MixedOption(0, [], 0.5, 0.0, 9.0, True)  # plain INT8 far from the original: any FP32 set does better
    calls = []

    def quick(files):
        calls.append(sorted(files))
        return {per_end: 0.6 for per_end in files}

    result = spend_slack(network, SCHEME, images, images, reference, quick, 0.8, plain)
    rungs = [o["kept_fp32_per_end"] for o in result["tried"][1:]]
    assert calls == [rungs] and rungs == sorted(set(rungs)) and set(rungs) <= set(LADDER)  # one measurement
    best = closest_worth_its_time([MixedOption(**o) for o in result["tried"]])
    assert result["excluded_nodes"] == best.excluded_nodes and result["excluded_nodes"]
    assert result["fp32_end_layers"] == best.kept_fp32_per_end > 0  # the choice travels as a count
    every = len(end_layers(export_onnx(network, images[:1], tmp_path / "net.onnx"), 1000))
    assert all(len(o["excluded_nodes"]) == min(2 * o["kept_fp32_per_end"], every) for o in result["tried"][1:])

    first_only = spend_slack(network, SCHEME, images, images, reference,
                             lambda files: {k: 0.6 if k == min(files) else 0.95 for k in files}, 0.8, plain)
    assert [o["meets_budget"] for o in first_only["tried"]] == [True, True] + [False] * (len(rungs) - 1)
    assert first_only["fp32_end_layers"] == min(rungs)  # closer than plain; the closer sets are over the budget

    slow = spend_slack(network, SCHEME, images, images, reference, lambda files: dict.fromkeys(files, 0.95), 0.8, plain)
    assert not any(o["meets_budget"] for o in slow["tried"][1:])
    assert slow["excluded_nodes"] == [] and "plain INT8" in slow["why"]


def test_a_rung_with_more_fp32_layers_must_be_clearly_closer_to_be_kept():
    def option(per_end, kl, ratio):
        return MixedOption(per_end, [], ratio, 0.9, kl, True)

    plain, one, three, six, ten = (option(0, 0.061, 0.63), option(1, 0.051, 0.63), option(3, 0.0175, 0.67),
                                   option(6, 0.0136, 0.71), option(10, 0.0132, 0.83))  # the benchmark at budget 0.9
    assert closest_worth_its_time([plain, one, three, six, ten]) is six  # 10 per end is only 3% closer
    assert closest_worth_its_time([plain, ten, six, three, one]) is six  # in whatever order they come
    assert closest_worth_its_time([plain, option(1, 0.059, 0.63)]) is plain  # 3% closer is not worth a layer
    assert closest_worth_its_time([plain]) is plain


def test_a_small_network_that_runs_out_of_layers_gets_no_repeated_rung():
    names = {1: ["a", "e"], 3: ["a", "b", "c", "d", "e"], 6: ["a", "b", "c", "d", "e"], 10: ["a", "b", "c", "d", "e"]}
    assert list(distinct_rungs(names)) == [1, 3]


def test_only_a_quantized_plan_well_under_the_budget_spends_slack():
    assert worth_trying(SCHEME, 0.5, 0.78)
    assert not worth_trying(SCHEME, 0.75, 0.78)  # too little left
    assert not worth_trying("fp32", 0.5, 0.78) and not worth_trying(SCHEME, None, 0.78)


def test_the_choice_applies_to_each_export_by_position_since_names_differ_between_exports(tmp_path):
    """Chosen on the unrecovered network, applied to the recovered one: two exports of one architecture name
    their nodes differently (seen: node_Conv_193 / node_Conv_194), so the end layers are found in each file."""
    from exporters.onnx_int8 import get_scheme, quantize_onnx
    from pipeline.network.surgery import drop_blocks

    network, images, _ = _network_and_images()
    scheme = get_scheme(SCHEME).with_accuracy_options(fp32_end_layers=1)
    for name in ("unrecovered", "recovered"):
        fp32 = export_onnx(drop_blocks(network, ["layers.0.1"]), images[:1], tmp_path / f"{name}.onnx")
        quantized = quantize_onnx(fp32, tmp_path / f"{name}.int8.onnx", images, scheme)
        kept = [n for n in onnx.load(str(quantized)).graph.node if n.op_type in ("Conv", "Gemm", "MatMul")]
        assert [n.name for n in kept] == end_layers(fp32, 1)  # this file's own first and last, in FP32


def test_the_ladder_runs_on_openvino_int8_with_nncf_names(tmp_path):
    """The same ladder for an OpenVINO INT8 plan: rungs named in the converted IR (NNCF's ignored scope), each
    file run in OpenVINO to judge it."""
    import pytest

    from exporters import openvino_ir

    if not openvino_ir.openvino_available():
        pytest.skip("needs OpenVINO (pip install '.[openvino]')")
    network, images, reference = _network_and_images()
    plain = MixedOption(0, [], 0.5, 0.0, 9.0, True)
    assert worth_trying(openvino_ir.INT8, 0.5, 0.78) and not worth_trying(openvino_ir.BF16, 0.5, 0.78)
    result = spend_slack(network, openvino_ir.INT8, images, images, reference,
                         lambda files: dict.fromkeys(files, 0.6), 0.8, plain)
    assert result["fp32_end_layers"] > 0 and result["excluded_nodes"]
    every = openvino_ir.end_layer_names(openvino_ir_model(network, images, tmp_path), 1000)
    assert set(result["excluded_nodes"]) <= set(every)  # OpenVINO's own op names, not onnxruntime's


def openvino_ir_model(network, images, tmp_path):
    import openvino as ov

    return ov.convert_model(str(export_onnx(network, images[:1], tmp_path / "ov.onnx")))
