"""Recoverability: how well adaptors make up for one dropped block."""

from pipeline.data.tiny_set import (
    Preprocessing,
    augmented_views,
    eval_tensors,
    load_image_folder,
    split_holdout,
)
from pipeline.models import load_model
from pipeline.network.blocks import analyse
from pipeline.recovery.mimic import FitSettings
from pipeline.recovery.recoverability import score_recoverability


def _setup(image_folder):
    loaded = load_model("tests.tiny_models:tiny_resnet_deep", resolution=32)
    structure = analyse(loaded.module, 32)
    tiny = load_image_folder(image_folder, 32)
    prep = Preprocessing(32, loaded.mean, loaded.std)
    train, selection = split_holdout(tiny, 0.25, 0)
    return loaded, structure, prep, train, eval_tensors(selection, prep)


def test_recoverability_fit_lowers_feature_mse(image_folder):
    loaded, structure, prep, train, _ = _setup(image_folder)
    settings = FitSettings(steps=15, batch_size=8, lr=0.05)
    pool = augmented_views(train, prep, 64, 0.25, 0)
    seen = []
    results = score_recoverability(loaded.module, structure, pool, eval_tensors(train, prep), settings, {},
                                   on_block=lambda b, r: seen.append(b))
    assert seen == structure.candidate_names()
    for r in results.values():
        assert r["adaptor_sites"] > 0
        assert r["recoverability"] <= r["mse_without_adaptors"] * 1.001
    # already scored blocks are not scored again (resume)
    again = score_recoverability(loaded.module, structure, pool, eval_tensors(train, prep), settings, results,
                                 on_block=lambda b, r: seen.append(b))
    assert again == results and len(seen) == len(structure.candidates)
