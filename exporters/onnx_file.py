"""ONNX export shared by the profilers (each network variant) and the run's final artefact.

The dynamo exporter is used: it folds BatchNorm and padding into the convolutions, so the file is
what a deployment would run. Output is one self-contained file (no external data).
"""

from __future__ import annotations

import contextlib
import copy
import io
import warnings
from pathlib import Path

import torch
from torch import nn

from pipeline.core.atomic import atomic_path
from pipeline.core.errors import RunFailure

DEFAULT_OPSET = 18
INPUT_NAME = "images"
OUTPUT_NAME = "logits"
MAX_DYNAMIC_BATCH = 4096


class HalfPrecision(nn.Module):
    """FP16 weights and arithmetic behind FP32 inputs and outputs: a strongly typed FP16 graph.

    TensorRT 11 builds precision from the graph's types only, so FP16 must be in the ONNX itself.
    """

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = copy.deepcopy(module).half()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.module(images.half()).float()


def export_onnx(module: nn.Module, example: torch.Tensor, path: Path, opset: int = DEFAULT_OPSET,
                dynamic_batch: bool = False, precision: str = "fp32", metadata: dict[str, str] | None = None) -> Path:
    """Write `module` as a single ONNX file at `path` (atomically: a half-written file never appears).

    precision "fp16" stores half-precision weights and computes in half precision; I/O stays FP32.
    `metadata` goes into the file's metadata_props (how to feed it: mean, std, resolution, class count).
    """
    path = Path(path)
    dynamic_shapes = ({0: torch.export.Dim("batch", min=1, max=MAX_DYNAMIC_BATCH)},) if dynamic_batch else None
    if precision not in ("fp32", "fp16"):
        raise ValueError(f"ONNX precision must be fp32 or fp16, not {precision}")
    from exporters.half_precision import pinned_precision

    # a network already pinned to a precision (exporters.half_precision) is written in it as it is
    pinned = pinned_precision(module) is not None
    module = (HalfPrecision(module) if precision == "fp16" and not pinned else module).eval()
    chatter = io.StringIO()
    try:
        with atomic_path(path) as tmp, warnings.catch_warnings(record=True) as caught, \
                contextlib.redirect_stdout(chatter), contextlib.redirect_stderr(chatter):
            torch.onnx.export(
                module, (example,), str(tmp), dynamo=True, external_data=False, opset_version=opset,
                input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], dynamic_shapes=dynamic_shapes,
            )
            if metadata:
                set_metadata(tmp, metadata)
    except Exception as exc:
        raise RunFailure(f"ONNX export failed ({_describe_failure(exc)}); rerun with --debug for the traceback, "
                         f"and check torch {torch.__version__} is the version this tool pins") from exc
    show_warnings(caught)
    return path


def show_warnings(caught: list[warnings.WarningMessage]) -> None:
    """Show the warnings a library raised while its printed chatter was being swallowed."""
    for w in caught:
        warnings.showwarning(w.message, w.category, w.filename, w.lineno)


def set_metadata(path: Path, metadata: dict[str, str]) -> None:
    """Replace the ONNX file's metadata_props entries named in `metadata` (values as strings), in place."""
    import onnx

    model = onnx.load(str(path))
    kept = [p for p in model.metadata_props if p.key not in metadata]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    for key, value in metadata.items():
        model.metadata_props.add(key=str(key), value=str(value))
    onnx.save(model, str(path))


def read_metadata(path: Path) -> dict[str, str]:
    import onnx

    return {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}


def _describe_failure(exc: BaseException) -> str:
    """The exception and its innermost cause, one line each: torch's own message only says which step failed."""
    root = exc
    while root.__cause__ is not None and root.__cause__ is not root:
        root = root.__cause__
    first = f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:200]}"
    if root is exc:
        return first
    return f"{first} caused by {type(root).__name__}: {(str(root).strip().splitlines() or [''])[0][:300]}"
