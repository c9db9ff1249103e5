"""Quantization-aware recovery in a run: made when an INT8 network may ship (not for FP32), trained with the
scheme's rounding in the loop, resumed, judged on the report images in its deployed INT8 form, shipped only
when it agrees more, and listed beside recover-then-quantize in the report."""

from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch

import pipeline.recovery.trials as trials_module
from pipeline.core.errors import UsageError
from pipeline.data.tiny_set import Preprocessing, load_image_folder
from pipeline.latency.plans import Plan
from pipeline.models import load_model
from pipeline.network.surgery import drop_blocks
from pipeline.recovery.schedule import ScheduleSettings
from pipeline.recovery.trials import recipe_files
from pipeline.run import deployment
from pipeline.run.config import RunConfig
from pipeline.run.context import prepare
from pipeline.run.deployment import COMPRESSED, RECOVERED, stage_evaluation
from pipeline.run.presets import get_preset
from pipeline.run.quantization_aware import check_setting, targets, whole_network_candidate
from pipeline.run.report import _quantization_aware_lines
from pipeline.run.records import Selection
from pipeline.run.runfolder import RunFolder
from pipeline.run.stages import stage_recovery
from tests.cli.invoke import FAST_RUN, TINY, assert_clean_error, invoke

SCHEME = "int8-qdq-u8s8-channel"
DROPPED = ["layers.1.1"]
SHORT = ScheduleSettings(patience=2, lr_drops=0, max_steps=6, range_steps=3)


def _selection(precision: str, dropped=DROPPED, precision_plan: str | None = None, size: int | None = None
               ) -> Selection:
    plans = [Plan(precision, dropped, 0.7)] + ([Plan(precision_plan, [], 0.7, resolution=size)] if precision_plan else [])
    return Selection("0.8", 0.8, dropped=dropped, precision=precision, plans=plans,
                     chosen_plan=0 if dropped else None, precision_plan=1 if precision_plan is not None else None)


def test_an_int8_network_that_may_ship_gets_a_target_and_fp32_or_off_gets_none():
    (chosen,) = targets(_selection(SCHEME), enabled=True)
    assert (chosen.candidate, chosen.compared_with, chosen.dropped) == ("quantization-aware", "recovered", DROPPED)
    assert targets(_selection("fp32"), enabled=True) == []
    (whole,) = targets(_selection("fp32", precision_plan=SCHEME), enabled=True)
    assert whole.dropped == [] and whole.candidate == whole_network_candidate(SCHEME)
    assert whole.compared_with == f"{SCHEME}, no block dropped"
    assert targets(_selection(SCHEME, precision_plan=SCHEME), enabled=False) == []


def test_the_setting_is_on_or_off_and_anything_else_is_refused(capsys, image_folder, tmp_path):
    assert check_setting("on") and not check_setting("off")
    with pytest.raises(UsageError, match="--recovery-quantization-aware 'maybe'"):
        check_setting("maybe")
    with pytest.raises(UsageError, match="choose one of: on, off"):
        prepare(RunConfig(model=TINY, data=str(image_folder), recovery_quantization_aware="yes",
                          out=str(tmp_path / "direct")))
    code, _, err = invoke(capsys, "run", "--model", TINY, *FAST_RUN, "--data", str(image_folder),
                          "--recovery-quantization-aware", "maybe", "--out", str(tmp_path / "run"))
    assert code == 2 and "--recovery-quantization-aware" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists() and not (tmp_path / "direct").exists()


def _run_context(image_folder, tmp_path, selection: Selection, setting: str = "on"):
    config = RunConfig(model=TINY, data=str(image_folder), resolution=32, allow_random_weights=True, backend="torch",
                       recovery_time=120, recovery_quantization_aware=setting, out=str(tmp_path / "run"), export=())
    ctx = prepare(config)
    ctx.preset = replace(ctx.preset, schedule=SHORT)
    selection.write(ctx.folder)
    return ctx


