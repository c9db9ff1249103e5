"""A grayscale (one-channel) network runs the whole pipeline: profiled, scored, recovered, exported, timed."""

import json

import onnx

from tests.cli.invoke import FAST_RUN, invoke

GREY = "tests.tiny_models:tiny_grey_resnet"


def test_a_grayscale_network_is_compressed_and_exported_with_one_input_channel(capsys, image_folder, tmp_path,
                                                                                 even_savings):
    out = tmp_path / "run"
    code, _, err = invoke(capsys, "run", "--model", GREY, *FAST_RUN, "--data", str(image_folder), "--backend",
                          "onnxruntime", "--latency-budget", "0.9", "--export", "onnx", "--export", "onnx-int8",
                          "--out", str(out))
    assert code == 0, err
    assert json.loads((out / "data.json").read_text())["preprocessing"]["channels"] == "grayscale"
    model = onnx.load(out / "model.onnx")
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims[1] == 1
    metadata = {p.key: p.value for p in model.metadata_props}
    assert metadata["input"].startswith("grayscale") and len(metadata["mean"].split(",")) == 1
    exported = json.loads((out / "export.json").read_text())
    assert exported["onnx"]["check"]["passed"], exported["onnx"]["check"]
    assert exported["onnx-int8"]["check"]["images"] > 0  # INT8 of random weights is checked, not expected to match
    for fmt in ("onnx", "onnx-int8"):  # both timed on the target with one-channel inputs
        assert exported[fmt]["latency"]["measured"], exported[fmt]["latency"]
