"""`pipeline run`: profile, score, select under the budget, recover, evaluate, export, report.

Each stage writes its result into the run folder before the next starts; a rerun of the same command
skips finished stages (and, inside scoring and recovery, finished blocks and steps).
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

from pipeline import paths
from pipeline.blocks import NetworkStructure, analyse
from pipeline.budget import Budget
from pipeline.compute import on_device, resolve_train_device
from pipeline.data import (
    Preprocessing,
    TinySet,
    augmented_views,
    eval_tensors,
    load_image_folder,
    split_holdout,
)
from pipeline.errors import UsageError
from pipeline.evaluation import compare, paired_change, predict_logits
from pipeline.measured_selection import select_by_measurement
from pipeline.models import LoadedModel, load_model
from pipeline.presets import Preset, get_preset, with_overrides
from pipeline.profiling import measure_end_to_end, obtain_table
from pipeline.progress import Log, ProgressFactory, quiet_log, silent
from pipeline.recoverability import score_recoverability
from pipeline.recovery import blended_state, prediction_kl, recover
from pipeline.report import write_report
from pipeline.runfolder import RunFolder, settings_hash
from pipeline.selection import (
    SELECTORS,
    best_reachable_ratio,
    score_blocks,
    select_blocks,
    smallest_budget_text,
)
from pipeline.surgery import drop_blocks
from pipeline.synthetic import BatchNormStatistics
from profilers import (
    LatencyTable,
    ProfileSettings,
    TableStore,
    default_backend,
    get_profiler,
)


@dataclass
class RunConfig:
    model: str = "efficientnet_lite0"
    weights: str | None = None
    data: str | None = None  # None: the embedded default tiny set
    val_data: str | None = None  # labelled or not; never trained on
    target: str = "cpu"
    backend: str | None = None
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
    batch_size: int | None = None
    latency_table: str | None = None
    threads: int = 0
    profile_batch: int = 1
    precision: str = "fp32"
    cuda_graphs: bool = False
    profile_time_cap: float | None = None  # seconds per latency measurement (default: the preset's)
    resolution: int | None = None
    seed: int = 0
    allow_random_weights: bool = False
    reprofile: bool = False
    overwrite: bool = False
    export: tuple[str, ...] = ("onnx",)
    dynamic_batch: bool = False
    max_batch: int = 32
    tensorrt_precision: str = "fp16"
    max_budget_attempts: int = 3
    train_device: str = "auto"  # where scoring and recovery train: auto (the GPU for --target gpu), cpu, cuda

    def identity(self) -> dict:
        """The settings that define the run (what a resume must match)."""
        data = asdict(self)
        for key in ("out", "overwrite", "reprofile"):
            data.pop(key)
        data["export"] = list(self.export)
        for key, default in _ADDED_LATER.items():  # at their defaults they leave older run folders' hashes alone
            if data[key] == default:
                data.pop(key)
        return data


# settings added after run folders were first written (issues 3, 4 and 7), with their defaults
_ADDED_LATER = {"precision": "fp32", "cuda_graphs": False, "profile_time_cap": None, "dynamic_batch": False,
                "max_batch": 32, "tensorrt_precision": "fp16", "recovery_point_weight": None, "recovery_mixing": None,
                "train_device": "auto", "recovery_synthetic": None,
                "recovery_blends": None, "recovery_views": None}


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


def _data_fingerprint(folder: Path) -> str:
    entries = sorted((str(p.relative_to(folder)), p.stat().st_size) for p in folder.rglob("*") if p.is_file())
    return hashlib.sha256(repr(entries).encode()).hexdigest()[:12]


def _resolve_data(config: RunConfig) -> tuple[Path, Path | None]:
    if config.data is not None:
        return Path(config.data), Path(config.val_data) if config.val_data else None
    from pipeline.embedded import embedded_tiny_set

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


def profile_settings(config: RunConfig, preset: Preset, resolution: int | None = None) -> ProfileSettings:
    settings = replace(preset.profile, batch=config.profile_batch, threads=config.threads, precision=config.precision,
                       cuda_graphs=config.cuda_graphs, **({"resolution": resolution} if resolution else {}))
    return replace(settings, time_cap_s=config.profile_time_cap) if config.profile_time_cap else settings


def _check_profiler(config: RunConfig, preset: Preset, log: Log) -> bool:
    """Fail now on an absent target or backend, unless a given table lets selection go on without it."""
    try:
        with get_profiler(config.target, config.backend, profile_settings(config, preset)):
            return True
    except UsageError as exc:
        if config.latency_table is None:
            raise
        log(f"the target cannot be measured here ({exc}); selecting from {config.latency_table} without measuring")
        return False


def default_out(config: RunConfig, identity_hash: str) -> Path:
    name = config.model.replace(":", "_").replace("/", "_").replace(".", "_")[-40:]
    return Path("runs") / f"{name}-{config.target}-{config.budget}-{identity_hash[:8]}"


def prepare(config: RunConfig, progress: ProgressFactory = silent, log: Log = quiet_log,
            trains: bool = True) -> RunContext:
    """Validate everything cheap before any long work, then open (or reopen) the run folder.

    `trains=False` (adding exports to a finished run) skips the training device: a run trained on a GPU can
    be exported on a machine without one.
    """
    budget = Budget.parse(config.budget)
    if config.selector not in SELECTORS:
        raise UsageError(f"unknown selector '{config.selector}'; choose one of: {', '.join(SELECTORS)}.")
    preset = with_overrides(get_preset(config.preset), config.scoring_steps, config.recovery_steps,
                            config.recovery_method, config.batch_size, config.recovery_point_weight,
                            config.recovery_mixing, config.recovery_synthetic, parse_blends(config.recovery_blends),
                            config.recovery_views)
    if config.backend is None:
        log(default_backend(config.target)[1])
    measurable = _check_profiler(config, preset, log)
    train_device = resolve_train_device(config.train_device, config.target) if trains else torch.device("cpu")
    loaded = load_model(config.model, config.weights, config.resolution)
    if not loaded.has_trained_weights and not config.allow_random_weights:
        raise UsageError(
            f"model '{config.model}' has no trained weights here (nothing is downloaded). Pass --weights FILE with "
            "a state_dict, or --allow-random-weights to compress random weights (for testing only)."
        )
    if preset.recovery.synthetic.images:
        BatchNormStatistics(loaded.module).close()  # refuses a network without BatchNorm now, not after scoring
    data_dir, val_dir = _resolve_data(config)
    tiny = load_image_folder(data_dir, loaded.resolution)
    val = load_image_folder(val_dir, loaded.resolution) if val_dir is not None else None
    identity = config.identity() | {
        "data_fingerprint": _data_fingerprint(data_dir),
        "val_fingerprint": _data_fingerprint(val_dir) if val_dir else None,
        "resolved_resolution": loaded.resolution,
        "weights_source": loaded.weights_source,
    }
    out = Path(config.out) if config.out else default_out(config, settings_hash(identity))
    folder = RunFolder.open(out, identity, overwrite=config.overwrite)
    structure = analyse(loaded.module, loaded.resolution)
    if not structure.candidates:
        raise UsageError(f"model '{config.model}' has no droppable block (no residual block keeps its shape).")
    train, selection, report_set, report_source = _splits(tiny, val, preset.holdout_fraction, config.seed)
    prep = Preprocessing(loaded.resolution, loaded.mean, loaded.std)
    ctx = RunContext(config, preset, budget, loaded, structure, prep, train, selection, report_set, report_source,
                     folder, progress, log, measurable=measurable, train_device=train_device)
    folder.write_json("data.json", {
        "train_folder": str(data_dir), "validation_folder": str(val_dir) if val_dir else None,
        "tiny_set": tiny.summary(), "validation": val.summary() if val else None,
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
def _timed(ctx: RunContext, stage: str):
    """Record the stage's wall time in ctx.timings (only when it finishes)."""
    start = time.monotonic()
    yield
    ctx.timings[stage] = round(time.monotonic() - start, 2)


