"""Exported ONNX files say how to feed them (metadata_props)."""

from __future__ import annotations

import torch

from exporters.onnx_file import export_onnx, read_metadata, set_metadata
from tests.tiny_models import tiny_resnet


def test_export_writes_the_metadata_and_set_metadata_replaces_entries(tmp_path):
    path = export_onnx(tiny_resnet().eval(), torch.randn(1, 3, 32, 32), tmp_path / "m.onnx",
                       metadata={"mean": "0.5,0.5,0.5", "resolution": "32", "class_count": "10"})
    assert read_metadata(path) == {"mean": "0.5,0.5,0.5", "resolution": "32", "class_count": "10"}
    set_metadata(path, {"resolution": "64"})
    assert read_metadata(path) == {"mean": "0.5,0.5,0.5", "resolution": "64", "class_count": "10"}
    plain = export_onnx(tiny_resnet().eval(), torch.randn(1, 3, 32, 32), tmp_path / "plain.onnx")
    assert read_metadata(plain) == {}
