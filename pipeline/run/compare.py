"""Several run folders side by side: `pipeline runs` lists them, `pipeline compare` tables and plots them.

A run is summarised from its own files (report.json when finished, else settings.json): model, target,
precision, budget, the measured latency ratio and the deployed network's top-1 agreement with the
original on the run's report images. Across runs, lower ratio and higher agreement are better; the
runs no other run beats on both are the Pareto front.
"""

from __future__ import annotations

import io
import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from pipeline.core.atomic import write_bytes_atomic, write_text_atomic
from pipeline.core.errors import UsageError
from pipeline.run.html_page import markdown_to_html
from pipeline.run.plots import MISSING_MATPLOTLIB, load_pyplot
from pipeline.run.runfolder import COMPLETE_FILE, SETTINGS_FILE
from pipeline.run.summary import RunRecords

LIST_DEPTH = 3  # `pipeline runs DIR` looks this many folder levels down for run folders


@dataclass(frozen=True)
class RunSummary:
    path: str
    finished: bool
    model: str
    target: str
    budget: str
    preset: str
    precision: str | None = None
    target_ratio: float | None = None
    measured_ratio: float | None = None
    predicted_ratio: float | None = None
    meets_budget: bool | None = None
    agreement: float | None = None  # deployed network's top-1 agreement with the original, report images
    report_images: int | None = None
    report_source: str | None = None
    deployed: str | None = None
    pareto: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


def summarise_run(path: Path) -> RunSummary:
    """One run folder's summary (a finished run from report.json, an unfinished one from settings.json)."""
    path = Path(path)
    if not (path / SETTINGS_FILE).is_file():
        raise UsageError(f"'{path}' is not a run folder (it has no {SETTINGS_FILE}); give folders made by pipeline run.")
    settings = _read(path / SETTINGS_FILE)["settings"]
    base = dict(path=str(path), model=settings.get("model", "?"), target=settings.get("target", "?"),
                budget=str(settings.get("budget", "?")), preset=settings.get("preset", "?"))
    if not (path / COMPLETE_FILE).is_file():
        return RunSummary(finished=False, precision=settings.get("precision"), **base)
    report = _read(path / COMPLETE_FILE)
    records = RunRecords.from_report(report, path)
    latency, shipped, held_out = records.latency, records.deployed, records.evaluation.report
    # what ships (its own plan's figures when a precision-only plan shipped), else the recovered plan's
    measured_ratio = latency.measured_ratio if shipped.measured_ratio is None else shipped.measured_ratio
    predicted_ratio = latency.predicted_ratio if shipped.predicted_ratio is None else shipped.predicted_ratio
    meets_budget = latency.meets_budget if shipped.meets_budget is None else shipped.meets_budget
    if shipped.artefact_ratio is not None:  # the shipped file's own timing: what the deployment gets
        measured_ratio, meets_budget = shipped.artefact_ratio, shipped.artefact_ratio <= latency.target_ratio
    # folders before precision plans recorded no precision but their latency table's
    precision = str(shipped.precision) if "deployed" in report or "precision" in report["selection"] \
        else latency.device.get("precision")
    deployed = records.deployed_name
    agreement = held_out.agreements.get(deployed)
    return RunSummary(
        finished=True, **base, precision=precision, target_ratio=latency.target_ratio, measured_ratio=measured_ratio,
        predicted_ratio=predicted_ratio, meets_budget=meets_budget,
        agreement=agreement.top1_agreement if agreement is not None else None, report_images=held_out.images,
        report_source=records.evaluation.report_source, deployed=deployed,
    )