def run(config: RunConfig, progress: ProgressFactory = silent, log: Log = quiet_log) -> RunFolder:
    ctx = prepare(config, progress, log)
    folder = ctx.folder
    if folder.is_complete:
        log(f"run folder {folder.path} already holds a finished run with these settings; see {folder.file('report.md')}")
        return folder
    ctx.timings = folder.read_json("timings.json") if folder.has("timings.json") else {}
    settings = profile_settings(config, ctx.preset, ctx.loaded.resolution)
    profiler = get_profiler(config.target, config.backend, settings) if ctx.measurable else None
    with profiler or contextlib.nullcontext():
        table = _stage_latency_table(ctx, profiler)
        scores = _stage_recoverability(ctx, table)
        _stage_selection(ctx, table, scores, profiler)
    _stage_recovery(ctx)
    _stage_evaluation(ctx)
    _stage_export(ctx)
    folder.write_json("timings.json", ctx.timings)
    write_report(folder, ctx.timings)
    return folder


def _save_timings(ctx: RunContext) -> None:
    ctx.folder.write_json("timings.json", ctx.timings)


def _stage_latency_table(ctx: RunContext, profiler) -> LatencyTable:
    folder = ctx.folder
    if ctx.config.reprofile and folder.has("latency_table.json") and not folder.read_json(
            "latency_table.json").get("reprofiled"):
        _discard_table_for_reprofile(ctx)
    if not folder.has("latency_table.json"):
        with _timed(ctx, "profile_s"):
            choice = obtain_table(ctx.loaded, ctx.structure, profiler, TableStore(paths.table_store_dir()),
                                  Path(ctx.config.latency_table) if ctx.config.latency_table else None,
                                  ctx.config.reprofile, ctx.progress, ctx.log)
        folder.write_json("latency_table.json", {
            "source": choice.source, "path": str(choice.path) if choice.path else None, "table": choice.table.to_dict(),
            "reprofiled": ctx.config.reprofile,  # a resumed --reprofile run keeps the table it measured
        })
        _save_timings(ctx)
    table = LatencyTable.from_dict(folder.read_json("latency_table.json")["table"])
    target_ratio = ctx.budget.target_ratio(table.full.median_ms)
    reachable = best_reachable_ratio(table)
    if target_ratio < reachable:
        raise UsageError(
            f"latency budget {ctx.budget.describe()} cannot be reached: dropping every candidate block is predicted "
            f"to keep {reachable:.3f} of the original latency ({table.full.median_ms:.3f} ms). "
            f"Choose a budget of at least {smallest_budget_text(reachable)}."
        )
    return table


