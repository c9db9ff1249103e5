"""What the run deploys: the networks recovery offers, compared on the report images, and the verdict."""

from __future__ import annotations

from typing import Any

import torch

from pipeline.data.tiny_set import Preprocessing, TinySet
from pipeline.latency.plans import size_words
from pipeline.latency.precision import CALIBRATION_IMAGES, deployed_logits
from pipeline.latency.resolution import tensors_at
from pipeline.models import LoadedModel
from pipeline.network.evaluation import (
    compare,
    paired_change,
    predict_logits,
    prediction_kl,
)
from pipeline.network.surgery import drop_blocks
from pipeline.recovery.recover import blended_state
from pipeline.recovery.trials import recipe_files
from pipeline.run.context import RunContext, save_timings, timed
from pipeline.run.plan_stages import int8_options
from pipeline.run.quantization_aware import QuantizationAwareTarget
from pipeline.run.records import DeployedNetwork, Form
from pipeline.run.reselection import excluded_candidates
from pipeline.run.runfolder import RunFolder

# the recovery stage's output, and the network the run deploys (recovered or not, chosen on held-out images)
RECOVERED, COMPRESSED = "recovered_state_dict.pt", "compressed_state_dict.pt"


def rebuild_compressed(loaded: LoadedModel, folder: RunFolder, state_file: str = COMPRESSED) -> torch.nn.Module:
    """Replay the dropped blocks onto a fresh copy of the original and load the kept (or recovered) weights."""
    dropped = DeployedNetwork.read(folder).dropped
    student = drop_blocks(loaded.module, dropped)
    student.load_state_dict(torch.load(folder.file(state_file), map_location="cpu", weights_only=True))
    return student.eval()


def stage_evaluation(ctx: RunContext) -> None:
    """Compare, on held-out images and each in its deployed precision, the networks recovery offers (the
    quantization-aware ones among them) and the precision-only plan when one meets the budget; deploy the one
    that agrees best."""
    folder = ctx.folder
    if folder.has("evaluation.json"):
        return
    teacher = ctx.loaded.module
    dropped = DeployedNetwork.read(folder).dropped
    selection = folder.read_json("selection.json")
    recovered_file = RECOVERED if folder.has(RECOVERED) else COMPRESSED  # run folders written before RECOVERED
    recovery = folder.read_json("recovery.json")
    kept = recovery["kept"]
    networks = _candidate_networks(ctx, dropped, rebuild_compressed(ctx.loaded, folder, recovered_file), kept,
                                   selection.get("precision", "fp32"))
    aware = _quantization_aware_candidates(ctx, recovery)
    networks.update({n: (net, p) for n, (net, p, blocks) in aware.items() if blocks})
    rival = _precision_only_candidate(ctx, selection)
    networks.update(rival)
    networks.update({n: (net, p) for n, (net, p, blocks) in aware.items() if not blocks})
    standalone = list(rival) + [n for n, (_, _, blocks) in aware.items() if not blocks]  # no block dropped
    dropped_of = {name: [] if name in standalone else dropped for name in networks}
    sizes = _sizes_of(selection, rival)
    with timed(ctx, "evaluation_s"):
        options = {name: int8_options(selection, precision, dropped_of[name]) if name not in sizes else None
                   for name, (_, precision) in networks.items()}
        result = _evaluate_candidates(teacher, networks, {"report": ctx.report_set, "train": ctx.train}, ctx.prep,
                                      ctx.train, labelled="report", options=options, sizes=sizes)
    report = result["report"]
    recovery_names = [n for n in networks if n not in standalone and n not in aware]
    eligible = (recovery_names if kept == "recovered" else ["unrecovered"]) + [n for n in aware if n not in standalone]
    eligible += standalone
    if selection.get("chosen_plan", 0) is None and standalone:  # no plan with blocks: the original does not meet it
        eligible = standalone
    excluded = excluded_candidates(ctx)  # their files were timed missing the budget (reselection.py)
    eligible = [n for n in eligible if n not in excluded] or eligible
    deployed = _best_candidate(_restricted(report, eligible))
    recovery_choice = deployed if deployed in recovery_names else _best_candidate(_restricted(report, [
        n for n in eligible if n in recovery_names] or ["unrecovered"]))
    _save_deployed(ctx, networks, deployed, dropped_of[deployed], options[deployed], sizes.get(deployed))
    gain = report[deployed]["top1_agreement"] - report["unrecovered"]["top1_agreement"]
    compared = quantization_aware_comparison(recovery, report, deployed)
    folder.write_json("evaluation.json", {
        "report_source": ctx.report_source, "candidates": list(networks), **result,
        "recovered_gain": report["recovered"]["top1_agreement"] - report["unrecovered"]["top1_agreement"],
        "agreement_gain": gain, "deployed": deployed, "deployed_precision": networks[deployed][1],
        "deployed_resolution": sizes.get(deployed), "eligible": eligible,
        "forms": {name: {"dropped": sorted(dropped_of[name]), "precision": precision, "resolution": sizes.get(name),
                         "fp32_end_layers": int((options[name] or {}).get("fp32_end_layers", 0))}
                  for name, (_, precision) in networks.items()},
        "quantization_aware": compared,
        "verdict": _verdict(_restricted(report, recovery_names), kept, recovery_choice, not dropped)
                   + _precision_verdict(report, rival, deployed, sizes) + _quantization_verdict(compared, deployed),
    })
    save_timings(ctx)


