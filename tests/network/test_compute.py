"""The training device follows the target and never falls back silently."""

import pytest
import torch


def test_training_device_follows_the_target_and_never_falls_back_silently(monkeypatch):
    from pipeline.core.errors import UsageError
    from pipeline.network.compute import resolve_train_device

    assert resolve_train_device("cpu", "gpu").type == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_train_device("auto", "cpu").type == "cpu"
    assert resolve_train_device("auto", "gpu").type == "cpu"  # a GPU table used on a CPU-only machine
    with pytest.raises(UsageError, match="--train-device cuda needs a CUDA GPU"):
        resolve_train_device("cuda", "cpu")
    with pytest.raises(UsageError, match="unknown training device"):
        resolve_train_device("tpu", "cpu")


def _conv_weights(model):
    return [m.weight for m in model.modules() if isinstance(m, torch.nn.Conv2d)]


@pytest.mark.parametrize("faster", ["channels_last", "contiguous"])
def test_training_runs_in_the_layout_timed_faster_and_the_model_comes_back_in_the_standard_one(monkeypatch, faster):
    import copy

    from pipeline.network import compute
    from tests.tiny_models import tiny_resnet

    def timed_forward(model, example, rounds=2):  # the faster layout is the one this "device" runs faster
        layout = "channels_last" if _conv_weights(model)[0].is_contiguous(memory_format=torch.channels_last) \
            else "contiguous"
        return 1.0 if layout == faster else 2.0

    monkeypatch.setattr(compute, "_forward_ms", timed_forward)
    model = tiny_resnet().eval()
    choice, times = compute.faster_layout(model, torch.rand(4, 3, 32, 32))
    assert choice == faster and set(times) == {"channels_last", "contiguous"}
    assert all(w.is_contiguous() for w in _conv_weights(model))  # timing leaves the model as it was
    with compute.in_layout(model, choice) as inside:
        student = copy.deepcopy(inside)  # a student copied from the teacher trains in the teacher's layout
        in_channels_last = [w.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous()
                            for w in _conv_weights(student) if w.shape[-1] > 1]
        assert all(in_channels_last) == (faster == "channels_last") and in_channels_last
        saved = compute.cpu_state(student.state_dict())
    assert all(w.is_contiguous() for w in _conv_weights(model))  # back in the standard layout
    assert all(t.is_contiguous() for t in saved.values())  # what is saved is in the standard layout


def test_the_layouts_compute_the_same_function():
    from pipeline.network.compute import faster_layout
    from tests.tiny_models import tiny_resnet

    torch.manual_seed(0)
    model, images = tiny_resnet().eval(), torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        before = model(images)
        choice, times = faster_layout(model, images)
        model.to(memory_format=torch.channels_last)
        after = model(images)
    assert choice in times and set(times) == {"channels_last", "contiguous"} and all(t > 0 for t in times.values())
    assert torch.allclose(before, after, atol=1e-5)
