"""Export formats behind one registry: each writes an artefact and proves it against PyTorch.

Every exporter takes the compressed network, the images to check on and the PyTorch logits on them,
and returns an artefact record (format, file, hash, size, versions, check). INT8 is calibrated on the
run's tiny set; its check is against the FP32 network, and a loss of agreement is stated, not hidden.
Each format also says how to load its file for timing and which profiler backend runs it on each
target, so the artefact's own latency can be measured (pipeline.latency.artefact_latency).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from exporters.half_precision import in_precision, is_half
from exporters.onnx_check import compare_outputs, sha256_of, verify_onnx
from exporters.onnx_file import DEFAULT_OPSET, export_onnx
from exporters.onnx_int8 import DEFAULT_SCHEME, Int8Scheme, get_scheme, quantize_onnx
from pipeline.core.errors import UsageError


@dataclass
class ExportInputs:
    module: nn.Module  # the compressed network, eval mode
    resolution: int
    check_images: torch.Tensor  # (N, C, R, R) held-out images (C: 3 for RGB networks, 1 for grayscale)
    reference_logits: torch.Tensor  # PyTorch logits on check_images
    calibration_images: torch.Tensor  # tiny-set images for INT8 calibration
    out_dir: Path
    dynamic_batch: bool = False  # ONNX with a free batch axis; TensorRT with an optimization profile
    max_batch: int = 32  # largest batch a dynamic TensorRT engine accepts
    tensorrt_precision: str = "fp16"
    int8_scheme: str | None = None  # the INT8 scheme the run measured fastest here (None: DEFAULT_SCHEME)
    int8_fp32_end_layers: int = 0  # first and last N compute layers kept in FP32 (the run's mixed-precision choice)
    metadata: dict[str, str] | None = None  # ONNX metadata_props: how to feed the artefact (mean, std, resolution...)
    openvino_precision: str = "openvino-fp32"  # the precision a --format openvino IR is written and timed in
    target: str = "cpu"  # the device compiled formats (aoti) are built for: "cpu" or "gpu"
    precision: str = "fp32"  # the deployed precision: "fp16"/"bf16" writes every PyTorch format (and FP16 ONNX) in it
    half_fp32_end_layers: int = 0  # a half-precision network's first and last N compute layers kept in FP32

    def deployed(self) -> nn.Module:
        """The network every PyTorch format is written from: in half precision when the plan deploys in it."""
        if not is_half(self.precision):
            return self.module
        return in_precision(self.module, self.precision, self.half_fp32_end_layers, self.check_images[:1]).eval()

    def scheme(self) -> Int8Scheme:
        scheme = get_scheme(self.int8_scheme) if self.int8_scheme else DEFAULT_SCHEME
        return scheme.with_accuracy_options(fp32_end_layers=self.int8_fp32_end_layers) if self.int8_fp32_end_layers else scheme

    @property
    def channels(self) -> int:
        return int(self.check_images.shape[1])

    def example(self) -> torch.Tensor:
        return torch.randn(1, self.channels, self.resolution, self.resolution)

    def input_shape(self) -> list:
        return ["batch" if self.dynamic_batch else 1, self.channels, self.resolution, self.resolution]


def _record(fmt: str, path: Path, check: dict, **extra) -> dict:
    return {"format": fmt, "path": path.name, "sha256": sha256_of(path), "size_bytes": path.stat().st_size,
            "torch_version": torch.__version__.split("+")[0], "check": check, **extra}


def _onnx(inputs: ExportInputs, precision: str = "fp32") -> Path:
    """The run's ONNX file in `precision` (written once, shared by the formats built from it)."""
    name = "model.onnx" if precision == "fp32" else f"model.{precision}.onnx"
    path = inputs.out_dir / name
    # an FP16 file of an FP16 plan is the deployed network itself (its FP32 end layers included)
    module = inputs.deployed() if precision == "fp16" and inputs.precision == "fp16" else inputs.module
    if not path.exists():
        export_onnx(module, inputs.example(), path, dynamic_batch=inputs.dynamic_batch, precision=precision,
                    metadata=inputs.metadata)
    return path


