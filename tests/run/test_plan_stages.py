"""`pipeline run --precision auto` on a tiny network: the precision survey, plans, deployment and the INT8 artefact.

The survey's timing is replaced by recorded rounds (INT8 u8s8 at half the FP32 latency, the other schemes
slower than FP32), so what the run does with a measurement is tested without depending on this machine.
"""

from __future__ import annotations

import json

import pytest
import torch

from pipeline.latency.profiling import Rounds
from tests.cli.invoke import FAST_RUN, TINY, invoke

FAST_INT8 = "int8-qdq-u8s8-channel"
SLOW_INT8 = "int8-qop-u8s8-channel"


@pytest.fixture
def int8_twice_as_fast(monkeypatch):
    """Three precisions surveyed (to keep the test short); recorded rounds: INT8 u8s8 at half the FP32 time."""
    from pipeline.latency import precision
    from profilers.onnxruntime_backend import OnnxRuntimeCpuProfiler
    from profilers.openvino_backend import AutoCpuProfiler

    def recorded(variants, profiler, progress=None, reference=None):
        return Rounds({name: [1.0 if name == "fp32" else 0.5 if name == FAST_INT8 else 1.2] * 5 for name in variants},
                      "stable")

    monkeypatch.setattr(precision, "measure_variants", recorded)
    monkeypatch.setattr(OnnxRuntimeCpuProfiler, "auto_precisions", ("fp32", FAST_INT8, SLOW_INT8))
    monkeypatch.setattr(AutoCpuProfiler, "auto_precisions", ("fp32", FAST_INT8, SLOW_INT8))  # the default backend


@pytest.fixture
def lossless_int8(monkeypatch):
    """Every deployed file computes what the PyTorch network computes: INT8 changes no prediction."""
    from pipeline.latency import precision

    originals = {}

    def as_pytorch(path, images):
        return originals["network"](images)

    real = precision.deployed_file

    def remember(module, *args, **kwargs):
        originals["network"] = lambda images: precision.predict_logits(module, images)
        return real(module, *args, **kwargs)

    monkeypatch.setattr(precision, "deployed_file", remember)
    monkeypatch.setattr(precision, "file_logits", as_pytorch)


def test_auto_plans_in_each_kept_precision_and_a_winning_precision_plan_deploys_the_quantized_original(
        capsys, monkeypatch, image_folder, tmp_path, int8_twice_as_fast, even_savings):
    from pipeline.models import load_model
    from pipeline.run import deployment

    chosen = {}

    def precision_plan_if_offered(report):  # the report images prefer the precision plan (a deterministic stand-in)
        chosen.setdefault("offered", list(report["kl"]))
        return next((n for n in report["kl"] if "no block dropped" in n), list(report["kl"])[-1])

    monkeypatch.setattr(deployment, "_best_candidate", precision_plan_if_offered)
    out = tmp_path / "auto"
    code, stdout, err = invoke(capsys, "run", "--model", TINY, *FAST_RUN, "--precision", "auto", "--data",
                               str(image_folder), "--latency-budget", "0.8", "--out", str(out), "--threads", "1",
                               "--depth-plans", "always")  # INT8 may change no prediction of this tiny network
    assert code == 0, err
    options = {o["precision"]: o for o in json.loads((out / "precisions.json").read_text())["options"]}
    assert set(options) == {"fp32", FAST_INT8, SLOW_INT8}
    assert options[FAST_INT8]["kept"] and options[FAST_INT8]["latency_ratio"] == 0.5
    assert not options[SLOW_INT8]["kept"] and "not faster than FP32" in options[SLOW_INT8]["reason"]

    selection = json.loads((out / "selection.json").read_text())
    plans = {p["precision"]: p for p in selection["plans"]}
    assert set(plans) == {"fp32", FAST_INT8}
    assert plans[FAST_INT8]["dropped"] == [] and plans[FAST_INT8]["meets_budget"]  # 0.5 alone meets 0.8
    assert plans["fp32"]["dropped"] and selection["dropped"] == plans["fp32"]["dropped"]  # recovered: the depth plan
    assert selection["plans"][selection["precision_plan"]]["precision"] == FAST_INT8
    for entry in selection["mixed_precision"]:  # tried only for an INT8 plan measured well under the budget
        assert entry["precision"] == FAST_INT8 and entry["tried"][0]["excluded_nodes"] == []
    assert chosen["offered"] == ["unrecovered", "recovered", f"{FAST_INT8}, no block dropped"] or \
        chosen["offered"] == ["unrecovered", f"{FAST_INT8}, no block dropped"]  # recovery kept nothing

    deployed = json.loads((out / "dropped_blocks.json").read_text())
    assert deployed["dropped"] == [] and deployed["precision"] == FAST_INT8
    evaluation = json.loads((out / "evaluation.json").read_text())
    assert evaluation["deployed_precision"] == FAST_INT8 and "ORIGINAL NETWORK IN INT8" in evaluation["verdict"]
    assert "blend" not in evaluation["verdict"]  # found on Lite0: the precision plan was described as a blend
    state = torch.load(out / "compressed_state_dict.pt", weights_only=True)
    original = load_model(TINY, None, 32).module.state_dict()
    assert all(torch.equal(state[k], original[k]) for k in original)
    export = json.loads((out / "export.json").read_text())
    assert export["onnx-int8"]["deployed"] and export["onnx-int8"]["scheme"] == FAST_INT8
    assert "uint8 activations, per-channel" in export["onnx-int8"]["quantization"]
    assert (out / "model.int8.onnx").exists() and not export["onnx"].get("deployed")
    assert export["onnx-int8"]["latency"]["measured"]  # timed beside the FP32 original
    assert "deployed network: int8" in stdout or FAST_INT8 in stdout


