"""The run's last step: write each artefact, check it against PyTorch, and time it beside the original."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from pipeline.core.errors import UsageError
from pipeline.core.progress import Log, ProgressFactory, quiet_log, silent
from pipeline.data.tiny_set import Preprocessing, eval_tensors
from pipeline.latency.precision import TENSORRT_INT8
from pipeline.models.registry import require_trusted_spec
from pipeline.network.evaluation import predict_logits
from pipeline.run.config import RunConfig, profile_settings
from pipeline.run.context import RunContext, prepare, save_timings, timed
from pipeline.run.deployment import rebuild_compressed
from pipeline.run.records import Artefact, DeployedNetwork, Exports, Precisions, Selection
from pipeline.run.report import write_report
from pipeline.run.runfolder import RunFolder


def stage_export(ctx: RunContext) -> None:
    """The asked formats, and the deployed precision's artefact (the INT8 file when an INT8 plan won)."""
    if ctx.folder.has("export.json") or not ctx.config.export:
        return
    formats = list(ctx.config.export)
    deployed = deployed_format(ctx.folder)
    export_artefacts(ctx, formats + [deployed] if deployed not in formats else formats)


def deployed_format(folder: RunFolder) -> str:
    """The artefact that carries the deployed network in its precision (Precision.export_format)."""
    return DeployedNetwork.read(folder).precision.export_format


def deployed_preprocessing(folder: RunFolder, prep: Preprocessing) -> Preprocessing:
    """The model's preprocessing at the deployed input size (smaller than its own when a --min-resolution plan
    shipped)."""
    from pipeline.latency.resolution import at_size

    return at_size(prep, DeployedNetwork.read(folder).input_resolution)


def openvino_precision(folder: RunFolder) -> str:
    """The precision a --format openvino IR is written in: the deployed one when the run deploys in OpenVINO, else
    the fastest OpenVINO precision the run kept here, else OpenVINO FP32."""
    from exporters.openvino_ir import FP32

    precision = DeployedNetwork.read(folder).precision
    if precision.is_openvino:
        return precision
    surveyed = Precisions.read_if_there(folder)
    return (surveyed.fastest_kept(lambda p: p.is_openvino) if surveyed else None) or FP32


def int8_scheme(folder: RunFolder) -> str | None:
    """The INT8 scheme an INT8 artefact is written in: the deployed one, else the fastest the run kept here,
    else None (the exporter's default) when the run measured none."""
    precision = DeployedNetwork.read(folder).precision
    if precision.is_quantized:
        return precision
    surveyed = Precisions.read_if_there(folder)
    return surveyed.fastest_kept(lambda p: p.is_quantized) if surveyed else None


def int8_fp32_end_layers(folder: RunFolder) -> int:
    """How many compute layers at each end the deployed INT8 network keeps in FP32 (the run's measured choice)."""
    record = DeployedNetwork.read(folder)
    return record.int8_fp32_end_layers if record.precision.is_int8 else 0


def half_precision(folder: RunFolder) -> tuple[str, int]:
    """("fp16" or "bf16", FP32 end layers) when the deployed network runs in half precision, else ("fp32", 0): every
    PyTorch format (and the ONNX file, in FP16) is then written in it. The end-layer count is the mixed-precision
    step's, stored under the key INT8 plans use."""
    record = DeployedNetwork.read(folder)
    if not record.precision.is_half:
        return "fp32", 0
    return record.precision, record.int8_fp32_end_layers


