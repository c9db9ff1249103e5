"""Recoverability: how well adaptors make up for one dropped block."""

from pipeline.data.tiny_set import (
    augmented_views,
    eval_tensors,
)
from pipeline.recovery.mimic import FitSettings
from pipeline.recovery.recoverability import score_recoverability
from tests.recovery.setup import tiny_recovery_setup


def test_recoverability_fit_lowers_feature_mse(image_folder):
    loaded, structure, prep, train, _ = tiny_recovery_setup(image_folder)
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
