"""Mixing augmentation of the second half of a batch."""

import pytest
import torch

from pipeline.recovery.recover import RecoverySettings


def test_mixing_replaces_only_the_second_half_with_mixes_of_batch_images():
    from pipeline.recovery.mixing import mix_half

    images = torch.stack([torch.full((3, 8, 8), float(i)) for i in range(6)])
    for mode in ("cutmix", "mixup"):
        mixed = mix_half(images, mode, torch.Generator().manual_seed(0))
        assert torch.equal(mixed[:3], images[:3])
        again = mix_half(images, mode, torch.Generator().manual_seed(0))
        assert torch.equal(mixed, again)  # deterministic for a seed (resumable recovery)
        assert mixed[3:].min() >= 0 and mixed[3:].max() <= 5  # every pixel comes from batch images
    assert torch.equal(mix_half(images, "none", torch.Generator()), images)
    cut = mix_half(images, "cutmix", torch.Generator().manual_seed(1))
    for i in range(3, 6):  # cutmix pastes pixels as they are: only the image's own and one other value
        assert len(torch.unique(cut[i])) <= 2


def test_unknown_mixing_is_a_usage_error():

    from pipeline.core.errors import UsageError

    with pytest.raises(UsageError, match="unknown mixing 'blend'"):
        RecoverySettings(mixing="blend")
