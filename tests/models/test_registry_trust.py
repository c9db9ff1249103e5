"""Trust rules of the model registry: no code runs from a file the user did not name as a model file."""

import os
import pickle
import sys

import pytest
import torch
import torchvision

from pipeline.core.errors import UsageError
from pipeline.models import load_model
from pipeline.recovery.recover import _Checkpoints

TINY = "tests.tiny_models:tiny_resnet"


class _Payload:
    """Unpickling this touches a marker file: stands in for code a hostile pickle would run."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _write_hostile_pickle(path, marker):
    with open(path, "wb") as handle:
        pickle.dump(_Payload(marker), handle)


def test_a_file_named_like_a_model_is_never_unpickled(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    marker = tmp_path / "code-ran"
    _write_hostile_pickle(tmp_path / "resnet18", marker)
    loaded = load_model("resnet18")
    assert isinstance(loaded.module, torchvision.models.ResNet)
    assert not marker.exists()


def test_an_unknown_name_that_is_a_file_is_refused_with_the_explicit_form(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    marker = tmp_path / "code-ran"
    _write_hostile_pickle(tmp_path / "mynet", marker)
    with pytest.raises(UsageError, match="file:mynet"):
        load_model("mynet")
    assert not marker.exists()


def test_file_prefix_loads_a_whole_saved_module_whatever_its_suffix(tmp_path):
    module = load_model(TINY).module
    path = tmp_path / "model.bin"
    torch.save(module, path)
    loaded = load_model(f"file:{path}")
    assert loaded.weights_source.startswith("saved-module:")
    x = torch.randn(1, 3, 32, 32)
    assert torch.equal(loaded.module(x), module.eval()(x))  # exactly: the same weights and kernels, this process


def test_user_code_is_imported_without_leaving_the_working_directory_on_sys_path(tmp_path, monkeypatch):
    (tmp_path / "my_factory_17.py").write_text(
        "from tests.tiny_models import tiny_resnet\n\ndef build():\n    return tiny_resnet()\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(sys.modules, "my_factory_17", raising=False)
    before = list(sys.path)
    loaded = load_model("my_factory_17:build")
    assert loaded.module is not None
    assert sys.path == before
    assert os.getcwd() not in sys.path


def test_the_recovery_checkpoint_loads_with_weights_only(tmp_path):
    marker = tmp_path / "code-ran"
    checkpoint = tmp_path / "recovery_checkpoint.pt"
    torch.save({"step": 3, "payload": _Payload(marker)}, checkpoint)
    with pytest.raises(pickle.UnpicklingError):
        _Checkpoints(checkpoint).load()
    assert not marker.exists()


# -- bad input: counted in the issue-17 report ------------------------------------------------------------------

def test_weights_of_another_architecture_name_what_does_not_fit(tmp_path):
    weights = tmp_path / "resnet18.pt"
    torch.save(torchvision.models.resnet18().state_dict(), weights)
    with pytest.raises(UsageError, match="do not fit the architecture") as info:
        load_model(TINY, weights=weights)
    assert "missing" in str(info.value) and "unexpected" in str(info.value)


def test_a_saved_module_whose_class_cannot_be_imported(tmp_path, monkeypatch):
    (tmp_path / "gone_net_17.py").write_text(
        "import torch\n\nclass GoneNet(torch.nn.Module):\n    def forward(self, x):\n        return x\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import gone_net_17

    path = tmp_path / "gone.pt"
    torch.save(gone_net_17.GoneNet(), path)
    (tmp_path / "gone_net_17.py").unlink()
    monkeypatch.delitem(sys.modules, "gone_net_17")
    monkeypatch.chdir(tmp_path.parent)
    with pytest.raises(UsageError, match="cannot rebuild the saved model") as info:
        load_model(str(path))
    assert isinstance(info.value.__cause__, ImportError)


@pytest.mark.parametrize("spec, runs", [
    ("resnet18", False), ("efficientnet_lite0", False), ("timm:resnet18", False),
    ("tests.tiny_models:tiny_resnet", True), ("file:model.bin", True), ("net.pt", True), ("net.pth", True),
])
def test_specs_that_run_code_are_recognised(spec, runs):
    from pipeline.models.registry import runs_code

    assert runs_code(spec) is runs


def test_a_folder_naming_user_code_needs_trust(tmp_path):
    from pipeline.core.errors import UsageError
    from pipeline.models.registry import require_trusted_spec

    with pytest.raises(UsageError, match="--trust-model-code"):
        require_trusted_spec("file:evil.pt", tmp_path, trusted=False)
    require_trusted_spec("file:evil.pt", tmp_path, trusted=True)
    require_trusted_spec("resnet18", tmp_path, trusted=False)
