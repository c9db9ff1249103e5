"""Run summaries and the Pareto front, on run folders the tests write (finished ones: tests/cli/test_compare.py)."""

from __future__ import annotations

import pytest

from pipeline.core.errors import UsageError
from pipeline.latency.precision import Precision
from pipeline.network.evaluation import Agreement
from pipeline.run.compare import RunSummary, compare_runs, list_runs, mark_pareto
from pipeline.run.records import Evaluation, ImageSetFigures, Recovery, Selection
from pipeline.run.runfolder import RunFolder
from pipeline.run.summary import LatencySummary


def _run(name: str, ratio: float | None, agreement: float | None, predicted: float = 0.8) -> RunSummary:
    return RunSummary(path=f"runs/{name}", finished=True, model="m", target="cpu", budget="0.8", preset="fast",
                      measured_ratio=ratio, predicted_ratio=predicted, agreement=agreement)


def test_the_pareto_front_holds_the_runs_no_other_run_beats_on_both():
    runs = mark_pareto([_run("fast", 0.6, 0.90), _run("faithful", 0.8, 0.99), _run("beaten", 0.8, 0.90),
                        _run("twin", 0.6, 0.90), _run("unmeasured", None, 0.85, predicted=0.55),
                        _run("no agreement", 0.5, None)])
    on_front = {r.path.removeprefix("runs/") for r in runs if r.pareto}
    # "beaten" loses to "fast" (same agreement, faster) and to "faithful" (same ratio, more faithful); equal
    # twins do not beat each other; without a measurement the table's predicted ratio is used
    assert on_front == {"fast", "faithful", "twin", "unmeasured"}


def test_unfinished_and_foreign_folders(tmp_path):
    RunFolder.open(tmp_path / "runs" / "a", {"model": "resnet18", "target": "cpu", "budget": "0.8", "preset": "fast"})
    (tmp_path / "runs" / "not-a-run").mkdir()
    listed = list_runs(tmp_path / "runs")
    assert [(r.model, r.finished) for r in listed] == [("resnet18", False)]
    with pytest.raises(UsageError, match="not finished"):
        compare_runs([tmp_path / "runs" / "a"], tmp_path / "out")
    with pytest.raises(UsageError, match="is not a run folder"):
        compare_runs([tmp_path / "runs" / "not-a-run"], tmp_path / "out")
    with pytest.raises(UsageError, match="is not a folder"):
        list_runs(tmp_path / "nowhere")
    assert not (tmp_path / "out").exists()  # nothing written for a refused comparison


def _finished(tmp_path, budget: str, latency: dict, deployed: dict):
    """A finished run folder whose report.json ships `deployed` (its precision-only plan, INT8)."""
    folder = RunFolder.open(tmp_path / "int8", {"model": "m", "target": "cpu", "budget": budget, "preset": "fast"})
    name = "int8, no block dropped"
    figures = ImageSetFigures(20, {name: Agreement(20, 0.95, 1.0, 0.0)}, {name: 0.01})
    folder.write_json("report.json", {
        "latency": LatencySummary(device={"precision": "fp32"}, table_source="measured", table_path=None,
                                  original_ms_table=1.0, predicted_ms=1.0, measured_original_ms=1.0,
                                  measured_compressed_ms=1.0, **latency).to_dict(),
        "selection": Selection(budget, latency["target_ratio"], precision=Precision("fp32")).to_dict(),
        "deployed": deployed, "recovery": Recovery({}, "unrecovered").to_dict(),
        "evaluation": Evaluation("validation folder", figures, figures, deployed=name).to_dict(),
    })


def test_a_run_that_ships_another_precision_is_summarised_by_what_it_ships(tmp_path):
    _finished(tmp_path, "0.5", {"target_ratio": 0.5, "measured_ratio": 0.8, "predicted_ratio": 0.79,
                                "meets_budget": False},
              {"precision": "int8", "measured_ratio": 0.41, "predicted_ratio": 0.45, "meets_budget": True})
    (run,) = list_runs(tmp_path)
    assert (run.precision, run.measured_ratio, run.meets_budget, run.agreement) == ("int8", 0.41, True, 0.95)


def test_a_run_is_summarised_by_its_shipped_files_own_ratio_when_it_was_timed(tmp_path):
    _finished(tmp_path, "0.4", {"target_ratio": 0.4, "measured_ratio": 0.38, "predicted_ratio": 0.39,
                                "meets_budget": True},
              {"precision": "int8", "measured_ratio": 0.381, "meets_budget": True, "artefact": "model.int8.onnx",
               "artefact_ratio": 0.459})  # the plan's survey said 0.381; the shipped file measured 0.459
    (run,) = list_runs(tmp_path)
    assert (run.measured_ratio, run.meets_budget) == (0.459, False)
