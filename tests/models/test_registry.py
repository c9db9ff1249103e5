"""Loading networks by name, factory spec or file, with weights, and the errors on bad ones."""

import pytest
import torch

from pipeline.core.errors import UsageError
from pipeline.models import load_model


def test_torchvision_model_has_no_weights_without_a_file():
    loaded = load_model("mobilenet_v2")
    assert loaded.weights_source == "random" and not loaded.has_trained_weights


def test_unknown_model_suggests_close_names():
    with pytest.raises(UsageError, match="Did you mean resnet18"):
        load_model("resnt18")


def test_weights_file_round_trip(tmp_path):
    source = load_model("tests.tiny_models:tiny_resnet")
    path = tmp_path / "w.pt"
    torch.save(source.module.state_dict(), path)
    loaded = load_model("tests.tiny_models:tiny_resnet", weights=path)
    assert loaded.weights_source.startswith("file:")
    for a, b in zip(source.module.state_dict().values(), loaded.module.state_dict().values()):
        assert torch.equal(a, b)


def test_weights_that_do_not_fit_name_the_keys(tmp_path):
    path = tmp_path / "w.pt"
    torch.save(load_model("tests.tiny_models:tiny_resnet_deep").module.state_dict(), path)
    with pytest.raises(UsageError, match=r"unexpected \(e\.g\. layers\.0\.2"):
        load_model("tests.tiny_models:tiny_resnet", weights=path)


def test_missing_and_unreadable_weights(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        load_model("tests.tiny_models:tiny_resnet", weights=tmp_path / "nope.pt")
    bad = tmp_path / "bad.pt"
    bad.write_text("not a checkpoint")
    with pytest.raises(UsageError, match="cannot read weights"):
        load_model("tests.tiny_models:tiny_resnet", weights=bad)


def test_saved_whole_module(tmp_path):
    module = load_model("tests.tiny_models:tiny_resnet").module
    path = tmp_path / "model.pt"
    torch.save(module, path)
    loaded = load_model(str(path))
    assert loaded.weights_source.startswith("saved-module:")
    x = torch.randn(1, 3, 32, 32)
    assert torch.allclose(loaded.module(x), module.eval()(x))


def test_bad_factory_spec():
    with pytest.raises(UsageError, match="cannot load model factory"):
        load_model("tests.tiny_models:no_such_function")


def test_random_weights_are_the_same_in_every_load_and_leave_the_callers_random_state_alone():
    import torch

    from pipeline.models import load_model

    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    a = load_model("tests.tiny_models:tiny_resnet").module.state_dict()
    assert torch.equal(torch.rand(1), expected_next)
    b = load_model("tests.tiny_models:tiny_resnet").module.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
