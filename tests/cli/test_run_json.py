"""`pipeline run --json` (the final summary as one JSON object on stdout, the log on stderr), in a run with its
own preprocessing (--mean, --std, --crop-fraction, --interpolation), which the run records and exports."""

from __future__ import annotations

import json

from exporters.onnx_file import read_metadata
from tests.cli.invoke import invoke
from tests.run_folders import run_args

PREPROCESSING = ("--mean", "0.5", "--std", "0.25,0.25,0.3", "--crop-fraction", "0.5", "--interpolation", "bicubic")


def test_run_json_prints_one_object_that_matches_the_report_and_preprocessing_travels(capsys, tmp_path,
                                                                                       even_savings):
    args = run_args(tmp_path, extra=PREPROCESSING)
    code, out, err = invoke(capsys, *args, "--json")
    assert code == 0, err
    summary = json.loads(out)  # the whole of stdout is one JSON object
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert summary["run_dir"] == str(tmp_path / "run") and summary["report_html"].endswith("report.html")
    assert summary["dropped"] == report["selection"]["dropped"]
    assert summary["measured_ratio"] == report["latency"]["measured_ratio"]
    assert summary["deployed"] == report["evaluation"]["deployed"]
    assert summary["top1_agreement"]["recovered"] == report["evaluation"]["report"]["recovered"]["top1_agreement"]
    assert "recovering" in err  # the log went to stderr

    # the same command on the finished folder: the same summary, nothing redone
    code, again, err = invoke(capsys, *args, "--json")
    assert code == 0 and "already holds a finished run" in err
    assert json.loads(again) == summary  # exactly: read back from the finished folder's report, nothing recomputed

    # the preprocessing: in the settings as given, resolved in data.json, and in the ONNX file's metadata
    run = tmp_path / "run"
    settings = json.loads((run / "settings.json").read_text())["settings"]
    assert (settings["mean"], settings["std"], settings["crop_fraction"], settings["interpolation"]) == (
        "0.5", "0.25,0.25,0.3", 0.5, "bicubic")
    assert json.loads((run / "data.json").read_text())["preprocessing"] == {
        "resolution": 32, "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.3], "crop_fraction": 0.5,
        "interpolation": "bicubic", "channels": "RGB"}
    metadata = read_metadata(run / "model.onnx")
    assert {k: metadata[k] for k in ("mean", "std", "resolution", "class_count", "crop_fraction", "interpolation")} == {
        "mean": "0.5,0.5,0.5", "std": "0.25,0.25,0.3", "resolution": "32", "class_count": "10",
        "crop_fraction": "0.5", "interpolation": "bicubic"}
