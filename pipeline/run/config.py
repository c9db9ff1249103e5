"""The settings of one `pipeline run`, what a resume must match, and how they become profiler settings."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from pipeline.core.errors import UsageError
from pipeline.run.presets import Preset
from profilers import ProfileSettings


@dataclass
class RunConfig:
    model: str = "efficientnet_lite0"
    weights: str | None = None
    data: str | None = None  # None: the embedded default tiny set
    val_data: str | None = None  # labelled or not; never trained on
    target: str = "cpu"
    backend: str | None = None
    reference_backend: str | None = None  # --backend auto: the runtime whose FP32 original budgets are relative to
    budget: str = "0.78"
    out: str | None = None
    preset: str = "fast"
    selector: str = "greedy"
    recovery_method: str | None = None
    scoring_steps: int | None = None
    recovery_steps: int | None = None
    recovery_point_weight: float | None = None
    recovery_mixing: str | None = None
    recovery_synthetic: int | None = None  # BatchNorm-matched images mixed into recovery batches
    recovery_blends: str | None = None  # "0.5", "0.25,0.5" or "none": blends offered for deployment
    recovery_views: str | None = None  # "random" or "confident": which tiny-set views recovery mimics on
    recovery_time: float | None = None  # seconds the recipes share (None: the preset's)
    recovery_quantization_aware: str = "on"  # "on": INT8 networks that may ship also get a fake-quantized recovery
    depth_plans: str = "auto"  # DEPTH_PLANS; "auto": none when a precision alone meets the budget losslessly
    batch_size: int | None = None
    latency_table: str | None = None
    threads: int = 0
    profile_batch: int = 1
    precision: str = "auto"  # auto: plans in every precision the backend deploys; else that precision only
    cuda_graphs: bool = False
    profile_time_cap: float | None = None  # seconds per latency measurement (default: the preset's)
    resolution: int | None = None
    min_resolution: int | None = None  # plans may feed the network smaller inputs, down to this size (off: None)
    seed: int = 0
    allow_random_weights: bool = False
    reprofile: bool = False
    overwrite: bool = False
    export: tuple[str, ...] = ("onnx",)
    dynamic_batch: bool = False
    max_batch: int = 32
    tensorrt_precision: str = "fp16"
    max_budget_attempts: int = 3
    latency_margin: float | None = None  # how far under the budget a plan must measure (None: the measurement's precision)
    train_device: str = "auto"  # where scoring and recovery train: auto (the GPU for --target gpu), cpu, cuda
    mean: str | None = None  # preprocessing overrides (None: the model's own): "0.5" or "0.485,0.456,0.406"
    std: str | None = None
    crop_fraction: float | None = None
    interpolation: str | None = None

    def identity(self) -> dict:
        """The settings that define the run (what a resume must match)."""
        data = asdict(self)
        for key in ("out", "overwrite", "reprofile"):
            data.pop(key)
        data["export"] = list(self.export)
        defaults = {f.name: f.default for f in fields(self)}
        for key in _ADDED_LATER:  # at their defaults they leave older run folders' hashes alone
            if data[key] == defaults[key]:
                data.pop(key)
        return data


# settings added after run folders were first written (issues 3, 4, 7, 15 and later); each one's default is its
# field's. precision: a folder written when fp32 was the default (no precision key) reopens under today's default,
# auto; its finished stages stand, and an unfinished selection is planned in every precision
_ADDED_LATER = ("precision", "cuda_graphs", "profile_time_cap", "dynamic_batch", "max_batch", "tensorrt_precision",
                "recovery_point_weight", "recovery_mixing", "train_device", "recovery_synthetic", "recovery_blends",
                "recovery_views", "recovery_time", "recovery_quantization_aware", "mean", "std", "crop_fraction",
                "interpolation", "depth_plans", "reference_backend", "min_resolution", "latency_margin")


def parse_blends(text: str | None) -> tuple[float, ...] | None:
    """--recovery-blends: None (the preset's), "none" (no blend), or comma-separated weights in (0, 1)."""
    if text is None:
        return None
    if text.strip().lower() == "none":
        return ()
    try:
        weights = tuple(sorted({float(part) for part in text.split(",") if part.strip()}))
    except ValueError:
        weights = ()
    if not weights or any(not 0 < w < 1 for w in weights):
        raise UsageError(f"--recovery-blends '{text}' is not understood: give weights strictly between 0 and 1 "
                         "separated by commas (e.g. 0.5 or 0.25,0.5,0.75), or 'none'.")
    return weights


def profile_settings(config: RunConfig, preset: Preset, resolution: int | None = None,
                     channels: int = 3) -> ProfileSettings:
    settings = replace(preset.profile, batch=config.profile_batch, threads=config.threads, channels=channels,
                       precision=base_precision(config.precision, config.target, config.backend,
                                                 config.reference_backend), cuda_graphs=config.cuda_graphs, **({"resolution": resolution} if resolution else {}))
    return replace(settings, time_cap_s=config.profile_time_cap) if config.profile_time_cap else settings


def default_out(config: RunConfig, identity_hash: str) -> Path:
    name = config.model.replace(":", "_").replace("/", "_").replace(".", "_")[-40:]
    return Path("runs") / f"{name}-{config.target}-{config.budget}-{identity_hash[:8]}"


# --reference-backend NAME: the FP32 precision of that runtime, which --backend auto's budgets are relative to
REFERENCE_BACKENDS = {"onnxruntime": "fp32", "openvino": "openvino-fp32"}
DEPTH_PLANS = ("auto", "always")  # --depth-plans: build depth plans only when a precision does not settle it, or always


def base_precision(precision: str, target: str = "cpu", backend: str | None = None,
                   reference_backend: str | None = None) -> str:
    """The precision of the run's own latency table: under --precision auto the backend's reference, its runtime's
    FP32 (for --backend auto, onnxruntime's unless --reference-backend names another); other precisions are
    planned against it."""
    from profilers import backend_class, reference_precision

    if reference_backend is not None:
        if backend_class(target, backend).name != "auto":
            raise UsageError(f"--reference-backend applies to --backend auto (which plans across runtimes), not to "
                             f"--backend {backend}; drop it, or use --backend auto.")
        if reference_backend not in REFERENCE_BACKENDS:
            raise UsageError(f"--reference-backend '{reference_backend}' is not a CPU runtime; choose one of: "
                             f"{', '.join(REFERENCE_BACKENDS)}.")
    if precision != "auto":
        return precision
    if reference_backend is not None:
        return REFERENCE_BACKENDS[reference_backend]
    return reference_precision(target, backend)