def _read(file: Path) -> dict:
    try:
        return json.loads(file.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UsageError(f"cannot read '{file}': {exc}. The run folder is damaged; rerun its command with --overwrite.") from None


def list_runs(directory: Path = Path("runs")) -> list[RunSummary]:
    """Every run folder under `directory` (up to LIST_DEPTH levels down), newest folder name order."""
    directory = Path(directory)
    if not directory.is_dir():
        raise UsageError(f"'{directory}' is not a folder; give the folder that holds your run folders (default: runs).")
    found = sorted({p.parent for depth in range(LIST_DEPTH + 1)
                    for p in directory.glob("/".join(["*"] * depth + [SETTINGS_FILE]))})
    return [summarise_run(p) for p in found]


def latency_ratio(run: RunSummary) -> float | None:
    """The measured ratio, or the table's prediction when nothing could be measured (a table from elsewhere)."""
    return run.measured_ratio if run.measured_ratio is not None else run.predicted_ratio


def mark_pareto(runs: list[RunSummary]) -> list[RunSummary]:
    """Flag the runs that no other run beats on both latency ratio (lower) and agreement (higher)."""
    points = [(latency_ratio(r), r.agreement) for r in runs]

    def beaten(i: int, ratio: float, agreement: float) -> bool:
        return any(o_ratio <= ratio and o_agree >= agreement and (o_ratio, o_agree) != (ratio, agreement)
                   for j, (o_ratio, o_agree) in enumerate(points)
                   if j != i and o_ratio is not None and o_agree is not None)

    return [replace(r, pareto=ratio is not None and agreement is not None and not beaten(i, ratio, agreement))
            for i, (r, (ratio, agreement)) in enumerate(zip(runs, points))]


@dataclass(frozen=True)
class Comparison:
    runs: list[RunSummary]
    markdown: Path
    html: Path
    plot: Path | None  # None: matplotlib missing
    note: str | None


def compare_runs(run_dirs: list[Path], out: Path) -> Comparison:
    """Summarise finished runs, mark the Pareto front, write comparison.md/.html and pareto.png into `out`."""
    if not run_dirs:
        raise UsageError("give at least one run folder to compare (see `pipeline runs` for the ones here).")
    runs = [summarise_run(Path(d)) for d in run_dirs]
    unfinished = [r.path for r in runs if not r.finished]
    if unfinished:
        raise UsageError(f"run folder(s) not finished (no {COMPLETE_FILE}): {', '.join(unfinished)}; rerun their "
                         "command to finish them, or leave them out.")
    runs = mark_pareto(runs)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    plot = _pareto_plot(runs, out / "pareto.png")
    note = _comparability_note(runs)
    markdown = comparison_markdown(runs, plot.name if plot else None, note)
    write_text_atomic(out / "comparison.md", markdown)
    write_text_atomic(out / "comparison.html", markdown_to_html(markdown, "Run comparison", out))
    return Comparison(runs, out / "comparison.md", out / "comparison.html", plot, note)


def _comparability_note(runs: list[RunSummary]) -> str | None:
    """Agreement is measured on each run's own report images: say so when they are not the same kind."""
    sources = {(r.report_source, r.report_images) for r in runs}
    if len(sources) <= 1:
        return None
    return ("The runs' agreements were measured on different report images ("
            + "; ".join(f"{n} from the {s}" for s, n in sorted(sources, key=str)) + "), so compare them with care.")


def _fmt(x, pattern: str) -> str:
    return "n/a" if x is None else pattern.format(x)


def comparison_markdown(runs: list[RunSummary], plot_file: str | None, note: str | None) -> str:
    lines = ["# Run comparison", "",
             f"{len(runs)} run(s). Latency ratio: measured end to end (predicted from the table, marked *, where "
             "nothing could be measured). Agreement: the deployed network's top-1 agreement with the original on "
             "the run's report images. Pareto: no other run is both faster and more faithful.", "",
             "| run | model | target | precision | budget | preset | latency ratio | meets budget | agreement "
             "| report images | deployed | Pareto |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(runs, key=lambda r: (latency_ratio(r) is None, latency_ratio(r))):
        ratio = _fmt(latency_ratio(r), "{:.3f}") + ("*" if r.measured_ratio is None else "")
        meets = {True: "yes", False: "**no**", None: "n/a"}[r.meets_budget]
        lines.append(f"| `{Path(r.path).name}` | {r.model} | {r.target} | {r.precision or 'n/a'} | {r.budget} | "
                     f"{r.preset} | {ratio} | {meets} | {_fmt(r.agreement, '{:.1%}')} | {r.report_images or 'n/a'} | "
                     f"{r.deployed or 'n/a'} | {'**yes**' if r.pareto else ''} |")
    if note:
        lines += ["", note]
    lines += ["", "## Pareto plot", ""]
    if plot_file is None:
        lines.append(f"Plot skipped: {MISSING_MATPLOTLIB}.")
    else:
        lines += [f"![Latency ratio against agreement]({plot_file})", "",
                  "*Each run's latency ratio against its agreement; the Pareto front is joined (left is faster, "
                  "higher agrees more with the original: upper left is best).*"]
    return "\n".join(lines) + "\n"


def _pareto_plot(runs: list[RunSummary], destination: Path) -> Path | None:
    plt = load_pyplot()
    if plt is None:
        return None
    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=100)
    try:
        drawn = [r for r in runs if latency_ratio(r) is not None and r.agreement is not None]
        for target in sorted({r.target for r in drawn}):
            group = [r for r in drawn if r.target == target]
            ax.scatter([latency_ratio(r) for r in group], [r.agreement for r in group], label=target, s=50)
        for r in drawn:
            ax.annotate(Path(r.path).name[:28], (latency_ratio(r), r.agreement), fontsize=7, xytext=(3, 3),
                        textcoords="offset points")
        front = sorted((latency_ratio(r), r.agreement) for r in drawn if r.pareto)
        if front:
            ax.step([x for x, _ in front], [y for _, y in front], where="post", color="tab:red", label="Pareto front")
        ax.set_xlabel("latency ratio (compressed / original)")
        ax.set_ylabel("top-1 agreement with the original")
        ax.legend(fontsize=8, title="target")
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png")
        write_bytes_atomic(destination, buffer.getvalue())
    finally:
        plt.close(fig)
    return destination
