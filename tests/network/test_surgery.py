"""Dropping blocks: a copy with identities in their place, unless asked to work in place."""

from torch import nn

from pipeline.models import load_model
from pipeline.network.surgery import drop_blocks


def test_drop_blocks_copies_unless_asked():
    model = load_model("tests.tiny_models:tiny_resnet").module
    pruned = drop_blocks(model, ["layers.0.1"])
    assert isinstance(pruned.layers[0][1], nn.Identity)
    assert not isinstance(model.layers[0][1], nn.Identity)
