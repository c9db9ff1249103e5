"""AOTInductor packages: the network compiled ahead of time to a `.pt2` of native code, loaded without
Python model code (`torch._inductor.aoti_load_package`), for the CPU or a CUDA GPU.

Compiling needs a C++ compiler on the machine (and, for CUDA, the GPU it is compiled for). Compiling
takes tens of seconds even for a small network, so packages of the same program (graph, weights, input
shape, device, torch version) are kept under `$PRACTISE_HOME/aoti`: the original network compiled the
same way, to be timed beside the artefact, is compiled once per machine.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from pipeline.core import paths
from pipeline.core.errors import UsageError

DEVICES = {"cpu": "cpu", "gpu": "cuda"}  # target -> torch device a package is compiled for


def require_compiler() -> str:
    """The C++ compiler AOTInductor will call, or a one-line error saying how to get one."""
    compiler = os.environ.get("CXX") or "g++"
    if shutil.which(compiler) is None:
        raise UsageError(f"--format aoti compiles C++ and needs a C++ compiler, but '{compiler}' is not on PATH; "
                         "install one (Debian/Ubuntu: apt-get install g++) or set CXX.")
    return compiler


def device_for(target: str) -> torch.device:
    if target not in DEVICES:
        raise UsageError(f"AOTInductor packages are built for targets {', '.join(DEVICES)}, not '{target}'.")
    if target == "gpu":
        from pipeline.core.devices import require_cuda

        return require_cuda("an AOTInductor package for --target gpu")
    return torch.device("cpu")


def _exported(module: nn.Module, example: torch.Tensor, device: torch.device) -> torch.export.ExportedProgram:
    import copy

    on_device = copy.deepcopy(module).eval().to(device)  # the caller's network stays where it is
    return torch.export.export(on_device, (example.to(device),))


def _program_key(program: torch.export.ExportedProgram, device: torch.device) -> str:
    """Identity of what a package computes and where: the serialized program (graph and weights)."""
    buffer = io.BytesIO()
    torch.export.save(program, buffer)
    digest = hashlib.sha256(buffer.getvalue())
    digest.update(f"{device.type}|{torch.__version__}".encode())
    return digest.hexdigest()[:24]


def _build(module: nn.Module, example: torch.Tensor, target: str) -> tuple[Path, dict]:
    """The cached package of `module` for `target` (compiled now when not cached) and how it was built."""
    require_compiler()
    device = device_for(target)
    program = _exported(module, example, device)
    cached = paths.home() / "aoti" / f"{_program_key(program, device)}.pt2"
    start = time.monotonic()
    from_cache = cached.exists()
    if not from_cache:
        cached.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=cached.parent) as work:
            built = torch._inductor.aoti_compile_and_package(program, package_path=str(Path(work) / "package.pt2"))
            os.replace(built, cached)  # atomic: a concurrent or killed compile never leaves half a package
    return cached, {"device": device.type, "compile_s": round(time.monotonic() - start, 2), "from_cache": from_cache}


def compile_package(module: nn.Module, example: torch.Tensor, path: Path, target: str = "cpu") -> dict:
    """Export `module` with torch.export and compile it into the AOTInductor package `path` for `target`;
    returns how it was built (device, compile seconds, whether the package came from the cache)."""
    cached, info = _build(module, example, target)
    shutil.copyfile(cached, path)
    return info


class AotiModule(nn.Module):
    """A loaded package behind the nn.Module call the torch profilers time; it has no parameters to move,
    and copying it shares the loaded native code (it is stateless at inference)."""

    def __init__(self, runner):
        super().__init__()
        self.runner = runner

    def forward(self, images: torch.Tensor) -> torch.Tensor:  # (B, 3, R, R) -> (B, classes)
        return self.runner(images)

    def __deepcopy__(self, memo) -> "AotiModule":
        return self


def load_package(path: Path) -> AotiModule:
    """The package at `path`, ready to run on the device it was compiled for."""
    try:
        return AotiModule(torch._inductor.aoti_load_package(str(path)))
    except RuntimeError as exc:
        if "cuda" in str(exc).lower() and not torch.cuda.is_available():
            raise UsageError(f"{path} was compiled for a CUDA GPU and this machine has none; time it on the GPU "
                             "it was built for.") from exc
        raise


def compiled_like(module: nn.Module, example: torch.Tensor, target: str = "cpu") -> AotiModule:
    """`module` compiled the way an artefact is (the original, to time it beside the package)."""
    return load_package(_build(module, example, target)[0])