def _quantization_aware_candidates(ctx: RunContext, recovery: dict) -> dict[str, tuple]:
    """Each quantization-aware trial that beat its start (the fake-quantized network it trained from) on the
    selection split: candidate name -> (its FP32 network, the precision it deploys in, its dropped blocks)."""
    trials = {t["recipe"]: t for t in recovery.get("recipes", [])}
    found = {}
    for entry in recovery.get("quantization_aware", []):
        target = QuantizationAwareTarget.from_dict(entry)
        trial = trials.get(target.recipe, {})
        if trial.get("status") != "finished" or trial.get("kept") != "recovered":
            continue
        network = drop_blocks(ctx.loaded.module, target.dropped)
        network.load_state_dict(torch.load(recipe_files(ctx.folder.path, target.recipe)[1], map_location="cpu",
                                           weights_only=True))
        found[target.candidate] = (network.eval(), target.precision, target.dropped)
    return found


def quantization_aware_comparison(recovery: dict, report: dict, deployed: str) -> list[dict]:
    """Per INT8 network that got a quantization-aware trial: its report-image figures beside those of the same
    network quantized after recovery (or, with no block dropped, quantized without finetuning)."""
    trials = {t["recipe"]: t for t in recovery.get("recipes", [])}
    rows = []
    for entry in recovery.get("quantization_aware", []):
        trial = trials.get(entry["recipe"], {})
        offered = entry["candidate"] in report
        why = None if offered else (trial.get("reason") or "it did not beat the fake-quantized network it started "
                                    "from on the selection split") if trial else "it did not run"
        rows.append(entry | {
            "offered": offered, "why_not_offered": why, "deployed": deployed == entry["candidate"],
            "recover_then_quantize_top1": report.get(entry["compared_with"], {}).get("top1_agreement"),
            "quantization_aware_top1": report[entry["candidate"]]["top1_agreement"] if offered else None,
        })
    return rows


def _restricted(report: dict, names: list[str]) -> dict:
    """The report with only `names` competing (their figures stay where they are)."""
    return report | {"kl": {n: report["kl"][n] for n in report["kl"] if n in names}}


def _precision_only_candidate(ctx: RunContext, selection: dict) -> dict:
    """The original network in the precision-only plan's precision (at its input size), when a plan of that kind
    met the budget."""
    index = selection.get("precision_plan")
    if index is None:
        return {}
    plan = selection["plans"][index]
    name = precision_only_name(plan["precision"], plan.get("resolution"))
    return {name: (drop_blocks(ctx.loaded.module, []), plan["precision"])}


def _sizes_of(selection: dict, rival: dict) -> dict[str, int]:
    """Candidate name -> its input size, for the candidates fed smaller images than the model's own."""
    index = selection.get("precision_plan")
    size = selection["plans"][index].get("resolution") if index is not None else None
    return {name: size for name in rival} if size is not None else {}