def _discard_table_for_reprofile(ctx: RunContext) -> None:
    """--reprofile on a folder whose table was not made by --reprofile: measure again, if nothing used it yet."""
    if ctx.folder.has("selection.json"):
        raise UsageError(
            f"--reprofile: the run folder {ctx.folder.path} already selected blocks with its latency table; "
            "measuring again would not change them. Pass --overwrite to redo the run, or --out for a new run folder."
        )
    ctx.log("--reprofile: this run folder's latency table was not made with --reprofile; measuring again")
    ctx.folder.file("latency_table.json").unlink()


def _stage_recoverability(ctx: RunContext, table: LatencyTable):
    folder = ctx.folder
    done = folder.read_json("recoverability.json")["blocks"] if folder.has("recoverability.json") else {}
    if len(done) < len(ctx.structure.candidates):
        scoring = ctx.preset.scoring
        with _timed(ctx, "recoverability_s"):
            if done:
                ctx.log(f"resuming scoring: {len(done)} of {len(ctx.structure.candidates)} blocks already scored")
            ctx.log(f"scoring recoverability of {len(ctx.structure.candidates)} blocks on {len(ctx.train)} images "
                    f"(training on {ctx.train_device.type})")
            pool = augmented_views(ctx.train, ctx.prep, ctx.preset.scoring_pool_views, scoring.min_crop_scale,
                                   ctx.config.seed)
            train_eval = eval_tensors(ctx.train, ctx.prep)

            def save_partial(block: str, result: dict) -> None:
                done[block] = result
                folder.write_json("recoverability.json", {"settings": scoring.to_dict(), "blocks": done,
                                                          "train_device": ctx.train_device.type})

            with on_device(ctx.loaded.module, ctx.train_device) as teacher:
                score_recoverability(teacher, ctx.structure, pool, train_eval, scoring, done,
                                     on_block=save_partial, progress=ctx.progress)
        _save_timings(ctx)
    recoverability = {b: done[b]["recoverability"] for b in ctx.structure.candidate_names()}
    return score_blocks(recoverability, table)


