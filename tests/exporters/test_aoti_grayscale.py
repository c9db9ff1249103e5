"""AOTInductor export of a grayscale network: the package is compiled for, and its record names, one channel.

The record's `input_shape` is what a deployment feeds the package; it once said 3 channels for every network.
"""

import shutil

import pytest
import torch

from pipeline.models import load_model
from pipeline.network.evaluation import predict_logits
from pipeline.network.surgery import drop_blocks


@pytest.mark.slow  # compiles C++: about 20 s on 2 idle cores for the tiny network
def test_a_grayscale_network_exports_to_aoti_with_its_one_channel_in_the_record(tmp_path):
    if not (shutil.which("c++") or shutil.which("g++")):
        pytest.skip("AOTInductor compiles C++: needs a C++ compiler (apt-get install g++)")
    from exporters.aoti_package import load_package
    from exporters.formats import ExportInputs, export_formats

    loaded = load_model("tests.tiny_models:tiny_grey_resnet")
    assert loaded.channels == 1
    pruned = drop_blocks(loaded.module, ["layers.0.1"]).eval()
    torch.manual_seed(0)
    images = torch.randn(4, 1, 32, 32)  # (N, 1, R, R)
    inputs = ExportInputs(pruned, 32, images, predict_logits(pruned, images), torch.randn(8, 1, 32, 32), tmp_path)
    record = export_formats(inputs, ["aoti"])["aoti"]
    assert record["input_shape"] == [1, 1, 32, 32]
    assert record["check"]["passed"] and record["check"]["top1_agreement_with_pytorch"] == 1.0, record["check"]
    package = load_package(tmp_path / record["path"])
    with torch.no_grad():  # the package takes the shape its record names
        assert torch.allclose(package(torch.zeros(record["input_shape"])), pruned(torch.zeros(1, 1, 32, 32)),
                              atol=1e-4)