def precision_only_name(precision: str, resolution: int | None = None) -> str:
    return f"{precision}{size_words(resolution)}, no block dropped"


def _save_deployed(ctx: RunContext, networks: dict, deployed: str, dropped: list[str],
                   options: dict | None, resolution: int | None = None) -> None:
    """The deployed network's state; a precision-only plan deploys the original with no block dropped (fed smaller
    images when its plan was made at a smaller input size)."""
    network, precision = networks[deployed]
    record = DeployedNetwork.read(ctx.folder).deploying(
        Form.of(dropped, precision, resolution, int((options or {}).get("fp32_end_layers", 0))))
    ctx.folder.save_tensors(COMPRESSED, network.state_dict())
    record.write(ctx.folder)


def _candidate_networks(ctx: RunContext, dropped: list[str], recovered: torch.nn.Module, kept: str,
                        precision: str) -> dict:
    """unrecovered, each blend of it with the recovered weights (when recovery kept a state), recovered; each
    with the precision it would be deployed in."""
    unrecovered = drop_blocks(ctx.loaded.module, dropped)
    networks = {"unrecovered": (unrecovered, precision)}
    if kept == "recovered":
        for weight in ctx.preset.recovery.blends:
            blend = drop_blocks(ctx.loaded.module, dropped)
            blend.load_state_dict(blended_state(unrecovered.state_dict(), recovered.state_dict(), weight))
            networks[blend_name(weight)] = (blend, precision)
    networks["recovered"] = (recovered, precision)
    if kept == "recovered":
        networks.update(_other_recipes(ctx, dropped, precision))
    return networks


def _other_recipes(ctx: RunContext, dropped: list[str], precision: str) -> dict:
    """Each finished recipe that beat the unrecovered network on the selection split, other than the one
    called "recovered" (the lowest selection KL) and the quantization-aware ones: the report images choose
    among them all."""
    recovery = ctx.folder.read_json("recovery.json")
    aware = {t["recipe"] for t in recovery.get("quantization_aware", [])}  # candidates of their own
    networks = {}
    for trial in recovery.get("recipes", []):
        if trial["status"] != "finished" or trial["kept"] != "recovered" or trial["recipe"] == recovery["recipe"] \
                or trial["recipe"] in aware:
            continue
        network = drop_blocks(ctx.loaded.module, dropped)
        network.load_state_dict(torch.load(recipe_files(ctx.folder.path, trial["recipe"])[1], map_location="cpu",
                                           weights_only=True))
        networks[recipe_name(trial["recipe"])] = (network.eval(), precision)
    return networks


def recipe_name(recipe: str) -> str:
    """The candidate name of a recipe other than the one recovery.json calls "recovered"."""
    return f"recovered by {recipe}"


def recipe_candidate(recovery: dict, recipe: str) -> str:
    """The candidate network a recipe of recovery.json became."""
    aware = {t["recipe"]: t["candidate"] for t in recovery.get("quantization_aware", [])}
    if recipe in aware:
        return aware[recipe]
    return "recovered" if recipe == recovery.get("recipe") else recipe_name(recipe)


def blend_name(weight: float) -> str:
    return "halfway" if weight == 0.5 else f"blend {weight:g}"