def _stage_selection(ctx: RunContext, table: LatencyTable, scores, profiler) -> None:
    """Select from the table, then correct the selection by measuring it end to end (measured_selection)."""
    folder = ctx.folder
    if folder.has("selection.json"):
        return
    config, teacher = ctx.config, ctx.loaded.module

    def select(extra_ms: float):
        return select_blocks(scores, table, ctx.budget, config.selector, extra_ms)

    def measure(dropped: list[str]):
        return measure_end_to_end(teacher, drop_blocks(teacher, dropped), profiler, ctx.progress)

    same_device = profiler is not None and table.fingerprint == profiler.fingerprint()
    with _timed(ctx, "selection_and_measurement_s"):
        attempts, chosen = select_by_measurement(select, measure if same_device else None, ctx.budget,
                                                 table.full.median_ms, config.max_budget_attempts, ctx.log)
    if attempts[0]["measured"] is not None:
        _warn_if_the_table_disagrees(ctx, table, attempts[0]["measured"]["original"]["median_ms"], attempts[0])
    folder.write_json("selection.json", {
        "budget": ctx.budget.describe(), "target_ratio": ctx.budget.target_ratio(table.full.median_ms),
        "selector": config.selector, "scores": [s.to_dict() for s in scores],
        "dropped": attempts[chosen]["dropped"], "attempts": attempts, "chosen_attempt": chosen,
    })
    _save_timings(ctx)


# the original measured end to end this far from the table's figure means the table was made in other conditions
TABLE_DISAGREEMENT_TO_WARN = 0.3  # the H100 eager table differed by 22% with accurate ratios; a slow VM by 37%


def _warn_if_the_table_disagrees(ctx: RunContext, table: LatencyTable, measured_ms: float, record: dict) -> None:
    """Say so when the original network now measures far from the table's latency (found: a table profiled
    while the VM was slow said 7.75 ms for an original that measured 4.90 ms minutes later)."""
    difference = measured_ms / table.full.median_ms - 1
    if abs(difference) <= TABLE_DISAGREEMENT_TO_WARN:
        return
    message = (f"warning: the original network measures {measured_ms:.3f} ms now and {table.full.median_ms:.3f} ms in the "
               f"latency table ({100 * difference:+.0f}%): the table was measured in other conditions (a busy or "
               "throttled machine?), so its per-block savings may be off. The selection is corrected by measurement; "
               "to rebuild the table, rerun with --reprofile (and --out for a new run folder).")
    ctx.log(message)
    record["table_disagreement"] = message


def _stage_recovery(ctx: RunContext) -> None:
    folder = ctx.folder
    if folder.has("recovery.json") and (folder.has(RECOVERED) or folder.has(COMPRESSED)):
        return
    dropped = folder.read_json("selection.json")["dropped"]
    selection_images = eval_tensors(ctx.selection, ctx.prep)
    ctx.log(f"recovering the network without {len(dropped)} blocks (training on {ctx.train_device.type})")
    with _timed(ctx, "recovery_s"), on_device(ctx.loaded.module, ctx.train_device) as teacher:
        result = recover(teacher, drop_blocks(teacher, dropped), dropped, ctx.structure, ctx.train, selection_images,
                         ctx.prep, ctx.preset.recovery, ctx.config.seed, folder.file("recovery_checkpoint.pt"),
                         progress=ctx.progress, log=ctx.log)
    folder.save_tensors(RECOVERED, result.state_dict)
    folder.write_json("dropped_blocks.json", {
        "model": ctx.loaded.spec, "weights_source": ctx.loaded.weights_source, "resolution": ctx.loaded.resolution,
        "dropped": dropped,
        "rebuild": f"load the original model, replace each dropped block by nn.Identity(), load {COMPRESSED}",
    })
    folder.write_json("recovery.json", {"settings": ctx.preset.recovery.to_dict(), "losses": result.losses,
                                        "train_device": ctx.train_device.type, **result.summary()})
    folder.file("recovery_checkpoint.pt").unlink(missing_ok=True)
    folder.file("synthetic_images.pt").unlink(missing_ok=True)
    _save_timings(ctx)


# the recovery stage's output, and the network the run deploys (recovered or not, chosen on held-out images)
RECOVERED, COMPRESSED = "recovered_state_dict.pt", "compressed_state_dict.pt"


