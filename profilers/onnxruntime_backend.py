"""CPU latency through onnxruntime: each variant is exported to ONNX and run in its own session.

Besides FP32 it measures every static INT8 scheme onnxruntime offers (exporters.onnx_int8.INT8_SCHEMES):
a network variant is exported once, then quantized in the profiler's precision. Calibration images are
random for timing: the scheme fixes the graph and so the latency, calibration only sets the scales.
Exported files are kept for the profiler's life, so a sibling profiler in another precision
(`at_precision`) quantizes the same exports instead of exporting again. A variant that is its base network
minus blocks (pipeline.network.surgery.drop_blocks records it) is not exported at all: its file is the base's
file with those blocks' nodes deleted (exporters.onnx_drop), timed only once it matched the PyTorch variant.
"""

from __future__ import annotations

import contextlib
import hashlib
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from pipeline.core.errors import UsageError
from profilers.base import Profiler, Variant
from profilers.fingerprint import DeviceFingerprint, cpu_model_name


def _precisions() -> tuple[str, ...]:
    from exporters.onnx_int8 import INT8_SCHEMES

    return ("fp32", *INT8_SCHEMES)


TIMING_CALIBRATION_IMAGES = 4


class OnnxRuntimeCpuProfiler(Profiler):
    name = "onnxruntime"
    target = "cpu"
    precisions = _precisions()
    auto_precisions = precisions  # --precision auto plans with FP32 and every INT8 scheme, each measured here
    runs_files = True  # each file is fed its own static input shape (_input_for)

    def activate(self) -> None:
        import onnxruntime  # noqa: F401  (fail here, clearly, if missing)

        self._tmp = tempfile.TemporaryDirectory(prefix="practise-ort-")
        self._sessions: list[Any] = []  # sessions, and the inputs that must live as long
        self._exports: dict[str, Path] = {}  # network digest -> its FP32 ONNX file

    def deactivate(self) -> None:
        self._sessions = []
        self._tmp.cleanup()

    def fingerprint(self) -> DeviceFingerprint:
        import platform

        import onnxruntime

        s = self.settings
        return DeviceFingerprint(
            device_name=cpu_model_name(), device_kind="cpu", compute_capability="", driver="",
            backend="onnxruntime-cpu", backend_version=onnxruntime.__version__, precision=s.precision,
            batch=s.batch, resolution=s.resolution, threads=s.resolved_threads(),
            torch_version=torch.__version__.split("+")[0], machine=platform.machine(),
        )

    def session(self, path: Path):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = self.settings.resolved_threads()
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def _load(self, name: str, variant: Variant) -> Callable[[], object]:
        s = self.settings
        if s.precision not in self.precisions:
            raise UsageError(f"onnxruntime CPU profiling supports {', '.join(self.precisions)}, not {s.precision}.")
        example = torch.randn(s.input_shape())
        path = variant if isinstance(variant, Path) else self._file_for(variant, example)
        session = self.session(path)
        self._sessions.append(session)
        feed = {session.get_inputs()[0].name: _input_for(session.get_inputs()[0].shape, example)}
        return lambda: session.run(None, feed)

    def prepared(self, variant: Variant) -> Variant:
        if isinstance(variant, Path):
            return variant
        s = self.settings
        return self._file_for(variant, torch.randn(s.input_shape()))

    def _file_for(self, module: torch.nn.Module, example: torch.Tensor) -> Path:
        """The module's ONNX file in the profiler's precision (a file given as a variant runs as it is)."""
        from exporters.onnx_int8 import get_scheme, quantize_onnx

        fp32 = self._fp32_file(module, example)
        if self.settings.precision == "fp32":
            return fp32
        target = fp32.with_name(f"{fp32.stem}.{self.settings.precision}.onnx")
        if not target.exists():
            calibration = torch.randn(TIMING_CALIBRATION_IMAGES, *example.shape[1:])
            quantize_onnx(fp32, target, calibration, get_scheme(self.settings.precision))
        return target

    def _edited_from_base(self, module: torch.nn.Module, example: torch.Tensor, path: Path) -> bool:
        """Write the FP32 file of a variant that is its base network minus blocks by dropping them from the base's
        export (exported once per activation) instead of exporting the variant. Only when the edited file computes
        what the variant computes on a fixed random input; False otherwise, said in the log, for a normal export."""
        import onnx

        from exporters.onnx_check import compare_outputs
        from exporters.onnx_drop import BlockRegionError, drop_blocks_onnx, drop_origin, same_weights_as_base
        from pipeline.core.atomic import atomic_path

        origin = drop_origin(module)
        if origin is None or origin.base is None:  # not a variant made by dropping blocks, or its base is gone
            return False
        dropped = ", ".join(origin.blocks) or "no block"
        with _one_torch_thread():
            same = same_weights_as_base(module, origin)
        if not same:
            self.log(f"onnxruntime: the variant without {dropped} no longer holds its base network's weights; "
                     "exported it the normal way")
            return False
        base_file = self._fp32_file(origin.base, example)
        try:
            edited = drop_blocks_onnx(onnx.load(str(base_file)), origin.blocks)
        except BlockRegionError as exc:
            self.log(f"onnxruntime: could not drop {dropped} from the original's ONNX file ({exc}); exported the "
                     "variant the normal way")
            return False
        with atomic_path(path) as tmp:
            onnx.save(edited, str(tmp))
        images = torch.randn(example.shape, generator=torch.Generator().manual_seed(0))
        with _one_torch_thread(), torch.no_grad():
            reference = module.eval()(images)
        try:
            check = compare_outputs(_run_once(path, images), reference)
            problem = "" if check["passed"] else f"max error {check['max_abs_error']:.3g}"
        except Exception as exc:  # onnxruntime raises its own classes; any of them means the file is not usable
            problem = f"onnxruntime cannot run it: {(str(exc).splitlines() or [''])[0][:200]}"
        if problem:
            path.unlink()
            self.log(f"onnxruntime: the ONNX file edited to drop {dropped} disagrees with the PyTorch variant "
                     f"({problem}); exported the variant the normal way")
            return False
        return True

    def _fp32_file(self, module: torch.nn.Module, example: torch.Tensor) -> Path:
        """The module's FP32 ONNX file, made once per activation: edited from its base network's file when it is
        that network minus blocks, else exported."""
        from exporters.onnx_file import export_onnx

        digest = _network_digest(module, example)
        if digest not in self._exports:
            path = Path(self._tmp.name) / f"{digest}.onnx"
            if not self._edited_from_base(module, example, path):
                export_onnx(module, example, path)
            self._exports[digest] = path
        return self._exports[digest]


