"""Confident views: the surest share of many random tiny-set views, and recovery that mimics on them."""

import pytest
import torch

from pipeline.core.errors import UsageError
from pipeline.data.tiny_set import (
    Preprocessing,
    augmented_views,
    eval_tensors,
    load_image_folder,
    split_holdout,
)
from pipeline.models import load_model
from pipeline.network.blocks import analyse
from pipeline.network.features import FeatureTap
from pipeline.network.surgery import drop_blocks
from pipeline.recovery.confident_views import (
    ViewSettings,
    confident_views,
    top1_probability,
)
from pipeline.recovery.mimic import FitSettings, LiveBatches
from pipeline.recovery.recover import RecoverySettings, recover

TINY = "tests.tiny_models:tiny_resnet_deep"


@pytest.fixture
def setup(image_folder):
    loaded = load_model(TINY, resolution=32)
    tiny = load_image_folder(image_folder, 32)
    return loaded, tiny, Preprocessing(32, loaded.mean, loaded.std)


def test_the_kept_views_are_the_surest_of_the_whole_pool_scored_in_chunks(setup):
    loaded, tiny, prep = setup
    settings = ViewSettings("confident", pool=300, keep=7)  # three chunks of up to 128 views
    kept = confident_views(loaded.module, tiny, prep, settings, 0.25, seed=3)
    assert kept.shape == (7, 3, 32, 32)
    every = torch.cat([augmented_views(tiny, prep, n, 0.25, 3 * 1_000_003 + start)
                       for start, n in ((0, 128), (128, 128), (256, 44))])
    scores = top1_probability(loaded.module, every)
    assert torch.allclose(top1_probability(loaded.module, kept), scores.topk(7).values)
    # deterministic, to the bit: the same seed, views and chunks, in this process on the same thread count
    assert torch.equal(kept, confident_views(loaded.module, tiny, prep, settings, 0.25, seed=3))


def test_view_settings_refuse_unknown_sources_and_impossible_shares():
    with pytest.raises(UsageError, match="unknown recovery views 'best'"):
        ViewSettings("best")
    with pytest.raises(UsageError, match="keep 20 of 10"):
        ViewSettings("confident", pool=10, keep=20)


def test_batches_drawn_from_a_view_pool_hold_only_its_views_or_their_mirror_images(setup):
    loaded, tiny, prep = setup
    views = augmented_views(tiny, prep, 5, 0.25, 0)
    allowed = torch.cat([views, views.flip(3)])
    with FeatureTap(loaded.module, analyse(loaded.module, 32).feature_point) as tap:
        batch = LiveBatches(tiny, prep, tap, 12, 0.25, seed=1, views=views).batch(0)
    assert batch.images.shape == (12, 3, 32, 32)
    for image in batch.images:
        assert any(torch.equal(image, v) for v in allowed)
    assert len({tuple(image.flatten()[:8].tolist()) for image in batch.images}) > 1


def test_recovery_on_confident_views_returns_a_folded_state_and_says_what_it_kept(image_folder):
    loaded = load_model(TINY, resolution=32)
    structure = analyse(loaded.module, 32)
    prep = Preprocessing(32, loaded.mean, loaded.std)
    train, selection = split_holdout(load_image_folder(image_folder, 32), 0.25, 0)
    dropped = ["layers.1.1"]
    settings = RecoverySettings("adaptors", FitSettings(steps=6, batch_size=8, lr=0.05), eval_every=3,
                                views=ViewSettings("confident", pool=40, keep=10))
    messages = []
    result = recover(loaded.module, drop_blocks(loaded.module, dropped), dropped, structure, train,
                     eval_tensors(selection, prep), prep, settings, log=messages.append)
    drop_blocks(loaded.module, dropped).load_state_dict(result.state_dict)  # no adaptor keys left
    assert len(result.losses) == 6
    assert any("the 10 of 40 random tiny-set views" in m for m in messages)
    assert settings.to_dict()["views"] == {"source": "confident", "pool": 40, "keep": 10}


def test_both_presets_mimic_on_random_views_unless_asked():
    from pipeline.run.presets import get_preset, with_overrides

    assert {get_preset(p).recovery.views.source for p in ("fast", "paper")} == {"random"}
    asked = with_overrides(get_preset("fast"), views="confident").recovery.views
    assert (asked.source, asked.pool, asked.keep) == ("confident", 1024, 256)
