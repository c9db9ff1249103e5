import torch

from pipeline.models import load_model
from pipeline.network.adaptors import Adaptors, adaptor_sites
from pipeline.network.blocks import analyse
from pipeline.network.surgery import drop_blocks


def _setup(spec="tests.tiny_models:tiny_resnet_deep", res=32):
    loaded = load_model(spec)
    return loaded.module, analyse(loaded.module, res)


def test_sites_follow_practise_placement_for_resnet_blocks():
    model, s = _setup()
    sites = {(site.conv, site.side) for site in adaptor_sites(model, s, ["layers.1.1"])}
    # writers: the stage's first block (main branch and downsample); readers: the later block and the next stage's first
    assert sites == {
        ("layers.1.0.conv2", "output"), ("layers.1.0.downsample.0", "output"),
        ("layers.1.2.conv1", "input"),
        ("layers.2.0.conv1", "input"), ("layers.2.0.downsample.0", "input"),
    }


def test_identity_initialised_adaptors_do_not_change_the_network():
    model, s = _setup()
    student = drop_blocks(model, ["layers.1.1"]).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        before = student(x)
        Adaptors(adaptor_sites(model, s, ["layers.1.1"])).attach(student)
        assert torch.allclose(student(x), before, atol=1e-6)


def test_folding_adaptors_into_convolutions_is_exact():
    model, s = _setup()
    dropped = ["layers.0.1", "layers.1.1"]
    student = drop_blocks(model, dropped).eval()
    adaptors = Adaptors(adaptor_sites(model, s, dropped))
    with torch.no_grad():
        for conv in adaptors.maps.values():
            conv.weight.add_(0.1 * torch.randn_like(conv.weight))
    adaptors.attach(student)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        with_hooks = student(x)
        adaptors.fold_into(student)
        folded = student(x)
    assert torch.allclose(with_hooks, folded, atol=1e-5)
    assert not adaptors._handles


def test_lite_sites_skip_depthwise_convolutions():
    loaded = load_model("efficientnet_lite0")
    s = analyse(loaded.module, 224)
    sites = adaptor_sites(loaded.module, s, ["_blocks.9"])
    assert {(x.conv, x.side) for x in sites} == {
        ("_blocks.8._project_conv", "output"), ("_blocks.10._expand_conv", "input"), ("_blocks.11._expand_conv", "input"),
    }
