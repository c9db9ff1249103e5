"""Recovery: adaptors or mimicking, checkpoints and resume, blends of weights."""

import pytest
import torch

from pipeline.data.tiny_set import (
    augmented_views,
    eval_tensors,
)
from pipeline.network.surgery import drop_blocks
from pipeline.recovery.mimic import FitSettings
from pipeline.recovery.recover import RecoverySettings, recover
from pipeline.recovery.recoverability import score_recoverability
from tests.recovery.setup import tiny_recovery_setup


def test_adaptor_recovery_returns_a_plain_state_dict_for_the_pruned_network(image_folder):
    loaded, structure, prep, train, sel = tiny_recovery_setup(image_folder)
    dropped = ["layers.1.1", "layers.2.1"]
    student = drop_blocks(loaded.module, dropped)
    settings = RecoverySettings("adaptors", FitSettings(steps=10, batch_size=8, lr=0.05), eval_every=5)
    result = recover(loaded.module, student, dropped, structure, train, sel, prep, settings)
    fresh = drop_blocks(loaded.module, dropped)
    fresh.load_state_dict(result.state_dict)  # adaptors were folded: no extra keys
    assert len(result.losses) == 10 and len(result.checks) == 2
    assert result.selection_kl_after <= result.selection_kl_before
    assert result.kept in ("recovered", "unrecovered")


def test_no_recovery_keeps_the_pruned_weights(image_folder):
    loaded, structure, prep, train, sel = tiny_recovery_setup(image_folder)
    student = drop_blocks(loaded.module, ["layers.0.1"])
    result = recover(loaded.module, student, ["layers.0.1"], structure, train, sel, prep, RecoverySettings("none"))
    assert result.kept == "unrecovered" and result.losses == []


def test_recovery_resumes_from_its_checkpoint(image_folder, tmp_path):
    loaded, structure, prep, train, sel = tiny_recovery_setup(image_folder)
    dropped = ["layers.1.1"]
    settings = RecoverySettings("mimic", FitSettings(steps=8, batch_size=4, lr=0.01), eval_every=4)
    ckpt = tmp_path / "ckpt.pt"
    # an interrupted run: stop after the first checkpoint (step 4)
    short = RecoverySettings("mimic", FitSettings(steps=8, batch_size=4, lr=0.01), eval_every=4)
    state = {}

    class Stop(Exception):
        pass

    import pipeline.recovery.recover as recovery_module

    original_save = recovery_module._Checkpoints.save

    def save_then_stop(self, data):
        original_save(self, data)
        state["step"] = data["step"]
        raise Stop

    recovery_module._Checkpoints.save = save_then_stop
    try:
        recover(loaded.module, drop_blocks(loaded.module, dropped), dropped, structure, train, sel, prep, short,
                checkpoint_path=ckpt, checkpoint_every=4)
    except Stop:
        pass
    finally:
        recovery_module._Checkpoints.save = original_save
    assert state["step"] == 3 and ckpt.exists()
    resumed = recover(loaded.module, drop_blocks(loaded.module, dropped), dropped, structure, train, sel, prep,
                      settings, checkpoint_path=ckpt, checkpoint_every=4)
    straight = recover(loaded.module, drop_blocks(loaded.module, dropped), dropped, structure, train, sel, prep,
                       settings)
    assert len(resumed.losses) == 8
    # exactly: the checkpointed run and the straight one ran in this process, on the same thread count and layout,
    # from the same seed, so the same kernels rounded alike; after the resume, within 1e-4 as below
    assert resumed.losses[:4] == straight.losses[:4]
    for a, b in zip(resumed.losses[4:], straight.losses[4:]):
        assert abs(a - b) <= 1e-4 * max(1.0, abs(b))


