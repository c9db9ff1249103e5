"""What the run deploys: the networks recovery offers, compared on the report images, and the verdict."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from exporters.openvino_ir import plain_state
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
from pipeline.run.quantization_aware import QuantizationAwareTarget
from pipeline.run.records import DeployedNetwork, Evaluation, Form, ImageSetFigures, Recovery, Selection
from pipeline.run.reselection import excluded_candidates
from pipeline.run.runfolder import RunFolder

# the recovery stage's output, and the network the run deploys (recovered or not, chosen on held-out images)
RECOVERED, COMPRESSED = "recovered_state_dict.pt", "compressed_state_dict.pt"


@dataclass
class Candidate:
    """A network the report images judge: its FP32 weights, and its form (what it lacks, the precision it is
    deployed in, the input size it is fed, the end layers kept in FP32)."""

    network: torch.nn.Module
    form: Form

    @property
    def scheme_options(self) -> dict | None:
        """The quantization options `deployed_logits` takes (None: the scheme's own)."""
        return {"fp32_end_layers": self.form.fp32_end_layers} if self.form.fp32_end_layers else None


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
    if folder.has(Evaluation.FILE):
        return
    teacher = ctx.loaded.module
    dropped = DeployedNetwork.read(folder).dropped
    selection, recovery = Selection.read(folder), Recovery.read(folder)
    recovered_file = RECOVERED if folder.has(RECOVERED) else COMPRESSED  # run folders written before RECOVERED
    kept = recovery.kept
    candidates = _candidate_networks(ctx, selection, recovery, dropped,
                                     rebuild_compressed(ctx.loaded, folder, recovered_file))
    aware = _quantization_aware_candidates(ctx, selection, recovery)
    candidates.update({n: c for n, c in aware.items() if c.form.dropped})
    rival = _precision_only_candidate(ctx, selection)
    candidates.update(rival)
    candidates.update({n: c for n, c in aware.items() if not c.form.dropped})
    standalone = list(rival) + [n for n, c in aware.items() if not c.form.dropped]  # no block dropped
    with timed(ctx, "evaluation_s"):
        figures = _evaluate_candidates(teacher, candidates, {"report": ctx.report_set, "train": ctx.train}, ctx.prep,
                                       ctx.train, labelled="report")
    report, train = figures["report"], figures["train"]
    recovery_names = [n for n in candidates if n not in standalone and n not in aware]
    eligible = (recovery_names if kept == "recovered" else ["unrecovered"]) + [n for n in aware if n not in standalone]
    eligible += standalone
    if selection.chosen_plan is None and standalone:  # no plan with blocks: the original does not meet it
        eligible = standalone
    excluded = excluded_candidates(ctx)  # their files were timed missing the budget (reselection.py)
    eligible = [n for n in eligible if n not in excluded] or eligible
    deployed = _best_candidate(report.only(eligible).to_dict())
    recovery_choice = deployed if deployed in recovery_names else _best_candidate(report.only(
        [n for n in eligible if n in recovery_names] or ["unrecovered"]).to_dict())
    _save_deployed(ctx, candidates[deployed])
    compared = quantization_aware_comparison(recovery, report, deployed)
    Evaluation(
        report_source=ctx.report_source, report=report, train=train, candidates=list(candidates),
        deployed=deployed, deployed_precision=candidates[deployed].form.precision,
        deployed_resolution=candidates[deployed].form.resolution, eligible=eligible,
        forms={name: candidate.form for name, candidate in candidates.items()},
        quantization_aware=[row.to_dict() for row in compared],
        recovered_gain=report.top1("recovered") - report.top1("unrecovered"),
        agreement_gain=report.top1(deployed) - report.top1("unrecovered"),
        verdict=_verdict(report.only(recovery_names), kept, recovery_choice, not dropped)
        + _precision_verdict(report, rival, deployed) + _quantization_verdict(compared),
    ).write(folder)
    save_timings(ctx)


def _quantization_aware_targets(recovery: Recovery) -> list[QuantizationAwareTarget]:
    return [QuantizationAwareTarget.from_dict(entry) for entry in recovery.quantization_aware]


def _quantization_aware_candidates(ctx: RunContext, selection: Selection, recovery: Recovery) -> dict[str, Candidate]:
    """Each quantization-aware trial that beat its start (the fake-quantized network it trained from) on the
    selection split: its FP32 network, in the precision it deploys in, without its dropped blocks."""
    trials = {t.recipe: t for t in recovery.trials}
    found = {}
    for target in _quantization_aware_targets(recovery):
        trial = trials.get(target.recipe)
        if trial is None or not trial.recovered:
            continue
        network = drop_blocks(ctx.loaded.module, target.dropped)
        state = torch.load(recipe_files(ctx.folder.path, target.recipe)[1], map_location="cpu", weights_only=True)
        network.load_state_dict(plain_state(state))  # an OpenVINO INT8 trial's state holds NNCF's quantizers too
        found[target.candidate] = Candidate(network.eval(), Form.of(
            target.dropped, target.precision, None, selection.fp32_end_layers(target.precision, target.dropped)))
    return found


@dataclass
class QuantizationAwareComparison:
    """An INT8 network that got a quantization-aware trial: its report-image figures beside those of the same
    network quantized after recovery (evaluation.json "quantization_aware")."""

    target: QuantizationAwareTarget
    offered: bool
    why_not_offered: str | None
    deployed: bool
    recover_then_quantize_top1: float | None
    quantization_aware_top1: float | None

    def to_dict(self) -> dict:
        return self.target.to_dict() | {
            "offered": self.offered, "why_not_offered": self.why_not_offered, "deployed": self.deployed,
            "recover_then_quantize_top1": self.recover_then_quantize_top1,
            "quantization_aware_top1": self.quantization_aware_top1}


def quantization_aware_comparison(recovery: Recovery, report: ImageSetFigures,
                                  deployed: str) -> list[QuantizationAwareComparison]:
    """Per INT8 network that got a quantization-aware trial: its report-image figures beside those of the same
    network quantized after recovery (or, with no block dropped, quantized without finetuning)."""
    trials = {t.recipe: t for t in recovery.trials}
    rows = []
    for target in _quantization_aware_targets(recovery):
        trial = trials.get(target.recipe)
        offered = target.candidate in report.agreements
        why = None if offered else (trial.reason or "it did not beat the fake-quantized network it started "
                                    "from on the selection split") if trial else "it did not run"
        compared_with = report.agreements.get(target.compared_with)
        rows.append(QuantizationAwareComparison(
            target, offered, why, deployed == target.candidate,
            compared_with.top1_agreement if compared_with is not None else None,
            report.top1(target.candidate) if offered else None))
    return rows


def _precision_only_candidate(ctx: RunContext, selection: Selection) -> dict[str, Candidate]:
    """The original network in the precision-only plan's precision (at its input size), when a plan of that kind
    met the budget."""
    plan = selection.precision_only
    if plan is None:
        return {}
    # at a smaller input size the scheme's own options (the mixed-precision step tried the model's own size)
    end_layers = selection.fp32_end_layers(plan.precision, []) if plan.resolution is None else 0
    form = Form.of([], plan.precision, plan.resolution, end_layers)
    return {form.describe(): Candidate(drop_blocks(ctx.loaded.module, []), form)}


def _save_deployed(ctx: RunContext, deployed: Candidate) -> None:
    """The deployed network's state; a precision-only plan deploys the original with no block dropped (fed smaller
    images when its plan was made at a smaller input size)."""
    record = DeployedNetwork.read(ctx.folder).deploying(deployed.form)
    ctx.folder.save_tensors(COMPRESSED, deployed.network.state_dict())
    record.write(ctx.folder)


def _candidate_networks(ctx: RunContext, selection: Selection, recovery: Recovery, dropped: list[str],
                        recovered: torch.nn.Module) -> dict[str, Candidate]:
    """unrecovered, each blend of it with the recovered weights (when recovery kept a state), recovered (and the
    other recipes that recovered); each in the recovered plan's form."""
    form = Form.of(dropped, selection.precision, None, selection.fp32_end_layers(selection.precision, dropped))
    unrecovered = drop_blocks(ctx.loaded.module, dropped)
    candidates = {"unrecovered": Candidate(unrecovered, form)}
    if recovery.kept == "recovered":
        for weight in ctx.preset.recovery.blends:
            blend = drop_blocks(ctx.loaded.module, dropped)
            blend.load_state_dict(blended_state(unrecovered.state_dict(), recovered.state_dict(), weight))
            candidates[blend_name(weight)] = Candidate(blend, form)
    candidates["recovered"] = Candidate(recovered, form)
    if recovery.kept == "recovered":
        candidates.update(_other_recipes(ctx, recovery, dropped, form))
    return candidates


def _other_recipes(ctx: RunContext, recovery: Recovery, dropped: list[str], form: Form) -> dict[str, Candidate]:
    """Each finished recipe that beat the unrecovered network on the selection split, other than the one
    called "recovered" (the lowest selection KL) and the quantization-aware ones: the report images choose
    among them all."""
    aware = {target.recipe for target in _quantization_aware_targets(recovery)}  # candidates of their own
    candidates = {}
    for trial in recovery.trials:
        if not trial.recovered or trial.recipe == recovery.recipe or trial.recipe in aware:
            continue
        network = drop_blocks(ctx.loaded.module, dropped)
        network.load_state_dict(torch.load(recipe_files(ctx.folder.path, trial.recipe)[1], map_location="cpu",
                                           weights_only=True))
        candidates[recovery.candidate_of(trial.recipe)] = Candidate(network.eval(), form)
    return candidates


def blend_name(weight: float) -> str:
    return "halfway" if weight == 0.5 else f"blend {weight:g}"


def _evaluate_candidates(teacher, candidates: dict[str, Candidate], image_sets: dict[str, TinySet],
                         prep: Preprocessing, calibration: TinySet, labelled: str) -> dict[str, ImageSetFigures]:
    """Per image set: agreement (and accuracy on the `labelled` set) of every candidate in its deployed form
    (precision, input size, FP32 end layers), KL, and what changed against unrecovered. Each candidate is
    converted (quantized on `calibration`) once for all sets: its logits on every set come from one pass over the
    sets' images together."""
    counts = [len(images) for images in image_sets.values()]
    made: dict[int | None, tuple[torch.Tensor, torch.Tensor]] = {}

    def at(size: int | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(every set's images, the calibration images) at `size`, prepared once per size."""
        if size not in made:
            made[size] = (torch.cat([tensors_at(images, prep, size) for images in image_sets.values()]),
                          tensors_at(calibration, prep, size)[:CALIBRATION_IMAGES])
        return made[size]

    reference = predict_logits(teacher, at(None)[0]).split(counts)
    logits = {name: deployed_logits(c.network, c.form.precision, *at(c.form.resolution), c.scheme_options).split(counts)
              for name, c in candidates.items()}
    return {set_name: _agreement_of(reference[i], {name: lg[i] for name, lg in logits.items()},
                                    images.labels if set_name == labelled else None, len(images))
            for i, (set_name, images) in enumerate(image_sets.items())}


def _agreement_of(reference: torch.Tensor, logits: dict[str, torch.Tensor], labels, count: int) -> ImageSetFigures:
    return ImageSetFigures(
        count, {name: compare(lg, reference, labels) for name, lg in logits.items()},
        {name: prediction_kl(lg, reference) for name, lg in logits.items()},
        {name: paired_change(logits["unrecovered"], lg, reference) for name, lg in logits.items() if name != "unrecovered"})


def _best_candidate(report: dict) -> str:
    """Highest top-1 agreement on the report images; KL breaks ties; in a full tie the least changed network.
    `report`: an image set's figures as evaluation.json holds them (ImageSetFigures.to_dict)."""
    names = [n for n in report["kl"]]  # unrecovered first, then blends by weight, then recovered
    return max(names, key=lambda n: (report[n]["top1_agreement"], -report["kl"][n], -names.index(n)))


def _verdict(report: ImageSetFigures, kept: str, deployed: str, skipped: bool = False) -> str:
    if skipped:
        return "no block was dropped, so nothing was recovered"
    if kept == "unrecovered":
        return "recovery did not improve the held-out selection split; the unrecovered network was kept"
    recovered_gain = report.top1("recovered") - report.top1("unrecovered")
    if deployed == "unrecovered":
        how = (f"LOWERED top-1 agreement on held-out report images by {-100 * recovered_gain:.1f} points"
               if recovered_gain < 0 else "did not raise top-1 agreement on held-out report images (nor lower their KL)")
        blends = ", and no other recovered network did better" if len(report.kl) > 2 else ""
        return (f"recovery {how}{_counted(report.changes['recovered'])}, although it improved the selection split"
                f"{blends}; the UNRECOVERED network was kept (the tiny set may not represent the report images)")
    gain = report.top1(deployed) - report.top1("unrecovered")
    what = ("recovery" if deployed == "recovered" else deployed.replace("recovered by", "recovery by recipe")
            if deployed.startswith("recovered by ") else f"the {deployed} blend of the recovered and unrecovered weights")
    if gain > 0:
        text = f"{what} raised top-1 agreement on held-out images by {100 * gain:.1f} points"
    else:
        text = f"{what} did not change top-1 agreement on held-out report images but lowered their KL"
    text += _counted(report.changes[deployed])
    if deployed != "recovered":
        other = ("the recipe with the lowest selection-split KL (`recovered`)" if deployed.startswith("recovered by ")
                 else "the fully recovered network")
        text += (f"; {other} agreed {100 * (report.top1('recovered') - report.top1(deployed)):+.1f}"
                 " points against it")
    return text


def _precision_verdict(report: ImageSetFigures, rival: dict[str, Candidate], deployed: str) -> str:
    if not rival:
        return ""
    name, candidate = next(iter(rival.items()))
    figure = f"{100 * report.top1(name):.1f}%"
    what = f"{candidate.form.precision}{size_words(candidate.form.resolution)}"  # and its input size when smaller
    if deployed == name:
        return (f"; the ORIGINAL NETWORK IN {what.upper()} (no block dropped) meets the budget alone and agreed "
                f"most on the report images ({figure}): it was deployed instead")
    return f"; the original network in {what} (no block dropped) also meets the budget and agreed {figure}"


def _quantization_verdict(compared: list[QuantizationAwareComparison]) -> str:
    parts = []
    for row in compared:
        candidate = row.target.candidate
        if not row.offered:
            parts.append(f"quantization-aware recovery ({candidate}) was not offered: {row.why_not_offered}")
            continue
        figures = (f"{_percent(row.quantization_aware_top1)} against {_percent(row.recover_then_quantize_top1)} "
                   f"for {row.target.compared_with} in {row.target.precision}")
        if row.deployed:
            parts.append(f"QUANTIZATION-AWARE recovery ({candidate}) agreed most on the report images "
                         f"({figures}): it was deployed")
        else:
            parts.append(f"quantization-aware recovery ({candidate}) agreed {figures}")
    return "".join(f"; {p}" for p in parts)


def _percent(fraction: float | None) -> str:
    return "n/a" if fraction is None else f"{100 * fraction:.1f}%"


def _counted(change: dict) -> str:
    """A paired change (pipeline.network.evaluation.paired_change) in words."""
    return (f" ({change['gained']} images gained, {change['lost']} lost, of {change['images']}; "
            f"{'significant' if change['p_value'] < 0.05 else 'could be chance'}, p={change['p_value']:.2f})")
