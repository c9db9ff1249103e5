"""The run's figures: written by the report step, shown in report.md, and skipped plainly without matplotlib."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from pipeline.run.plots import write_plots
from pipeline.run.report import write_report
from pipeline.run.runfolder import RunFolder
from tests.conftest import ROOT

RUN_FIGURES = {"blocks.png", "latency_attempts.png", "recovery_curve.png"}  # and plans.png when it lists plans


def _copy_without_report(run, destination):
    shutil.copytree(run, destination)
    for name in ["report.json", "report.md", "report.html", *RUN_FIGURES, "plans.png"]:
        (destination / name).unlink(missing_ok=True)
    return RunFolder(destination)


def _assert_real_png(path):
    with Image.open(path) as image:
        assert image.format == "PNG" and image.width > 200 and image.height > 200
        assert len(np.unique(np.asarray(image.convert("L")))) > 10  # something was drawn, not a blank canvas


def test_a_run_writes_its_plots_and_shows_them_in_report_md(finished_run):
    report = json.loads((finished_run / "report.json").read_text())
    assert report["plots"]["skipped"] is None
    has_plans = bool(report["selection"].get("plans"))
    assert {f["file"] for f in report["plots"]["figures"]} == RUN_FIGURES | ({"plans.png"} if has_plans else set())
    markdown = (finished_run / "report.md").read_text()
    for figure in report["plots"]["figures"]:
        _assert_real_png(finished_run / figure["file"])
        assert f"![{figure['title']}]({figure['file']})" in markdown
        assert figure["caption"] in markdown


def test_without_matplotlib_the_report_is_written_and_says_the_plots_were_skipped(finished_run, tmp_path, monkeypatch):
    folder = _copy_without_report(finished_run, tmp_path / "run")
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    write_report(folder, {"profile_s": 1.0})
    assert "Plots skipped: matplotlib is not installed (pip install '.[plots]')." in folder.file("report.md").read_text()
    assert "Plots skipped" in folder.file("report.html").read_text()
    assert json.loads(folder.file("report.json").read_text())["plots"] == {
        "figures": [], "skipped": "matplotlib is not installed (pip install '.[plots]')"}
    assert not any(folder.file(name).exists() for name in RUN_FIGURES)


def test_the_plans_of_a_selection_are_plotted_when_it_lists_them(finished_run, tmp_path):
    folder = _copy_without_report(finished_run, tmp_path / "run")
    selection = folder.read_json("selection.json")
    measured = selection["attempts"][0]
    int8_attempts = [{**measured, "attempt": i, "predicted_ratio_vs_fp32": 0.6, "measured_ratio_vs_fp32": 0.62}
                     for i in (1, 2)]
    selection["plans"] = [
        {"precision": "fp32", "dropped": measured["dropped"], "predicted_ratio": 0.72, "measured_ratio": 0.74,
         "agreement": 0.98, "attempts": [measured]},
        {"precision": "int8", "dropped": [], "predicted_ratio": 0.6, "measured_ratio": 0.61, "agreement": 0.95,
         "attempts": int8_attempts},
        {"precision": "fp16", "dropped": [], "predicted_ratio": 0.9, "measured_ratio": None, "agreement": 0.9,
         "attempts": []},  # unmeasured
    ]
    selection["chosen_plan"] = 1
    folder.write_json("selection.json", selection)
    plots = write_plots(folder)
    captions = {f["file"]: f["caption"] for f in plots["figures"]}
    assert "2 plan(s)" in captions["plans.png"]  # the unmeasured plan has no point
    assert captions["latency_attempts.png"].startswith("3 selection(s)")  # every plan's measured attempts
    _assert_real_png(folder.file("plans.png"))


def test_plans_png_stars_the_plan_that_shipped_and_draws_its_file_at_its_own_ratio(finished_run, tmp_path):
    folder = _copy_without_report(finished_run, tmp_path / "run")
    selection = folder.read_json("selection.json")
    selection["plans"] = [
        {"name": "fp32, 5 blocks dropped", "precision": "fp32", "dropped": ["a", "b", "c", "d", "e"],
         "predicted_ratio": 0.7, "measured_ratio": 0.73, "agreement": 0.5, "attempts": []},
        {"name": "int8-qop-u8s8-channel, no block dropped", "precision": "int8-qop-u8s8-channel", "dropped": [],
         "predicted_ratio": 0.43, "measured_ratio": 0.43, "agreement": 0.9, "attempts": []}]
    selection["chosen_plan"], selection["precision_plan"] = 0, 1  # the FP32 plan was recovered, the INT8 one shipped
    folder.write_json("selection.json", selection)
    folder.write_json("dropped_blocks.json", folder.read_json("dropped_blocks.json") | {
        "precision": "int8-qop-u8s8-channel", "dropped": []})
    folder.write_json("export.json", {"onnx-int8": {"format": "onnx-int8", "path": "model.int8.onnx", "size_bytes": 1,
                                                    "check": {}, "deployed": True,
                                                    "latency": {"measured": True, "ratio": 0.626}}})
    captions = {f["file"]: f["caption"] for f in write_plots(folder)["figures"]}
    assert ("starred: int8-qop-u8s8-channel, no block dropped, the plan whose network shipped"
            in captions["plans.png"])
    assert "its file model.int8.onnx measured 0.626" in captions["plans.png"]


def test_library_modules_import_without_matplotlib_and_do_not_load_it():
    code = ("import sys; sys.modules['matplotlib'] = None; "
            "import pipeline.run.report, pipeline.run.plots, pipeline.run.runner, pipeline.cli.main; "
            "del sys.modules['matplotlib']; "
            "import pipeline.run.report; assert 'matplotlib' not in sys.modules, 'matplotlib imported at module top'")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
