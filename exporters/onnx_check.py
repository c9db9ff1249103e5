"""Prove an ONNX file computes what the PyTorch network computes, on real images, in onnxruntime."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch

from pipeline.core.errors import RunFailure


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def compare_outputs(outputs: np.ndarray, reference_logits: torch.Tensor, tolerance: float = 1e-3) -> dict:
    """Maximum error and top-1 agreement of an artefact's logits against PyTorch's; passed when both hold."""
    reference = reference_logits.numpy()
    max_error = float(np.abs(outputs - reference).max())
    agreement = float((outputs.argmax(1) == reference.argmax(1)).mean())
    return {
        "images": int(len(reference)),
        "max_abs_error": max_error,
        "top1_agreement_with_pytorch": agreement,
        "passed": bool(max_error <= tolerance * max(1.0, float(np.abs(reference).max())) and agreement == 1.0),
    }


def verify_onnx(path: Path, reference_logits: torch.Tensor, images: torch.Tensor, threads: int = 0,
                batched: bool = False) -> dict:
    """Run `path` in onnxruntime on `images` one by one; compare with the PyTorch logits.

    `batched` (dynamic-batch files) also runs all images as one batch and requires the same answer.
    """
    import onnx
    import onnxruntime as ort

    try:
        onnx.checker.check_model(str(path))
    except Exception as exc:
        raise RunFailure(f"exported ONNX file {path} fails onnx's checker: {exc}") from None
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    outputs = np.concatenate([session.run(None, {name: images[i : i + 1].numpy()})[0] for i in range(len(images))])
    result = {"checker": "passed", "onnxruntime_version": ort.__version__} | compare_outputs(outputs, reference_logits)
    if batched:
        together = compare_outputs(session.run(None, {name: images.numpy()})[0], reference_logits)
        result["batched_max_abs_error"] = together["max_abs_error"]
        result["passed"] = result["passed"] and together["passed"]
    return result


def onnx_logits(path: Path, images: torch.Tensor, threads: int = 0) -> torch.Tensor:
    """Logits of the ONNX file at `path` in onnxruntime on `images`, one image at a time: (N, classes)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return torch.from_numpy(np.concatenate([session.run(None, {name: images[i : i + 1].numpy()})[0]
                                            for i in range(len(images))]))
