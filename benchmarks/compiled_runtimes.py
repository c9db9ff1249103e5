"""EfficientNet-Lite0 on this CPU in the forms a deployment runs: onnxruntime FP32, eager PyTorch,
torch.compile (inductor) and an AOTInductor package; compile times and agreement with eager PyTorch.

Compiles start cold (a fresh TorchInductor cache and tool home), as on a new machine. Latency: all four
forms are interleaved in the same shuffled rounds of the tool's profiler method (onnxruntime's session,
with the onnxruntime backend's options, behind a module call that hands it the tensor's memory without a
copy), so load from other jobs hits them alike and each round's ratios compare like with like.

    python -m benchmarks.compiled_runtimes [--sittings 2] [--threads 1]   # writes results/compiled_runtimes.{json,md}
    python -m benchmarks.compiled_runtimes --replot
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import RESULTS, write_result
from pipeline.core.atomic import write_text_atomic

SETTINGS = dict(resolution=224, warmup_runs=10, runs_per_round=20, min_rounds=8, max_rounds=15, time_cap_s=120)
FORMS = ["onnxruntime", "eager", "torch.compile", "aoti"]


def _onnxruntime_module(module, example, threads: int):
    """The network as an onnxruntime FP32 session (the onnxruntime backend's options) behind a module call."""
    import torch

    from exporters.onnx_file import export_onnx
    from profilers import ProfileSettings
    from profilers.onnxruntime_backend import OnnxRuntimeCpuProfiler

    path = export_onnx(module, example, Path(tempfile.mkdtemp()) / "lite0.onnx")
    profiler = OnnxRuntimeCpuProfiler(ProfileSettings(threads=threads))
    session = profiler.session(path)
    name = session.get_inputs()[0].name

    class OnnxRuntime(torch.nn.Module):
        def forward(self, images):  # (1, 3, 224, 224) -> (1, 1000); numpy views, no copies
            return torch.from_numpy(session.run(None, {name: images.numpy()})[0])

    return OnnxRuntime(), session


def run(sittings: int, threads: int) -> dict:
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", tempfile.mkdtemp(prefix="inductor-cold-"))
    os.environ["PRACTISE_HOME"] = tempfile.mkdtemp(prefix="practise-cold-")
    import onnxruntime
    import torch

    from exporters.aoti_package import compile_package, load_package
    from pipeline.models import load_model
    from profilers import ProfileSettings, get_profiler
    from profilers.load import busy_machine_warning

    torch.set_num_threads(threads)
    module = load_model("efficientnet_lite0").module.eval()
    example = torch.randn(1, 3, 224, 224)
    images = torch.randn(8, 3, 224, 224)
    with torch.no_grad():
        reference = torch.cat([module(images[i:i + 1]) for i in range(len(images))])

    start = time.monotonic()
    compiled = torch.compile(module, backend="inductor", fullgraph=True, dynamic=False)
    with torch.inference_mode():
        compiled(example)
    compile_s = time.monotonic() - start
    package_path = Path(tempfile.mkdtemp()) / "lite0.aoti.pt2"
    built = compile_package(module, example, package_path, "cpu")
    package = load_package(package_path)
    ort_module, _session = _onnxruntime_module(module, example, threads)
    forms = {"onnxruntime": ort_module, "eager": module, "torch.compile": compiled, "aoti": package}

    def agreement(fn) -> dict:
        with torch.inference_mode():
            out = torch.cat([fn(images[i:i + 1]) for i in range(len(images))])
        return {"max_abs_error": float((out - reference).abs().max()),
                "top1_agreement": float((out.argmax(1) == reference.argmax(1)).float().mean())}

    settings = ProfileSettings(threads=threads, **SETTINGS)
    results = []
    for sitting in range(sittings):
        busy = busy_machine_warning(threads)
        with get_profiler("cpu", "torch", settings) as profiler:
            measurement = profiler.measure(forms, seed=sitting)
        rounds = measurement.rounds_ms
        ratios = {f"{a}/{b}": float(np.median([x / y for x, y in zip(rounds[a], rounds[b])]))
                  for a, b in [("torch.compile", "onnxruntime"), ("aoti", "onnxruntime"), ("aoti", "torch.compile"),
                               ("eager", "onnxruntime")]}
        results.append({"sitting": sitting + 1, "median_ms": {n: float(np.median(r)) for n, r in rounds.items()},
                        "paired_ratios": ratios, "rounds": len(rounds["eager"]), "busy_warning": busy or "",
                        "stop_reason": measurement.stop_reason})
        print(results[-1], flush=True)
    return {"model": "efficientnet_lite0", "torch_version": torch.__version__, "onnxruntime_version": onnxruntime.__version__,
            "settings": SETTINGS | {"threads": threads}, "cpu": _cpu(),
            "compile_s": {"torch.compile": round(compile_s, 1), "aoti": built["compile_s"]},
            "aoti_package_bytes": package_path.stat().st_size,
            "agreement_with_eager": {"onnxruntime": agreement(ort_module), "torch.compile": agreement(compiled),
                                     "aoti": agreement(package)},
            "sittings": results}


def _cpu() -> str:
    from profilers.fingerprint import cpu_model_name

    return f"{cpu_model_name()}, {os.cpu_count()} cores"


def render(result: dict) -> str:
    threads = result["settings"]["threads"]
    lines = [
        "# EfficientNet-Lite0 on this CPU: onnxruntime, eager, torch.compile, AOTInductor",
        "",
        f"`python -m benchmarks.compiled_runtimes --threads {threads}`. Machine: {result['cpu']}, shared with other "
        "jobs and loaded while this ran (the profiler's own check said so in every sitting marked busy): absolute "
        f"times are inflated several-fold; read the ratios. torch {result['torch_version']}, onnxruntime "
        f"{result['onnxruntime_version']}; batch 1, 224 px, {threads} thread(s), FP32. All four forms interleaved in "
        "the same shuffled rounds; ratios are medians of per-round ratios.",
        "",
        "| sitting | rounds | " + " | ".join(f"{f} (ms)" for f in FORMS)
        + " | torch.compile / onnxruntime | aoti / onnxruntime | aoti / torch.compile | eager / onnxruntime | machine busy? |",
        "|---|---|" + "---|" * (len(FORMS) + 5),
    ]
    for s in result["sittings"]:
        m, r = s["median_ms"], s["paired_ratios"]
        lines.append(f"| {s['sitting']} | {s['rounds']} | " + " | ".join(f"{m[f]:.2f}" for f in FORMS)
                     + f" | {r['torch.compile/onnxruntime']:.2f} | {r['aoti/onnxruntime']:.2f} | "
                     f"{r['aoti/torch.compile']:.2f} | {r['eager/onnxruntime']:.2f} | {'yes' if s['busy_warning'] else 'no'} |")
    agree = result["agreement_with_eager"]
    lines += [
        "",
        f"Cold compile on this machine (loaded): torch.compile {result['compile_s']['torch.compile']:.0f} s (first call), "
        f"AOTInductor package {result['compile_s']['aoti']:.0f} s ({result['aoti_package_bytes'] / 1e6:.1f} MB; its "
        "kernels may reuse some of torch.compile's, compiled just before in the same cache).",
        "Against eager PyTorch on 8 random images (max |logit error|, top-1 agreement): "
        + "; ".join(f"{name} {a['max_abs_error']:.1e}, {100 * a['top1_agreement']:.0f}%" for name, a in agree.items()) + ".",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sittings", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="1: the profiler's advice on a busy machine")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--replot", action="store_true")
    args = parser.parse_args()
    if args.replot:
        write_text_atomic(args.out / "compiled_runtimes.md",
                          render(json.loads((args.out / "compiled_runtimes.json").read_text())))
        return
    write_result(args.out, "compiled_runtimes", run(args.sittings, args.threads), render, indent=1)


if __name__ == "__main__":
    main()
