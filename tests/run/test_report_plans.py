"""report.md's precision-and-depth section and the deployed summary, from recorded stage files."""

from __future__ import annotations

from pipeline.run.records import DeployedNetwork, Evaluation, Exports, Selection
from pipeline.run.report import render_markdown
from pipeline.run.summary import DeployedSummary
from tests.run.test_report import run_data

INT8 = "int8-qdq-u8s8-channel"


def deployed_summary(data: dict) -> dict:
    """report.json's "deployed", as write_report makes it from these stage files."""
    return DeployedSummary.of(DeployedNetwork.from_dict(data["deployed"]), Evaluation.from_dict(data["evaluation"]),
                              data.get("candidates", {}).get("resolution"), Selection.from_dict(data["selection"]),
                              Exports.from_dict(data.get("export") or {})).to_dict()


def with_plans(deployed: str) -> dict:
    data = run_data()
    data["precisions"] = {"options": [
        {"precision": "fp32", "latency_ratio": 1.0, "latency_ms": 4.0, "agreement": 1.0, "kl": 0.0, "kept": True,
         "reason": "the reference precision"},
        {"precision": INT8, "latency_ratio": 0.55, "latency_ms": 2.2, "agreement": 0.9, "kl": 0.1, "kept": True,
         "reason": "faster than FP32"},
        {"precision": "int8-qop-u8s8-channel", "latency_ratio": 1.3, "latency_ms": 5.2, "agreement": 0.9, "kl": 0.1,
         "kept": False, "reason": "not faster than FP32 on this device (latency ratio 1.300)"}]}
    data["selection"] |= {
        "plans": [{"name": "fp32, 2 blocks dropped", "precision": "fp32", "dropped": ["layers.0.1", "layers.2.1"],
                   "predicted_ratio": 0.857, "measured_ratio": 0.875, "meets_budget": True, "agreement": 0.6},
                  {"name": f"{INT8}, no block dropped", "precision": INT8, "dropped": [], "predicted_ratio": 0.55,
                   "measured_ratio": 0.55, "meets_budget": True, "agreement": 0.9}],
        "chosen_plan": 0, "precision_plan": 1, "why": "fp32, 2 blocks dropped agrees most",
    }
    data["evaluation"]["deployed"] = deployed
    precision_won = deployed.endswith("no block dropped")
    data["deployed"] = {"precision": INT8 if precision_won else "fp32",
                        "dropped": [] if precision_won else ["layers.0.1", "layers.2.1"]}
    data["deployed"] = deployed_summary(data)
    return data


def test_every_precision_and_plan_is_listed_with_its_measured_ratio_and_why():
    text = render_markdown(with_plans("recovered"))
    assert "## Precision and depth" in text
    assert f"| {INT8} | 0.550 | 90.0% | yes: faster than FP32 |" in text
    assert "| int8-qop-u8s8-channel | 1.300 | 90.0% | no: not faster than FP32" in text
    assert "| fp32, 2 blocks dropped | 0.857 | 0.875 | yes | 60.0% |" in text
    assert "fp32, 2 blocks dropped agrees most." in text
    assert "**Deployed: recovered (fp32, 2 blocks dropped)**." in text


def test_a_deployed_precision_plan_reports_its_own_ratio_not_the_recovered_plans():
    data = with_plans(f"{INT8}, no block dropped")
    assert data["deployed"]["measured_ratio"] == 0.55 and data["deployed"]["plan"] == f"{INT8}, no block dropped"
    assert f"**Deployed: {INT8}, no block dropped**" in render_markdown(data)


def test_a_run_without_plans_has_no_precision_section():
    assert "## Precision and depth" not in render_markdown(run_data() | {"deployed": {"precision": "fp32",
                                                                                   "dropped": [], "network": "x"}})


def test_the_deployed_summary_carries_the_shipped_files_own_ratio_and_the_cli_prints_it():
    from pipeline.cli.run import deployed_line

    data = with_plans(f"{INT8}, no block dropped")
    data["export"] = {"onnx": {"format": "onnx", "path": "model.onnx", "size_bytes": 4, "check": {},
                               "latency": {"measured": True, "ratio": 0.98}},
                      "onnx-int8": {"format": "onnx-int8", "path": "model.int8.onnx", "size_bytes": 1, "check": {},
                                    "deployed": True,  # end layers kept in FP32: slower
                                    "latency": {"measured": True, "ratio": 0.702}}}
    summary = deployed_summary(data)
    assert (summary["measured_ratio"], summary["artefact"], summary["artefact_ratio"]) == (0.55, "model.int8.onnx",
                                                                                           0.702)
    # the network once, and no ratio beside it: the `shipped:` line gives the file's own (0.702), not the plan's
    shown = DeployedSummary.from_dict(summary)
    assert deployed_line(shown, f"{INT8}, no block dropped", timed_file=True) == f"{INT8}, no block dropped"
    assert deployed_line(shown, "recovered", timed_file=False) == (f"recovered ({INT8}, no block dropped), plan "
                                                                   "measured at 0.550")
    data["export"]["onnx-int8"]["latency"] = {"measured": False, "reason": "no runtime"}
    assert "artefact_ratio" not in deployed_summary(data)
