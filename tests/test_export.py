import pytest
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


def test_tensorrt_without_tensorrt_says_how_to_install_it(tmp_path):
    from exporters.formats import export_formats
    from pipeline.errors import UsageError

    try:
        import tensorrt  # noqa: F401
        pytest.skip("TensorRT is installed")
    except ImportError:
        pass
    with pytest.raises(UsageError, match=r"pip install '\.\[tensorrt\]'"):
        export_formats(_inputs(tmp_path), ["tensorrt"])
