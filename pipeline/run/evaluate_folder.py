"""`pipeline evaluate`: accuracy and agreement of a run's networks (or of one model) on an image folder."""

from __future__ import annotations

from pathlib import Path

from pipeline.core.errors import UsageError
from pipeline.data.tiny_set import Preprocessing, eval_tensors, load_image_folder
from pipeline.models import load_model
from pipeline.models.registry import require_trusted_spec
from pipeline.models.preprocessing import with_preprocessing
from pipeline.network.evaluation import compare, predict_logits, topk_accuracy
from pipeline.run.records import Artefact, DeployedNetwork, Exports
from pipeline.run.runfolder import RunFolder


def evaluate_folder(run_dir: Path | None, data: Path, model: str, weights: str | None,
                    resolution: int | None, trust_model_code: bool = False) -> dict:
    if run_dir is not None:
        folder = RunFolder(run_dir)
        if not folder.has(DeployedNetwork.FILE) or not folder.has("compressed_state_dict.pt"):
            raise UsageError(f"'{run_dir}' holds no compressed network yet (recovery and evaluation have not finished; rerun its pipeline run command).")
        settings = folder.read_json("settings.json")["settings"]
        require_trusted_spec(settings["model"], run_dir, trust_model_code)
        loaded = with_preprocessing(load_model(settings["model"], settings["weights"], settings["resolved_resolution"]),
                                    settings.get("mean"), settings.get("std"), settings.get("crop_fraction"),
                                    settings.get("interpolation"))  # the run's own preprocessing
    else:
        loaded = load_model(model, weights, resolution)
        folder = None
    prep = Preprocessing.of(loaded)
    images = load_image_folder(data, prep.decode_resolution, min_images=1)
    x = eval_tensors(images, prep)
    original = predict_logits(loaded.module, x)
    networks = {"original": _accuracy(original, images.labels)}
    if folder is not None:
        from pipeline.run.deployment import rebuild_compressed
        from pipeline.run.export_step import deployed_preprocessing

        deployed_prep = deployed_preprocessing(folder, prep)  # a plan at a smaller input size is fed smaller images
        x = x if deployed_prep == prep else eval_tensors(images, deployed_prep)
        compressed = predict_logits(rebuild_compressed(loaded, folder), x)
        agreement = compare(compressed, original, images.labels)
        networks["compressed"] = _accuracy(compressed, images.labels) | {
            "top1_agreement": agreement.top1_agreement, "top5_agreement": agreement.top5_agreement,
        }
        shipped = _deployed_artefact(folder)
        if shipped is not None:  # the file that ships, in its runtime and precision (INT8, BF16: not PyTorch's answer)
            from pipeline.latency.precision import file_logits

            logits = file_logits(folder.file(shipped.path), x)
            agreement = compare(logits, original, images.labels)
            networks["deployed_artefact"] = _accuracy(logits, images.labels) | {
                "file": shipped.path, "format": shipped.format,
                "top1_agreement": agreement.top1_agreement, "top5_agreement": agreement.top5_agreement,
            }
    return {"images": len(images), "labelled": images.labels is not None, "skipped": images.summary()["skipped"],
            "networks": networks}


def _deployed_artefact(folder: RunFolder) -> Artefact | None:
    """export.json's record of the artefact that carries the deployed network, when it is not the plain FP32 ONNX
    file (which computes what the compressed PyTorch network does) and is still in the folder."""
    shipped = Exports.read(folder).shipped
    if shipped is not None and shipped.format != "onnx" and folder.file(shipped.path).exists():
        return shipped
    return None


def _accuracy(logits, labels) -> dict:
    if labels is None:
        return {"top1": None, "top5": None}
    import torch

    target = torch.tensor(labels)
    if int(target.max()) >= logits.shape[1]:
        raise UsageError(f"a class folder names class {int(target.max())}, but the network has {logits.shape[1]} outputs.")
    return {"top1": topk_accuracy(logits, target, 1), "top5": topk_accuracy(logits, target, 5)}