def rebuild_compressed(loaded: LoadedModel, folder: RunFolder, state_file: str = COMPRESSED) -> torch.nn.Module:
    """Replay the dropped blocks onto a fresh copy of the original and load the kept (or recovered) weights."""
    dropped = folder.read_json("dropped_blocks.json")["dropped"]
    student = drop_blocks(loaded.module, dropped)
    student.load_state_dict(torch.load(folder.file(state_file), map_location="cpu", weights_only=True))
    return student.eval()


def _stage_evaluation(ctx: RunContext) -> None:
    """Compare the networks recovery offers on held-out images; deploy the one that agrees best."""
    folder = ctx.folder
    if folder.has("evaluation.json"):
        return
    teacher = ctx.loaded.module
    dropped = folder.read_json("dropped_blocks.json")["dropped"]
    recovered_file = RECOVERED if folder.has(RECOVERED) else COMPRESSED  # run folders written before RECOVERED
    kept = folder.read_json("recovery.json")["kept"]
    networks = _candidate_networks(ctx, dropped, rebuild_compressed(ctx.loaded, folder, recovered_file), kept)
    with _timed(ctx, "evaluation_s"):
        result = {name: _evaluate_candidates(teacher, networks, images, ctx.prep, labelled=name == "report")
                  for name, images in (("report", ctx.report_set), ("train", ctx.train))}
    report = result["report"]
    deployed = _best_candidate(report) if kept == "recovered" else "unrecovered"
    gain = report[deployed]["top1_agreement"] - report["unrecovered"]["top1_agreement"]
    folder.save_tensors(COMPRESSED, networks[deployed].state_dict())
    folder.write_json("evaluation.json", {
        "report_source": ctx.report_source, "candidates": list(networks), **result,
        "recovered_gain": report["recovered"]["top1_agreement"] - report["unrecovered"]["top1_agreement"],
        "agreement_gain": gain, "deployed": deployed,
        "verdict": _verdict(report, kept, deployed),
    })
    _save_timings(ctx)


def _candidate_networks(ctx: RunContext, dropped: list[str], recovered: torch.nn.Module, kept: str) -> dict:
    """unrecovered, each blend of it with the recovered weights (when recovery kept a state), recovered."""
    unrecovered = drop_blocks(ctx.loaded.module, dropped)
    networks = {"unrecovered": unrecovered}
    if kept == "recovered":
        for weight in ctx.preset.recovery.blends:
            blend = drop_blocks(ctx.loaded.module, dropped)
            blend.load_state_dict(blended_state(unrecovered.state_dict(), recovered.state_dict(), weight))
            networks[blend_name(weight)] = blend
    networks["recovered"] = recovered
    return networks


def blend_name(weight: float) -> str:
    return "halfway" if weight == 0.5 else f"blend {weight:g}"


def _evaluate_candidates(teacher, networks: dict, images: TinySet, prep: Preprocessing, labelled: bool) -> dict:
    """Agreement (and accuracy when labelled) of every candidate, KL, and what changed against unrecovered."""
    x = eval_tensors(images, prep)
    reference = predict_logits(teacher, x)
    logits = {name: predict_logits(network, x) for name, network in networks.items()}
    labels = images.labels if labelled else None
    out = {"images": len(images)}
    out.update({name: compare(lg, reference, labels).to_dict() for name, lg in logits.items()})
    out["kl"] = {name: prediction_kl(lg, reference) for name, lg in logits.items()}
    out["changes"] = {name: paired_change(logits["unrecovered"], lg, reference)
                      for name, lg in logits.items() if name != "unrecovered"}
    out["change"] = out["changes"]["recovered"]  # the recovered network's, as run folders before blends recorded
    return out


def _best_candidate(report: dict) -> str:
    """Highest top-1 agreement on the report images; KL breaks ties; in a full tie the least changed network."""
    names = [n for n in report["kl"]]  # unrecovered first, then blends by weight, then recovered
    return max(names, key=lambda n: (report[n]["top1_agreement"], -report["kl"][n], -names.index(n)))


