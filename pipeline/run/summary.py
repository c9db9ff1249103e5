"""A finished run as typed records: what `run()` returns, what the CLI prints and the report renders from.

report.json is every stage file plus two summaries (`latency`: the recovered plan's prediction and measurement;
`deployed`: what ships, with its own measured ratio); `RunRecords.from_report` reads it back into records, so the
report, the CLI line and `--json` all read one typed value.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from pipeline.core.errors import UsageError
from pipeline.latency.precision import Precision
from pipeline.run.records import DeployedNetwork, Evaluation, Exports, Form, Recovery, Selection, known_keys
from pipeline.run.runfolder import RunFolder


@dataclass
class LatencySummary:
    """The recovered plan's latency: the table's prediction and the end-to-end measurement of its last attempt."""

    device: dict  # the latency table's fingerprint
    table_source: str
    table_path: str | None
    original_ms_table: float
    predicted_ms: float
    predicted_ratio: float
    measured_original_ms: float | None
    measured_compressed_ms: float | None
    measured_ratio: float | None
    target_ratio: float
    meets_budget: bool | None
    latency_model: str = "additive"  # tables before latency models: additive

    @classmethod
    def of(cls, table_record: dict, selection: Selection) -> "LatencySummary":
        table, final = table_record["table"], selection.final_attempt
        measured = final.get("measured")
        # a plan in another precision records its ratios in its own frame and against the FP32 original
        predicted_ratio = final.get("predicted_ratio_vs_fp32", final.get("predicted_ratio", 1.0))
        original_ms = table["full"]["median_ms"]
        return cls(
            device=table["fingerprint"], table_source=table_record["source"], table_path=table_record["path"],
            original_ms_table=original_ms,
            predicted_ms=predicted_ratio * original_ms if "predicted_ratio_vs_fp32" in final
            else final.get("predicted_ms", predicted_ratio * original_ms),
            predicted_ratio=predicted_ratio,
            measured_original_ms=measured["original"]["median_ms"] if measured else None,
            measured_compressed_ms=measured["compressed"]["median_ms"] if measured else None,
            measured_ratio=final.get("measured_ratio_vs_fp32", measured["ratio_median"]) if measured else None,
            target_ratio=selection.target_ratio, meets_budget=final.get("meets_budget"),
            latency_model=table.get("latency_model", {}).get("kind", "additive"))

    @classmethod
    def from_dict(cls, data: dict) -> "LatencySummary":
        return cls(**data)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class DeployedSummary:
    """What ships: its form, its candidate name and, when a precision-only plan won, that plan's figures; when the
    shipped file was timed, its own ratio (`artefact_ratio`)."""

    precision: Precision
    dropped: list[str]
    network: str | None  # the candidate name evaluation chose
    input_resolution: int | None = None
    model_resolution: int | None = None
    predicted_ratio: float | None = None
    measured_ratio: float | None = None
    meets_budget: bool | None = None
    plan: str | None = None
    artefact: str | None = None
    artefact_ratio: float | None = None

    def __post_init__(self) -> None:
        self.precision = Precision(self.precision)

    @classmethod
    def of(cls, deployed: DeployedNetwork, evaluation: Evaluation | None, model_resolution: int | None,
           selection: Selection, exports: Exports) -> "DeployedSummary":
        summary = cls(deployed.precision, deployed.dropped, evaluation.deployed if evaluation else None,
                      deployed.input_resolution, model_resolution)
        plan = selection.precision_only
        if plan is not None and not deployed.dropped and (plan.precision, plan.resolution) == (
                deployed.precision, deployed.input_resolution):  # the precision-only plan shipped (plain or QAT)
            summary.predicted_ratio, summary.measured_ratio = plan.predicted_ratio, plan.measured_ratio
            summary.meets_budget, summary.plan = plan.meets_budget, plan.name
        shipped = exports.shipped
        if shipped is not None and shipped.latency is not None and shipped.latency.measured:
            summary.artefact, summary.artefact_ratio = shipped.path, shipped.latency.ratio
        return summary

    @classmethod
    def from_dict(cls, data: dict) -> "DeployedSummary":
        data = {"dropped": [], "network": None, "precision": "fp32"} | data
        return cls(**known_keys(cls, data))

    def to_dict(self) -> dict:
        data = asdict(self)
        return {k: v for k, v in data.items() if v is not None or k in ("network", "input_resolution",
                                                                         "model_resolution")}

    @property
    def form(self) -> Form:
        return Form.of(self.dropped, self.precision, self.input_resolution)

    def shown(self) -> str:
        """The deployed network once: its candidate name, and its form when the name does not say it."""
        form = self.form.describe()
        return form if self.network in (None, form) else f"{self.network} ({form})"


@dataclass
class RunRecords:
    """Every record of a finished run folder (report.json's content), typed."""

    settings: dict  # settings.json's "settings": the run's options as given
    selection: Selection
    latency: LatencySummary
    deployed: DeployedSummary
    evaluation: Evaluation
    recovery: Recovery
    exports: Exports = field(default_factory=Exports)
    precisions: dict = field(default_factory=dict)  # precisions.json: options, resolutions, tables
    candidates: dict = field(default_factory=dict)  # candidates.json
    data: dict = field(default_factory=dict)  # data.json: the tiny set and preprocessing
    reselection: dict | None = None
    timings: dict = field(default_factory=dict)
    plots: dict = field(default_factory=dict)
    run_dir: Path | None = None

    @classmethod
    def from_report(cls, data: dict, run_dir: Path | None = None) -> "RunRecords":
        """report.json's dict (or one made by `pipeline.run.report.collect` and the summaries); a damaged one is a
        one-line error naming the folder."""
        try:
            return cls._from_report(data, run_dir)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            what = f"no field {exc}" if isinstance(exc, KeyError) else f"{type(exc).__name__}: {exc}".splitlines()[0]
            raise UsageError(f"the report of run folder '{run_dir}' cannot be read ({what}); it is damaged or was "
                             "written by another tool: rerun its command with --overwrite.") from None

    @classmethod
    def _from_report(cls, data: dict, run_dir: Path | None) -> "RunRecords":
        selection = Selection.from_dict(data["selection"])
        return cls(
            settings=data.get("settings", {}).get("settings", {}), selection=selection,
            latency=LatencySummary.from_dict(data["latency"]),
            deployed=DeployedSummary.from_dict(data.get("deployed") or {"dropped": selection.dropped,
                                                                         "precision": selection.precision}),
            evaluation=Evaluation.from_dict(data["evaluation"]), recovery=Recovery.from_dict(data["recovery"]),
            exports=Exports.from_dict(data.get("export") or {}), precisions=data.get("precisions") or {},
            candidates=data.get("candidates") or {}, data=data.get("data") or {}, reselection=data.get("reselection"),
            timings=data.get("timings_s") or {}, plots=data.get("plots") or {}, run_dir=run_dir)

    @classmethod
    def read(cls, run_dir: Path) -> "RunRecords":
        """A finished run folder's records, from its report.json."""
        return cls.from_report(RunFolder(run_dir).read_json("report.json"), run_dir)

    @property
    def deployed_name(self) -> str:
        """The candidate that shipped (older folders: what recovery kept)."""
        return self.evaluation.deployed_or(self.recovery.kept)


@dataclass
class RunResult:
    """What `run()` returns: the run folder and, on the process that wrote the report (rank 0 under torchrun), its
    records."""

    folder: RunFolder
    records: RunRecords | None = None

    @property
    def path(self) -> Path:
        return self.folder.path

    @classmethod
    def of(cls, folder: RunFolder) -> "RunResult":
        return cls(folder, RunRecords.read(folder.path) if folder.has("report.json") else None)