def export_artefacts(ctx: RunContext, formats: list[str]) -> dict[str, Artefact]:
    """Write each format into the run folder, checked against the compressed PyTorch network, and time it."""
    from exporters.formats import ExportInputs, export_formats
    from pipeline.latency.artefact_latency import measure_artefacts

    config = ctx.config
    compressed = rebuild_compressed(ctx.loaded, ctx.folder)
    prep = deployed_preprocessing(ctx.folder, ctx.prep)
    images = eval_tensors(ctx.report_set, prep)
    tensorrt_precision = TENSORRT_INT8 if deployed_format(ctx.folder) == "tensorrt" else config.tensorrt_precision
    inputs = ExportInputs(compressed, prep.resolution, images, predict_logits(compressed, images),
                          eval_tensors(ctx.train, prep), ctx.folder.path, config.dynamic_batch, config.max_batch,
                          tensorrt_precision, int8_scheme(ctx.folder), int8_fp32_end_layers(ctx.folder))
    inputs.metadata = onnx_metadata(prep, int(inputs.reference_logits.shape[1]))
    if prep.resolution != ctx.prep.resolution:
        inputs.metadata["model_resolution"] = str(ctx.prep.resolution)  # what the network was trained for
    inputs.target = config.target  # compiled formats (aoti) are built for the run's target
    inputs.openvino_precision = openvino_precision(ctx.folder)
    inputs.precision, inputs.half_fp32_end_layers = half_precision(ctx.folder)
    with timed(ctx, "export_s"):
        records = export_formats(inputs, formats)
    with timed(ctx, "artefact_latency_s"):
        if ctx.measurable:
            target_ratio = Selection.read(ctx.folder).target_ratio
            timed_here = _timed_at_their_size(records, prep.resolution != ctx.prep.resolution)
            measure_artefacts(timed_here, ctx.folder.path, ctx.loaded.module, config.target,
                              profile_settings(config, ctx.preset, ctx.loaded.resolution, ctx.loaded.channels),
                              target_ratio, ctx.progress, ctx.log)
        else:
            for record in records.values():
                record["latency"] = {"measured": False, "reason": "the target device is not present here"}
    made = {fmt: Artefact.from_dict(record) for fmt, record in records.items()}
    shipped = deployed_format(ctx.folder)
    if shipped in made:
        made[shipped].deployed = True
    exports = Exports.read(ctx.folder)
    exports.artefacts.update(made)
    exports.write(ctx.folder)
    save_timings(ctx)
    return made


def _timed_at_their_size(records: dict[str, dict], size_changed: bool) -> dict[str, dict]:
    """The artefacts to time. At a changed input size only files that carry their input shape (ONNX, OpenVINO IR,
    TensorRT) are fed it; a PyTorch format would be fed the original's size, so its timing is left out, saying why."""
    from exporters.formats import FORMATS

    if not size_changed:
        return records
    files = {fmt: record for fmt, record in records.items() if FORMATS[fmt].load is Path}
    for fmt in records.keys() - files.keys():
        records[fmt]["latency"] = {"measured": False, "reason": "the input size changed and this format carries no "
                                   "input shape to be fed when timed; the ONNX and OpenVINO files are timed"}
    return files


def onnx_metadata(prep: Preprocessing, class_count: int) -> dict[str, str]:
    """How a deployment must feed the exported file: its ONNX metadata_props (plain strings)."""
    return {"mean": ",".join(f"{m:g}" for m in prep.mean), "std": ",".join(f"{s:g}" for s in prep.std),
            "resolution": str(prep.resolution), "class_count": str(class_count),
            "crop_fraction": f"{prep.crop_fraction:g}", "interpolation": prep.interpolation,
            "input": f"{'RGB' if prep.channels == 3 else 'grayscale'}, float32 in [0, 1] before normalisation, NCHW", "producer": "practise-pipeline"}


def export_existing_run(run_dir: Path, formats: list[str], progress: ProgressFactory = silent,
                        log: Log = quiet_log, trust_model_code: bool = False, **options) -> dict[str, Artefact]:
    """`pipeline export RUN_DIR`: reopen a run with its own settings and add artefacts to it.

    `options` (dynamic_batch, max_batch, tensorrt_precision) apply to these artefacts only.
    """
    folder = RunFolder(run_dir)
    if not folder.has("settings.json") or not folder.has("compressed_state_dict.pt"):
        raise UsageError(f"'{run_dir}' holds no compressed network yet; finish it with 'pipeline run' first.")
    settings = folder.read_json("settings.json")["settings"]
    require_trusted_spec(settings["model"], run_dir, trust_model_code)
    known = {f for f in RunConfig.__dataclass_fields__}
    config = RunConfig(**{k: v for k, v in settings.items() if k in known})
    config.out, config.export = str(run_dir), tuple(config.export)
    ctx = prepare(config, progress, log, trains=False)
    ctx.config = replace(config, **options)
    ctx.timings = folder.read_json("timings.json") if folder.has("timings.json") else {}
    records = export_artefacts(ctx, formats)
    write_report(folder, ctx.timings)
    return records

