"""TensorRT engines: built from ONNX, described by a JSON sidecar, run on torch's CUDA tensors and streams.

Precision lives in the ONNX graph and the network is strongly typed: FP32 from the FP32 ONNX, FP16
from an ONNX whose weights and arithmetic are half precision (exporters.onnx_file, precision="fp16"),
INT8 from the quantize/dequantize ONNX. TensorRT 11 requires this (its FP16/INT8 builder flags are
gone) and TensorRT 10 supports it with the STRONGLY_TYPED flag, so one build path serves both.

The `.engine` file is TensorRT's own serialisation, with no header of ours; what it was built for
(TensorRT version, GPU, precision, shapes, source ONNX hash) sits beside it in `<engine>.json`, and an
engine is refused on any other TensorRT version or GPU before TensorRT is asked to load it.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from exporters.onnx_check import sha256_of
from pipeline.core.atomic import write_bytes_atomic, write_json_atomic
from pipeline.core.devices import gpu_identity, require_cuda
from pipeline.core.errors import RunFailure, UsageError
from pipeline.core.locks import exclusive_lock

if TYPE_CHECKING:  # annotations only: the module must import without TensorRT
    import tensorrt as trt

INSTALL_HINT = ("TensorRT is not installed: pip install '.[tensorrt]' on a machine with an NVIDIA GPU and "
                "TensorRT's libraries (or use --backend torch / --format onnx).")
PRECISIONS = ("fp32", "fp16", "int8")
WORKSPACE_BYTES = 4 << 30


def require_tensorrt() -> str:
    """TensorRT's version, or a UsageError saying how to install it.

    Type stubs alone (tensorrt-stubs) make `import tensorrt` succeed as an empty namespace package,
    so the check is for the real bindings, not for the import. Callers then `import tensorrt as trt`
    inside the function, which keeps this module importable and lets mypy check every call.
    """
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise UsageError(INSTALL_HINT) from exc
    if not hasattr(trt, "Builder"):
        raise UsageError(INSTALL_HINT + " Only its type stubs are present.")
    return trt.__version__


def tensorrt_available() -> bool:
    try:
        require_tensorrt()
    except UsageError:
        return False
    return True


@dataclass(frozen=True)
class EngineShapes:
    """Batch sizes an engine accepts: fixed when min == max, else one optimization profile."""

    resolution: int
    opt_batch: int = 1
    min_batch: int = 1
    max_batch: int = 1
    channels: int = 3  # input channels: 1 for grayscale networks

    def __post_init__(self):
        if not 1 <= self.min_batch <= self.opt_batch <= self.max_batch:
            raise UsageError(f"engine batch sizes must satisfy 1 <= min <= opt <= max, got "
                             f"{self.min_batch}/{self.opt_batch}/{self.max_batch}.")

    @property
    def dynamic(self) -> bool:
        return self.min_batch != self.max_batch

    def shape(self, batch: int) -> tuple[int, int, int, int]:
        return (batch, self.channels, self.resolution, self.resolution)


@dataclass
class EngineSidecar:
    """What an engine was built for; written as `<engine>.json` beside it."""

    tensorrt_version: str
    device_name: str
    compute_capability: str
    precision: str
    input_name: str
    output_name: str
    min_shape: list[int]
    opt_shape: list[int]
    max_shape: list[int]
    onnx_sha256: str
    timing_cache: str | None

    @staticmethod
    def path_for(engine: Path) -> Path:
        return engine.with_name(engine.name + ".json")

    def write(self, engine: Path) -> Path:
        path = self.path_for(engine)
        write_json_atomic(path, asdict(self))
        return path

    @classmethod
    def read(cls, engine: Path) -> "EngineSidecar":
        path = cls.path_for(engine)
        if not path.exists():
            raise UsageError(f"engine {engine} has no sidecar {path.name}; rebuild it with 'pipeline export --format tensorrt'.")
        try:
            return cls(**json.loads(path.read_text()))
        except (TypeError, ValueError) as exc:
            raise UsageError(f"{path} is not an engine sidecar ({exc}); rebuild the engine.") from exc

    def refuse_if_foreign(self, engine: Path, tensorrt_version: str) -> None:
        """Engines only load on the TensorRT version and GPU model that built them."""
        here = gpu_identity()
        differences = [f"{what}: built for {built!r}, this machine has {current!r}" for what, built, current in (
            ("TensorRT", self.tensorrt_version, tensorrt_version),
            ("GPU", self.device_name, here["device_name"]),
            ("compute capability", self.compute_capability, here["compute_capability"]),
        ) if built != current]
        if differences:
            raise UsageError(f"engine {engine} cannot run here ({'; '.join(differences)}). Rebuild it on this "
                             "machine from its ONNX with 'pipeline export RUN_DIR --format tensorrt'.")


def _logger() -> "trt.Logger":
    import tensorrt as trt

    return trt.Logger(trt.Logger.WARNING)


def timing_cache_path(cache_dir: Path, tensorrt_version: str) -> Path:
    """One timing cache per GPU model and TensorRT version, shared by every build on it."""
    gpu = gpu_identity()
    name = f"{gpu['device_name']}-sm{gpu['compute_capability']}-trt{tensorrt_version}".replace(" ", "_").replace("/", "_")
    return cache_dir / f"{name}.timing-cache"


def _parse_onnx(onnx_path: Path, logger: "trt.Logger") -> tuple["trt.Builder", "trt.INetworkDefinition", "trt.OnnxParser"]:
    import tensorrt as trt

    builder = trt.Builder(logger)
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)  # required on 10.x, implied on 11.x
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RunFailure(f"TensorRT cannot parse {onnx_path.name}: {errors[:500]}")
    return builder, network, parser


def build_engine(onnx_path: Path, engine_path: Path, precision: str, shapes: EngineShapes,
                 cache_path: Path | None) -> EngineSidecar:
    """Build a strongly typed engine from `onnx_path`, reusing and extending the timing cache."""
    version = require_tensorrt()
    import tensorrt as trt

    require_cuda("building a TensorRT engine")
    if precision not in PRECISIONS:
        raise UsageError(f"TensorRT precision must be one of {', '.join(PRECISIONS)}, not {precision}.")
    logger = _logger()
    builder, network, _parser = _parse_onnx(onnx_path, logger)
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
    input_tensor, output_tensor = network.get_input(0), network.get_output(0)
    if shapes.dynamic or input_tensor.shape[0] == -1:
        profile = builder.create_optimization_profile()
        profile.set_shape(input_tensor.name, trt.Dims(list(shapes.shape(shapes.min_batch))),
                          trt.Dims(list(shapes.shape(shapes.opt_batch))),
                          trt.Dims(list(shapes.shape(shapes.max_batch))))
        config.add_optimization_profile(profile)
    with contextlib.ExitStack() as stack:
        if cache_path is not None:
            stack.enter_context(exclusive_lock(cache_path.with_name(cache_path.name + ".lock")))
            cache = config.create_timing_cache(cache_path.read_bytes() if cache_path.exists() else b"")
            config.set_timing_cache(cache, ignore_mismatch=False)
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise RunFailure(f"TensorRT could not build an engine from {onnx_path.name} ({precision}); "
                             "its log above says why.")
        if cache_path is not None:
            write_bytes_atomic(cache_path, bytes(config.get_timing_cache().serialize()))
    write_bytes_atomic(engine_path, bytes(serialized))
    gpu = gpu_identity()
    sidecar = EngineSidecar(
        tensorrt_version=version, device_name=gpu["device_name"],
        compute_capability=gpu["compute_capability"], precision=precision, input_name=input_tensor.name,
        output_name=output_tensor.name, min_shape=list(shapes.shape(shapes.min_batch)),
        opt_shape=list(shapes.shape(shapes.opt_batch)), max_shape=list(shapes.shape(shapes.max_batch)),
        onnx_sha256=sha256_of(onnx_path), timing_cache=str(cache_path) if cache_path else None,
    )
    sidecar.write(engine_path)
    return sidecar


def _torch_dtype(dtype: "trt.DataType") -> torch.dtype:
    import tensorrt as trt

    table = {trt.DataType.FLOAT: torch.float32, trt.DataType.HALF: torch.float16, trt.DataType.INT8: torch.int8,
             trt.DataType.INT32: torch.int32, trt.DataType.INT64: torch.int64, trt.DataType.BOOL: torch.bool}
    if dtype not in table:
        raise RunFailure(f"engine I/O data type {dtype} is not supported by this runner.")
    return table[dtype]


class EngineRunner:
    """Loads an engine (after its sidecar allows it) and runs it on torch CUDA tensors.

    `bind(batch)` fixes the input shape and the I/O buffers once; `enqueue(stream)` then launches one
    inference on a torch stream without host synchronisation, which is what the profiler times.
    """

    def __init__(self, engine_path: Path):
        version = require_tensorrt()
        import tensorrt as trt

        self.device = require_cuda("running a TensorRT engine")
        self.sidecar = EngineSidecar.read(engine_path)
        self.sidecar.refuse_if_foreign(engine_path, version)
        self._runtime = trt.Runtime(_logger())
        engine = self._runtime.deserialize_cuda_engine(engine_path.read_bytes())
        if engine is None:
            raise UsageError(f"TensorRT {version} could not load {engine_path}; rebuild it on this machine.")
        self.engine: trt.ICudaEngine = engine
        self.context: trt.IExecutionContext = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if n not in inputs]
        if len(inputs) != 1 or len(outputs) != 1:
            raise UsageError(f"engine {engine_path} has {len(inputs)} inputs and {len(outputs)} outputs; one of each is supported.")
        self.input_name, self.output_name = inputs[0], outputs[0]
        self._input: torch.Tensor | None = None
        self._output: torch.Tensor | None = None

    def bind(self, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Allocate the input and output of a `batch`-image inference and point the engine at them."""
        low, high = self.sidecar.min_shape[0], self.sidecar.max_shape[0]
        if not low <= batch <= high:
            raise UsageError(f"the engine accepts batches of {low} to {high} images, not {batch}.")
        shape = (batch, *self.sidecar.opt_shape[1:])
        in_dtype = _torch_dtype(self.engine.get_tensor_dtype(self.input_name))
        self._input = torch.zeros(shape, dtype=in_dtype, device=self.device)
        self.context.set_input_shape(self.input_name, shape)
        dims = self.context.get_tensor_shape(self.output_name)
        out_shape = tuple(dims[i] for i in range(len(dims)))
        out_dtype = _torch_dtype(self.engine.get_tensor_dtype(self.output_name))
        self._output = torch.empty(out_shape, dtype=out_dtype, device=self.device)
        self.context.set_tensor_address(self.input_name, self._input.data_ptr())
        self.context.set_tensor_address(self.output_name, self._output.data_ptr())
        return self._input, self._output

    def enqueue(self, stream: torch.cuda.Stream) -> None:
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise RunFailure("TensorRT failed to enqueue an inference.")

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """Logits of `images` (N, C, R, R) as a CPU float32 tensor."""
        stream = torch.cuda.Stream(self.device)
        inputs, outputs = self.bind(len(images))
        with torch.cuda.stream(stream):
            inputs.copy_(images.to(self.device, non_blocking=True))
            self.enqueue(stream)
        stream.synchronize()
        return outputs.float().cpu()