def test_an_int8_plan_recovers_a_fake_quantized_candidate_beside_the_recipes_and_resumes(image_folder, tmp_path,
                                                                                          monkeypatch):
    ctx = _run_context(image_folder, tmp_path, _selection(SCHEME))
    ctx.preset = replace(ctx.preset, recipes=("adaptors", "all-bn-frozen"))  # two of the recipes: a shorter test
    stage_recovery(ctx)
    recovery = ctx.folder.read_json("recovery.json")
    trials = {t["recipe"]: t for t in recovery["recipes"]}
    assert list(trials) == ["adaptors", "all-bn-frozen", "quantization-aware"]
    aware = trials["quantization-aware"]
    assert aware["status"] == "finished" and recovery["recipe"] != "quantization-aware"
    # it trained through the rounding: its starting network (same weights as the recipes') judged fake-quantized
    assert aware["selection_kl_before"] != trials["all-bn-frozen"]["selection_kl_before"]
    assert recovery["quantization_aware"] == [{"recipe": "quantization-aware", "precision": SCHEME,
                                               "dropped": DROPPED, "candidate": "quantization-aware",
                                               "compared_with": "recovered"}]
    state = torch.load(recipe_files(ctx.folder.path, "quantization-aware")[1], weights_only=True)
    drop_blocks(ctx.loaded.module, DROPPED).load_state_dict(state)  # a plain FP32 state: same keys

    # killed after the trials, before recovery.json: the rerun loads every trial and trains none again
    ctx.folder.file("recovery.json").unlink()
    ctx.folder.file(RECOVERED).unlink()
    monkeypatch.setattr(trials_module, "recover", lambda *a, **k: pytest.fail("a finished trial was trained again"))
    stage_recovery(ctx)
    assert ctx.folder.read_json("recovery.json")["recipes"] == recovery["recipes"]


def test_an_fp32_plan_or_the_setting_off_makes_no_quantization_aware_candidate(image_folder, tmp_path):
    for precision, setting, name in (("fp32", "on", "fp32"), (SCHEME, "off", "off")):
        ctx = _run_context(image_folder, tmp_path / name, _selection(precision), setting)
        ctx.preset = replace(ctx.preset, recipes=("all-bn-frozen",))
        stage_recovery(ctx)
        recovery = ctx.folder.read_json("recovery.json")
        assert [t["recipe"] for t in recovery["recipes"]] == ["all-bn-frozen"] and recovery["quantization_aware"] == []


def _precisions_evaluated(monkeypatch) -> list[str]:
    """The precision of every candidate evaluation judges, in order (deployed_logits recorded, then run)."""
    evaluated: list[str] = []
    real = deployment.deployed_logits

    def recording(network, precision, x, calibration, scheme_options=None):
        evaluated.append(precision)
        return real(network, precision, x, calibration, scheme_options)

    monkeypatch.setattr(deployment, "deployed_logits", recording)
    return evaluated


def test_with_no_block_dropped_the_int8_plan_is_finetuned_whole_and_judged_in_int8(image_folder, tmp_path,
                                                                                    monkeypatch):
    ctx = _run_context(image_folder, tmp_path, _selection("fp32", dropped=[], precision_plan=SCHEME))
    stage_recovery(ctx)
    recovery = ctx.folder.read_json("recovery.json")
    assert [t["recipe"] for t in recovery["recipes"]] == ["quantization-aware-whole-network"]
    assert recovery["kept"] == "unrecovered" and recovery["skipped"] == "no block dropped"
    trial = recovery["recipes"][0]
    assert trial["status"] == "finished" and trial["kept"] == "recovered", trial  # beat plain fake-INT8
    evaluated = _precisions_evaluated(monkeypatch)
    stage_evaluation(ctx)
    evaluation = ctx.folder.read_json("evaluation.json")
    name = whole_network_candidate(SCHEME)
    assert evaluation["candidates"][-2:] == [f"{SCHEME}, no block dropped", name]
    assert evaluated.count(SCHEME) == 2  # the plain and the quantization-aware network, both through onnxruntime
    (row,) = evaluation["quantization_aware"]
    assert row["offered"] and row["quantization_aware_top1"] == evaluation["report"][name]["top1_agreement"]
    assert evaluation["deployed"] in (f"{SCHEME}, no block dropped", name)


