"""`pipeline runs` and `pipeline compare` on two real finished runs of the tiny ResNet."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from PIL import Image

from tests.browser import chromium_path, probed_dom
from tests.cli.invoke import assert_clean_error, invoke
from tests.run_folders import make_finished_run


@pytest.fixture(scope="module")
def two_runs(finished_run):
    """The shared finished run (budget 0.9) and one more at 0.95 beside it."""
    return [finished_run, make_finished_run(finished_run.parent, "0.95", "tight")]


def test_runs_lists_each_run_folder_with_its_figures(capsys, two_runs):
    code, out, _ = invoke(capsys, "runs", str(two_runs[0].parent), "--json")
    assert code == 0
    listed = {item["path"]: item for item in json.loads(out)}
    for run in two_runs:
        report = json.loads((run / "report.json").read_text())
        item = listed[str(run)]
        assert item["finished"] and item["target"] == "cpu" and item["model"] == "tests.tiny_models:tiny_resnet"
        shipped_ratio = report["deployed"].get("artefact_ratio")  # the shipped file's own timing, when it was timed
        assert item["measured_ratio"] == (shipped_ratio if shipped_ratio is not None
                                          else report["latency"]["measured_ratio"])
        assert item["deployed"] == report["evaluation"]["deployed"]
        assert item["agreement"] == report["evaluation"]["report"][item["deployed"]]["top1_agreement"]
    assert sorted(item["budget"] for item in listed.values()) == ["0.9", "0.95"]
    code, out, _ = invoke(capsys, "runs", str(two_runs[0].parent))
    assert code == 0 and out.count("| finished |") == 2


def test_compare_writes_a_table_and_a_pareto_plot_in_markdown_and_html(capsys, two_runs, tmp_path):
    code, out, err = invoke(capsys, "compare", *map(str, two_runs), "--out", str(tmp_path / "cmp"))
    assert code == 0, err
    markdown = (tmp_path / "cmp" / "comparison.md").read_text()
    assert out.startswith(markdown)
    assert "| `run` |" in markdown and "| `tight` |" in markdown and "![Latency ratio against agreement](pareto.png)" in markdown
    assert markdown.count("**yes** |") >= 1  # someone is on the Pareto front
    with Image.open(tmp_path / "cmp" / "pareto.png") as image:
        assert image.width > 200 and len(np.unique(np.asarray(image.convert("L")))) > 10
    html = (tmp_path / "cmp" / "comparison.html").read_text()
    assert "data:image/png;base64," in html and "<th>Pareto</th>" in html
    if chromium_path() is not None:  # and a real browser shows it, plot decoded, page no wider than a phone
        dom = probed_dom(tmp_path / "cmp" / "comparison.html", tmp_path)
        assert 'data-probe-errors="[]"' in dom and re.search(r'data-probe-width="[1-9]\d{2,}"', dom)
        page, window = (int(re.search(rf'data-probe-{k}="(\d+)"', dom)[1]) for k in ("page-width", "window-width"))
        assert page <= window


def test_compare_refuses_a_folder_that_is_not_a_run(capsys, two_runs, tmp_path):
    code, _, err = invoke(capsys, "compare", str(two_runs[0]), str(tmp_path), "--out", str(tmp_path / "cmp"))
    assert_clean_error(code, err, 2, "is not a run folder")
