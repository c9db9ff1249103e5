"""BatchNorm-matched synthetic images."""

import torch

from pipeline.data.tiny_set import (
    augmented_views,
)
from pipeline.network.surgery import drop_blocks
from pipeline.recovery.mimic import FitSettings
from pipeline.recovery.recover import RecoverySettings, recover
from tests.recovery.setup import tiny_recovery_setup


def test_batchnorm_matched_synthesis_moves_statistics_toward_the_originals_training_data(image_folder, tmp_path):
    from pipeline.recovery.synthetic import (
        SyntheticSettings,
        batchnorm_distance,
        bn_matched_images,
        starting_images,
    )

    loaded, structure, prep, train, sel = tiny_recovery_setup(image_folder)
    loaded.module.train()
    with torch.no_grad():  # give the random network real running statistics: those of other images
        for _ in range(50):
            loaded.module(torch.randn(16, 3, 32, 32) * 0.5 + 0.3)
    loaded.module.eval()
    views = augmented_views(train, prep, 16, 0.25, 0)
    for init in ("views", "noise"):
        settings = SyntheticSettings(images=16, steps=30, init=init, lr=0.05, batch_size=8)
        starts = starting_images(views, settings, 0)
        made = bn_matched_images(loaded.module, starts, settings, seed=0)
        assert made.shape == views.shape and made.device.type == "cpu"
        assert batchnorm_distance(loaded.module, made) < 0.5 * batchnorm_distance(loaded.module, starts)
    assert all(p.requires_grad for p in loaded.module.parameters())  # left as it was

    # recovery mixes them in, keeps them beside its checkpoint for a resume, and still returns a plain state
    dropped = ["layers.1.1"]
    settings = RecoverySettings("adaptors", FitSettings(steps=4, batch_size=8, lr=0.05), eval_every=2,
                                synthetic=SyntheticSettings(images=8, steps=3, batch_size=8))
    result = recover(loaded.module, drop_blocks(loaded.module, dropped), dropped, structure, train, sel, prep,
                     settings, checkpoint_path=tmp_path / "ckpt.pt")
    assert (tmp_path / "synthetic_images.pt").exists() and len(result.losses) == 4
    drop_blocks(loaded.module, dropped).load_state_dict(result.state_dict)
