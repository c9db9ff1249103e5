"""The export format registry: each format written and checked against PyTorch."""

import pytest
import torch

from pipeline.models import load_model
from pipeline.network.evaluation import predict_logits
from pipeline.network.surgery import drop_blocks


def _inputs(tmp_path):
    from exporters.formats import ExportInputs

    loaded = load_model("tests.tiny_models:tiny_resnet")
    pruned = drop_blocks(loaded.module, ["layers.0.1"]).eval()
    torch.manual_seed(0)
    images = torch.randn(6, 3, 32, 32)
    return ExportInputs(pruned, 32, images, predict_logits(pruned, images), torch.randn(8, 3, 32, 32), tmp_path)


@pytest.mark.parametrize("fmt,suffix", [("onnx", "model.onnx"), ("torchscript", "model.torchscript.pt"),
                                        ("exported-program", "model.pt2")])
def test_float_formats_compute_what_pytorch_computes(tmp_path, fmt, suffix):
    from exporters.formats import export_formats

    record = export_formats(_inputs(tmp_path), [fmt])[fmt]
    assert record["path"] == suffix and (tmp_path / suffix).exists()
    assert record["check"]["passed"] and record["check"]["max_abs_error"] < 1e-4
    assert record["size_bytes"] > 0 and len(record["sha256"]) == 64


def test_int8_onnx_is_quantized_runs_and_reports_its_agreement(tmp_path):
    import onnx

    from exporters.formats import export_formats

    record = export_formats(_inputs(tmp_path), ["onnx-int8"])["onnx-int8"]
    model = onnx.load(str(tmp_path / record["path"]))
    ops = {node.op_type for node in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    check = record["check"]
    assert 0.0 <= check["top1_agreement_with_pytorch"] <= 1.0 and check["images"] == 6
    assert ("LOSES ACCURACY" in check["note"]) == (check["top1_agreement_with_pytorch"] < 1.0)
    assert record["calibration_images"] == 8


def test_dynamic_batch_onnx_runs_any_batch_in_onnxruntime(tmp_path):
    import dataclasses

    import onnxruntime as ort

    from exporters.formats import export_formats

    inputs = dataclasses.replace(_inputs(tmp_path), dynamic_batch=True)
    record = export_formats(inputs, ["onnx"])["onnx"]
    assert record["input_shape"][0] == "batch" and record["check"]["passed"]
    assert record["check"]["batched_max_abs_error"] < 1e-4
    session = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    for batch in (1, 5):
        assert session.run(None, {"images": torch.randn(batch, 3, 32, 32).numpy()})[0].shape == (batch, 10)
