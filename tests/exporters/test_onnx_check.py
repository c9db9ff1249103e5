"""The ONNX check against PyTorch detects a different network."""

import torch

from exporters.onnx_check import verify_onnx
from exporters.onnx_file import export_onnx
from pipeline.models import load_model
from pipeline.network.evaluation import predict_logits
from pipeline.network.surgery import drop_blocks


def test_verify_onnx_detects_a_different_network(tmp_path):
    loaded = load_model("tests.tiny_models:tiny_resnet")
    path = export_onnx(loaded.module, torch.randn(1, 3, 32, 32), tmp_path / "m.onnx")
    images = torch.randn(3, 3, 32, 32)
    wrong = predict_logits(drop_blocks(loaded.module, ["layers.0.1"]), images) + 1.0
    assert not verify_onnx(path, wrong, images)["passed"]