def export_onnx_fp32(inputs: ExportInputs) -> dict:
    """The run's ONNX file: FP32, or the FP16 graph when an FP16 plan deploys (`model.fp16.onnx`; `model.onnx` stays
    FP32 for the formats derived from it). ONNX at opset 18 has no BF16 convolution, so a BF16 plan's file is FP32
    (its PyTorch formats carry BF16), as the record says."""
    precision = "fp16" if inputs.precision == "fp16" else "fp32"
    path = inputs.out_dir / ("model.onnx" if precision == "fp32" else "model.fp16.onnx")
    path.unlink(missing_ok=True)  # written afresh: the dynamic-batch choice may differ from an earlier export
    check = verify_onnx(_onnx(inputs, precision), inputs.reference_logits, inputs.check_images,
                        batched=inputs.dynamic_batch)
    extra = {"precision": precision}
    if precision == "fp16":
        from exporters.onnx_check import onnx_logits

        check = _half_check(inputs, onnx_logits(path, inputs.check_images).numpy(), check)
    elif inputs.precision == "bf16":
        extra["note"] = "FP32: ONNX (opset 18) has no BF16 convolution; the BF16 network ships as a PyTorch format"
    return _record("onnx", path, check, opset=DEFAULT_OPSET, input_shape=inputs.input_shape(),
                   loading_snippet=_onnxruntime_snippet(path.name), **extra)


def _half_check(inputs: ExportInputs, outputs: np.ndarray, check: dict) -> dict:
    """A half-precision artefact's check: against the FP32 network (agreement stated, as for INT8), and, to prove the
    file, against the same network in the same precision in PyTorch (within half precision's rounding)."""
    check["note"] = _precision_note(inputs.precision.upper(), check["top1_agreement_with_pytorch"])
    with torch.no_grad():
        in_precision_logits = torch.cat([inputs.deployed()(inputs.check_images[i : i + 1])
                                         for i in range(len(inputs.check_images))])
    check["against_pytorch_in_precision"] = compare_outputs(outputs, in_precision_logits, _HALF_TOLERANCE)
    return check


# largest error tolerated relative to the largest logit between a half-precision file and PyTorch in that precision
_HALF_TOLERANCE = 2e-2


def _onnxruntime_snippet(name: str) -> str:
    """The lines that load and run an ONNX file as it was timed (onnxruntime's CPU provider)."""
    return ("import numpy as np, onnxruntime as ort\n"
            f"session = ort.InferenceSession('{name}', providers=['CPUExecutionProvider'])\n"
            "logits = session.run(None, {session.get_inputs()[0].name: images.astype(np.float32)})[0]"
            "  # images: (1, C, H, W), normalised as in the file's metadata\n")


def export_onnx_int8(inputs: ExportInputs) -> dict:
    """Static INT8 quantization in the run's scheme, calibrated on the tiny set, run in onnxruntime."""
    target = _int8_onnx(inputs)
    check = verify_onnx(target, inputs.reference_logits, inputs.check_images, batched=inputs.dynamic_batch)
    check["note"] = _precision_note("INT8", check["top1_agreement_with_pytorch"])
    return _record("onnx-int8", target, check, opset=DEFAULT_OPSET, calibration_images=int(len(inputs.calibration_images)),
                   quantization=inputs.scheme().describe(), scheme=inputs.scheme().name,
                   input_shape=inputs.input_shape(), loading_snippet=_onnxruntime_snippet(target.name))


def _int8_onnx(inputs: ExportInputs) -> Path:
    return quantize_onnx(_onnx(inputs), inputs.out_dir / "model.int8.onnx", inputs.calibration_images[:64],
                         inputs.scheme())


def _precision_note(precision: str, agreement: float) -> str:
    if agreement == 1.0:
        return f"{precision} agrees with the FP32 network on every check image"
    return (f"{precision} LOSES ACCURACY: it agrees with the FP32 network on {100 * agreement:.1f}% "
            "of the check images")


