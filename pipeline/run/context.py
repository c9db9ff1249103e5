"""Everything a run's stages share, validated and built once before any long work."""

from __future__ import annotations

import contextlib
import hashlib
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from pipeline.core.distributed import SINGLE, World
from pipeline.core.errors import UsageError
from pipeline.core.progress import Log, ProgressFactory, quiet_log, silent
from pipeline.data.tiny_set import (
    Preprocessing,
    TinySet,
    check_labels_fit,
    load_image_folder,
    split_holdout,
)
from pipeline.latency.budget import Budget
from pipeline.latency.selection import SELECTORS
from pipeline.models import LoadedModel, load_model
from pipeline.models.preprocessing import preprocessing_record, with_preprocessing
from pipeline.network.blocks import NetworkStructure, analyse
from pipeline.network.compute import resolve_train_device
from pipeline.recovery.synthetic import BatchNormStatistics
from pipeline.run.config import DEPTH_PLANS, RunConfig, default_out, parse_blends, profile_settings
from pipeline.run.presets import Preset, get_preset, with_overrides
from pipeline.run.quantization_aware import check_setting
from pipeline.run.runfolder import FollowerRunFolder, RunFolder, settings_hash
from profilers import default_backend, get_profiler


@dataclass
class RunContext:
    """Everything the stages share, built once per invocation."""

    config: RunConfig
    preset: Preset
    budget: Budget
    loaded: LoadedModel
    structure: NetworkStructure
    prep: Preprocessing
    train: TinySet
    selection: TinySet
    report_set: TinySet
    report_source: str
    folder: RunFolder
    progress: ProgressFactory
    log: Log
    measurable: bool = True  # False when --latency-table names a device that is not present here
    train_device: torch.device = torch.device("cpu")
    timings: dict = field(default_factory=dict)
    world: World = SINGLE  # the torchrun ranks (rank 0 writes the folder), or this process alone


PARTIAL_SCORES = "recoverability.rank*.json"  # what ranks other than 0 write: their own scored blocks


def _data_fingerprint(folder: Path) -> str:
    """Every file's name, size and content: an image edited in place (same size) does not resume stale stages.

    Files are streamed in 1 MiB chunks, so a large tiny set costs one read, not its size in memory.
    """
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode("utf-8", "surrogateescape") + b"\0")
        try:
            with open(path, "rb") as handle:
                digest.update(str(path.stat().st_size).encode() + b"\0")
                for chunk in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(chunk)
        except OSError as exc:  # unreadable files are skipped (and counted) by the loader; their name still counts
            digest.update(type(exc).__name__.encode())
    return digest.hexdigest()[:12]


def _resolve_data(config: RunConfig) -> tuple[Path, Path | None]:
    if config.data is not None:
        return Path(config.data), Path(config.val_data) if config.val_data else None
    from pipeline.data.embedded import embedded_tiny_set

    train, val = embedded_tiny_set()
    return train, Path(config.val_data) if config.val_data else val


def _splits(tiny: TinySet, val: TinySet | None, fraction: float, seed: int) -> tuple[TinySet, TinySet, TinySet, str]:
    """(train, selection, report set, report source). The report set is never used to choose anything."""
    if val is not None:
        train, selection = split_holdout(tiny, fraction, seed)
        return train, selection, val, "validation folder"
    if len(tiny) < 4:
        raise UsageError(f"the tiny set has {len(tiny)} images; at least 4 are needed to train, select and report.")
    train, held = split_holdout(tiny, fraction, seed)
    if len(held) < 2:
        train, held = split_holdout(tiny, 2 / len(tiny), seed)
    selection, report_set = split_holdout(held, 0.5, seed + 1)
    return train, selection, report_set, "held-out part of the tiny set"


def check_profiler(config: RunConfig, preset: Preset, log: Log) -> bool:
    """Fail now on an absent target or backend, unless a given table lets selection go on without it."""
    try:
        with get_profiler(config.target, config.backend, profile_settings(config, preset)):
            return True
    except UsageError as exc:
        if config.latency_table is None:
            raise
        log(f"the target cannot be measured here ({exc}); selecting from {config.latency_table} without measuring")
        return False


