"""report.md from a run's stage files: the figures a person reads first, each from its stage file."""

from __future__ import annotations

import copy

import pytest

from pipeline.run.records import Selection
from pipeline.core.errors import UsageError
from pipeline.run.report import TINY_SET_REPORT_CAUTION, render_markdown
from pipeline.run.summary import LatencySummary


def _agreement(top1: float, teacher_top1: float | None = 0.5, images: int = 9) -> dict:
    return {"images": images, "top1_agreement": top1, "top5_agreement": 1.0, "logit_mse": 0.0, "student_top1": 0.4,
            "student_top5": 0.9, "teacher_top1": teacher_top1,
            "teacher_top5": 0.95 if teacher_top1 is not None else None}


def _measured(ratio: float) -> dict:
    return {"original": {"median_ms": 4.0}, "compressed": {"median_ms": 4.0 * ratio}, "ratio_median": ratio}


def run_data() -> dict:
    """The stage files of a small finished run (as report.collect reads them), with the latency summary."""
    fingerprint = {"device_name": "Test CPU 9000", "backend": "onnxruntime-cpu", "backend_version": "1.32.0",
                   "precision": "fp32", "batch": 1, "resolution": 32, "threads": 2}
    data: dict = {
        "settings": {"settings": {"model": "tests.tiny_models:tiny_resnet", "preset": "fast"}},
        "candidates": {"candidates": [{"name": b} for b in ("layers.0.0", "layers.0.1", "layers.1.1", "layers.2.1")]},
        "latency_table": {"table": {"fingerprint": fingerprint, "full": {"median_ms": 4.2}}, "source": "measured",
                          "path": "/home/tables/t.json"},
        "selection": {
            "budget": "0.9", "selector": "greedy", "target_ratio": 0.9, "dropped": ["layers.0.1", "layers.2.1"],
            "chosen_attempt": 1,
            "attempts": [{"predicted_ms": 3.9, "predicted_ratio": 0.93, "measured": _measured(0.95),
                          "meets_budget": False},
                         {"predicted_ms": 3.6, "predicted_ratio": 0.857, "measured": _measured(0.875),
                          "meets_budget": True}],
            "scores": [{"block": "layers.0.1", "recoverability": 0.0123, "saving_ms": 0.3, "saving_percent": 7.1,
                        "score": 0.0017},
                       {"block": "layers.1.1", "recoverability": 0.5, "saving_ms": 0.2, "saving_percent": 4.8,
                        "score": 0.104}],
        },
        "recovery": {"settings": {"method": "adaptors"}, "steps_run": 4, "kept": "recovered",
                     "selection_kl_before": 0.25, "selection_kl_after": 0.125},
        "evaluation": {"candidates": ["unrecovered", "recovered"], "deployed": "recovered",
                       "verdict": "recovery raised agreement", "report_source": "validation folder",
                       "report": {"images": 9, "unrecovered": _agreement(0.5), "recovered": _agreement(0.75),
                                  "kl": {"unrecovered": 0.5, "recovered": 0.25}},
                       "train": {"images": 12, "unrecovered": _agreement(0.5, images=12),
                                 "recovered": _agreement(1.0, images=12),
                                 "kl": {"unrecovered": 0.5, "recovered": 0.0}}},
        "timings_s": {"profile_s": 1.25, "recovery_s": 3.0},
    }
    data["latency"] = LatencySummary.of(data["latency_table"], Selection.from_dict(data["selection"])).to_dict()
    return data


def test_the_latency_summary_is_the_chosen_attempts_measurement():
    lat = run_data()["latency"]
    assert (lat["predicted_ms"], lat["predicted_ratio"], lat["meets_budget"]) == (3.6, 0.857, True)
    assert (lat["measured_original_ms"], lat["measured_compressed_ms"], lat["measured_ratio"]) == (4.0, 3.5, 0.875)
    assert (lat["original_ms_table"], lat["target_ratio"], lat["table_source"]) == (4.2, 0.9, "measured")


def test_report_shows_latency_dropped_blocks_recovery_and_wall_time():
    md = render_markdown(run_data())
    lines = md.splitlines()
    assert lines[0] == "# Compression report: tests.tiny_models:tiny_resnet"
    assert ("Budget 0.9 on Test CPU 9000 (onnxruntime-cpu 1.32.0, fp32, batch 1, 32 px, 2 threads). "
            "Preset `fast`, selector `greedy`.") in lines
    assert "| predicted from the table | 4.200 ms | 3.600 ms | 0.857 |" in lines
    assert "| measured end to end | 4.000 ms | 3.500 ms | 0.875 |" in lines
    assert ("Target ratio 0.900: **met**. Latency table: measured (/home/tables/t.json), predicting with the additive "
            "latency model.") in lines  # a table written before latency models
    assert "## Dropped blocks (2 of 4)" in lines
    assert "| layers.0.1 | 0.0123 | 0.300 ms (7.1%) | 0.0017 | yes |" in lines
    assert "| layers.1.1 | 0.5 | 0.200 ms (4.8%) | 0.104 |  |" in lines
    assert "| recovered | 75.0% | 100.0% | 40.0% | 90.0% |" in lines
    assert "| original | 100.0% | 100.0% | 50.0% | 95.0% |" in lines
    assert "Verdict: recovery raised agreement." in lines
    assert "Deployed network: **recovered** (`compressed_state_dict.pt`, and every export)." in lines
    assert "On the 12 training images themselves agreement went from 50.0% to 100.0% " \
           "(a rise there alone would only show fitting)." in lines
    assert lines[-2:] == ["| profile | 1.2 |", "| recovery | 3.0 |"]
    assert "## Export" not in md and TINY_SET_REPORT_CAUTION not in md and "Blends" not in md


