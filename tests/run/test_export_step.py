"""Which INT8 scheme an INT8 artefact is written in, and which artefact carries the deployed network."""

from __future__ import annotations

import json

from pipeline.run.export_step import deployed_format, int8_scheme
from pipeline.run.runfolder import RunFolder


def _folder(tmp_path, precision: str, options: list | None) -> RunFolder:
    (tmp_path / "dropped_blocks.json").write_text(json.dumps({"dropped": [], "precision": precision}))
    if options is not None:
        (tmp_path / "precisions.json").write_text(json.dumps({"options": options, "tables": {}}))
    return RunFolder(tmp_path)


def _option(precision, ratio, kept=True):
    return {"precision": precision, "latency_ratio": ratio, "latency_ms": ratio, "agreement": 1.0, "kl": 0.0, "kept": kept}


def test_the_deployed_scheme_else_the_fastest_kept_else_the_default(tmp_path):
    survey = [_option("fp32", 1.0), _option("int8-qdq-s8s8-channel", 0.8), _option("int8-qop-u8s8-channel", 0.55),
              _option("int8-qdq-u8s8-tensor", 0.5, kept=False)]
    (tmp_path / "a").mkdir()
    deployed_int8 = _folder(tmp_path / "a", "int8-qdq-s8s8-channel", survey)
    assert int8_scheme(deployed_int8) == "int8-qdq-s8s8-channel" and deployed_format(deployed_int8) == "onnx-int8"
    (tmp_path / "b").mkdir()
    fp32 = _folder(tmp_path / "b", "fp32", survey)
    assert int8_scheme(fp32) == "int8-qop-u8s8-channel" and deployed_format(fp32) == "onnx"
    (tmp_path / "c").mkdir()
    assert int8_scheme(_folder(tmp_path / "c", "fp32", None)) is None  # measured nothing: the exporter's default
    (tmp_path / "d").mkdir()
    assert int8_scheme(_folder(tmp_path / "d", "fp32", [_option("fp32", 1.0)])) is None


def test_a_tensorrt_int8_plan_ships_as_its_engine_not_as_an_onnxruntime_scheme(tmp_path):
    survey = [_option("fp32", 1.0), _option("fp16", 0.6), _option("int8", 0.4)]  # TensorRT's precisions
    folder = _folder(tmp_path, "int8", survey)
    assert deployed_format(folder) == "tensorrt"
    assert int8_scheme(folder) is None  # "int8" is TensorRT's, not an onnxruntime scheme (its QDQ ONNX: the default)