def test_an_openvino_int8_plan_is_finetuned_through_nncfs_own_quantizers_and_judged_in_openvino(
        image_folder, tmp_path, monkeypatch):
    """OpenVINO INT8 is NNCF's scheme, not onnxruntime's: the whole-network trial trains through the quantizers NNCF's
    PyTorch backend places (their state is saved beside the weights), and the trained FP32 weights are judged in the
    IR NNCF quantizes, like the plain OpenVINO INT8 original."""
    pytest.importorskip("nncf", reason="OpenVINO INT8 needs the openvino extra (nncf)")
    pytest.importorskip("openvino", reason="OpenVINO INT8 needs the openvino extra")
    from exporters.openvino_ir import INT8, NNCF_STATE, plain_state

    ctx = _run_context(image_folder, tmp_path, _selection("fp32", dropped=[], precision_plan=INT8))
    stage_recovery(ctx)
    recovery = ctx.folder.read_json("recovery.json")
    (trial,) = recovery["recipes"]
    assert (trial["recipe"], trial["status"]) == ("quantization-aware-whole-network", "finished"), trial
    state = torch.load(recipe_files(ctx.folder.path, trial["recipe"])[1], weights_only=True)
    assert any(key.startswith(NNCF_STATE) for key in state)  # NNCF's quantizers were in the loop
    drop_blocks(ctx.loaded.module, []).load_state_dict(plain_state(state))  # the plain network's weights

    evaluated = _precisions_evaluated(monkeypatch)
    stage_evaluation(ctx)
    evaluation = ctx.folder.read_json("evaluation.json")
    name = whole_network_candidate(INT8)
    (row,) = evaluation["quantization_aware"]
    assert row["precision"] == INT8 and row["compared_with"] == f"{INT8}, no block dropped"
    assert row["offered"] == (trial["kept"] == "recovered") == (name in evaluation["candidates"])
    assert evaluated.count(INT8) == 1 + row["offered"]  # the plain original, and the finetuned one when offered


# the evaluation forced by a stand-in (as tests/run/test_recipe_choice.py does): candidate marker -> images wrong
MARKERS = {"recovered": 1.0, "quantization-aware": 2.0}


def _aware_folder(tmp_path, loaded, aware_kept: str = "recovered") -> RunFolder:
    folder = RunFolder(tmp_path / "run")
    folder.path.mkdir()
    for recipe, marker in (("adaptors", MARKERS["recovered"]), ("quantization-aware", MARKERS["quantization-aware"])):
        state = drop_blocks(loaded.module, DROPPED).state_dict()
        state["fc.bias"] = torch.full_like(state["fc.bias"], marker)
        torch.save(state, recipe_files(folder.path, recipe)[1])
        if recipe == "adaptors":
            folder.save_tensors(RECOVERED, state)
    folder.write_json("recovery.json", {
        "settings": {}, "recipe": "adaptors", "kept": "recovered",
        "recipes": [{"recipe": "adaptors", "status": "finished", "kept": "recovered"},
                    {"recipe": "quantization-aware", "status": "finished", "kept": aware_kept}],
        "quantization_aware": [{"recipe": "quantization-aware", "precision": SCHEME, "dropped": DROPPED,
                                "candidate": "quantization-aware", "compared_with": "recovered"}]})
    folder.write_json("dropped_blocks.json", {"dropped": DROPPED, "precision": SCHEME})
    _selection(SCHEME).write(folder)
    return folder