def _verdict(report: dict, kept: str, deployed: str) -> str:
    if kept == "unrecovered":
        return "recovery did not improve the held-out selection split; the unrecovered network was kept"
    recovered_gain = report["recovered"]["top1_agreement"] - report["unrecovered"]["top1_agreement"]
    if deployed == "unrecovered":
        change = report["changes"]["recovered"]
        how = (f"LOWERED top-1 agreement on held-out report images by {-100 * recovered_gain:.1f} points"
               if recovered_gain < 0 else "did not raise top-1 agreement on held-out report images (nor lower their KL)")
        blends = ", and no blend did better" if len(report["kl"]) > 2 else ""
        return (f"recovery {how}{_counted(change)}, although it improved the selection split{blends}; "
                "the UNRECOVERED network was kept (the tiny set may not represent the report images)")
    gain = report[deployed]["top1_agreement"] - report["unrecovered"]["top1_agreement"]
    what = "recovery" if deployed == "recovered" else f"the {deployed} blend of the recovered and unrecovered weights"
    if gain > 0:
        text = f"{what} raised top-1 agreement on held-out images by {100 * gain:.1f} points"
    else:
        text = f"{what} did not change top-1 agreement on held-out report images but lowered their KL"
    text += _counted(report["changes"][deployed])
    if deployed != "recovered":
        text += (f"; the fully recovered network agreed {100 * (report['recovered']['top1_agreement'] - report[deployed]['top1_agreement']):+.1f}"
                 " points against it")
    return text


def _counted(change: dict) -> str:
    return (f" ({change['gained']} images gained, {change['lost']} lost, of {change['images']}; "
            f"{'significant' if change['p_value'] < 0.05 else 'could be chance'}, p={change['p_value']:.2f})")


def _stage_export(ctx: RunContext) -> None:
    if ctx.folder.has("export.json") or not ctx.config.export:
        return
    export_artefacts(ctx, list(ctx.config.export))


def export_artefacts(ctx: RunContext, formats: list[str]) -> dict:
    """Write each format into the run folder, checked against the compressed PyTorch network, and time it."""
    from exporters.formats import ExportInputs, export_formats
    from pipeline.artefact_latency import measure_artefacts

    config = ctx.config
    compressed = rebuild_compressed(ctx.loaded, ctx.folder)
    images = eval_tensors(ctx.report_set, ctx.prep)
    inputs = ExportInputs(compressed, ctx.loaded.resolution, images, predict_logits(compressed, images),
                          eval_tensors(ctx.train, ctx.prep), ctx.folder.path, config.dynamic_batch, config.max_batch,
                          config.tensorrt_precision)
    with _timed(ctx, "export_s"):
        records = export_formats(inputs, formats)
    with _timed(ctx, "artefact_latency_s"):
        if ctx.measurable:
            target_ratio = ctx.folder.read_json("selection.json")["target_ratio"]
            measure_artefacts(records, ctx.folder.path, ctx.loaded.module, config.target,
                              profile_settings(config, ctx.preset, ctx.loaded.resolution), target_ratio, ctx.progress,
                              ctx.log)
        else:
            for record in records.values():
                record["latency"] = {"measured": False, "reason": "the target device is not present here"}
    existing = ctx.folder.read_json("export.json") if ctx.folder.has("export.json") else {}
    ctx.folder.write_json("export.json", existing | records)
    _save_timings(ctx)
    return records


def export_existing_run(run_dir: Path, formats: list[str], progress: ProgressFactory = silent,
                        log: Log = quiet_log, **options) -> dict:
    """`pipeline export RUN_DIR`: reopen a run with its own settings and add artefacts to it.

    `options` (dynamic_batch, max_batch, tensorrt_precision) apply to these artefacts only.
    """
    folder = RunFolder(run_dir)
    if not folder.has("settings.json") or not folder.has("compressed_state_dict.pt"):
        raise UsageError(f"'{run_dir}' holds no compressed network yet; finish it with 'pipeline run' first.")
    settings = folder.read_json("settings.json")["settings"]
    known = {f for f in RunConfig.__dataclass_fields__}
    config = RunConfig(**{k: v for k, v in settings.items() if k in known})
    config.out, config.export = str(run_dir), tuple(config.export)
    ctx = prepare(config, progress, log, trains=False)
    ctx.config = replace(config, **options)
    ctx.timings = folder.read_json("timings.json") if folder.has("timings.json") else {}
    records = export_artefacts(ctx, formats)
    write_report(folder, ctx.timings)
    return records
