
import pytest
import torch

from pipeline.data.tiny_set import (
    Preprocessing,
    augmented_views,
    eval_tensors,
    load_image_folder,
    split_holdout,
)
from pipeline.models import load_model
from pipeline.network.blocks import analyse
from pipeline.network.surgery import drop_blocks
from pipeline.recovery.mimic import FitSettings
from pipeline.recovery.recover import RecoverySettings, recover
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


def test_adaptor_recovery_returns_a_plain_state_dict_for_the_pruned_network(image_folder):
    loaded, structure, prep, train, sel = _setup(image_folder)
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
    loaded, structure, prep, train, sel = _setup(image_folder)
    student = drop_blocks(loaded.module, ["layers.0.1"])
    result = recover(loaded.module, student, ["layers.0.1"], structure, train, sel, prep, RecoverySettings("none"))
    assert result.kept == "unrecovered" and result.losses == []


def test_recovery_resumes_from_its_checkpoint(image_folder, tmp_path):
    loaded, structure, prep, train, sel = _setup(image_folder)
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
    assert resumed.losses[:4] == straight.losses[:4]
    for a, b in zip(resumed.losses[4:], straight.losses[4:]):
        assert abs(a - b) <= 1e-4 * max(1.0, abs(b))


def test_paired_change_counts_images_and_tests_them_exactly():
    from pipeline.network.evaluation import paired_change

    teacher = torch.eye(10)
    before, after = teacher.clone(), teacher.clone()
    after[:2] = torch.roll(after[:2], 1, dims=1)  # two images lose agreement
    assert paired_change(before, after, teacher) == {"images": 10, "gained": 0, "lost": 2, "p_value": 0.5}
    wrong = torch.roll(teacher, 1, dims=1)
    eight = paired_change(wrong, torch.cat([teacher[:8], wrong[8:]]), teacher)
    assert (eight["gained"], eight["lost"]) == (8, 0) and abs(eight["p_value"] - 2 / 256) < 1e-12
    assert paired_change(teacher, teacher, teacher)["p_value"] == 1.0


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


def test_multi_point_mimicking_with_mixing_lowers_the_dropped_blocks_mismatch(image_folder):
    from pipeline.network.features import FeatureTap, OutputTaps
    from pipeline.recovery.mimic import LiveBatches, Objective, fit, point_loss
    from pipeline.recovery.recover import set_batchnorm_mode

    loaded, structure, prep, train, sel = _setup(image_folder)
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


def test_recovery_accepts_points_and_mixing_and_returns_a_plain_state_dict(image_folder):
    loaded, structure, prep, train, sel = _setup(image_folder)
    dropped = ["layers.1.1", "layers.2.1"]
    settings = RecoverySettings("adaptors", FitSettings(steps=6, batch_size=8, lr=0.05), eval_every=3,
                                point_weight=1.0, mixing="mixup")
    result = recover(loaded.module, drop_blocks(loaded.module, dropped), dropped, structure, train, sel, prep, settings)
    drop_blocks(loaded.module, dropped).load_state_dict(result.state_dict)
    assert len(result.losses) == 6 and len(result.checks) == 2


def test_unknown_mixing_is_a_usage_error():
    import pytest

    from pipeline.core.errors import UsageError

    with pytest.raises(UsageError, match="unknown mixing 'blend'"):
        RecoverySettings(mixing="blend")


def test_training_device_follows_the_target_and_never_falls_back_silently(monkeypatch):
    from pipeline.core.errors import UsageError
    from pipeline.network.compute import resolve_train_device

    assert resolve_train_device("cpu", "gpu").type == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_train_device("auto", "cpu").type == "cpu"
    assert resolve_train_device("auto", "gpu").type == "cpu"  # a GPU table used on a CPU-only machine
    with pytest.raises(UsageError, match="--train-device cuda needs a CUDA GPU"):
        resolve_train_device("cuda", "cpu")
    with pytest.raises(UsageError, match="unknown training device"):
        resolve_train_device("tpu", "cpu")


@pytest.mark.gpu
def test_scoring_and_recovery_on_the_gpu_match_the_cpu_and_return_cpu_states(image_folder):
    from pipeline.network.compute import on_device

    loaded, structure, prep, train, sel = _setup(image_folder)
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


def test_batchnorm_matched_synthesis_moves_statistics_toward_the_originals_training_data(image_folder, tmp_path):
    from pipeline.recovery.synthetic import (
        SyntheticSettings,
        batchnorm_distance,
        bn_matched_images,
        starting_images,
    )

    loaded, structure, prep, train, sel = _setup(image_folder)
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


def test_the_best_candidate_agrees_most_then_has_the_lowest_kl_then_changed_least():
    from pipeline.run.deployment import _best_candidate

    def report(agreements, kls):
        names = ["unrecovered", "halfway", "recovered"]
        return {**{n: {"top1_agreement": a} for n, a in zip(names, agreements)}, "kl": dict(zip(names, kls))}

    assert _best_candidate(report([0.5, 0.7, 0.6], [1.0, 0.9, 0.5])) == "halfway"
    assert _best_candidate(report([0.5, 0.6, 0.6], [1.0, 0.9, 0.5])) == "recovered"
    assert _best_candidate(report([0.6, 0.6, 0.6], [0.5, 0.5, 0.5])) == "unrecovered"
