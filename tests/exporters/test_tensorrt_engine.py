"""TensorRT engines: a clear error without TensorRT, sidecars that refuse foreign machines, builds on a GPU."""

import pytest
import torch

from pipeline.models import load_model
from pipeline.network.evaluation import predict_logits
from pipeline.network.surgery import drop_blocks


def _inputs(tmp_path):
    from exporters.formats import ExportInputs

    loaded = load_model("tests.tiny_models:tiny_resnet")
    pruned = drop_blocks(loaded.module, ["layers.0.1"]).eval()
    torch.manual_seed(0)
    images = torch.randn(6, 3, 32, 32)
    return ExportInputs(pruned, 32, images, predict_logits(pruned, images), torch.randn(8, 3, 32, 32), tmp_path)


def test_tensorrt_export_without_tensorrt_says_how_to_install_it_and_writes_no_engine(tmp_path, without_tensorrt):
    from exporters.formats import export_formats
    from exporters.tensorrt_engine import tensorrt_available
    from pipeline.core.errors import UsageError

    assert not tensorrt_available()
    expected = r"TensorRT is not installed: pip install '\.\[tensorrt\]'.*" + (
        "Only its type stubs are present" if without_tensorrt == "type stubs only" else "")
    with pytest.raises(UsageError, match=expected):
        export_formats(_inputs(tmp_path), ["tensorrt"])
    assert not list(tmp_path.glob("*.engine"))


def test_engine_sidecar_refuses_other_tensorrt_versions_and_gpus(tmp_path, monkeypatch):
    from exporters import tensorrt_engine
    from exporters.tensorrt_engine import EngineSidecar
    from pipeline.core.errors import UsageError

    engine = tmp_path / "model.fp16.engine"
    engine.write_bytes(b"serialized engine")
    with pytest.raises(UsageError, match="has no sidecar"):
        EngineSidecar.read(engine)
    EngineSidecar("10.13.0.35", "NVIDIA H100 80GB HBM3", "9.0", "fp16", "images", "logits", [1, 3, 32, 32],
                  [1, 3, 32, 32], [1, 3, 32, 32], "ab" * 32, None).write(engine)
    sidecar = EngineSidecar.read(engine)
    here = {"device_name": "NVIDIA H100 80GB HBM3", "compute_capability": "9.0"}
    monkeypatch.setattr(tensorrt_engine, "gpu_identity", lambda: here)
    sidecar.refuse_if_foreign(engine, "10.13.0.35")  # same version and GPU: allowed
    with pytest.raises(UsageError, match=r"TensorRT: built for '10.13.0.35', this machine has '11.0.0'.*Rebuild it"):
        sidecar.refuse_if_foreign(engine, "11.0.0")
    here.update(device_name="NVIDIA L4", compute_capability="8.9")
    with pytest.raises(UsageError, match="GPU: built for 'NVIDIA H100 80GB HBM3', this machine has 'NVIDIA L4'"):
        sidecar.refuse_if_foreign(engine, "10.13.0.35")
    EngineSidecar.path_for(engine).write_text("{not json")
    with pytest.raises(UsageError, match="is not an engine sidecar"):
        EngineSidecar.read(engine)


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_tensorrt_engine_is_built_checked_and_described(tmp_path, precision):
    import dataclasses
    import json

    from exporters.formats import export_formats
    from exporters.tensorrt_engine import tensorrt_available

    if not torch.cuda.is_available() or not tensorrt_available():
        pytest.skip("needs a CUDA GPU with TensorRT installed (pip install '.[tensorrt]')")
    inputs = dataclasses.replace(_inputs(tmp_path), dynamic_batch=True, max_batch=8, tensorrt_precision=precision)
    record = export_formats(inputs, ["tensorrt"])["tensorrt"]
    engine = tmp_path / record["path"]
    assert engine.name == f"model.{precision}.engine" and engine.stat().st_size > 0
    sidecar = json.loads((tmp_path / record["sidecar"]).read_text())
    assert sidecar["precision"] == precision and sidecar["max_shape"][0] == 8
    assert sidecar["device_name"] == torch.cuda.get_device_name()
    if precision != "int8":
        assert record["check"]["passed"], record["check"]
