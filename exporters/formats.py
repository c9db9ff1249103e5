"""Export formats behind one registry: each writes an artefact and proves it against PyTorch.

Every exporter takes the compressed network, the images to check on and the PyTorch logits on them,
and returns an artefact record (format, file, hash, size, versions, check). INT8 is calibrated on the
run's tiny set; its check is against the FP32 network, and a loss of agreement is stated, not hidden.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from exporters.onnx_check import compare_outputs, sha256_of, verify_onnx
from exporters.onnx_file import DEFAULT_OPSET, export_onnx
from exporters.onnx_int8 import METHOD as QUANTIZATION_METHOD
from exporters.onnx_int8 import quantize_onnx
from pipeline.errors import RunFailure, UsageError


@dataclass
class ExportInputs:
    module: nn.Module  # the compressed network, eval mode
    resolution: int
    check_images: torch.Tensor  # (N, 3, R, R) held-out images
    reference_logits: torch.Tensor  # PyTorch logits on check_images
    calibration_images: torch.Tensor  # tiny-set images for INT8 calibration
    out_dir: Path

    def example(self) -> torch.Tensor:
        return torch.randn(1, 3, self.resolution, self.resolution)


def _record(fmt: str, path: Path, check: dict, **extra) -> dict:
    return {"format": fmt, "path": path.name, "sha256": sha256_of(path), "size_bytes": path.stat().st_size,
            "torch_version": torch.__version__.split("+")[0], "check": check, **extra}


def export_onnx_fp32(inputs: ExportInputs) -> dict:
    path = export_onnx(inputs.module, inputs.example(), inputs.out_dir / "model.onnx")
    check = verify_onnx(path, inputs.reference_logits, inputs.check_images)
    return _record("onnx", path, check, opset=DEFAULT_OPSET, input_shape=[1, 3, inputs.resolution, inputs.resolution])


def export_onnx_int8(inputs: ExportInputs) -> dict:
    """Static QDQ quantization (per-channel weights) calibrated on the tiny set, run in onnxruntime."""
    fp32 = inputs.out_dir / "model.onnx"
    if not fp32.exists():
        export_onnx(inputs.module, inputs.example(), fp32)
    target = quantize_onnx(fp32, inputs.out_dir / "model.int8.onnx", inputs.calibration_images)
    check = verify_onnx(target, inputs.reference_logits, inputs.check_images)
    check["note"] = _int8_note(check["top1_agreement_with_pytorch"])
    return _record("onnx-int8", target, check, opset=DEFAULT_OPSET, calibration_images=int(len(inputs.calibration_images)),
                   quantization=QUANTIZATION_METHOD)


def _int8_note(agreement: float) -> str:
    if agreement == 1.0:
        return "INT8 agrees with the FP32 network on every check image"
    return f"INT8 LOSES ACCURACY: it agrees with the FP32 network on {100 * agreement:.1f}% of the check images"


def _run_each(fn: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return torch.cat([fn(images[i : i + 1]) for i in range(len(images))]).numpy()


def export_torchscript(inputs: ExportInputs) -> dict:
    path = inputs.out_dir / "model.torchscript.pt"
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(inputs.module, inputs.example())
        traced.save(str(path))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit is deprecated in favour of torch.export; still widely deployed
        loaded = torch.jit.load(str(path))
    return _record("torchscript", path, compare_outputs(_run_each(loaded, inputs.check_images), inputs.reference_logits, 1e-4))


def export_exported_program(inputs: ExportInputs) -> dict:
    path = inputs.out_dir / "model.pt2"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.export.export(inputs.module, (inputs.example(),))
        torch.export.save(program, str(path))
    loaded = torch.export.load(str(path)).module()
    return _record("exported-program", path, compare_outputs(_run_each(loaded, inputs.check_images), inputs.reference_logits, 1e-4))


def export_tensorrt(inputs: ExportInputs) -> dict:
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        raise UsageError("TensorRT is not installed: pip install '.[tensorrt]' on a machine with an NVIDIA GPU "
                         "and TensorRT's libraries.") from None
    raise UsageError("TensorRT engine export is not built yet in this version; use --format onnx and trtexec.")


EXPORTERS: dict[str, Callable[[ExportInputs], dict]] = {
    "onnx": export_onnx_fp32,
    "onnx-int8": export_onnx_int8,
    "torchscript": export_torchscript,
    "exported-program": export_exported_program,
    "tensorrt": export_tensorrt,
}


def export_formats(inputs: ExportInputs, formats: list[str]) -> dict[str, dict]:
    unknown = [f for f in formats if f not in EXPORTERS]
    if unknown:
        raise UsageError(f"unknown export format {', '.join(unknown)}; choose from: {', '.join(EXPORTERS)}.")
    inputs.out_dir.mkdir(parents=True, exist_ok=True)
    return {fmt: EXPORTERS[fmt](inputs) for fmt in formats}
