"""Options shared by several commands, the progress bar and the log sink the CLI hands to the library."""

from __future__ import annotations

import contextlib
import sys

import click

from profilers import all_backends, all_precisions


@contextlib.contextmanager
def progress_bar(length: int, label: str):
    """A progress bar on stderr (the library only sees the factory)."""
    with click.progressbar(length=length, label=label, file=sys.stderr, show_eta=True, show_pos=True) as bar:
        yield bar


def log(message: str) -> None:
    click.echo(message, err=True)


def _export_formats() -> list[str]:
    from exporters.formats import FORMATS

    return list(FORMATS)


EXPORT_FORMATS = _export_formats()  # read from the format registry


model_option = click.option("--model", "model", default="efficientnet_lite0", show_default=True,
                            help="torchvision name, efficientnet_lite0/1/2, package.module:function, or a whole saved nn.Module as "
                                 "file:PATH or PATH.pt/.pth (unpickling runs code stored in the file: only files you trust).")
weights_option = click.option("--weights", type=click.Path(dir_okay=False), default=None,
                              help="state_dict file for the model's weights.")
resolution_option = click.option("--resolution", type=click.IntRange(16, 4096), default=None,
                                 help="input resolution in pixels (default: the model's own).")
target_option = click.option("--target", type=click.Choice(["cpu", "gpu"]), default="cpu", show_default=True)
backend_option = click.option("--backend", type=click.Choice(all_backends()), default=None,
                              help="profiling backend: auto (default: every CPU runtime installed, onnxruntime and "
                                   "OpenVINO, planned together), onnxruntime, openvino, torch or inductor (torch.compile) on cpu; "
                                   "tensorrt, torch, inductor or onnxruntime (CUDA provider, needs onnxruntime-gpu) on gpu "
                                   "(default: tensorrt when installed, else torch).")
_MEASURED_PRECISIONS = all_precisions()  # read from the profiler registry
precision_option = click.option("--precision", type=click.Choice(_MEASURED_PRECISIONS), default="fp32",
                                show_default=True, help="precision the latency is measured in (fp16, bf16: GPU; int8: "
                                "TensorRT; int8-...: an onnxruntime INT8 scheme on the CPU; openvino-...: OpenVINO on the CPU).")
run_precision_option = click.option(
    "--precision", type=click.Choice(["auto", *_MEASURED_PRECISIONS]), default="auto", show_default=True,
    help="auto: plan in every precision the backend deploys (CPU auto: onnxruntime FP32 and each INT8 scheme, and "
         "OpenVINO FP32, BF16 where native and NNCF INT8 when OpenVINO is installed), each "
         "measured here, and keep the most faithful plan that meets the budget; a named precision plans in it only "
         "(the budget is then relative to the original in that precision).")
time_cap_option = click.option("--profile-time-cap", type=click.FloatRange(1, 86400), default=None,
                                help="seconds each latency measurement may take at most (default: the preset's).")
cuda_graphs_option = click.option("--cuda-graphs", is_flag=True,
                                  help="torch CUDA backend: replay each network as a captured CUDA graph.")
threads_option = click.option("--threads", type=click.IntRange(0, 1024), default=0, show_default=True,
                              help="CPU threads for profiling (0: all cores).")


def export_options(command):
    """Options of the exported artefacts, shared by `run --export` and `export`."""
    command = click.option("--tensorrt-precision", type=click.Choice(["fp32", "fp16", "int8"]), default="fp16",
                           show_default=True, help="precision of a --format tensorrt engine (int8: from the "
                           "quantized ONNX calibrated on the tiny set).")(command)
    command = click.option("--max-batch", type=click.IntRange(1, 4096), default=32, show_default=True,
                           help="largest batch a dynamic-batch TensorRT engine accepts.")(command)
    return click.option("--dynamic-batch", is_flag=True,
                        help="export ONNX with a free batch axis (and TensorRT engines with an optimization profile).")(command)


trust_model_code_option = click.option(
    "--trust-model-code", is_flag=True,
    help="the run folder's settings name user code or a saved module as its model: load it (this runs that code).")

batch_option = click.option("--batch", "profile_batch", type=click.IntRange(1, 4096), default=1, show_default=True,
                            help="batch size the latency is measured at.")


