import torch

from exporters.onnx_check import sha256_of, verify_onnx
from exporters.onnx_file import export_onnx
from pipeline.evaluation import predict_logits
from pipeline.models import load_model
from pipeline.surgery import drop_blocks


def test_onnx_export_of_a_pruned_network_matches_pytorch(tmp_path):
    loaded = load_model("tests.tiny_models:tiny_resnet")
    pruned = drop_blocks(loaded.module, ["layers.0.1", "layers.2.1"]).eval()
    path = export_onnx(pruned, torch.randn(1, 3, 32, 32), tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx.data").exists()  # one self-contained file
    images = torch.randn(4, 3, 32, 32)
    check = verify_onnx(path, predict_logits(pruned, images), images)
    assert check["passed"] and check["max_abs_error"] < 1e-4 and check["top1_agreement_with_pytorch"] == 1.0
    assert len(sha256_of(path)) == 64


def test_verify_onnx_detects_a_different_network(tmp_path):
    loaded = load_model("tests.tiny_models:tiny_resnet")
    path = export_onnx(loaded.module, torch.randn(1, 3, 32, 32), tmp_path / "m.onnx")
    images = torch.randn(3, 3, 32, 32)
    wrong = predict_logits(drop_blocks(loaded.module, ["layers.0.1"]), images) + 1.0
    assert not verify_onnx(path, wrong, images)["passed"]
