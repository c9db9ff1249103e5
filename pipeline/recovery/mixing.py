"""Mixed views for label-free mimicking: half of each batch becomes CutMix or MixUp of two views.

The teacher labels whatever image it is shown, so a mixed image is as valid a target as a clean one;
mixing widens the inputs a tiny set covers, which matters when the tiny set is out of domain.
"""

from __future__ import annotations

import torch

MIXING = ("none", "cutmix", "mixup")


def mix_half(images: torch.Tensor, mode: str, generator: torch.Generator) -> torch.Tensor:
    """Return `images` with its second half replaced by mixes of random pairs from the batch."""
    if mode == "none" or len(images) < 2:
        return images
    n = len(images)
    start = n // 2
    out = images.clone()
    for i in range(start, n):
        j = int(torch.randint(n, (1,), generator=generator))
        lam = float(torch.rand(1, generator=generator))
        if mode == "cutmix":
            out[i] = _cutmix(images[i], images[j], lam, generator)
        else:
            out[i] = lam * images[i] + (1 - lam) * images[j]
    return out


def _cutmix(a: torch.Tensor, b: torch.Tensor, lam: float, generator: torch.Generator) -> torch.Tensor:
    """`a` with a box covering 1 - lam of its area taken from `b`."""
    _, h, w = a.shape
    cut = (1 - lam) ** 0.5
    bh, bw = max(1, int(h * cut)), max(1, int(w * cut))
    y = int(torch.randint(h - bh + 1, (1,), generator=generator))
    x = int(torch.randint(w - bw + 1, (1,), generator=generator))
    out = a.clone()
    out[:, y : y + bh, x : x + bw] = b[:, y : y + bh, x : x + bw]
    return out
