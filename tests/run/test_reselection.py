"""When the shipped file, timed after export, misses the budget, the next candidate ships (reselection.py)."""

from __future__ import annotations

import json

import pytest

from pipeline.run.report import shipped_verdict
from tests.cli.invoke import FAST_RUN, TINY, invoke
from tests.run.test_plan_stages import FAST_INT8, int8_twice_as_fast  # noqa: F401 (a fixture)


@pytest.mark.reselects
def test_a_shipped_file_that_misses_the_budget_gives_way_to_the_next_candidate(
        capsys, monkeypatch, image_folder, tmp_path, int8_twice_as_fast, even_savings):  # noqa: F811
    from pipeline.latency import artefact_latency
    from pipeline.run import deployment

    monkeypatch.setattr(deployment, "_best_candidate",  # the report images prefer the INT8 original (a stand-in)
                        lambda report: next((n for n in report["kl"] if "no block dropped" in n),
                                            list(report["kl"])[-1]))
    timed = []

    def int8_file_misses(paths, original, target, settings, target_ratio, progress=None):
        timed.append(sorted(paths))
        ratio = {"onnx-int8": 0.86}  # the INT8 file, timed after export: over the 0.8 target
        return {fmt: {"measured": True, "ratio": ratio.get(fmt, 0.7), "target_ratio": target_ratio,
                      "meets_budget": ratio.get(fmt, 0.7) <= target_ratio, "backend": "onnxruntime",
                      "precision": "fp32", "artefact_ms": 1.0, "original_ms": 1.0} for fmt in paths}

    monkeypatch.setattr(artefact_latency, "measure_together", int8_file_misses)
    out = tmp_path / "missed"
    code, stdout, err = invoke(capsys, "run", "--model", TINY, *FAST_RUN, "--precision", "auto", "--data",
                               str(image_folder), "--latency-budget", "0.8", "--out", str(out), "--threads", "1",
                               "--depth-plans", "always", "--recovery-quantization-aware", "off")
    assert code == 0, err
    record = json.loads((out / "reselection.json").read_text())
    assert [m["network"] for m in record["misses"]] == [f"{FAST_INT8}, no block dropped"]
    assert record["misses"][0]["ratio"] == 0.86 and f"{FAST_INT8}, no block dropped" in record["excluded"]
    assert timed == [["onnx", "onnx-int8"], ["onnx"]]  # exported and timed again, the INT8 file gone
    deployed = json.loads((out / "dropped_blocks.json").read_text())
    selection = json.loads((out / "selection.json").read_text())
    assert deployed["precision"] == "fp32" and deployed["dropped"] == selection["dropped"] != []
    evaluation = json.loads((out / "evaluation.json").read_text())
    assert evaluation["deployed"] in ("unrecovered", "recovered")
    export = json.loads((out / "export.json").read_text())
    assert export["onnx"]["deployed"] and "onnx-int8" not in export and not (out / "model.int8.onnx").exists()
    report = (out / "report.md").read_text()
    assert f"`model.int8.onnx` ({FAST_INT8}, no block dropped) measured 0.860, missing the target 0.800" in report
    assert "MISSES" not in report.split("## What ships")[1].split("##")[0].split("missed the budget")[0]


def test_only_a_miss_the_measurement_can_tell_from_the_budget_takes_the_next_candidate():
    from pipeline.run.records import ArtefactLatency
    from pipeline.run.reselection import clearly_misses

    def misses(latency: dict) -> bool:
        return clearly_misses(ArtefactLatency.from_dict(latency))

    assert misses({"measured": True, "ratio": 0.86, "target_ratio": 0.8})
    assert not misses({"measured": True, "ratio": 0.4015, "target_ratio": 0.4})  # within noise: said so
    assert not misses({"measured": False, "reason": "no runtime"})


def test_the_verdict_says_when_the_file_meets_the_budget_by_less_than_the_margin_asked_for():
    latency = {"measured": True, "ratio": 0.76, "target_ratio": 0.78}
    assert shipped_verdict(latency) == "measured at 0.760 of the original's latency, meets the target 0.780"
    assert shipped_verdict(latency, 0.05).endswith("but by less than the --latency-margin 0.05 asked for")
    assert "within the measurement's precision" in shipped_verdict(latency | {"ratio": 0.775}, 0.05)
