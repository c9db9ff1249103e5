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