def test_a_named_precision_or_a_backend_without_precision_plans_plans_in_one_precision():
    from types import SimpleNamespace

    from pipeline.run.plan_stages import _precision_options
    from profilers.torch_backend import TorchCpuProfiler
    from tests.recorded_tables import recorded_table

    messages = []
    named = SimpleNamespace(config=SimpleNamespace(precision="fp32"), log=messages.append)
    options = _precision_options(named, None, recorded_table())
    assert [(o.precision, o.latency_ratio, o.reason) for o in options] == [("fp32", 1.0, "--precision fp32")]
    torch_profiler = TorchCpuProfiler.__new__(TorchCpuProfiler)
    torch_profiler.fingerprint = lambda: recorded_table().fingerprint
    auto = SimpleNamespace(config=SimpleNamespace(precision="auto"), log=messages.append)
    options = _precision_options(auto, torch_profiler, recorded_table())
    assert [o.precision for o in options] == ["fp32"] and "plans in fp32 only" in options[0].reason


def test_when_only_a_precision_meets_the_budget_nothing_is_recovered_and_it_ships(
        capsys, image_folder, tmp_path, int8_twice_as_fast, even_savings):
    """Every block saves 12%: FP32 reaches 0.52 at best, so a 0.51 budget leaves INT8 alone (0.5, clearly under: the
    target less 0.01) as the plan."""
    out = tmp_path / "only"
    code, stdout, err = invoke(capsys, "run", "--model", TINY, *FAST_RUN, "--precision", "auto", "--data",
                               str(image_folder), "--latency-budget", "0.51", "--out", str(out), "--threads", "1")
    assert code == 0, err
    selection = json.loads((out / "selection.json").read_text())
    assert [p["name"] for p in selection["plans"]] == [f"{FAST_INT8}, no block dropped"]
    assert selection["chosen_plan"] is None and selection["dropped"] == []
    assert json.loads((out / "recovery.json").read_text())["skipped"] == "no block dropped"
    evaluation = json.loads((out / "evaluation.json").read_text())
    assert evaluation["deployed"] == f"{FAST_INT8}, no block dropped"  # the FP32 original cannot ship: too slow
    assert evaluation["verdict"].startswith("no block was dropped")
    assert json.loads((out / "export.json").read_text())["onnx-int8"]["deployed"]

    from pipeline.run.evaluate_folder import evaluate_folder  # `pipeline evaluate` scores the file that ships

    scored = evaluate_folder(out, image_folder, TINY, None, 32, trust_model_code=True)["networks"]
    assert scored["deployed_artefact"]["file"] == "model.int8.onnx" and scored["deployed_artefact"]["format"] == "onnx-int8"
    assert 0 <= scored["deployed_artefact"]["top1_agreement"] <= 1
    assert "### What ships" not in (out / "report.md").read_text() and "## What ships" in (out / "report.md").read_text()
    assert "onnxruntime as ort" in (out / "report.md").read_text()  # the lines that load the shipped file


def test_an_int8_plan_alone_gets_a_quantization_aware_finetune_offered_to_the_report_images(
        capsys, image_folder, tmp_path, int8_twice_as_fast, even_savings):
    """The run as above, with the recipes tried (no --recovery-steps): the INT8 plan that meets the budget alone
    is also finetuned through its rounding, within --recovery-time, and both figures reach the report."""
    out = tmp_path / "aware"
    at = FAST_RUN.index("--recovery-steps")
    quick = FAST_RUN[:at] + FAST_RUN[at + 2:]
    code, stdout, err = invoke(capsys, "run", "--model", TINY, *quick, "--precision", "auto", "--data",
                               str(image_folder), "--latency-budget", "0.51", "--recovery-time", "8", "--out", str(out),
                               "--threads", "1")
    assert code == 0, err
    recovery = json.loads((out / "recovery.json").read_text())
    assert [t["recipe"] for t in recovery["recipes"]] == ["quantization-aware-whole-network"]
    (row,) = json.loads((out / "evaluation.json").read_text())["quantization_aware"]
    assert row["precision"] == FAST_INT8 and row["recover_then_quantize_top1"] is not None
    assert (row["quantization_aware_top1"] is not None) == row["offered"]
    assert "| no block dropped | int8-qdq-u8s8-channel |" in (out / "report.md").read_text()


