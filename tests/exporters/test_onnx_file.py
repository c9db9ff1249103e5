"""ONNX files of pruned networks: self-contained, FP32 or FP16 weights, same outputs as PyTorch."""

import torch

from exporters.onnx_check import sha256_of, verify_onnx
from exporters.onnx_file import export_onnx
from pipeline.models import load_model
from pipeline.network.evaluation import predict_logits
from pipeline.network.surgery import drop_blocks


def test_onnx_export_of_a_pruned_network_matches_pytorch(tmp_path):
    loaded = load_model("tests.tiny_models:tiny_resnet")
    pruned = drop_blocks(loaded.module, ["layers.0.1", "layers.2.1"]).eval()
    path = export_onnx(pruned, torch.randn(1, 3, 32, 32), tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx.data").exists()  # one self-contained file
    images = torch.randn(4, 3, 32, 32)
    check = verify_onnx(path, predict_logits(pruned, images), images)
    assert check["passed"] and check["max_abs_error"] < 1e-4 and check["top1_agreement_with_pytorch"] == 1.0
    assert len(sha256_of(path)) == 64


def test_fp16_onnx_holds_half_precision_weights_and_fp32_io(tmp_path):
    import onnx
    import onnxruntime as ort

    loaded = load_model("tests.tiny_models:tiny_resnet")
    path = export_onnx(loaded.module, torch.randn(1, 3, 32, 32), tmp_path / "m.fp16.onnx", precision="fp16",
                       dynamic_batch=True)
    model = onnx.load(str(path))
    float_weights = {i.data_type for i in model.graph.initializer if len(i.dims) == 4}
    assert float_weights == {onnx.TensorProto.FLOAT16}
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    images = torch.randn(3, 3, 32, 32)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    outputs = session.run(None, {"images": images.numpy()})[0]
    reference = predict_logits(loaded.module, images).numpy()
    assert abs(outputs - reference).max() < 2e-2 * max(1.0, abs(reference).max())
