"""OpenVINO's intermediate representation (IR): conversion from ONNX, INT8 by NNCF, and running it.

A network deployed in OpenVINO is an IR (`model.xml` + `model.bin`) and an inference precision. OpenVINO
chooses the precision at `compile_model` time, not from the file: on a CPU with native BF16 it runs float
networks in BF16 unless told `INFERENCE_PRECISION_HINT=f32`. So the precision a file was planned and timed in
is written into the IR's runtime information (`rt_info`, under "practise"), where `compile_ir` and
`inference_precision_of` read it back; `loading_snippet` gives the lines that load it the same way (OpenVINO
itself does not apply that entry, so a deployment must pass the hint, as the snippet does).

Precisions are named with their runtime, so that one plan can hold onnxruntime's and OpenVINO's side by side:
`openvino-fp32`, `openvino-bf16` (offered where the CPU reports native BF16), `openvino-int8` (NNCF post-training
quantization, calibrated on the tiny set; the layers NNCF leaves in float run in FP32).
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from pipeline.core.errors import UsageError

FP32, BF16, INT8 = "openvino-fp32", "openvino-bf16", "openvino-int8"
PRECISIONS = (FP32, BF16, INT8)
# OpenVINO's INFERENCE_PRECISION_HINT for each precision (INT8: the float layers between quantized ones)
HINTS = {FP32: "f32", BF16: "bf16", INT8: "f32"}
_RT_INFO = "practise"  # the IR's rt_info section this tool writes
CALIBRATION_IMAGES = 64
INSTALL = "pip install '.[openvino]'"


def openvino_available() -> bool:
    return importlib.util.find_spec("openvino") is not None


def require_openvino(what: str = "OpenVINO") -> None:
    """One line naming the extra to install when OpenVINO (or NNCF for INT8) is missing."""
    if not openvino_available():
        raise UsageError(f"{what} needs OpenVINO, which is not installed: {INSTALL}.")


def is_openvino(precision: str) -> bool:
    return precision in PRECISIONS


def _core():
    import openvino as ov

    return ov.Core()


def capabilities() -> list[str]:
    """What this CPU offers OpenVINO (e.g. FP32, BF16, INT8), as the runtime reports it."""
    return list(_core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))


def native_bf16() -> bool:
    return "BF16" in capabilities()


@functools.cache
def offered_precisions() -> tuple[str, ...]:
    """The OpenVINO precisions worth measuring on this CPU: BF16 only where it is native (elsewhere OpenVINO
    would run it in FP32 and the plan would be a duplicate); none when OpenVINO is not installed."""
    if not openvino_available():
        return ()
    return tuple(p for p in PRECISIONS if p != BF16 or native_bf16())


def write_ir(onnx_file: Path, xml: Path, precision: str, calibration: torch.Tensor | None = None,
             fp32_end_layers: int = 0, metadata: dict[str, str] | None = None) -> Path:
    """Convert an FP32 ONNX file to an IR in `precision` (INT8: quantized by NNCF on `calibration`, leaving the
    first and last `fp32_end_layers` compute layers in float), with the precision, the float end layers and
    `metadata` recorded in its rt_info."""
    require_openvino(f"the {precision} precision")
    import openvino as ov

    if precision not in PRECISIONS:
        raise UsageError(f"unknown OpenVINO precision '{precision}'; choose one of: {', '.join(PRECISIONS)}.")
    model = ov.convert_model(str(onnx_file))
    if precision == INT8:
        if calibration is None:
            raise ValueError("OpenVINO INT8 needs calibration images")
        model = _quantized(model, calibration[:CALIBRATION_IMAGES], end_layer_names(model, fp32_end_layers))
        model.set_rt_info(str(fp32_end_layers), [_RT_INFO, "fp32_end_layers"])
    model.set_rt_info(precision, [_RT_INFO, "precision"])
    model.set_rt_info(HINTS[precision], [_RT_INFO, "inference_precision_hint"])
    for key, value in (metadata or {}).items():
        model.set_rt_info(value, [_RT_INFO, "metadata", key])
    xml.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(model, str(xml), compress_to_fp16=False)
    return xml


COMPUTE_OPS = ("Convolution", "GroupConvolution", "MatMul")


def end_layer_names(model: Any, per_end: int) -> list[str]:
    """The first and last `per_end` compute operations of an OpenVINO model, in execution order (all of them in a
    small model): the layers a mixed-precision rung keeps in float, named as NNCF's ignored scope reads them."""
    if per_end <= 0:
        return []
    names = [op.get_friendly_name() for op in model.get_ordered_ops() if op.get_type_name() in COMPUTE_OPS]
    return names if len(names) <= 2 * per_end else names[:per_end] + names[-per_end:]


def end_layers_by_rung(onnx_file: Path, rungs: Sequence[int]) -> dict[int, list[str]]:
    """`end_layer_names` for each rung of a ladder, on the IR converted from `onnx_file`."""
    import openvino as ov

    model = ov.convert_model(str(onnx_file))
    return {per_end: end_layer_names(model, per_end) for per_end in rungs}


def _quantized(model: Any, calibration: torch.Tensor, ignored_nodes: Sequence[str]) -> Any:
    if importlib.util.find_spec("nncf") is None:
        raise UsageError(f"OpenVINO INT8 needs NNCF, which is not installed: {INSTALL}.")
    with quiet_nncf():
        import nncf

        images = [calibration[i : i + 1].numpy().astype(np.float32) for i in range(len(calibration))]
        ignored = nncf.IgnoredScope(names=list(ignored_nodes), validate=False) if ignored_nodes else None
        return nncf.quantize(model, nncf.Dataset(images), subset_size=len(images),
                             **({"ignored_scope": ignored} if ignored is not None else {}))


