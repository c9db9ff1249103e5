"""Multi-point feature mimicking with mixing."""

import torch

from pipeline.data.tiny_set import (
    eval_tensors,
)
from pipeline.network.surgery import drop_blocks
from pipeline.recovery.mimic import FitSettings
from tests.recovery.setup import tiny_recovery_setup


def test_multi_point_mimicking_with_mixing_lowers_the_dropped_blocks_mismatch(image_folder):
    from pipeline.network.features import FeatureTap, OutputTaps
    from pipeline.recovery.mimic import LiveBatches, Objective, fit, point_loss
    from pipeline.recovery.recover import set_batchnorm_mode

    loaded, structure, prep, train, sel = tiny_recovery_setup(image_folder)
    teacher, dropped = loaded.module.eval(), ["layers.1.1", "layers.2.1"]
    x = eval_tensors(train, prep)

    def mismatch(student):
        with OutputTaps(teacher, dropped) as t, OutputTaps(student, dropped) as s, torch.no_grad():
            teacher(x), student.eval()(x)
            return float(point_loss(s.take(), t.take()))

    def fitted(objective):
        torch.manual_seed(0)
        student = drop_blocks(teacher, dropped)
        point = structure.feature_point
        with FeatureTap(teacher, point) as t_tap, FeatureTap(student, point) as s_tap, \
                OutputTaps(teacher, dropped) as t_points, OutputTaps(student, dropped) as s_points:
            source = LiveBatches(train, prep, t_tap, 8, 0.25, 0, "cutmix", t_points)
            set_batchnorm_mode(student, "frozen")
            losses = fit(s_tap, source, list(student.parameters()), FitSettings(steps=15, batch_size=8, lr=0.002),
                         objective=objective, student_points=s_points)
        assert len(losses) == 15 and all(loss == loss for loss in losses)
        return student

    before = mismatch(drop_blocks(teacher, dropped))
    with_points = mismatch(fitted(Objective(point_weight=1.0)))
    assert with_points < before
    assert with_points < mismatch(fitted(Objective()))  # the term, not the fit alone, did it
