"""Block analysis keeps the causes of its errors and never hides running out of memory as a verdict."""

import pytest
import torch
from torch import nn

from pipeline.core.errors import UsageError
from pipeline.network import blocks
from pipeline.network.blocks import analyse
from tests.tiny_models import tiny_resnet


class FixedInput(nn.Module):
    """A tiny ResNet with a flattening head: it runs only at 32 pixels."""

    def __init__(self):
        super().__init__()
        self.body = tiny_resnet()
        self.body.pool = nn.Identity()
        self.body.fc = nn.Linear(32 * 8 * 8, 10)

    def forward(self, x):
        return self.body(x)


def test_a_forward_that_fails_at_the_resolution_is_one_usage_error_with_its_cause():
    model = FixedInput().eval()
    assert len(analyse(model, 32).candidates) == 4
    with pytest.raises(UsageError, match="does not run on a 1x3x48x48 input") as info:
        analyse(model, 48)
    assert isinstance(info.value.__cause__, RuntimeError)  # --debug shows where it failed


def test_running_out_of_memory_while_checking_drops_is_not_a_discarded_candidate(monkeypatch):
    model = tiny_resnet().eval()

    def out_of_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    import pipeline.network.surgery as surgery

    monkeypatch.setattr(surgery, "drop_blocks", lambda *a, **k: out_of_memory)
    with pytest.raises(torch.OutOfMemoryError):
        analyse(model, 32)


def test_a_drop_the_network_cannot_take_is_discarded_and_other_errors_propagate(monkeypatch):
    import pipeline.network.surgery as surgery

    real = surgery.drop_blocks

    def failing(model, names, copy=False):
        if names == ["layers.0.1"]:
            raise KeyError("a bug, not a shape mismatch")
        return real(model, names, copy=copy)

    monkeypatch.setattr(surgery, "drop_blocks", failing)
    model = tiny_resnet().eval()
    with pytest.raises(KeyError):
        blocks._check_drops_run(model, ["layers.0.1"], torch.zeros(1, 3, 32, 32))