# the state NNCF's PyTorch backend adds to a network it quantizes (its quantizers' scales and switches)
NNCF_STATE = "__nncf_hooks."


def quantization_aware_network(network: nn.Module, calibration: torch.Tensor, fp32_end_layers: int = 0) -> nn.Module:
    """`network` computing through NNCF's INT8 quantizers, calibrated on `calibration`: NNCF's PyTorch backend places
    them as its OpenVINO backend does when the IR is quantized (the same preset and subset), so quantization-aware
    recovery trains through the rounding OpenVINO INT8 will run. The first and last `fp32_end_layers` Conv2d/Linear
    layers stay in float, as the mixed-precision step keeps them. The trained weights ship through `write_ir` like any
    other network's; `plain_state` drops the quantizers' own state."""
    if importlib.util.find_spec("nncf") is None:
        raise UsageError(f"OpenVINO INT8 needs NNCF, which is not installed: {INSTALL}.")
    layers = [(name, "conv2d" if isinstance(m, nn.Conv2d) else "linear") for name, m in network.named_modules()
              if isinstance(m, (nn.Conv2d, nn.Linear))]
    ends = [] if fp32_end_layers <= 0 else layers if len(layers) <= 2 * fp32_end_layers else \
        layers[:fp32_end_layers] + layers[-fp32_end_layers:]
    ignored = [f"{name.replace('.', '/')}/{op}/0" for name, op in ends]  # NNCF's PyTorch node names
    with quiet_nncf():
        import nncf

        images = [calibration[i : i + 1] for i in range(len(calibration))]
        scope = {"ignored_scope": nncf.IgnoredScope(names=ignored, validate=False)} if ignored else {}
        return nncf.quantize(network, nncf.Dataset(images), subset_size=len(images), **scope)


def plain_state(state: dict) -> dict:
    """A state_dict without NNCF's quantizer state: it loads into the plain network."""
    return {key: value for key, value in state.items() if not key.startswith(NNCF_STATE)}


@contextlib.contextmanager
def quiet_nncf():
    """NNCF draws progress bars on the console and, on import, torch logs that it found no CUDA runtime: the run's
    own log says what is being quantized, so both are kept off the user's terminal (NNCF's errors still raise)."""
    import logging

    quiet = [logging.getLogger(name) for name in ("torch.utils.cpp_extension", "nncf")]
    levels = [logger.level for logger in quiet]
    for logger in quiet:
        logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        for logger, level in zip(quiet, levels):
            logger.setLevel(level)


def _recorded(model: Any, *key: str) -> str | None:
    if not model.has_rt_info([_RT_INFO, *key]):  # an IR this tool did not write
        return None
    value = model.get_rt_info([_RT_INFO, *key])
    return str(value.astype(str)) if hasattr(value, "astype") else str(value)  # an OVAny holding a string


def precision_of(xml: Path) -> str | None:
    """The precision this tool recorded in the IR, or None for an IR written elsewhere."""
    return _recorded(_core().read_model(str(xml)), "precision")


def inference_precision_of(xml: Path) -> str:
    """The INFERENCE_PRECISION_HINT to compile the IR with: the recorded one, else f32 (never the CPU's default,
    which differs between CPUs)."""
    return _recorded(_core().read_model(str(xml)), "inference_precision_hint") or "f32"


def compile_ir(xml: Path, threads: int) -> Any:
    """The IR compiled for latency on the CPU, in its recorded inference precision, on `threads` threads."""
    core = _core()
    model = core.read_model(str(xml))
    hint = _recorded(model, "inference_precision_hint") or "f32"
    return core.compile_model(model, "CPU", {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads,
                                             "INFERENCE_PRECISION_HINT": hint})


def ran_in(compiled: Any) -> str:
    """The inference precision OpenVINO actually compiled for (what ran, not what was asked)."""
    value = compiled.get_property("INFERENCE_PRECISION_HINT")
    return str(value.to_string()) if hasattr(value, "to_string") else str(value)  # an ov.Type: "f32", "bf16"


def ir_logits(xml: Path, images: torch.Tensor, threads: int = 1) -> torch.Tensor:
    """Logits of the IR on `images`, one image at a time, in its recorded precision: (N, classes)."""
    return compiled_logits(compile_ir(xml, threads), images)


def compiled_logits(compiled: Any, images: torch.Tensor) -> torch.Tensor:
    """Logits of an already compiled IR on `images`, one image at a time: (N, classes)."""
    request = compiled.create_infer_request()
    outputs = [np.array(request.infer({0: images[i : i + 1].numpy().astype(np.float32)})[0])
               for i in range(len(images))]
    return torch.from_numpy(np.concatenate(outputs))


def loading_snippet(xml_name: str, hint: str) -> str:
    """The lines that load and run the IR as it was timed."""
    return (
        "import numpy as np, openvino as ov\n"
        f"compiled = ov.Core().compile_model('{xml_name}', 'CPU', {{'PERFORMANCE_HINT': 'LATENCY', "
        f"'INFERENCE_PRECISION_HINT': '{hint}'}})\n"
        "logits = compiled(images.astype(np.float32))[0]  # images: (1, C, H, W), normalised as in metadata\n"
    )


def openvino_version() -> str:
    import openvino as ov

    return str(ov.get_version())
