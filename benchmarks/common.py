"""What every benchmark shares, in one place: where results go, the machine record written beside them, mean
and spread over seeds, matplotlib set up for files, and writing or --replotting a result's .json/.md pair.

Benchmarks import from here, never from each other's private names, so one script can change without another.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
from pathlib import Path
from typing import Any, Callable

from pipeline.core.atomic import write_text_atomic

RESULTS = Path(__file__).resolve().parent / "results"

# the instruction sets that decide which precision is fast (INT8 dot products, native BF16, Intel AMX)
SPEED_FLAGS = ("avx512_vnni", "avx512_bf16", "amx_tile")


# ------------------------------------------------------------------------------------------ the machine

def machine_info() -> dict:
    """What a benchmark ran on: CPU, cores, library versions (written beside every result)."""
    import onnxruntime
    import torch
    import torchvision

    from profilers.fingerprint import cpu_model_name

    return {
        "cpu": cpu_model_name(),
        "cores": os.cpu_count(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "onnxruntime": onnxruntime.__version__,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "cpu_flags": cpu_flags(),
        "openvino": _openvino_version(),
    }


def cpu_flags() -> dict[str, bool]:
    """Which of SPEED_FLAGS this CPU reports (Linux /proc/cpuinfo; all False where it cannot be read)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {flag: False for flag in SPEED_FLAGS}
    flags = set(next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), []))
    return {flag: flag in flags for flag in SPEED_FLAGS}


def _openvino_version() -> str | None:
    from exporters.openvino_ir import openvino_available, openvino_version

    return openvino_version() if openvino_available() else None


# ------------------------------------------------------------------------------------------ statistics

def mean_and_spread(values: list[float]) -> tuple[float, float, int]:
    """(mean, sample standard deviation, n) over seeds; the spread of a single value is 0, not undefined."""
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0), len(values)


# ------------------------------------------------------------------------------------------ plotting

def pyplot() -> Any:
    """matplotlib.pyplot drawing into files (Agg: these machines have no display), or None without matplotlib,
    so a missing `plots` extra costs the figure, not the result."""
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(plt: Any, figure: Any, path: Path, dpi: int) -> None:
    """Lay out, write and close `figure` (closed: a grid of plots would otherwise hold every figure in memory)."""
    figure.tight_layout()
    figure.savefig(path, dpi=dpi)
    plt.close(figure)


# ------------------------------------------------------------------------------------------ result files

def grid_parser(doc: str, seeds: list[int], threads: int, sizes: list[int] | None = None,
                tiny_sets: list[str] | None = None) -> argparse.ArgumentParser:
    """--seeds, --threads, --out and --replot, with --sizes and --data-dir (Fashion-MNIST) or --tiny-sets."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", nargs="+", type=int, default=seeds)
    if sizes is not None:
        parser.add_argument("--sizes", nargs="+", type=int, default=sizes)
    if tiny_sets is not None:
        parser.add_argument("--tiny-sets", nargs="+", default=tiny_sets)
    parser.add_argument("--threads", type=int, default=threads)
    if sizes is not None:
        parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--replot", action="store_true", help="only rewrite the .md from the saved .json")
    return parser


def replot(args: argparse.Namespace, name: str, render: Callable[[dict], str]) -> bool:
    """With --replot, rewrite `<name>.md` from the saved `<name>.json` and say so (True); else False.

    A change of wording then needs no rerun of the measurements."""
    if not args.replot:
        return False
    write_text_atomic(args.out / f"{name}.md", render(json.loads((args.out / f"{name}.json").read_text())))
    return True


def write_result(out: Path, name: str, result: dict, render: Callable[[dict], str], indent: int | None) -> None:
    """Save the result as `<name>.json` (indentation as the benchmark always wrote it) and its `<name>.md`."""
    write_text_atomic(out / f"{name}.json", json.dumps(result, indent=indent) + "\n")
    write_text_atomic(out / f"{name}.md", render(result))
    print(f"wrote {out / f'{name}.md'}")