def test_a_precision_that_meets_the_budget_and_changes_no_prediction_settles_the_plan_without_scoring(
        capsys, image_folder, tmp_path, int8_twice_as_fast, lossless_int8, even_savings, monkeypatch):
    """INT8 at 0.5 against a 0.8 budget, agreeing with the original on every selection image: no plan that drops
    blocks could agree more, so scoring, depth plans and recovery are skipped and INT8 ships; --depth-plans always
    builds them anyway."""
    monkeypatch.setenv("PRACTISE_HOME", str(tmp_path / "home"))  # no table stored by an earlier test
    out = tmp_path / "settled"
    code, stdout, err = invoke(capsys, "run", "--model", TINY, *FAST_RUN, "--precision", "auto", "--data",
                               str(image_folder), "--latency-budget", "0.8", "--out", str(out), "--threads", "1")
    assert code == 0, err
    assert "skipping the recoverability scoring" in err
    assert "no plan drops blocks" in stdout and "dropped 0 blocks" not in stdout
    assert "held-out images: " in stdout and "unrecovered ->" not in stdout  # nothing was recovered
    assert f"% {FAST_INT8}, no block dropped" in stdout
    assert "shipped: " in stdout and "model.int8.onnx (onnx-int8), measured at" in stdout
    assert not (out / "recoverability.json").exists()
    selection = json.loads((out / "selection.json").read_text())
    assert [p["name"] for p in selection["plans"]] == [f"{FAST_INT8}, no block dropped"]
    assert selection["chosen_plan"] is None and selection["dropped"] == [] and "could at best tie" in selection["why"]
    assert json.loads((out / "recovery.json").read_text())["skipped"] == "no block dropped"
    assert json.loads((out / "dropped_blocks.json").read_text())["precision"] == FAST_INT8
    assert json.loads((out / "export.json").read_text())["onnx-int8"]["deployed"]
    # no block's saving was measured: the whole network alone until a plan needs blocks
    assert "profiling the whole network" in err and f"no block's saving measured, {FAST_INT8}" in err
    assert json.loads((out / "latency_table.json").read_text())["table"]["savings"] == {}
    code, _, err = invoke(capsys, "run", "--model", TINY, *FAST_RUN, "--data", str(image_folder), "--out",
                          str(tmp_path / "reuse"), "--latency-table", str(out))
    assert code == 2 and "holds the whole network only" in err and "Traceback" not in err

    short = tmp_path / "short"  # INT8 alone (0.5) misses 0.45: each block's saving is measured after the survey
    code, _, err = invoke(capsys, "run", "--model", TINY, *FAST_RUN, "--precision", "auto", "--data",
                          str(image_folder), "--latency-budget", "0.45", "--out", str(short), "--threads", "1",
                          "--recovery", "none")  # recovery is not what this checks
    assert code == 0, err
    assert "measuring each block's saving now (no precision alone settles the plan)" in err
    assert err.index("timing the original network in") < err.index("measuring each block's saving now")
    assert json.loads((short / "latency_table.json").read_text())["table"]["savings"]
    assert (short / "recoverability.json").exists()
    assert any(p["dropped"] for p in json.loads((short / "selection.json").read_text())["plans"])


def test_depth_plans_always_builds_them_even_when_a_precision_settles_the_plan():
    from types import SimpleNamespace

    from pipeline.latency.budget import Budget
    from pipeline.latency.precision import PrecisionOption
    from pipeline.run.plan_stages import settling_plan
    from profilers import LatencyTable
    from tests.recorded_tables import recorded_table

    table: LatencyTable = recorded_table()
    options = [PrecisionOption("fp32", 1.0, 1.0, 1.0, 0.0), PrecisionOption(FAST_INT8, 0.5, 0.5, 1.0, 0.0)]
    for depth_plans, settles in (("auto", True), ("always", False)):
        ctx = SimpleNamespace(config=SimpleNamespace(depth_plans=depth_plans, latency_margin=None),
                              budget=Budget.parse("0.8"))
        assert (settling_plan(ctx, options, {"fp32": table}, None) is not None) == settles


def test_latency_margin_sets_how_far_under_the_budget_a_plan_must_measure():
    from types import SimpleNamespace

    from pipeline.latency.budget import Budget
    from pipeline.run.plan_stages import _clear_ratio
    from profilers import ProfileSettings
    from tests.recorded_tables import recorded_table

    profiler = SimpleNamespace(settings=ProfileSettings(ratio_tolerance=0.02))

    def ctx(margin):
        return SimpleNamespace(budget=Budget.parse("0.78"), config=SimpleNamespace(latency_margin=margin))

    assert abs(_clear_ratio(ctx(None), recorded_table(), profiler) - 0.77) < 1e-9  # the measurement's precision
    assert abs(_clear_ratio(ctx(0.05), recorded_table(), profiler) - 0.73) < 1e-9  # the user's margin
    assert _clear_ratio(ctx(0.05), recorded_table(), None) is None  # nothing measured here
