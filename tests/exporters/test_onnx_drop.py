"""Dropping blocks from an exported ONNX graph gives what exporting the network without them gives."""

from __future__ import annotations

import collections

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from exporters.onnx_drop import BlockRegionError, block_boundary, drop_blocks_onnx, drop_origin, same_weights_as_base
from exporters.onnx_file import export_onnx
from pipeline.models import load_model
from pipeline.network.blocks import analyse
from pipeline.network.surgery import drop_blocks

# (model, resolution): the tiny ResNet (torchvision BasicBlocks), torchvision's MobileNetV2 with random weights
# (`features.3`), the packaged EfficientNet-Lite0 (`_blocks.4`) at a small resolution
# at 64 px. Every drop of the tiny ResNet is compared; the larger two compare their first and last block and a
# multi-block drop (3 dynamo exports, not 11: each took about 80 s of the suite with every block compared).
CASES = [("tests.tiny_models:tiny_resnet", 32), pytest.param(("mobilenet_v2", 64), marks=pytest.mark.slow),
         pytest.param(("efficientnet_lite0", 64), marks=pytest.mark.slow)]
IDS = ["tiny_resnet", "mobilenet_v2", "efficientnet_lite0"]
METADATA = {"mean": "0.485,0.456,0.406", "resolution": "64"}


def _run(model: onnx.ModelProto, images: torch.Tensor) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: images.numpy()})[0]


def _relative_error(outputs: np.ndarray, reference: np.ndarray) -> float:
    """Largest difference relative to the largest output (MobileNetV2's random-weight logits are about 1e-9)."""
    return float(np.abs(outputs - reference).max() / np.abs(reference).max())


@pytest.fixture(scope="module", params=CASES, ids=IDS)
def exported(request, tmp_path_factory):
    spec, resolution = request.param
    loaded = load_model(spec, resolution=resolution)
    names = analyse(loaded.module, resolution).candidate_names()
    folder = tmp_path_factory.mktemp("onnx_drop")
    example = torch.randn(1, 3, resolution, resolution)
    base = onnx.load(str(export_onnx(loaded.module, example, folder / "base.onnx", metadata=METADATA)))
    return loaded.module, names, base, example, folder


def test_every_block_drop_matches_the_export_of_the_network_without_it(exported):
    module, names, base, example, folder = exported
    images = torch.randn(1, *example.shape[1:], generator=torch.Generator().manual_seed(1))
    singles = names if len(names) <= 4 else [names[0], names[-1]]
    for blocks in [[name] for name in singles] + [names[::2]]:
        edited = drop_blocks_onnx(base, blocks)
        reference = onnx.load(str(export_onnx(drop_blocks(module, blocks), example, folder / "variant.onnx")))
        assert _relative_error(_run(edited, images), _run(reference, images)) < 1e-4, blocks
        # the same graph, not only the same numbers: as many nodes of each operator as the dynamo export has
        assert len(edited.graph.node) == len(reference.graph.node), blocks
        assert collections.Counter(n.op_type for n in edited.graph.node) == \
            collections.Counter(n.op_type for n in reference.graph.node), blocks
        read = {name for node in edited.graph.node for name in node.input}
        assert {i.name for i in edited.graph.initializer} <= read & {i.name for i in base.graph.initializer}
        assert {p.key: p.value for p in edited.metadata_props} == METADATA  # how to feed the file is kept
        assert [o.name for o in edited.graph.output] == [o.name for o in base.graph.output]
    assert len(base.graph.node) > len(drop_blocks_onnx(base, names[:1]).graph.node)  # the base itself is untouched


def test_the_boundary_is_the_tensor_the_block_reads_and_the_one_it_hands_on(exported):
    _, names, base, _, _ = exported
    boundary = block_boundary(base, names[0])
    consumers = [n for n in base.graph.node if boundary.output in n.input]
    assert consumers and boundary.input != boundary.output and boundary.nodes >= 3


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory) -> onnx.ModelProto:
    loaded = load_model("tests.tiny_models:tiny_resnet", resolution=32)
    path = tmp_path_factory.mktemp("tiny") / "tiny.onnx"
    return onnx.load(str(export_onnx(loaded.module, torch.randn(1, 3, 32, 32), path)))


def test_a_file_without_module_scopes_is_refused(tiny_onnx):
    model = onnx.ModelProto()
    model.CopyFrom(tiny_onnx)
    for node in model.graph.node:
        del node.metadata_props[:]
    with pytest.raises(BlockRegionError, match="no module scopes"):
        drop_blocks_onnx(model, ["layers.0.1"])


@pytest.mark.parametrize("scope, reason", [
    ("layers.1.0", "changes its tensor's type or shape"),  # a downsampling BasicBlock: no identity skip
    ("layers", "changes its tensor's type or shape"),  # the three stages
    ("pool", "changes its tensor's type or shape"),  # global pooling, no parameters
    ("layers.0.7", "no node"),  # not a module of the network
])
def test_a_scope_that_is_not_a_block_is_refused(tiny_onnx, scope, reason):
    with pytest.raises(BlockRegionError, match=reason):
        drop_blocks_onnx(tiny_onnx, [scope])


class _TwoOut(nn.Module):
    def forward(self, x):
        return x + 1, x * 2


class _TwoIn(nn.Module):
    def forward(self, x, y):
        return x - y


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.split, self.merge = _TwoOut(), _TwoIn()

    def forward(self, x):
        x = self.conv(x)
        a, b = self.split(x)
        return self.merge(a.relu(), b.sigmoid())


def test_a_region_with_two_outputs_or_two_inputs_is_refused(tmp_path):
    model = onnx.load(str(export_onnx(_Net(), torch.randn(1, 3, 8, 8), tmp_path / "two.onnx")))
    with pytest.raises(BlockRegionError, match="one tensor in and one out"):
        block_boundary(model, "split")
    with pytest.raises(BlockRegionError, match="one tensor in and one out"):
        block_boundary(model, "merge")


def test_drop_blocks_records_the_origin_and_the_weight_check_sees_training():
    import copy
    import pickle

    base = load_model("tests.tiny_models:tiny_resnet", resolution=32).module
    variant = drop_blocks(base, ["layers.0.1"])
    origin = drop_origin(variant)
    assert origin is not None and origin.base is base and origin.blocks == ("layers.0.1",)
    assert same_weights_as_base(variant, origin)
    again = drop_origin(drop_blocks(variant, ["layers.2.1"]))  # a variant of a variant names the first base
    assert again is not None and again.base is base and again.blocks == ("layers.0.1", "layers.2.1")
    assert drop_origin(copy.deepcopy(variant)) == origin  # the record is kept, the base is not copied
    assert drop_origin(pickle.loads(pickle.dumps(variant))) is None  # a pickled variant is just a network
    assert drop_origin(drop_blocks(base, ["layers.0.1"], copy=False)) is None  # in place: base is the variant
    fresh = load_model("tests.tiny_models:tiny_resnet", resolution=32).module
    trained = drop_blocks(fresh, ["layers.0.1"])
    with torch.no_grad():
        trained.fc.bias.add_(0.1)
    assert not same_weights_as_base(trained, drop_origin(trained))
