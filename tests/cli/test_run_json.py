"""`pipeline run --json`: the final summary as one JSON object on stdout, the log on stderr."""

from __future__ import annotations

import json

from tests.cli.invoke import invoke
from tests.run_folders import run_args


def test_run_json_prints_one_object_that_matches_the_report(capsys, tmp_path):
    args = run_args(tmp_path)
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
    assert json.loads(again) == summary
