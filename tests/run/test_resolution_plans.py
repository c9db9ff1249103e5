"""Input resolution as a lever: `--min-resolution` plans, the deployed file at the smaller size, and the hint.

The surveys' timing is replaced by recorded rounds (INT8 at half the FP32 latency; at 24 px, FP32 0.45 and INT8
0.3), so what the run does with a measurement is tested without depending on this machine.
"""

from __future__ import annotations

import json

import onnx
import pytest

from pipeline.core.errors import UsageError
from pipeline.latency.precision import PrecisionOption
from pipeline.latency.resolution import hint_size, keep_resolutions, resolution_steps
from pipeline.latency.profiling import Rounds
from tests.cli.invoke import FAST_RUN, TINY, invoke

INT8 = "int8-qdq-u8s8-channel"
RECORDED = {"fp32": 1.0, INT8: 0.5, "fp32@24": 0.45, f"{INT8}@24": 0.3, "fp32@16": 0.3, f"{INT8}@16": 0.2}


@pytest.fixture
def recorded_rounds(monkeypatch):
    from pipeline.latency import precision, resolution
    from profilers.openvino_backend import AutoCpuProfiler

    def recorded(variants, profiler, progress=None, reference=None):
        return Rounds({name: [RECORDED[name]] * 5 for name in variants}, "stable")

    monkeypatch.setattr(precision, "measure_variants", recorded)
    monkeypatch.setattr(resolution, "measure_variants", recorded)
    monkeypatch.setattr(AutoCpuProfiler, "auto_precisions", ("fp32", INT8))


def test_sizes_step_down_from_the_models_own_to_the_minimum():
    assert resolution_steps(224, 160) == [192, 160]
    assert resolution_steps(224, 150) == [192, 160, 150]
    assert resolution_steps(224, 64) == [192, 160, 96, 64]  # at most four, evenly spread, the smallest kept
    assert resolution_steps(32, 16) == [24, 16]
    assert (hint_size(224), hint_size(32)) == (160, 24)
    with pytest.raises(UsageError, match="--min-resolution 224 is not below the model's input size"):
        resolution_steps(224, 224)


def test_a_smaller_size_is_kept_only_when_nothing_as_fast_is_as_close():
    native = [PrecisionOption("fp32", 1.0, 4.0, 1.0, 0.0), PrecisionOption(INT8, 0.5, 2.0, 0.9, 0.05)]
    sized = keep_resolutions([PrecisionOption("fp32", 0.55, 2.2, 0.8, 0.2, resolution=24),
                              PrecisionOption(INT8, 0.3, 1.2, 0.7, 0.3, resolution=24)], native)
    assert [o.kept for o in sized] == [False, True]
    assert sized[0].reason == f"{INT8} is at least as fast and at least as close to the original"