def _evaluate_candidates(teacher, networks: dict, image_sets: dict[str, TinySet], prep: Preprocessing,
                         calibration: TinySet, labelled: str, options: dict[str, dict | None] | None = None,
                         sizes: dict[str, int] | None = None) -> dict[str, dict]:
    """Per image set: agreement (and accuracy on the `labelled` set) of every candidate in its deployed
    precision (and input size: `sizes`), KL, and what changed against unrecovered. Each candidate is converted
    (quantized on `calibration`) once for all sets: its logits on every set come from one pass over the sets'
    images together."""
    counts = [len(images) for images in image_sets.values()]
    made: dict[int | None, tuple[torch.Tensor, torch.Tensor]] = {}

    def at(size: int | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(every set's images, the calibration images) at `size`, prepared once per size."""
        if size not in made:
            made[size] = (torch.cat([tensors_at(images, prep, size) for images in image_sets.values()]),
                          tensors_at(calibration, prep, size)[:CALIBRATION_IMAGES])
        return made[size]

    reference = predict_logits(teacher, at(None)[0]).split(counts)
    options, sizes = options or {}, sizes or {}
    logits = {name: deployed_logits(network, precision, *at(sizes.get(name)), options.get(name)).split(counts)
              for name, (network, precision) in networks.items()}
    return {set_name: _agreement_of(reference[i], {name: lg[i] for name, lg in logits.items()},
                                    images.labels if set_name == labelled else None, len(images))
            for i, (set_name, images) in enumerate(image_sets.items())}


def _agreement_of(reference: torch.Tensor, logits: dict[str, torch.Tensor], labels, count: int) -> dict:
    out: dict[str, Any] = {"images": count}
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


def _verdict(report: dict, kept: str, deployed: str, skipped: bool = False) -> str:
    if skipped:
        return "no block was dropped, so nothing was recovered"
    if kept == "unrecovered":
        return "recovery did not improve the held-out selection split; the unrecovered network was kept"
    recovered_gain = report["recovered"]["top1_agreement"] - report["unrecovered"]["top1_agreement"]
    if deployed == "unrecovered":
        change = report["changes"]["recovered"]
        how = (f"LOWERED top-1 agreement on held-out report images by {-100 * recovered_gain:.1f} points"
               if recovered_gain < 0 else "did not raise top-1 agreement on held-out report images (nor lower their KL)")
        blends = ", and no other recovered network did better" if len(report["kl"]) > 2 else ""
        return (f"recovery {how}{_counted(change)}, although it improved the selection split{blends}; "
                "the UNRECOVERED network was kept (the tiny set may not represent the report images)")
    gain = report[deployed]["top1_agreement"] - report["unrecovered"]["top1_agreement"]
    what = ("recovery" if deployed == "recovered" else deployed.replace("recovered by", "recovery by recipe")
            if deployed.startswith("recovered by ") else f"the {deployed} blend of the recovered and unrecovered weights")
    if gain > 0:
        text = f"{what} raised top-1 agreement on held-out images by {100 * gain:.1f} points"
    else:
        text = f"{what} did not change top-1 agreement on held-out report images but lowered their KL"
    text += _counted(report["changes"][deployed])
    if deployed != "recovered":
        other = ("the recipe with the lowest selection-split KL (`recovered`)" if deployed.startswith("recovered by ")
                 else "the fully recovered network")
        text += (f"; {other} agreed {100 * (report['recovered']['top1_agreement'] - report[deployed]['top1_agreement']):+.1f}"
                 " points against it")
    return text


def _precision_verdict(report: dict, rival: dict, deployed: str, sizes: dict[str, int]) -> str:
    if not rival:
        return ""
    name = next(iter(rival))
    figure = f"{100 * report[name]['top1_agreement']:.1f}%"
    what = f"{rival[name][1]}{size_words(sizes.get(name))}"  # its precision (and input size when smaller)
    if deployed == name:
        return (f"; the ORIGINAL NETWORK IN {what.upper()} (no block dropped) meets the budget alone and agreed "
                f"most on the report images ({figure}): it was deployed instead")
    return f"; the original network in {what} (no block dropped) also meets the budget and agreed {figure}"


def _quantization_verdict(compared: list[dict], deployed: str) -> str:
    parts = []
    for row in compared:
        if not row["offered"]:
            parts.append(f"quantization-aware recovery ({row['candidate']}) was not offered: {row['why_not_offered']}")
            continue
        figures = (f"{100 * row['quantization_aware_top1']:.1f}% against {100 * row['recover_then_quantize_top1']:.1f}% "
                   f"for {row['compared_with']} in {row['precision']}")
        if row["deployed"]:
            parts.append(f"QUANTIZATION-AWARE recovery ({row['candidate']}) agreed most on the report images "
                         f"({figures}): it was deployed")
        else:
            parts.append(f"quantization-aware recovery ({row['candidate']}) agreed {figures}")
    return "".join(f"; {p}" for p in parts)


def _counted(change: dict) -> str:
    return (f" ({change['gained']} images gained, {change['lost']} lost, of {change['images']}; "
            f"{'significant' if change['p_value'] < 0.05 else 'could be chance'}, p={change['p_value']:.2f})")