def _input_for(shape, example: torch.Tensor) -> np.ndarray:
    """A random input of the file's own shape (a file made at another input size, e.g. a smaller resolution timed
    beside the original), its free axes (a dynamic batch) taken from the profiler's settings."""
    if shape and len(shape) == example.dim():
        dims = [d if isinstance(d, int) and d > 0 else example.shape[i] for i, d in enumerate(shape)]
        if tuple(dims) != tuple(example.shape):
            return torch.randn(*dims).numpy()
    return example.numpy().astype(np.float32)


def _run_once(path: Path, images: torch.Tensor) -> np.ndarray:
    """The file's output on `images` (its whole static batch at once), on one onnxruntime thread."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: images.numpy()})[0]


@contextlib.contextmanager
def _one_torch_thread():
    """Small PyTorch work (one image, comparing weights) on one thread: on a busy machine two threads took 0.15 to
    3 s for one EfficientNet-Lite0 image at 224 px (waiting for each other), one thread 0.05 s."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _network_digest(module: torch.nn.Module, example: torch.Tensor) -> str:
    """Identifies a network (architecture and weights) and its input shape, for reusing its export."""
    digest = hashlib.sha256(repr(module).encode() + repr(tuple(example.shape)).encode())
    for key, tensor in module.state_dict().items():
        digest.update(key.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


CUDA_PROVIDER = "CUDAExecutionProvider"


def require_cuda_provider() -> str:
    """onnxruntime's version when its CUDA execution provider is available, else a one-line error saying how
    to get it (the usual case: the CPU-only `onnxruntime` package is installed)."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    if CUDA_PROVIDER not in available:
        raise UsageError(
            f"--target gpu --backend onnxruntime needs onnxruntime's {CUDA_PROVIDER}, but the installed onnxruntime "
            f"{ort.__version__} offers only {', '.join(available)}; install the GPU package instead of the CPU one "
            "(pip uninstall -y onnxruntime onnxruntime-gpu && pip install 'onnxruntime-gpu>=1.21,<2'; README: "
            "onnxruntime on a GPU), "
            "or use --backend torch."
        )
    return ort.__version__


class OnnxRuntimeCudaProfiler(OnnxRuntimeCpuProfiler):
    runs_files = False  # its input is bound on the GPU at the settings' shape
    """onnxruntime's CUDA execution provider: each variant exported to ONNX in FP32 or FP16 (an FP16 graph
    behind FP32 inputs and outputs) and run with its input and output bound on the GPU (no host copies
    in the timed run; onnxruntime synchronises its CUDA stream before `run` returns)."""

    name = "onnxruntime-cuda"
    target = "gpu"
    precisions = ("fp32", "fp16")
    auto_precisions = precisions

    def activate(self) -> None:
        require_cuda_provider()
        from pipeline.core.devices import require_cuda

        self._device = require_cuda("--target gpu --backend onnxruntime")
        super().activate()

    def fingerprint(self) -> DeviceFingerprint:
        import onnxruntime

        from pipeline.core.devices import gpu_identity

        s = self.settings
        return DeviceFingerprint(
            **gpu_identity(), backend="onnxruntime-cuda", backend_version=onnxruntime.__version__,
            precision=s.precision, batch=s.batch, resolution=s.resolution, threads=s.resolved_threads(),
        )

    def session(self, path: Path):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        session = ort.InferenceSession(str(path), options,
                                       providers=[(CUDA_PROVIDER, {"device_id": self._device.index or 0})])
        if session.get_providers()[0] != CUDA_PROVIDER:  # never time a CPU fallback as the GPU
            raise UsageError(f"onnxruntime did not place {path.name} on {CUDA_PROVIDER} (providers: "
                             f"{', '.join(session.get_providers())}); check the CUDA and cuDNN libraries "
                             "onnxruntime-gpu needs.")
        return session

    def _load(self, name: str, variant: Variant) -> Callable[[], object]:
        import onnxruntime as ort

        s = self.settings
        example = torch.randn(s.input_shape())
        path = variant if isinstance(variant, Path) else self._file_for(variant, example)
        session = self.session(path)
        self._sessions.append(session)
        index = self._device.index or 0
        images = ort.OrtValue.ortvalue_from_numpy(example.numpy().astype(np.float32), "cuda", index)
        binding = session.io_binding()
        binding.bind_ortvalue_input(session.get_inputs()[0].name, images)
        binding.bind_output(session.get_outputs()[0].name, "cuda", index)
        self._sessions.append(images)  # keeps the GPU input alive as long as the session
        return lambda: session.run_with_iobinding(binding)

    def _file_for(self, module: torch.nn.Module, example: torch.Tensor) -> Path:
        """The module's ONNX file in the profiler's precision (FP16: half-precision weights and arithmetic)."""
        from exporters.onnx_file import export_onnx

        precision = self.settings.precision
        digest = _network_digest(module, example)
        path = Path(self._tmp.name) / f"{digest}.{precision}.onnx"
        if not path.exists():
            export_onnx(module, example, path, precision=precision)
        return path
