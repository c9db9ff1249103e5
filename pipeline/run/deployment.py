"""What the run deploys: the networks recovery offers, compared on the report images, and the verdict."""

from __future__ import annotations

import torch

from pipeline.data.tiny_set import Preprocessing, TinySet, eval_tensors
from pipeline.models import LoadedModel
from pipeline.network.evaluation import compare, paired_change, predict_logits
from pipeline.network.surgery import drop_blocks
from pipeline.recovery.recover import blended_state, prediction_kl
from pipeline.run.context import RunContext, save_timings, timed
from pipeline.run.runfolder import RunFolder

# the recovery stage's output, and the network the run deploys (recovered or not, chosen on held-out images)
RECOVERED, COMPRESSED = "recovered_state_dict.pt", "compressed_state_dict.pt"


def rebuild_compressed(loaded: LoadedModel, folder: RunFolder, state_file: str = COMPRESSED) -> torch.nn.Module:
    """Replay the dropped blocks onto a fresh copy of the original and load the kept (or recovered) weights."""
    dropped = folder.read_json("dropped_blocks.json")["dropped"]
    student = drop_blocks(loaded.module, dropped)
    student.load_state_dict(torch.load(folder.file(state_file), map_location="cpu", weights_only=True))
    return student.eval()


def stage_evaluation(ctx: RunContext) -> None:
    """Compare the networks recovery offers on held-out images; deploy the one that agrees best."""
    folder = ctx.folder
    if folder.has("evaluation.json"):
        return
    teacher = ctx.loaded.module
    dropped = folder.read_json("dropped_blocks.json")["dropped"]
    recovered_file = RECOVERED if folder.has(RECOVERED) else COMPRESSED  # run folders written before RECOVERED
    kept = folder.read_json("recovery.json")["kept"]
    networks = _candidate_networks(ctx, dropped, rebuild_compressed(ctx.loaded, folder, recovered_file), kept)
    with timed(ctx, "evaluation_s"):
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
    save_timings(ctx)


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

