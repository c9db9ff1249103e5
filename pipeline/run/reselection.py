"""When the shipped file misses the budget, the next candidate is taken.

Plans are chosen on the survey's and the plans' own measurements; the file that ships is timed again beside the
original after export, and ratios of the same two files move by several percent between measurements (seen: a plan
measured at 0.745 against 0.75 whose INT8 file was timed at 0.796 in the same run). A verdict read from the plan
would sell a miss as met. So after export the deployed file's own ratio decides: when it misses the target by more
than the measurement's noise, every candidate of the same form (the same dropped blocks, precision, input size and FP32 end layers: they run the same
graph, so they would miss too) is excluded, and evaluation and export run again on the rest, as measure-and-reselect
does for block drops. At most MAX_RESELECTIONS times; when nothing else is eligible the miss ships, and the report
says so. Recorded in reselection.json.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import ClassVar

from pipeline.latency.budget import WITHIN_NOISE
from pipeline.run.context import RunContext
from pipeline.run.records import ArtefactLatency, DeployedNetwork, Evaluation, Exports, Recovery, StageRecord

MAX_RESELECTIONS = 2


@dataclass
class Reselections(StageRecord):
    """reselection.json: each miss that made the run choose again (the deployed network, its file, the ratio and
    target, and the candidates it excluded), every candidate excluded so far, and the miss that shipped because
    nothing else was eligible (`final_miss`, with `why`)."""

    FILE: ClassVar[str] = "reselection.json"

    misses: list[dict] = field(default_factory=list)
    excluded: list[str] = field(default_factory=list)
    final_miss: dict | None = None

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if not (k == "final_miss" and v is None)}


def excluded_candidates(ctx: RunContext) -> set[str]:
    """The candidates an earlier export found missing the budget (with every candidate of the same form)."""
    record = Reselections.read_if_there(ctx.folder)
    return set(record.excluded) if record is not None else set()


def reselect_after_a_miss(ctx: RunContext) -> bool:
    """True when the shipped file missed and another candidate is eligible: evaluation and export are to run again
    (their files are removed, the deployed network's record is put back to the recovered plan's)."""
    folder = ctx.folder
    if not folder.has(Exports.FILE) or not folder.has(Evaluation.FILE):
        return False
    shipped = Exports.read(folder).shipped
    latency = shipped.latency if shipped is not None else None
    if shipped is None or latency is None or not clearly_misses(latency):
        return False
    record = Reselections.read_if_there(folder) or Reselections()
    evaluation = Evaluation.read(folder)
    deployed = evaluation.deployed or Recovery.read(folder).kept  # folders before "deployed": what recovery kept
    forms = evaluation.forms
    same_form = [name for name, form in forms.items() if form == forms.get(deployed)] or [deployed]
    excluded = sorted(set(record.excluded) | set(same_form))
    remaining = [name for name in evaluation.eligible if name not in excluded]
    miss = {"network": deployed, "file": shipped.path, "ratio": latency.ratio,
            "target_ratio": latency.target_ratio, "excluded": same_form}
    if not remaining or len(record.misses) >= MAX_RESELECTIONS:
        why = "no other candidate is eligible" if not remaining else f"{MAX_RESELECTIONS} reselections were made"
        ctx.log(f"the shipped file {shipped.path} measured {latency.ratio:.3f} against the target "
                f"{latency.target_ratio:.3f}: it MISSES, and ships because {why}")
        if not record.final_miss:
            Reselections(record.misses, record.excluded, miss | {"why": why}).write(folder)
        return False
    ctx.log(f"the shipped file {shipped.path} measured {latency.ratio:.3f} against the target "
            f"{latency.target_ratio:.3f}: it misses; excluding {', '.join(same_form)} and choosing again among "
            f"{', '.join(remaining)}")
    # a run stopped between this record and the files' removal finds the same miss again: it is recorded once
    misses = record.misses if record.misses and record.misses[-1] == miss else [*record.misses, miss]
    Reselections(misses, excluded).write(folder)
    _restore_plan_record(ctx)
    _remove_artefacts(ctx)
    for name in (Exports.FILE, Evaluation.FILE):
        folder.file(name).unlink()
    return True


def _remove_artefacts(ctx: RunContext) -> None:
    """The exported files of the network that missed (export writes the next one's; none is left behind stale)."""
    for artefact in Exports.read(ctx.folder).artefacts.values():
        if artefact.path:
            path = ctx.folder.file(artefact.path)
            for file in (path, path.with_suffix(".bin")) if path.suffix == ".xml" else (path,):
                file.unlink(missing_ok=True)


def clearly_misses(latency: ArtefactLatency) -> bool:
    """The shipped file's own measurement is over the target by more than the measurement can tell apart (a file
    0.0015 over was seen: taking the next candidate for that swapped 87% agreement for 32%; the report calls such a
    file within noise instead)."""
    return latency.measured and latency.ratio is not None and latency.target_ratio is not None \
        and latency.ratio > latency.target_ratio + WITHIN_NOISE


def _restore_plan_record(ctx: RunContext) -> None:
    """dropped_blocks.json as recovery wrote it (evaluation replaced it by the deployed network's)."""
    DeployedNetwork.read(ctx.folder).as_planned().write(ctx.folder)
