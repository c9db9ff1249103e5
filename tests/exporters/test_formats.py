"""The export format registry: each format written and checked against PyTorch."""

from pathlib import Path

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


def _registered_formats() -> list:
    """Every format of the registry; one with no CPU runtime needs a GPU (and TensorRT, checked in the test)."""
    from exporters.formats import FORMATS

    # aoti compiles C++: about 20 s on 2 idle cores for the tiny network (its package is cached for later tests)
    return [pytest.param(name, marks=([] if "cpu" in fmt.runtimes else [pytest.mark.gpu])
                         + ([pytest.mark.slow] if name == "aoti" else []), id=name)
            for name, fmt in FORMATS.items()]


def _one_by_one(module, images: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([module(images[i : i + 1]) for i in range(len(images))])


@pytest.mark.parametrize("fmt", _registered_formats())
def test_each_format_writes_a_described_checked_artefact_that_loads_for_timing(tmp_path, fmt):
    """The conformance test of the export registry: a new format is tested by registering it."""
    from exporters.formats import FORMATS, export_formats
    from exporters.onnx_check import sha256_of
    from profilers import _BACKENDS

    if fmt == "tensorrt":
        from exporters.tensorrt_engine import tensorrt_available

        if not tensorrt_available():
            pytest.skip("needs TensorRT installed (pip install '.[tensorrt]')")
    entry, inputs = FORMATS[fmt], _inputs(tmp_path)
    record = export_formats(inputs, [fmt])[fmt]
    path = tmp_path / record["path"]
    assert record["format"] == fmt and path.is_file()
    assert record["sha256"] == sha256_of(path) and record["size_bytes"] == path.stat().st_size
    assert record["torch_version"] == torch.__version__.split("+")[0]
    check = record["check"]
    assert check["images"] == len(inputs.check_images)
    if "note" in check:  # a lossy precision states its agreement; it need not pass
        assert ("LOSES ACCURACY" in check["note"]) == (check["top1_agreement_with_pytorch"] < 1.0)
    else:
        assert check["passed"] and check["top1_agreement_with_pytorch"] == 1.0, check
    assert entry.runtimes and all(backend in _BACKENDS[target] for target, backend in entry.runtimes.items())
    loaded = entry.load(path)  # what the profiler backend times: the file itself, or a module
    if isinstance(loaded, Path):
        assert loaded == path
    else:
        assert torch.allclose(_one_by_one(loaded, inputs.check_images), inputs.reference_logits, atol=1e-4)
    if entry.same_form is not None:  # the original turned into the artefact's form computes the same
        same = entry.same_form(inputs.module, inputs.example(), "cpu")
        assert torch.allclose(_one_by_one(same, inputs.check_images), inputs.reference_logits, atol=1e-4)


def test_int8_onnx_is_quantized_and_its_agreement_is_what_onnxruntime_computes(tmp_path):
    import onnx
    import onnxruntime as ort

    from exporters.formats import export_formats

    inputs = _inputs(tmp_path)
    record = export_formats(inputs, ["onnx-int8"])["onnx-int8"]
    model = onnx.load(str(tmp_path / record["path"]))
    ops = {node.op_type for node in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    session = ort.InferenceSession(str(tmp_path / record["path"]), providers=["CPUExecutionProvider"])
    outputs = torch.cat([torch.from_numpy(session.run(None, {"images": inputs.check_images[i : i + 1].numpy()})[0])
                         for i in range(len(inputs.check_images))])
    agreement = (outputs.argmax(1) == inputs.reference_logits.argmax(1)).float().mean().item()
    assert record["check"]["top1_agreement_with_pytorch"] == pytest.approx(agreement)
    assert record["check"]["max_abs_error"] == pytest.approx((outputs - inputs.reference_logits).abs().max().item(),
                                                             rel=1e-5)
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


def test_an_openvino_ir_is_written_in_the_runs_precision_with_lines_that_load_it_so(tmp_path):
    from exporters import openvino_ir
    from exporters.formats import export_formats

    if not openvino_ir.openvino_available():
        pytest.skip("needs OpenVINO (pip install '.[openvino]')")
    inputs = _inputs(tmp_path)
    inputs.openvino_precision = openvino_ir.BF16
    inputs.metadata = {"mean": "0.5", "resolution": "32"}
    record = export_formats(inputs, ["openvino"])["openvino"]
    assert record["precision"] == openvino_ir.BF16 and record["inference_precision_hint"] == "bf16"
    assert "'INFERENCE_PRECISION_HINT': 'bf16'" in record["loading_snippet"]
    assert "note" in record["check"]  # a reduced precision states its agreement with the FP32 network
    assert (tmp_path / "model.bin").exists() and openvino_ir.precision_of(tmp_path / "model.xml") == openvino_ir.BF16
    assert record["ran_in"] in ("bf16", "f32")  # f32 where the CPU has no native BF16: recorded, not assumed