def _forced_evaluation(tmp_path, image_folder, monkeypatch, wrong: dict[float, int], aware_kept="recovered"):
    loaded = load_model(TINY, resolution=32)
    images = load_image_folder(image_folder, 32)
    folder = _aware_folder(tmp_path, loaded, aware_kept)
    precisions = []

    def fake_logits(network, precision, x, calibration, scheme_options=None):
        """The original's predictions, the first k images moved to another class (k by the candidate's marker)."""
        precisions.append(precision)
        logits = loaded.module.eval()(x).detach().clone()
        for i in range(min(wrong.get(float(network.fc.bias.detach()[0]), 3), len(x))):
            logits[i, (int(logits[i].argmax()) + 1) % logits.shape[1]] = logits[i].max() + 10
        return logits

    monkeypatch.setattr(deployment, "deployed_logits", fake_logits)
    ctx = SimpleNamespace(folder=folder, loaded=loaded, train=images, report_set=images, report_source="validation folder",
                          prep=Preprocessing(32, loaded.mean, loaded.std), preset=get_preset("fast"), timings={})
    stage_evaluation(ctx)
    return folder, precisions


def test_the_quantization_aware_candidate_ships_when_it_agrees_more(image_folder, tmp_path, monkeypatch):
    folder, precisions = _forced_evaluation(tmp_path, image_folder, monkeypatch, {1.0: 2, 2.0: 0})
    evaluation = folder.read_json("evaluation.json")
    assert evaluation["candidates"] == ["unrecovered", "recovered", "quantization-aware"]
    assert precisions == [SCHEME] * 3  # every candidate judged in its deployed INT8 form
    assert evaluation["deployed"] == "quantization-aware" and evaluation["deployed_precision"] == SCHEME
    assert "QUANTIZATION-AWARE recovery (quantization-aware) agreed most" in evaluation["verdict"]
    assert float(torch.load(folder.file(COMPRESSED), weights_only=True)["fc.bias"][0]) == 2.0
    (row,) = evaluation["quantization_aware"]
    assert row["deployed"] and row["quantization_aware_top1"] > row["recover_then_quantize_top1"]
    lines = "\n".join(_quantization_aware_lines(evaluation["quantization_aware"]))
    assert "| 1 blocks dropped | int8-qdq-u8s8-channel |" in lines and "(`recovered`)" in lines and "| yes |" in lines


@pytest.mark.parametrize("aware_wrong", [2, 1], ids=["agrees-less", "ties"])
def test_the_quantization_aware_candidate_does_not_ship_unless_it_agrees_more(image_folder, tmp_path, monkeypatch,
                                                                              aware_wrong):
    folder, _ = _forced_evaluation(tmp_path, image_folder, monkeypatch, {1.0: 1, 2.0: aware_wrong})
    evaluation = folder.read_json("evaluation.json")
    assert "quantization-aware" in evaluation["candidates"] and evaluation["deployed"] == "recovered"
    assert float(torch.load(folder.file(COMPRESSED), weights_only=True)["fc.bias"][0]) == 1.0
    (row,) = evaluation["quantization_aware"]
    assert row["offered"] and not row["deployed"] and "quantization-aware recovery (quantization-aware) agreed" \
        in evaluation["verdict"]


def test_a_quantization_aware_trial_that_did_not_beat_its_start_is_listed_not_offered(image_folder, tmp_path,
                                                                                        monkeypatch):
    folder, _ = _forced_evaluation(tmp_path, image_folder, monkeypatch, {1.0: 2, 2.0: 0}, aware_kept="unrecovered")
    evaluation = folder.read_json("evaluation.json")
    assert evaluation["candidates"] == ["unrecovered", "recovered"] and evaluation["deployed"] == "recovered"
    (row,) = evaluation["quantization_aware"]
    assert not row["offered"] and "did not beat" in row["why_not_offered"]
    assert "not offered" in "\n".join(_quantization_aware_lines(evaluation["quantization_aware"]))


def test_a_precision_plan_at_a_smaller_input_size_gets_no_whole_network_finetune():
    selection = _selection("fp32", precision_plan=SCHEME, size=160)  # it would train at the model's own size
    assert targets(selection, enabled=True) == []