def _run_each(fn: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return torch.cat([fn(images[i : i + 1]) for i in range(len(images))]).numpy()


def _ignore_jit_deprecation() -> None:
    """torch 2.14 marks torch.jit.trace/trace_method/load deprecated (FutureWarning) in favour of torch.export;
    TorchScript is still what many deployments load, so that one warning is silenced, no other."""
    warnings.filterwarnings("ignore", message=r"`torch\.jit\.\w+` is deprecated", category=FutureWarning)


def _traced(module: nn.Module, example: torch.Tensor) -> torch.jit.ScriptModule:
    with warnings.catch_warnings(), torch.no_grad():
        _ignore_jit_deprecation()
        traced = torch.jit.trace(module.eval(), example)
    assert isinstance(traced, torch.jit.ScriptModule)  # a module traces to a ScriptModule (for the type checker)
    return traced


def _exported(module: nn.Module, example: torch.Tensor) -> torch.export.ExportedProgram:
    return torch.export.export(module.eval(), (example,))


def _checked(inputs: ExportInputs, outputs: np.ndarray, tolerance: float) -> dict:
    """A PyTorch-format artefact's check against the FP32 network; in half precision, `_half_check`'s."""
    check = compare_outputs(outputs, inputs.reference_logits, tolerance)
    return _half_check(inputs, outputs, check) if is_half(inputs.precision) else check


def export_torchscript(inputs: ExportInputs) -> dict:
    path = inputs.out_dir / "model.torchscript.pt"
    _traced(inputs.deployed(), inputs.example()).save(str(path))
    loaded = _load_torchscript(path)
    return _record("torchscript", path, _checked(inputs, _run_each(loaded, inputs.check_images), 1e-4),
                   precision=inputs.precision)


def export_exported_program(inputs: ExportInputs) -> dict:
    path = inputs.out_dir / "model.pt2"
    torch.export.save(_exported(inputs.deployed(), inputs.example()), str(path))
    loaded = _load_exported_program(path)
    return _record("exported-program", path, _checked(inputs, _run_each(loaded, inputs.check_images), 1e-4),
                   precision=inputs.precision)


# largest error tolerated relative to the largest logit; CUDA kernels may use TF32 in convolutions
_AOTI_TOLERANCE = {"cpu": 1e-4, "gpu": 1e-3}


def export_aoti(inputs: ExportInputs) -> dict:
    """An AOTInductor package compiled for the run's target, run without Python model code, checked on real images."""
    from exporters.aoti_package import compile_package, load_package

    path = inputs.out_dir / "model.aoti.pt2"
    built = compile_package(inputs.deployed(), inputs.example(), path, inputs.target)
    package = load_package(path)
    device = torch.device(built["device"])
    with torch.no_grad():
        outputs = torch.cat([package(inputs.check_images[i : i + 1].to(device)).cpu()
                             for i in range(len(inputs.check_images))]).numpy()
    check = _checked(inputs, outputs, _AOTI_TOLERANCE[inputs.target])
    return _record("aoti", path, check, precision=inputs.precision, device=built["device"], compile_s=built["compile_s"],
                   compiled_from_cache=built["from_cache"], input_shape=[1, inputs.channels, inputs.resolution, inputs.resolution])


# largest error tolerated relative to the largest logit, by the precision an engine computes in
_TENSORRT_TOLERANCE = {"fp32": 1e-3, "fp16": 2e-2, "int8": float("inf")}


def export_tensorrt(inputs: ExportInputs) -> dict:
    """A TensorRT engine built on this GPU from the run's ONNX in the chosen precision, checked on real images."""
    from exporters.tensorrt_engine import (
        EngineRunner,
        EngineShapes,
        EngineSidecar,
        build_engine,
        require_tensorrt,
        timing_cache_path,
    )
    from pipeline.core import paths
    from pipeline.core.devices import require_cuda

    version = require_tensorrt()
    require_cuda("--format tensorrt")
    precision = inputs.tensorrt_precision
    source = _int8_onnx(inputs) if precision == "int8" else _onnx(inputs, precision)
    shapes = EngineShapes(inputs.resolution, 1, 1, inputs.max_batch if inputs.dynamic_batch else 1,
                          inputs.channels)
    engine = inputs.out_dir / f"model.{precision}.engine"
    sidecar = build_engine(source, engine, precision, shapes, timing_cache_path(paths.home() / "tensorrt", version))
    runner = EngineRunner(engine)
    outputs = torch.cat([runner(inputs.check_images[i : i + 1]) for i in range(len(inputs.check_images))]).numpy()
    check = compare_outputs(outputs, inputs.reference_logits, _TENSORRT_TOLERANCE[precision])
    if precision != "fp32":
        check["note"] = _precision_note(precision.upper(), check["top1_agreement_with_pytorch"])
    return _record("tensorrt", engine, check, precision=precision, tensorrt_version=version,
                   sidecar=EngineSidecar.path_for(engine).name, gpu=sidecar.device_name, source_onnx=source.name,
                   input_shape=inputs.input_shape(), max_batch=shapes.max_batch)


# largest error tolerated relative to the largest logit, by OpenVINO precision (reduced ones: agreement is stated)
_OPENVINO_TOLERANCE = {"openvino-fp32": 1e-3, "openvino-bf16": float("inf"), "openvino-int8": float("inf")}


def export_openvino(inputs: ExportInputs) -> dict:
    """An OpenVINO IR (`model.xml` + `model.bin`) in the run's OpenVINO precision, converted from the run's FP32
    ONNX file (INT8: quantized by NNCF on the tiny set), checked on real images in OpenVINO."""
    from exporters import openvino_ir

    precision = inputs.openvino_precision
    end_layers = inputs.int8_fp32_end_layers if precision == openvino_ir.INT8 else 0
    path = openvino_ir.write_ir(_onnx(inputs), inputs.out_dir / "model.xml", precision,
                                inputs.calibration_images[:openvino_ir.CALIBRATION_IMAGES], end_layers,
                                metadata=inputs.metadata)
    compiled = openvino_ir.compile_ir(path, 1)  # compiled once: checked, and asked what precision it runs in
    outputs = openvino_ir.compiled_logits(compiled, inputs.check_images).numpy()
    check = compare_outputs(outputs, inputs.reference_logits, _OPENVINO_TOLERANCE[precision])
    if precision != openvino_ir.FP32:
        check["note"] = _precision_note(precision, check["top1_agreement_with_pytorch"])
    hint = openvino_ir.inference_precision_of(path)  # read back from the file, as a deployment would
    return _record("openvino", path, check, precision=precision, inference_precision_hint=hint,
                   fp32_end_layers=end_layers, ran_in=openvino_ir.ran_in(compiled),
                   openvino_version=openvino_ir.openvino_version(), weights_file=path.with_suffix(".bin").name,
                   source_onnx="model.onnx", input_shape=[1, inputs.channels, inputs.resolution, inputs.resolution],
                   loading_snippet=openvino_ir.loading_snippet(path.name, hint))


def _load_torchscript(path: Path) -> nn.Module:
    with warnings.catch_warnings():
        _ignore_jit_deprecation()
        return torch.jit.load(str(path))


def _load_exported_program(path: Path) -> nn.Module:
    return torch.export.load(str(path)).module()


def _load_aoti(path: Path) -> nn.Module:
    from exporters.aoti_package import load_package

    return load_package(path)


def _compiled_like(module: nn.Module, example: torch.Tensor, target: str) -> nn.Module:
    from exporters.aoti_package import compiled_like

    return compiled_like(module, example, target)


@dataclass(frozen=True)
class ExportFormat:
    """How to write a format, how to load its file for timing, and which profiler runs it per target.

    `same_form` turns the original network into what the artefact is (a traced, exported or compiled
    module) for a target, so the latency ratio compares like with like; None where the profiler backend
    already runs both in one form (onnxruntime and TensorRT build their own ONNX or engine from the original).
    """

    name: str
    export: Callable[[ExportInputs], dict]
    load: Callable[[Path], Path | nn.Module]
    runtimes: dict[str, str]  # target -> profiler backend
    same_form: Callable[[nn.Module, torch.Tensor, str], nn.Module] | None = None  # (original, example, target)


FORMATS: dict[str, ExportFormat] = {f.name: f for f in (
    ExportFormat("onnx", export_onnx_fp32, Path, {"cpu": "onnxruntime", "gpu": "onnxruntime"}),
    ExportFormat("onnx-int8", export_onnx_int8, Path, {"cpu": "onnxruntime"}),
    ExportFormat("torchscript", export_torchscript, _load_torchscript, {"cpu": "torch", "gpu": "torch"},
                 lambda module, example, target: _traced(module, example)),
    ExportFormat("exported-program", export_exported_program, _load_exported_program, {"cpu": "torch", "gpu": "torch"},
                 lambda module, example, target: _exported(module, example).module()),
    ExportFormat("aoti", export_aoti, _load_aoti, {"cpu": "torch", "gpu": "torch"}, _compiled_like),
    ExportFormat("tensorrt", export_tensorrt, Path, {"gpu": "tensorrt"}),
    # timed by the auto backend: the IR in OpenVINO beside the original in the reference runtime
    ExportFormat("openvino", export_openvino, Path, {"cpu": "auto"}),
)}


def export_formats(inputs: ExportInputs, formats: list[str]) -> dict[str, dict]:
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise UsageError(f"unknown export format {', '.join(unknown)}; choose from: {', '.join(FORMATS)}.")
    inputs.out_dir.mkdir(parents=True, exist_ok=True)
    derived = {"onnx-int8", "tensorrt", "openvino"} & set(formats)
    if derived and not _onnx_matches(inputs.out_dir / "model.onnx", inputs.dynamic_batch):
        formats = ["onnx", *formats]  # derived formats need model.onnx as asked for; rewrite and record it
    (inputs.out_dir / "model.fp16.onnx").unlink(missing_ok=True)
    ordered = sorted(dict.fromkeys(formats), key=lambda f: f != "onnx")  # the FP32 ONNX first: others derive from it
    return {fmt: FORMATS[fmt].export(inputs) for fmt in ordered}


def _onnx_matches(path: Path, dynamic_batch: bool) -> bool:
    """Whether an existing ONNX file has the batch axis (free or fixed) that is asked for."""
    if not path.exists():
        return False
    import onnx

    batch_dim = onnx.load(str(path), load_external_data=False).graph.input[0].type.tensor_type.shape.dim[0]
    return bool(batch_dim.dim_param) == dynamic_batch