def prepare(config: RunConfig, progress: ProgressFactory = silent, log: Log = quiet_log,
            trains: bool = True, world: World = SINGLE) -> RunContext:
    """Validate everything cheap before any long work, then open (or reopen) the run folder.

    `trains=False` (adding exports to a finished run) skips the training device: a run trained on a GPU can
    be exported on a machine without one. Under torchrun only rank 0 opens (owns) and writes the folder; the
    other ranks, prepared after it, follow it.
    """
    budget = Budget.parse(config.budget)
    if config.selector not in SELECTORS:
        raise UsageError(f"unknown selector '{config.selector}'; choose one of: {', '.join(SELECTORS)}.")
    check_setting(config.recovery_quantization_aware)
    if config.depth_plans not in DEPTH_PLANS:
        raise UsageError(f"--depth-plans '{config.depth_plans}' is not understood; choose one of: "
                         f"{', '.join(DEPTH_PLANS)}.")
    preset = with_overrides(get_preset(config.preset), config.scoring_steps, config.recovery_steps,
                            config.recovery_method, config.batch_size, config.recovery_point_weight,
                            config.recovery_mixing, config.recovery_synthetic, parse_blends(config.recovery_blends),
                            config.recovery_views, config.recovery_time)
    if config.backend is None:
        log(default_backend(config.target)[1])
    measurable = check_profiler(config, preset, log)
    train_device = resolve_train_device(config.train_device, config.target) if trains else torch.device("cpu")
    loaded = with_preprocessing(load_model(config.model, config.weights, config.resolution), config.mean, config.std,
                                config.crop_fraction, config.interpolation)
    prep = Preprocessing.of(loaded)
    if config.min_resolution is not None:
        from pipeline.latency.resolution import resolution_steps

        resolution_steps(loaded.resolution, config.min_resolution)  # refuses a size that is not smaller, now
        from profilers import backend_class

        if not backend_class(config.target, config.backend).runs_files:
            raise UsageError("--min-resolution needs a backend that times files at their own input size (onnxruntime, "
                             f"openvino or auto on the CPU), not the {config.backend or default_backend(config.target)[0]} "
                             f"backend on {config.target}; drop one of the two.")
    if not loaded.has_trained_weights and not config.allow_random_weights:
        raise UsageError(
            f"model '{config.model}' has no trained weights here (nothing is downloaded). Pass --weights FILE with "
            "a state_dict, or --allow-random-weights to compress random weights (for testing only)."
        )
    if preset.recovery.synthetic.images:
        BatchNormStatistics(loaded.module).close()  # refuses a network without BatchNorm now, not after scoring
    data_dir, val_dir = _resolve_data(config)
    tiny = load_image_folder(data_dir, prep.decode_resolution)
    val = load_image_folder(val_dir, prep.decode_resolution) if val_dir is not None else None
    if val is not None and val_dir is not None:
        check_labels_fit(val, loaded.module, loaded.resolution, val_dir)
    identity = config.identity() | {
        "data_fingerprint": _data_fingerprint(data_dir),
        "val_fingerprint": _data_fingerprint(val_dir) if val_dir else None,
        "resolved_resolution": loaded.resolution,
        "weights_source": loaded.weights_source,
    }
    out = Path(config.out) if config.out else default_out(config, settings_hash(identity))
    folder = (RunFolder.open(out, identity, overwrite=config.overwrite, log=log) if world.is_main
              else FollowerRunFolder(out, PARTIAL_SCORES))
    structure = analyse(loaded.module, loaded.resolution)
    if not structure.candidates:
        raise UsageError(f"model '{config.model}' has no droppable block (no residual block keeps its shape).")
    train, selection, report_set, report_source = _splits(tiny, val, preset.holdout_fraction, config.seed)
    ctx = RunContext(config, preset, budget, loaded, structure, prep, train, selection, report_set, report_source,
                     folder, progress, log, measurable=measurable, train_device=train_device, world=world)
    if not world.is_main:
        return ctx
    folder.write_json("data.json", {
        "train_folder": str(data_dir), "validation_folder": str(val_dir) if val_dir else None,
        "tiny_set": tiny.summary(), "validation": val.summary() if val else None,
        "preprocessing": preprocessing_record(loaded),
        "split": {"train": len(train), "selection": len(selection), "report": len(report_set),
                  "report_source": report_source},
    })
    folder.write_json("candidates.json", {
        "model": loaded.spec, "resolution": loaded.resolution, "macs_total": structure.macs_total,
        "feature_point": asdict(structure.feature_point),
        "candidates": [c.to_dict() for c in structure.candidates],
    })
    return ctx


@contextlib.contextmanager
def timed(ctx: RunContext, stage: str, adding: bool = False):
    """Record the stage's wall time in ctx.timings (only when it finishes; `adding`: to what it already took)."""
    start = time.monotonic()
    yield
    ctx.timings[stage] = round(time.monotonic() - start + (ctx.timings.get(stage, 0.0) if adding else 0.0), 2)


def save_timings(ctx: RunContext) -> None:
    ctx.folder.write_json("timings.json", ctx.timings)