def test_min_resolution_plans_smaller_inputs_and_the_deployed_file_takes_them(
        capsys, monkeypatch, image_folder, tmp_path, recorded_rounds, even_savings):
    from pipeline.run import deployment

    monkeypatch.setattr(deployment, "_best_candidate",  # the report images prefer the smaller input (a stand-in)
                        lambda report: next((n for n in report["kl"] if " px" in n), list(report["kl"])[-1]))
    out = tmp_path / "sized"
    code, stdout, err = invoke(capsys, "run", "--model", TINY, *FAST_RUN, "--precision", "auto", "--data", str(image_folder),
                               "--latency-budget", "0.35", "--min-resolution", "24", "--out", str(out),
                               "--threads", "1", "--export", "onnx")
    assert code == 0, err
    sized = json.loads((out / "precisions.json").read_text())["resolutions"]
    assert {(o["precision"], o["resolution"]): o["latency_ratio"] for o in sized} == {("fp32", 24): 0.45,
                                                                                      (INT8, 24): 0.3}
    selection = json.loads((out / "selection.json").read_text())
    rival = selection["plans"][selection["precision_plan"]]
    assert (rival["precision"], rival["resolution"], rival["dropped"]) == (INT8, 24, [])  # INT8 alone: 0.5, misses
    assert rival["name"] == f"{INT8} at 24 px, no block dropped"
    deployed = json.loads((out / "dropped_blocks.json").read_text())
    assert (deployed["precision"], deployed["input_resolution"], deployed["dropped"]) == (INT8, 24, [])
    model = onnx.load(out / "model.int8.onnx")
    assert [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim] == [1, 3, 24, 24]
    metadata = {p.key: p.value for p in model.metadata_props}
    assert (metadata["resolution"], metadata["model_resolution"]) == ("24", "32")
    report = (out / "report.md").read_text()
    assert "The deployed input size changed: 24 px, not the model's own 32 px" in report
    assert f"| {INT8} at 24 px |" in report
    assert f"deployed network: {INT8} at 24 px, no block dropped" in stdout
    verdict = json.loads((out / "evaluation.json").read_text())["verdict"]
    assert f"ORIGINAL NETWORK IN {INT8.upper()} AT 24 PX" in verdict
    export = json.loads((out / "export.json").read_text())
    assert export["onnx-int8"]["latency"]["measured"]  # fed its own 24 px input beside the 32 px original

    code, stdout, err = invoke(capsys, "evaluate", str(out), "--data", str(image_folder), "--trust-model-code",
                               "--json")
    assert code == 0, err  # the deployed file is fed 24 px images (32 px would not fit its static input)
    assert json.loads(stdout)["networks"]["deployed_artefact"]["file"] == "model.int8.onnx"


def test_without_min_resolution_a_weak_plan_gets_a_measured_hint_in_the_report(
        capsys, monkeypatch, image_folder, tmp_path, recorded_rounds, even_savings):
    from pipeline.run import resolution_hint

    monkeypatch.setattr(resolution_hint, "POOR_AGREEMENT", 1.01)  # every plan "agrees poorly" on this tiny network
    out = tmp_path / "hint"
    code, stdout, err = invoke(capsys, "run", "--model", TINY, *FAST_RUN, "--precision", "auto", "--data", str(image_folder),
                               "--latency-budget", "0.6", "--out", str(out), "--threads", "1", "--export", "onnx",
                               "--depth-plans", "always")
    assert code == 0, err
    selection = json.loads((out / "selection.json").read_text())
    hint = selection["resolution_hint"]
    assert (hint["resolution"], hint["precision"], hint["latency_ratio"]) == (24, INT8, 0.3)
    assert "agrees" in hint["why"]
    deployed = json.loads((out / "dropped_blocks.json").read_text())
    assert deployed["input_resolution"] is None  # a hint never changes what ships
    report = (out / "report.md").read_text()
    assert f"in {INT8} measured 0.300" in report and "`--min-resolution 24` plans with smaller inputs" in report


def test_a_min_resolution_that_is_not_smaller_is_refused_in_one_line(capsys, image_folder, tmp_path):
    code, stdout, err = invoke(capsys, "run", "--model", TINY, *FAST_RUN, "--precision", "auto", "--data", str(image_folder),
                               "--min-resolution", "32", "--out", str(tmp_path / "r"))
    assert code == 2 and "--min-resolution 32 is not below the model's input size (32 px)" in err
    assert "Traceback" not in err and not (tmp_path / "r").exists()


def test_min_resolution_on_a_backend_that_times_one_input_size_is_refused_in_one_line(capsys, image_folder, tmp_path):
    code, stdout, err = invoke(capsys, "run", "--model", TINY, *FAST_RUN, "--data", str(image_folder), "--backend",
                               "torch", "--min-resolution", "16", "--out", str(tmp_path / "r"))
    assert code == 2 and "--min-resolution needs a backend that times files" in err and "torch backend" in err
    assert "Traceback" not in err and not (tmp_path / "r").exists()
