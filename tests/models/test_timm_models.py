"""timm architectures: built without downloads, preprocessing from their pretrained config, blocks found."""

from __future__ import annotations

import sys

import pytest
import torch

from pipeline.core.errors import UsageError
from pipeline.models import load_model
from pipeline.models.preprocessing import with_preprocessing
from pipeline.network.blocks import analyse
from pipeline.network.surgery import drop_blocks

timm = pytest.importorskip("timm", reason="timm is not installed (pip install '.[timm]')")

# the same count as torchvision's counterpart (resnet18, efficientnet_b0, mobilenet_v3_large: README), found by
# the rule; RegNet and ConvNeXt write their skip as `x + self.shortcut(x)` with an nn.Identity shortcut
FAMILIES = [("resnet18", 5), ("efficientnet_b0", 9), ("mobilenetv3_large_100", 10), ("regnetx_002", 9),
            ("convnext_atto", 12)]


@pytest.mark.parametrize("name,count", FAMILIES)
def test_the_candidate_rule_finds_timms_residual_blocks(name, count):
    loaded = load_model(f"timm:{name}", resolution=64)
    structure = analyse(loaded.module, 64)
    assert len(structure.candidates) == count
    dropped = drop_blocks(loaded.module, structure.candidate_names())
    with torch.no_grad():
        assert dropped(torch.zeros(1, 3, 64, 64)).shape == (1, 1000)


def test_preprocessing_comes_from_the_pretrained_config_and_options_override_it():
    loaded = load_model("timm:resnet18")
    cfg = loaded.module.pretrained_cfg
    assert (loaded.resolution, loaded.mean, loaded.std) == (cfg["input_size"][1], cfg["mean"], cfg["std"])
    assert (loaded.crop_fraction, loaded.interpolation) == (cfg["crop_pct"], cfg["interpolation"]) == (0.95, "bicubic")
    assert loaded.weights_source == "random" and not loaded.has_trained_weights  # nothing was downloaded
    overridden = with_preprocessing(loaded, crop_fraction=1.0, interpolation="bilinear")
    assert (overridden.crop_fraction, overridden.interpolation) == (1.0, "bilinear")


def test_weights_come_from_the_users_file(tmp_path):
    source = timm.create_model("resnet18", pretrained=False)
    with torch.no_grad():
        source.fc.weight.fill_(0.25)
    torch.save(source.state_dict(), tmp_path / "resnet18.pt")
    loaded = load_model("timm:resnet18", weights=tmp_path / "resnet18.pt")
    assert loaded.weights_source.startswith("file:") and loaded.has_trained_weights
    assert torch.equal(loaded.module.fc.weight, source.fc.weight)


def test_weights_from_a_safetensors_checkpoint_as_timm_and_hugging_face_keep_them(tmp_path):
    from safetensors.torch import save_file  # installed with timm; torch.load reads the format itself

    source = timm.create_model("resnet18", pretrained=False)
    with torch.no_grad():
        source.fc.bias.fill_(0.5)
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(tmp_path / "model.safetensors"))
    loaded = load_model("timm:resnet18", weights=tmp_path / "model.safetensors")
    assert torch.equal(loaded.module.fc.bias, source.fc.bias)


def test_unknown_names_and_a_missing_timm_are_refused_with_the_fix(monkeypatch):
    with pytest.raises(UsageError, match="timm has no architecture 'resnt18'. Did you mean timm:resnet18"):
        load_model("timm:resnt18")
    monkeypatch.setitem(sys.modules, "timm", None)
    with pytest.raises(UsageError, match=r"pip install '\.\[timm\]'"):
        load_model("timm:resnet18")
