"""Fake quantization computes close to onnxruntime's INT8 file, lets gradients through, and comes off cleanly."""

import tempfile
from pathlib import Path

import pytest
import torch

from exporters.onnx_check import onnx_logits
from pipeline.latency.precision import deployed_file
from pipeline.recovery.fake_quant import (
    FakeQuantization,
    QuantizationRule,
    activation_grid,
    fake_quantized,
)
from tests.tiny_models import tiny_resnet


def _trained_looking_resnet(seed: int = 0) -> torch.nn.Module:
    """The tiny ResNet with BatchNorm statistics and scales far from 1, so folding them matters."""
    torch.manual_seed(seed)
    network = tiny_resnet()
    for module in network.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_var.uniform_(0.2, 4.0)
            module.running_mean.uniform_(-0.3, 0.3)
            module.weight.data.uniform_(0.3, 2.0)
            module.bias.data.uniform_(-0.2, 0.2)
    return network.eval()


@pytest.mark.parametrize("scheme", ["int8-qdq-u8s8-channel", "int8-qdq-s8s8-tensor", "int8-qop-u8s8-channel"])
def test_fake_quantized_logits_are_closer_to_the_onnxruntime_int8_file_than_fp32_is(scheme):
    network = _trained_looking_resnet()
    images = torch.rand(24, 3, 32, 32) * 2 - 1
    calibration, test = images[:16], images[16:]
    with tempfile.TemporaryDirectory() as tmp:
        int8 = onnx_logits(deployed_file(network, scheme, calibration, Path(tmp), "net"), test)
    fp32 = network(test).detach()
    with fake_quantized(network, scheme, calibration):
        fake = network(test).detach()
    fp32_error, fake_error = (fp32 - int8).abs().mean(), (fake - int8).abs().mean()
    assert fake_error < 0.8 * fp32_error, (scheme, float(fake_error), float(fp32_error))


def test_gradients_flow_through_the_rounding_to_every_weight():
    network = _trained_looking_resnet().train()
    images = torch.rand(8, 3, 32, 32)
    with fake_quantized(network, "int8-qdq-u8s8-tensor", images):
        network(images).square().mean().backward()
    convs = [m for m in network.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    assert all(m.weight.grad is not None and m.weight.grad.abs().sum() > 0 for m in convs)


def test_removing_it_leaves_the_plain_network_with_the_same_keys_and_outputs():
    network = _trained_looking_resnet()
    images = torch.rand(8, 3, 32, 32)
    before, keys = network(images).detach(), list(network.state_dict())
    quantization = fake_quantized(network, "int8-qdq-s8s8-channel", images)
    assert list(network.state_dict()) == keys
    assert not torch.equal(network(images).detach(), before)  # attached: it rounds
    quantization.remove()
    assert list(network.state_dict()) == keys and torch.equal(network(images).detach(), before)
    assert all("forward" not in m.__dict__ for m in network.modules())


def test_a_convolution_with_its_own_forward_keeps_it():
    """EfficientNet-Lite's convolutions pad like TensorFlow's 'SAME' in their own forward: rounding must not skip it."""
    from pipeline.models.efficientnet_lite import SamePadConv2d

    network = torch.nn.Sequential(SamePadConv2d(3, 4, 3, stride=2, bias=False), torch.nn.ReLU()).eval()
    images = torch.rand(4, 3, 15, 15)
    plain = network(images).detach()
    with fake_quantized(network, "int8-qdq-u8s8-channel", images):
        rounded = network(images).detach()
    assert rounded.shape == plain.shape and not torch.equal(rounded, plain)
    assert (rounded - plain).abs().max() < 0.05 * plain.abs().max()
    assert isinstance(network[0].weight, torch.nn.Parameter)  # put back after the forward


def test_activation_grids_follow_onnxruntime():
    # uint8: [0, 255] over [min(low, 0), max(high, 0)]; int8 activations asymmetric on [-128, 127]
    grid = activation_grid(-1.0, 3.0, "uint8")
    assert grid.scale == pytest.approx(4.0 / 255) and grid.zero_point == round(1.0 / (4.0 / 255))
    assert activation_grid(0.5, 2.0, "int8").zero_point == -128  # the range is widened to include 0
    assert activation_grid(0.0, 0.0, "uint8").scale == 1.0


def test_it_must_be_calibrated_and_refuses_an_unknown_scheme():
    with pytest.raises(RuntimeError, match="calibrated"):
        FakeQuantization(tiny_resnet(), QuantizationRule.of("int8-qdq-u8s8-channel")).attach()
    with pytest.raises(Exception, match="unknown INT8 scheme"):
        QuantizationRule.of("int4")
