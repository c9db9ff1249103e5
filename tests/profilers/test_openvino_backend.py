"""OpenVINO as a CPU runtime: IR files in a recorded precision, timed beside onnxruntime on one clock."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from exporters import openvino_ir
from pipeline.core.errors import UsageError
from pipeline.latency.precision import deployed_file, deployed_logits, file_logits, survey_precisions
from pipeline.network.evaluation import predict_logits
from pipeline.network.surgery import drop_blocks
from profilers import ProfileSettings, get_profiler, reference_precision
from tests.tiny_models import tiny_resnet

QUICK = ProfileSettings(resolution=32, threads=1, warmup_runs=1, runs_per_round=2, min_rounds=3, max_rounds=3,
                        time_cap_s=20)

needs_openvino = pytest.mark.skipif(not openvino_ir.openvino_available(),
                                    reason="needs OpenVINO (pip install '.[openvino]')")


def test_a_missing_openvino_is_named_with_its_extra(monkeypatch):
    monkeypatch.setattr(openvino_ir, "openvino_available", lambda: False)
    with pytest.raises(UsageError, match=r"--backend openvino needs OpenVINO.*pip install '\.\[openvino\]'"):
        with get_profiler("cpu", "openvino", replace(QUICK, precision="openvino-fp32")):
            pass
    with pytest.raises(UsageError, match=r"openvino-bf16 precision needs OpenVINO"):
        with get_profiler("cpu", "auto", replace(QUICK, precision="openvino-bf16")):
            pass
    with get_profiler("cpu", "auto", QUICK):  # onnxruntime's FP32 needs no OpenVINO
        pass


def test_budgets_are_relative_to_each_backends_own_fp32():
    assert reference_precision("cpu", "auto") == "fp32"  # onnxruntime FP32, the reference runtime
    assert reference_precision("cpu", None) == "fp32"
    assert reference_precision("cpu", "onnxruntime") == "fp32"
    assert reference_precision("cpu", "openvino") == "openvino-fp32"


@needs_openvino
def test_an_ir_records_its_precision_and_computes_what_pytorch_does(tmp_path):
    network = tiny_resnet().eval()
    images = torch.randn(6, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    reference = predict_logits(network, images)
    for precision, tolerance in ((openvino_ir.FP32, 1e-4), (openvino_ir.BF16, 0.1)):
        path = deployed_file(network, precision, images, tmp_path, "net")
        assert path.suffix == ".xml" and path.with_suffix(".bin").exists()
        assert openvino_ir.precision_of(path) == precision
        assert openvino_ir.inference_precision_of(path) == openvino_ir.HINTS[precision]
        logits = file_logits(path, images)
        # FP32 matches PyTorch to float rounding; BF16 keeps 8 bits of mantissa (about 0.4% per value)
        scale = float(reference.abs().max())
        assert float((logits - reference).abs().max()) <= tolerance * scale, precision
    fp32_compiled = openvino_ir.compile_ir(tmp_path / f"net.{openvino_ir.FP32}.xml", 1)
    assert openvino_ir.ran_in(fp32_compiled) == "f32"  # the recorded hint wins over the CPU's default


@needs_openvino
def test_nncf_int8_is_calibrated_on_the_given_images_and_runs(tmp_path):
    network = tiny_resnet().eval()
    calibration = torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    logits = deployed_logits(network, openvino_ir.INT8, calibration, calibration)
    assert logits.shape == (8, 10) and torch.isfinite(logits).all()
    path = deployed_file(network, openvino_ir.INT8, calibration, tmp_path, "net")
    import openvino as ov

    types = {op.get_type_name() for op in ov.Core().read_model(str(path)).get_ops()}
    assert "FakeQuantize" in types  # NNCF inserted quantization: the file is INT8, not a float copy


@needs_openvino
def test_openvino_and_onnxruntime_variants_are_timed_in_the_same_rounds():
    network = tiny_resnet().eval()
    pruned = drop_blocks(network, ["layers.0.1"])
    with get_profiler("cpu", "auto", QUICK) as profiler:
        bf16 = profiler.at_precision(openvino_ir.FP32)
        variants = {"onnxruntime": profiler.prepared(network), "openvino": bf16.prepared(pruned)}
        assert variants["onnxruntime"].suffix == ".onnx" and variants["openvino"].suffix == ".xml"
        measurement = profiler.measure(variants, reference="onnxruntime")
        assert profiler.fingerprint().backend == "onnxruntime-cpu"
        assert bf16.fingerprint().backend == "openvino-cpu"
    rounds = {name: len(r) for name, r in measurement.rounds_ms.items()}
    assert rounds["onnxruntime"] == rounds["openvino"] >= QUICK.min_rounds


@needs_openvino
def test_the_survey_measures_openvino_precisions_beside_onnxruntime_fp32():
    network = tiny_resnet().eval()
    images = torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with get_profiler("cpu", "auto", QUICK) as profiler:
        options = survey_precisions(network, profiler, ("fp32", openvino_ir.FP32, openvino_ir.INT8), images, images)
    by_name = {o.precision: o for o in options}
    assert list(by_name) == ["fp32", openvino_ir.FP32, openvino_ir.INT8]
    assert by_name["fp32"].latency_ratio == 1.0 and by_name["fp32"].kept
    # OpenVINO FP32 computes what PyTorch does: every selection image agrees
    assert by_name[openvino_ir.FP32].agreement == 1.0 and by_name[openvino_ir.FP32].kl < 1e-6
    assert all(o.latency_ratio > 0 and o.reason for o in options)


@needs_openvino
def test_an_openvino_int8_rung_keeps_its_end_layers_in_float(tmp_path):
    """The mixed-precision ladder on OpenVINO: NNCF's ignored scope leaves the first and last compute layers
    unquantized, so fewer layers read quantized inputs and the choice is recorded in the IR."""
    import openvino as ov

    network = tiny_resnet().eval()
    calibration = torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(3))

    def quantized_inputs(options):
        path = deployed_file(network, openvino_ir.INT8, calibration, tmp_path, f"n{len(options)}", options)
        model = ov.Core().read_model(str(path))
        return model, sum(1 for op in model.get_ordered_ops() if op.get_type_name() == "FakeQuantize")

    plain, plain_count = quantized_inputs({})
    mixed, mixed_count = quantized_inputs({"fp32_end_layers": 1})
    assert 0 < mixed_count < plain_count
    assert str(mixed.get_rt_info(["practise", "fp32_end_layers"]).astype(str)) == "1"
    names = openvino_ir.end_layer_names(ov.convert_model(str(tmp_path / "n0.onnx")), 1)
    assert len(names) == 2  # the first convolution and the classifier


def test_the_reference_backend_sets_what_auto_budgets_are_relative_to():
    from pipeline.latency.artefact_latency import timing_settings
    from pipeline.run.config import base_precision

    assert base_precision("auto", "cpu", None) == "fp32"
    assert base_precision("auto", "cpu", "auto", "openvino") == "openvino-fp32"
    assert base_precision("auto", "cpu", "auto", "onnxruntime") == "fp32"
    with pytest.raises(UsageError, match="--reference-backend applies to --backend auto"):
        base_precision("auto", "cpu", "onnxruntime", "openvino")
    # artefacts are timed beside the original in the reference: OpenVINO FP32 for every CPU file
    settings = replace(QUICK, precision="openvino-fp32")
    assert timing_settings("onnx", "cpu", settings) == ("auto", settings)
    assert timing_settings("openvino", "cpu", QUICK) == ("auto", QUICK)  # onnxruntime FP32: the default reference
    assert timing_settings("onnx", "cpu", QUICK)[0] == "onnxruntime"


@needs_openvino
def test_a_survey_against_openvino_fp32_keeps_it_as_the_reference():
    network = tiny_resnet().eval()
    images = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    with get_profiler("cpu", "auto", replace(QUICK, precision=openvino_ir.FP32)) as profiler:
        options = survey_precisions(network, profiler, ("fp32", openvino_ir.FP32), images, images)
    assert [o.precision for o in options] == [openvino_ir.FP32, "fp32"]
    assert options[0].latency_ratio == 1.0 and options[0].reason == "the reference precision"
