"""ONNX export shared by the profilers (each network variant) and the run's final artefact.

The dynamo exporter is used: it folds BatchNorm and padding into the convolutions, so the file is
what a deployment would run. Output is one self-contained file (no external data).
"""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path

import torch
from torch import nn

from pipeline.errors import RunFailure

DEFAULT_OPSET = 18
INPUT_NAME = "images"
OUTPUT_NAME = "logits"


def export_onnx(module: nn.Module, example: torch.Tensor, path: Path, opset: int = DEFAULT_OPSET,
                dynamic_batch: bool = False) -> Path:
    """Write `module` as a single ONNX file at `path` (atomically: a half-written file never appears)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".partial")
    dynamic_shapes = ({0: torch.export.Dim("batch", min=1, max=4096)},) if dynamic_batch else None
    module = module.eval()
    chatter = io.StringIO()
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(chatter), contextlib.redirect_stderr(chatter):
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module, (example,), str(tmp), dynamo=True, external_data=False, opset_version=opset,
                input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], dynamic_shapes=dynamic_shapes,
            )
    except Exception as exc:
        tmp.unlink(missing_ok=True)
        raise RunFailure(f"ONNX export failed ({type(exc).__name__}: {str(exc).splitlines()[0][:300]})") from exc
    tmp.replace(path)
    return path
