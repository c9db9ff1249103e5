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
    assert again == results and len(seen) == len(structure.candidates)  # exactly: `done` returned, nothing rescored


def test_each_candidate_is_seeded_by_its_name_so_any_rank_and_order_scores_it_alike(image_folder, monkeypatch):
    """A fit that draws random numbers (as a future recipe may) still scores a block the same alone, in
    reverse order or after others: the seed comes from (seed, block), not from what ran before."""
    import torch

    from pipeline.recovery import recoverability

    loaded, structure, prep, train, _ = tiny_recovery_setup(image_folder)
    monkeypatch.setattr(recoverability, "recoverability_of",
                        lambda block, *args: {"recoverability": float(torch.rand(1))})
    pool, images, settings = augmented_views(train, prep, 8, 0.25, 0), eval_tensors(train, prep), FitSettings(1, 4, 0.01)
    names = structure.candidate_names()
    forward = score_recoverability(loaded.module, structure, pool, images, settings, {}, seed=3)
    backward = score_recoverability(loaded.module, structure, pool, images, settings, {}, seed=3, blocks=names[::-1])
    alone = score_recoverability(loaded.module, structure, pool, images, settings, {}, seed=3, blocks=names[-1:])
    # exactly: the stand-in score is a torch.rand draw (no arithmetic to round), seeded by the block's name
    assert forward == backward and alone == {names[-1]: forward[names[-1]]}
    assert score_recoverability(loaded.module, structure, pool, images, settings, {}, seed=4) != forward


def test_scoring_cost_counts_the_backward_pass_and_blocks_without_adaptors(image_folder, monkeypatch):
    from pipeline.recovery import recoverability
    from pipeline.recovery.recoverability import scoring_cost

    loaded, structure, _, _, _ = tiny_recovery_setup(image_folder)
    settings = FitSettings(steps=30, batch_size=16, lr=0.005)
    costs = scoring_cost(loaded.module, structure, settings, eval_images=12)
    names = structure.candidate_names()
    assert list(costs) == names
    same_macs = [c.name for c in structure.candidates if c.macs == structure.candidates[0].macs]
    assert costs[same_macs[0]] > costs[same_macs[-1]]  # the earlier block's fit runs backward through more
    monkeypatch.setattr(recoverability, "adaptor_sites", lambda teacher, s, blocks: [] if blocks == names[:1] else [1])
    without = scoring_cost(loaded.module, structure, settings, eval_images=12)
    assert without[names[0]] < costs[names[0]] / 10  # only evaluated: far cheaper than a fit
