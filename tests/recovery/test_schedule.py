"""The recovery schedule: patience stopping with lr drops, divergence, the learning-rate range test."""

import math

import pytest

from pipeline.network.surgery import drop_blocks
from pipeline.recovery.mimic import FitSettings
from pipeline.recovery.recover import RecoverySettings, recover
from pipeline.recovery.schedule import (
    Diverged,
    Schedule,
    ScheduleSettings,
    choose_lr,
    divergence,
    patience_decision,
)
from tests.recovery.setup import tiny_recovery_setup


def test_patience_drops_the_lr_once_then_stops():
    settings = ScheduleSettings(patience=2, lr_drops=1, min_delta=0.01)
    assert patience_decision([0.9, 0.8], 1.0, settings).stop is False
    first_plateau = patience_decision([0.9, 0.9, 0.9], 1.0, settings)
    assert (first_plateau.stop, first_plateau.drops_done) == (False, 1)
    assert patience_decision([0.9, 0.9, 0.9, 0.8], 1.0, settings).since_best == 0  # improvement resets the count
    stopped = patience_decision([0.9, 0.9, 0.9, 0.9, 0.9], 1.0, settings)
    assert (stopped.stop, stopped.drops_done) == (True, 1)
    # a change smaller than min_delta (1%) is no improvement
    assert patience_decision([0.995, 0.991], 1.0, ScheduleSettings(patience=2, lr_drops=0)).stop


def test_divergence_names_the_step_and_the_value():
    assert divergence(4, float("nan"), 1.0, 10.0) == "the loss was nan at step 5"
    assert "over 10x its first value" in divergence(9, 25.0, 2.0, 10.0)
    assert divergence(9, 19.0, 2.0, 10.0) is None


def test_the_range_test_takes_a_tenth_of_the_lr_at_the_lowest_loss():
    lrs = [1e-4, 1e-3, 1e-2, 1e-1, 1.0]
    assert math.isclose(choose_lr(lrs, [5.0, 4.0, 1.0, 1.0, float("inf")]), 1e-2)  # lowest at 0.1 (inf ignored)
    assert math.isclose(choose_lr(lrs, [5.0, 4.0, 3.0, 0.5, 9.0]), 1e-3)  # 3-step smoothing: lowest at 0.01
    with pytest.raises(Diverged, match="no step with a finite loss"):
        choose_lr(lrs, [float("nan")] * 5)


def test_a_plateau_stops_recovery_before_its_step_cap(image_folder):
    """lr 0: the selection KL never improves, so patience (2 checks, one lr drop, 2 more) stops it at 4 checks."""
    loaded, structure, prep, train, sel = tiny_recovery_setup(image_folder)
    dropped = ["layers.1.1"]
    settings = RecoverySettings("adaptors", FitSettings(steps=200, batch_size=4, lr=0.0, lr_milestones=()),
                                eval_every=2)
    schedule = Schedule(ScheduleSettings(patience=2, lr_drops=1, range_steps=0, max_steps=200))
    result = recover(loaded.module, drop_blocks(loaded.module, dropped), dropped, structure, train, sel, prep,
                     settings, schedule=schedule)
    assert len(result.losses) == 8 and len(result.checks) == 4
    assert result.stopped.startswith("patience") and result.kept == "unrecovered"


def test_a_range_test_sets_the_lr_and_leaves_the_weights_as_they_were(image_folder):
    """Recovery's first loss (before any update) is the same as without a range test: the weights were restored."""
    loaded, structure, prep, train, sel = tiny_recovery_setup(image_folder)
    dropped = ["layers.1.1"]
    settings = RecoverySettings("mimic", FitSettings(steps=1, batch_size=4, lr=0.0, lr_milestones=()), eval_every=1)
    searched = recover(loaded.module, drop_blocks(loaded.module, dropped), dropped, structure, train, sel, prep,
                       settings, schedule=Schedule(ScheduleSettings(range_steps=6, max_steps=1)))
    search = searched.lr_search
    assert 1 <= len(search["losses"]) <= 6 and search["chosen_lr"] == choose_lr(search["lrs"], search["losses"])
    assert search["lrs"][0] == pytest.approx(1e-4) and search["lrs"] == sorted(search["lrs"])
    plain = recover(loaded.module, drop_blocks(loaded.module, dropped), dropped, structure, train, sel, prep,
                    settings, schedule=Schedule(ScheduleSettings(range_steps=0, max_steps=1)))
    assert searched.losses[0] == pytest.approx(plain.losses[0], rel=1e-6)
