"""Static INT8 quantization of an ONNX file: quantize/dequantize nodes calibrated on real images.

The QDQ form is what onnxruntime runs on the CPU and what TensorRT builds as an explicitly quantized
(strongly typed) engine, so one file serves both.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path

import torch

from exporters.onnx_file import INPUT_NAME
from pipeline.core.errors import RunFailure

METHOD = "static QDQ, per-channel int8 weights, int8 activations, MinMax calibration"


def quantize_onnx(fp32_path: Path, target: Path, calibration_images: torch.Tensor) -> Path:
    """Write the INT8 QDQ version of `fp32_path` at `target`, calibrated on `calibration_images`."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared = target.with_name(target.stem + "-prep.onnx")

    class ImageReader(CalibrationDataReader):
        def __init__(self, images: torch.Tensor):
            self._batches = iter([{INPUT_NAME: images[i : i + 1].numpy()} for i in range(len(images))])

        def get_next(self):
            return next(self._batches, None)

    chatter = io.StringIO()
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(chatter), contextlib.redirect_stderr(chatter):
            warnings.simplefilter("ignore")
            quant_pre_process(str(fp32_path), str(prepared))
            quantize_static(str(prepared), str(target), ImageReader(calibration_images),
                            quant_format=QuantFormat.QDQ, per_channel=True, activation_type=QuantType.QInt8,
                            weight_type=QuantType.QInt8)
    except Exception as exc:
        raise RunFailure(f"INT8 quantization failed ({type(exc).__name__}: {str(exc).splitlines()[0][:300]})") from exc
    finally:
        prepared.unlink(missing_ok=True)
    return target