def test_recovery_accepts_points_and_mixing_and_returns_a_plain_state_dict(image_folder):
    loaded, structure, prep, train, sel = tiny_recovery_setup(image_folder)
    dropped = ["layers.1.1", "layers.2.1"]
    settings = RecoverySettings("adaptors", FitSettings(steps=6, batch_size=8, lr=0.05), eval_every=3,
                                point_weight=1.0, mixing="mixup")
    result = recover(loaded.module, drop_blocks(loaded.module, dropped), dropped, structure, train, sel, prep, settings)
    drop_blocks(loaded.module, dropped).load_state_dict(result.state_dict)
    assert len(result.losses) == 6 and len(result.checks) == 2


@pytest.mark.gpu
def test_scoring_and_recovery_on_the_gpu_match_the_cpu_and_return_cpu_states(image_folder):
    from pipeline.network.compute import on_device

    loaded, structure, prep, train, sel = tiny_recovery_setup(image_folder)
    dropped = ["layers.1.1", "layers.2.1"]
    settings = RecoverySettings("adaptors", FitSettings(steps=10, batch_size=8, lr=0.05), eval_every=5,
                                point_weight=1.0)
    fit_settings = FitSettings(steps=5, batch_size=8, lr=0.05)
    pool = augmented_views(train, prep, 32, 0.25, 0)
    results = {}
    for device in ("cpu", "cuda"):
        with on_device(loaded.module, torch.device(device)) as teacher:
            scores = score_recoverability(teacher, structure, pool, eval_tensors(train, prep), fit_settings, {})
            result = recover(teacher, drop_blocks(teacher, dropped), dropped, structure, train, sel, prep, settings)
        assert next(loaded.module.parameters()).device.type == "cpu"  # moved back
        assert all(t.device.type == "cpu" for t in result.state_dict.values())
        results[device] = (scores, result)
    for block, score in results["cpu"][0].items():
        # same algorithm, not the same bits: cuDNN convolutions use TF32 by default
        assert score["recoverability"] == pytest.approx(results["cuda"][0][block]["recoverability"], rel=2e-2, abs=1e-5)
    assert results["cpu"][1].losses == pytest.approx(results["cuda"][1].losses, rel=2e-2, abs=1e-5)


def test_blended_state_moves_floats_part_way_and_keeps_the_recovered_integer_buffers():
    import torch

    from pipeline.recovery.recover import blended_state

    unrecovered = {"w": torch.zeros(3), "n": torch.tensor(5)}
    recovered = {"w": torch.tensor([2.0, -4.0, 1.0]), "n": torch.tensor(9)}
    half = blended_state(unrecovered, recovered, 0.5)
    assert torch.equal(half["w"], torch.tensor([1.0, -2.0, 0.5])) and int(half["n"]) == 9
    assert torch.equal(blended_state(unrecovered, recovered, 0.25)["w"], torch.tensor([0.5, -1.0, 0.25]))


def test_blending_folded_adaptors_equals_folding_blended_adaptors():
    """Why a blend of the deployed (folded) weights is itself a network with folded adaptors."""
    import torch
    from torch import nn

    from pipeline.recovery.recover import blended_state

    torch.manual_seed(0)
    conv = nn.Conv2d(4, 6, 3, bias=True)
    adaptor = torch.eye(6) + 0.3 * torch.randn(6, 6)

    def folded(a):
        return {"weight": torch.einsum("om,mikl->oikl", a, conv.weight.detach()), "bias": a @ conv.bias.detach()}

    halfway = blended_state(folded(torch.eye(6)), folded(adaptor), 0.5)
    expected = folded(torch.eye(6) + 0.5 * (adaptor - torch.eye(6)))
    assert all(torch.allclose(halfway[k], expected[k], atol=1e-6) for k in expected)


def test_blend_weights_outside_the_open_interval_are_refused():
    import pytest

    from pipeline.core.errors import UsageError
    from pipeline.recovery.recover import RecoverySettings

    with pytest.raises(UsageError, match="strictly between 0 and 1"):
        RecoverySettings(blends=(1.0,))