def test_report_states_unmeasured_latency_tiny_set_images_skips_blends_and_exports():
    data = run_data()
    data["latency"].update(measured_original_ms=None, measured_compressed_ms=None, measured_ratio=None,
                           meets_budget=None)
    data["selection"]["attempts"][0]["table_disagreement"] = "warning: the original network measures 30% faster"
    ev = data["evaluation"]
    ev["report_source"] = "held-out part of the tiny set"
    ev["candidates"] = ["unrecovered", "halfway", "recovered"]
    ev["report"]["halfway"] = _agreement(0.625)
    ev["report"]["kl"]["halfway"] = 0.375
    for name in ("unrecovered", "halfway", "recovered"):
        ev["report"][name]["teacher_top1"] = None  # no labels
    data["data"] = {"tiny_set": {"skipped": {"unreadable": 2}}}
    data["export"] = {"onnx": {"format": "onnx", "path": "model.onnx", "size_bytes": 2_500_000, "check": {
        "max_abs_error": 1.5e-6, "top1_agreement_with_pytorch": 1.0, "images": 6},
        "latency": {"measured": True, "artefact_ms": 3.0, "original_ms": 4.0, "backend": "onnxruntime-cpu",
                    "precision": "fp32", "ratio": 0.75, "meets_budget": True, "target_ratio": 0.9}},
        "tensorrt": {"format": "tensorrt", "path": "model.fp16.engine", "size_bytes": 1_000_000, "check": {
            "max_abs_error": 0.01, "top1_agreement_with_pytorch": 0.5, "images": 6, "note": "FP16 LOSES ACCURACY"},
            "latency": {"measured": False, "reason": "the target device is not present here"}}}
    md = render_markdown(data)
    lines = md.splitlines()
    assert "| measured end to end | n/a | n/a | n/a |" in lines
    assert ("Target ratio 0.900: not measured on this machine. Latency table: measured (/home/tables/t.json), "
            "predicting with the additive latency model.") in lines
    assert "Warning: the original network measures 30% faster" in lines
    assert TINY_SET_REPORT_CAUTION in lines and "keeps half of recovery's change." in md
    assert "| halfway | 62.5% | 100.0% | 40.0% | 90.0% |" in lines
    assert not any(line.startswith("| original |") for line in lines)  # no labels, no accuracy of the original
    assert "Skipped files in the tiny set: 2 unreadable (listed in data.json)." in lines
    assert ("| onnx | `model.onnx` | 2.5 MB | max abs error 1.50e-06, top-1 agreement 100.0% on 6 images | "
            "3.000 ms vs 4.000 ms (onnxruntime-cpu, fp32): ratio 0.750, **meets** target 0.900 |") in lines
    assert ("| tensorrt | `model.fp16.engine` | 1.0 MB | max abs error 1.00e-02, top-1 agreement 50.0% on 6 images; "
            "FP16 LOSES ACCURACY | not measured: the target device is not present here |") in lines


@pytest.mark.parametrize("missing", ["selection", "recovery", "evaluation"])
def test_a_run_without_a_stage_cannot_be_reported(missing):
    data = copy.deepcopy(run_data())
    del data[missing]
    with pytest.raises(UsageError, match=f"cannot be read \\(no field '{missing}'\\)"):
        render_markdown(data)


def test_report_lists_recover_then_quantize_beside_quantization_aware():
    data = run_data()
    evaluation = data["evaluation"]
    evaluation["candidates"].append("quantization-aware")
    evaluation["report"]["quantization-aware"] = _agreement(0.875)
    evaluation["report"]["kl"]["quantization-aware"] = 0.125
    evaluation["quantization_aware"] = [
        {"recipe": "quantization-aware", "precision": "int8-qdq-u8s8-channel", "dropped": ["layers.0.1", "layers.2.1"],
         "candidate": "quantization-aware", "compared_with": "recovered", "offered": True, "why_not_offered": None,
         "deployed": False, "recover_then_quantize_top1": 0.75, "quantization_aware_top1": 0.875}]
    data["deployed"] = {"precision": "int8-qdq-u8s8-channel", "dropped": ["layers.0.1", "layers.2.1"],
                        "network": "recovered"}
    markdown = render_markdown(data)
    assert "| quantization-aware | 87.5% |" in markdown  # among the candidates
    assert "| 2 blocks dropped | int8-qdq-u8s8-channel | 75.0% (`recovered`) | 87.5% | no |" in markdown
