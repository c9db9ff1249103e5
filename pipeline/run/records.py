"""Typed stage records: what the stages store in the run folder and hand each other, read and written here.

Each record has its file name, a schema version and one migration from the run folders older versions wrote, so a
reader (and mypy) can follow a value from the stage that writes it to the one that reads it, and a default for an old
folder is written once. Keys a record does not know are kept (`extra`) where a file carries format-specific ones.
The run folder's other files are plain JSON (see docs/run-folder.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, ClassVar, TypeVar

from pipeline.latency.plans import Plan, size_words
from pipeline.latency.precision import Precision, PrecisionOption
from pipeline.latency.selection import BlockScore
from pipeline.network.evaluation import Agreement
from pipeline.run.runfolder import RunFolder
from profilers import LatencyTable

R = TypeVar("R", bound="StageRecord")


def known_keys(record: Any, data: dict) -> dict:
    """`data` with only the keys `record` (a dataclass) has fields for: what a newer or older file adds is left out."""
    names = {f.name for f in fields(record)}
    return {k: v for k, v in data.items() if k in names}


class StageRecord:
    """A run-folder JSON file as a dataclass: FILE, SCHEMA, migrate, from_dict/to_dict, read/write."""

    FILE: ClassVar[str]
    SCHEMA: ClassVar[int] = 1

    @classmethod
    def migrate(cls, data: dict) -> dict:
        """Older folders: missing keys take the fields' defaults; keys this version does not know are left out."""
        kept = known_keys(cls, data)
        return kept | ({"schema": cls.SCHEMA} if "schema" in {f.name for f in fields(cls)} else {})  # type: ignore[arg-type]

    @classmethod
    def from_dict(cls: type[R], data: dict) -> R:
        return cls(**cls.migrate(data))

    def to_dict(self) -> dict:
        return asdict(self)  # type: ignore[call-overload]

    @classmethod
    def read(cls: type[R], folder: RunFolder) -> R:
        return cls.from_dict(folder.read_json(cls.FILE))

    @classmethod
    def read_if_there(cls: type[R], folder: RunFolder) -> R | None:
        return cls.read(folder) if folder.has(cls.FILE) else None

    def write(self, folder: RunFolder) -> None:
        folder.write_json(self.FILE, self.to_dict())


def _without_nones(data: dict, record: Any) -> dict:
    """`data` less the optional fields left at None (the file then reads as older versions wrote it)."""
    optional = {f.name for f in fields(record) if f.default is None}
    return {k: v for k, v in data.items() if not (k in optional and v is None)}


@dataclass(frozen=True)
class Form:
    """A candidate network's identity as data: what it lacks, what it runs in, what it is fed."""

    dropped: tuple[str, ...] = ()
    precision: Precision = Precision("fp32")
    resolution: int | None = None  # the input size, when smaller than the model's own
    fp32_end_layers: int = 0  # compute layers at each end kept in FP32 (INT8 and half-precision plans)

    @classmethod
    def of(cls, dropped: list[str] | tuple[str, ...], precision: str, resolution: int | None = None,
           fp32_end_layers: int = 0) -> "Form":
        return cls(tuple(sorted(dropped)), Precision(precision), resolution, int(fp32_end_layers))

    @classmethod
    def from_dict(cls, data: dict) -> "Form":
        return cls.of(data.get("dropped", []), data.get("precision", "fp32"), data.get("resolution"),
                      data.get("fp32_end_layers", 0))

    def to_dict(self) -> dict:
        return {"dropped": list(self.dropped), "precision": str(self.precision), "resolution": self.resolution,
                "fp32_end_layers": self.fp32_end_layers}

    def describe(self) -> str:
        """"int8-qop-u8s8-channel at 160 px, no block dropped": the words plans and reports use."""
        blocks = f"{len(self.dropped)} blocks dropped" if self.dropped else "no block dropped"
        return f"{self.precision}{size_words(self.resolution)}, {blocks}"


@dataclass(frozen=True)
class DeployedNetwork(StageRecord):
    """dropped_blocks.json: the network the run deploys. Recovery writes the recovered plan's; evaluation replaces it
    by the network the report images chose (and keeps the plan's in `plan_dropped`/`plan_precision` for a
    reselection)."""

    FILE: ClassVar[str] = "dropped_blocks.json"
    SCHEMA: ClassVar[int] = 2  # 1 (no `schema` key): written before precisions, end layers or input sizes

    dropped: list[str]
    model: str = ""
    weights_source: str = ""
    resolution: int | None = None  # the model's own input size
    precision: Precision = Precision("fp32")
    int8_fp32_end_layers: int = 0  # compute layers at each end kept in FP32 (INT8 and half-precision plans)
    input_resolution: int | None = None  # the deployed input size, when a --min-resolution plan shipped
    plan_dropped: list[str] | None = None
    plan_precision: str | None = None
    rebuild: str = ""
    schema: int = SCHEMA

    def __post_init__(self) -> None:
        object.__setattr__(self, "precision", Precision(self.precision))

    @property
    def form(self) -> Form:
        return Form.of(self.dropped, self.precision, self.input_resolution, self.int8_fp32_end_layers)

    def deploying(self, form: Form) -> "DeployedNetwork":
        """This record once evaluation chose what ships; the recovered plan's blocks and precision are kept (and,
        when the same blocks ship, their order as recovery recorded it: a form holds them sorted)."""
        dropped = self.dropped if sorted(self.dropped) == list(form.dropped) else list(form.dropped)
        return replace(self, dropped=dropped, precision=form.precision,
                       int8_fp32_end_layers=form.fp32_end_layers, input_resolution=form.resolution,
                       plan_dropped=self.dropped if self.plan_dropped is None else self.plan_dropped,
                       plan_precision=self.precision if self.plan_precision is None else self.plan_precision)

    def as_planned(self) -> "DeployedNetwork":
        """The record as recovery wrote it (before evaluation chose), for choosing again."""
        if self.plan_dropped is None:
            return self
        return replace(self, dropped=self.plan_dropped, precision=Precision(self.plan_precision or "fp32"),
                       int8_fp32_end_layers=0, input_resolution=None)


@dataclass
class MixedPrecisionEntry:
    """One plan's mixed-precision ladder (selection.json "mixed_precision"): the FP32 end layers chosen, and why."""

    precision: str
    dropped: list[str]
    fp32_end_layers: int = 0
    why: str = ""
    tried: list[dict] = field(default_factory=list)

    @classmethod
    def from_dict(cls, data: dict) -> "MixedPrecisionEntry":
        return cls(**known_keys(cls, data))


@dataclass
class Selection(StageRecord):
    """selection.json: every plan measured, the one recovery runs on (`chosen_plan`), the precision-only plan the
    report images may deploy instead (`precision_plan`), and the mixed-precision ladders tried on them."""

    FILE: ClassVar[str] = "selection.json"
    SCHEMA: ClassVar[int] = 2  # 1: written before plans per precision (one FP32 plan, always recovered)

    budget: str
    target_ratio: float
    selector: str = "greedy"
    dropped: list[str] = field(default_factory=list)  # the recovered plan's
    precision: Precision = Precision("fp32")  # the recovered plan's
    scores: list[BlockScore] = field(default_factory=list)
    attempts: list[dict] = field(default_factory=list)
    chosen_attempt: int = -1
    plans: list[Plan] = field(default_factory=list)
    chosen_plan: int | None = 0  # folders before plans: their one plan dropped blocks
    precision_plan: int | None = None
    why: str = ""
    mixed_precision: list[MixedPrecisionEntry] | None = None  # None: the mixed-precision step has not run
    resolution_hint: dict | None = None  # a smaller input size's figures, when the hint stage found one to say
    hint_made: bool = False  # whether the hint stage ran (the file then has "resolution_hint", null for no hint)
    schema: int = SCHEMA

    @classmethod
    def migrate(cls, data: dict) -> dict:
        return super().migrate(data) | {"hint_made": "resolution_hint" in data}

    def __post_init__(self) -> None:
        self.precision = Precision(self.precision)
        self.scores = [s if isinstance(s, BlockScore) else BlockScore.from_dict(s) for s in self.scores]
        self.plans = [p if isinstance(p, Plan) else Plan.from_dict(p) for p in self.plans]
        if self.mixed_precision is not None:
            self.mixed_precision = [e if isinstance(e, MixedPrecisionEntry) else MixedPrecisionEntry.from_dict(e)
                                    for e in self.mixed_precision]

    def to_dict(self) -> dict:
        data = asdict(self) | {"plans": [p.to_dict() for p in self.plans]}
        unset = {"hint_made"} | ({"mixed_precision"} if self.mixed_precision is None else set()) \
            | (set() if self.hint_made else {"resolution_hint"})
        return {k: v for k, v in data.items() if k not in unset}

    @property
    def chosen(self) -> Plan | None:
        """The plan recovery runs on (None: no plan with dropped blocks was built)."""
        return self.plans[self.chosen_plan] if self.chosen_plan is not None and self.chosen_plan < len(self.plans) \
            else None

    @property
    def precision_only(self) -> Plan | None:
        """The original in one precision (maybe at a smaller size), when such a plan meets the budget."""
        return self.plans[self.precision_plan] if self.precision_plan is not None else None

    @property
    def depth_planned(self) -> bool:
        """Whether a plan with dropped blocks was built (and so scored, recovered and reported)."""
        return bool(self.dropped) or self.chosen_plan is not None

    @property
    def final_attempt(self) -> dict:
        """The recovered plan's last end-to-end attempt (its measurement and prediction)."""
        return self.attempts[self.chosen_attempt] if self.attempts else {}

    def fp32_end_layers(self, precision: str, dropped: list[str] | tuple[str, ...]) -> int:
        """The end layers the mixed-precision step kept in FP32 for the network in `precision` without `dropped`
        (0 for any network it did not try)."""
        for entry in self.mixed_precision or []:
            if entry.fp32_end_layers and entry.precision == precision and sorted(entry.dropped) == sorted(dropped):
                return int(entry.fp32_end_layers)
        return 0


@dataclass
class TableRecord(StageRecord):
    """latency_table.json: the latency table the run uses and where it came from (measured here, the store, a
    file); until a plan needs dropped blocks, a measured one may hold the whole network only (`has_savings`)."""

    FILE: ClassVar[str] = "latency_table.json"
    SCHEMA: ClassVar[int] = 2  # 1 (no `schema` key): always with every block's saving

    source: str  # measured, store or file
    table: LatencyTable
    path: str | None = None
    reprofiled: bool = False  # made by --reprofile (a resumed --reprofile run keeps it)
    schema: int = SCHEMA

    def __post_init__(self) -> None:
        if isinstance(self.table, dict):
            self.table = LatencyTable.from_dict(self.table)

    def to_dict(self) -> dict:
        return {"source": self.source, "path": self.path, "table": self.table.to_dict(), "reprofiled": self.reprofiled,
                "schema": self.schema}


@dataclass
class Precisions(StageRecord):
    """precisions.json: every precision surveyed on the original (kept or dropped, and why), the same at smaller
    input sizes (--min-resolution), and the latency table of each precision that needed one."""

    FILE: ClassVar[str] = "precisions.json"
    SCHEMA: ClassVar[int] = 2  # 1 (no `schema` key): before input sizes

    options: list[PrecisionOption]
    tables: dict[str, LatencyTable] = field(default_factory=dict)
    resolutions: list[PrecisionOption] = field(default_factory=list)
    schema: int = SCHEMA

    def __post_init__(self) -> None:
        self.options = [o if isinstance(o, PrecisionOption) else PrecisionOption.from_dict(o) for o in self.options]
        self.resolutions = [o if isinstance(o, PrecisionOption) else PrecisionOption.from_dict(o)
                            for o in self.resolutions]
        self.tables = {p: t if isinstance(t, LatencyTable) else LatencyTable.from_dict(t) for p, t in self.tables.items()}

    def to_dict(self) -> dict:
        return {"options": [o.to_dict() for o in self.options], "tables": {p: t.to_dict() for p, t in self.tables.items()},
                "resolutions": [o.to_dict() for o in self.resolutions], "schema": self.schema}

    def fastest_kept(self, which: Callable[[Precision], bool]) -> Precision | None:
        """The fastest kept precision of a kind (e.g. `lambda p: p.is_openvino`), None when the run kept none."""
        kept = [o for o in self.options if o.kept and which(Precision(o.precision))]
        return Precision(min(kept, key=lambda o: o.latency_ratio).precision) if kept else None


@dataclass
class RecipeTrial:
    """One recovery recipe's outcome, as recovery.json lists it (recipe_<name>.json holds the whole)."""

    recipe: str
    status: str  # finished, diverged, unavailable, skipped
    seconds: float = 0.0
    reason: str | None = None
    description: str = ""
    steps: int | None = None
    lr: float | None = None
    stopped: str | None = None
    kept: str | None = None  # recovered or unrecovered
    best_step: int | None = None
    selection_kl_before: float | None = None
    selection_kl_after: float | None = None
    checks: list = field(default_factory=list)
    lr_search: dict | None = None

    @classmethod
    def from_dict(cls, data: dict) -> "RecipeTrial":
        return cls(**known_keys(cls, data))

    @property
    def recovered(self) -> bool:
        """Finished, and beat the unrecovered network on the selection split."""
        return self.status == "finished" and self.kept == "recovered"


@dataclass
class Recovery(StageRecord):
    """recovery.json: what recovery kept. With the fast preset, every recipe tried (`recipes`; `recipe` is the one
    with the lowest selection KL) and the quantization-aware trials; with one method, its loss curve."""

    FILE: ClassVar[str] = "recovery.json"
    SCHEMA: ClassVar[int] = 2  # 1 (no `schema` key): the same keys

    settings: dict
    kept: str  # recovered or unrecovered
    losses: list[float] = field(default_factory=list)
    best_step: int | None = None
    selection_kl_before: float | None = None
    selection_kl_after: float | None = None
    checks: list = field(default_factory=list)
    train_device: str | None = None
    recipes: list[RecipeTrial] | None = None  # None: one method, no recipes tried
    recipe: str | None = None
    recovery_time_s: float | None = None
    schedule: dict | None = None
    quantization_aware: list[dict] = field(default_factory=list)  # QuantizationAwareTarget records
    skipped: str | None = None  # why nothing was recovered
    stopped: str | None = None
    lr_search: dict | None = None
    ranks: int | None = None
    batch_per_rank: int | None = None
    effective_batch: int | None = None
    steps_run: int | None = None  # report.json keeps these three in place of the loss curve
    loss_first: float | None = None
    loss_last: float | None = None
    schema: int = SCHEMA

    def __post_init__(self) -> None:
        if self.recipes is not None:
            self.recipes = [t if isinstance(t, RecipeTrial) else RecipeTrial.from_dict(t) for t in self.recipes]

    def to_dict(self) -> dict:
        data = asdict(self)
        if self.recipes is not None:
            data["recipes"] = [_without_nones(asdict(t), t) for t in self.recipes]
        return _without_nones(data, self)

    @property
    def steps(self) -> int:
        return self.steps_run if self.steps_run is not None else len(self.losses)

    @property
    def trials(self) -> list[RecipeTrial]:
        return self.recipes or []

    def candidate_of(self, recipe: str) -> str:
        """The candidate network a recipe became: its quantization-aware candidate, `recovered` (the recipe with the
        lowest selection KL) or `recovered by <recipe>`."""
        aware = {t["recipe"]: t["candidate"] for t in self.quantization_aware}
        if recipe in aware:
            return aware[recipe]
        return "recovered" if recipe == self.recipe else recipe_name(recipe)


def recipe_name(recipe: str) -> str:
    """The candidate name of a recipe other than the one recovery.json calls "recovered"."""
    return f"recovered by {recipe}"


@dataclass
class ImageSetFigures:
    """One image set's figures in evaluation.json: each candidate's agreement (and accuracy when labelled), its KL,
    and what changed against the unrecovered network."""

    images: int
    agreements: dict[str, Agreement]
    kl: dict[str, float]
    changes: dict[str, dict] = field(default_factory=dict)  # gained, lost, images, p_value

    @classmethod
    def from_dict(cls, data: dict) -> "ImageSetFigures":
        names = list(data["kl"])
        changes = data.get("changes") or ({"recovered": data["change"]} if "change" in data else {})
        return cls(data["images"], {n: Agreement.from_dict(data[n]) for n in names}, dict(data["kl"]), dict(changes))

    def to_dict(self) -> dict:
        out: dict[str, Any] = {"images": self.images}
        out.update({name: a.to_dict() for name, a in self.agreements.items()})
        out["kl"] = self.kl
        out["changes"] = self.changes
        if "recovered" in self.changes:
            out["change"] = self.changes["recovered"]  # as run folders before blends recorded
        return out

    def top1(self, name: str) -> float:
        return self.agreements[name].top1_agreement

    def only(self, names: list[str]) -> "ImageSetFigures":
        """These figures with only `names` competing (their order kept)."""
        return replace(self, kl={n: k for n, k in self.kl.items() if n in names})


@dataclass
class Evaluation(StageRecord):
    """evaluation.json: every candidate judged on the report images (and the training images), the one deployed and
    the verdict. `forms` says what each candidate is; `eligible`, which could ship."""

    FILE: ClassVar[str] = "evaluation.json"
    SCHEMA: ClassVar[int] = 2  # 1: before `forms`, `eligible` (and, earlier, blends and `candidates`)

    report_source: str
    report: ImageSetFigures
    train: ImageSetFigures
    candidates: list[str] = field(default_factory=lambda: ["unrecovered", "recovered"])
    deployed: str | None = None  # None in folders before it: recovery's `kept`
    deployed_precision: Precision = Precision("fp32")
    deployed_resolution: int | None = None
    eligible: list[str] = field(default_factory=list)
    forms: dict[str, Form] = field(default_factory=dict)
    quantization_aware: list[dict] = field(default_factory=list)
    recovered_gain: float = 0.0
    agreement_gain: float = 0.0
    verdict: str = ""
    schema: int = SCHEMA

    def __post_init__(self) -> None:
        self.deployed_precision = Precision(self.deployed_precision)
        if isinstance(self.report, dict):
            self.report = ImageSetFigures.from_dict(self.report)
        if isinstance(self.train, dict):
            self.train = ImageSetFigures.from_dict(self.train)
        self.forms = {n: f if isinstance(f, Form) else Form.from_dict(f) for n, f in self.forms.items()}

    def to_dict(self) -> dict:
        return asdict(self) | {"report": self.report.to_dict(), "train": self.train.to_dict(),
                               "forms": {n: f.to_dict() for n, f in self.forms.items()}}

    def deployed_or(self, kept: str) -> str:
        return self.deployed or kept


@dataclass
class ArtefactLatency:
    """An exported file timed beside the original on the target (or why it was not)."""

    measured: bool
    reason: str | None = None
    backend: str | None = None
    precision: str | None = None
    artefact_ms: float | None = None
    original_ms: float | None = None
    original_form: str | None = None
    ratio: float | None = None
    target_ratio: float | None = None
    meets_budget: bool | None = None
    stop_reason: str | None = None
    timed_with: list[str] = field(default_factory=list)

    @classmethod
    def from_dict(cls, data: dict) -> "ArtefactLatency":
        return cls(**known_keys(cls, data))

    def to_dict(self) -> dict:
        data = _without_nones(asdict(self), self)
        return data if self.measured else {k: v for k, v in data.items() if k in ("measured", "reason")}


@dataclass
class Artefact:
    """One exported file (export.json entry): where, how big, its check against PyTorch, its own latency, and
    whether it carries the deployed network. Format-specific keys (opset, sha256, ...) stay in `extra`."""

    format: str
    path: str
    size_bytes: int
    check: dict
    latency: ArtefactLatency | None = None  # None: exported by a version that did not time artefacts
    deployed: bool = False
    loading_snippet: str | None = None
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict) -> "Artefact":
        known = {f.name for f in fields(cls)} - {"extra"}
        latency = data.get("latency")
        return cls(**{k: v for k, v in data.items() if k in known and k != "latency"},
                   latency=ArtefactLatency.from_dict(latency) if latency is not None else None,
                   extra={k: v for k, v in data.items() if k not in known})

    def to_dict(self) -> dict:
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("extra", "latency")}
        if self.latency is not None:
            data["latency"] = self.latency.to_dict()
        if not self.deployed:
            del data["deployed"]
        if self.loading_snippet is None:
            del data["loading_snippet"]
        return data | self.extra


@dataclass
class Exports:
    """export.json: format name -> its artefact."""

    FILE: ClassVar[str] = "export.json"

    artefacts: dict[str, Artefact] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict) -> "Exports":
        return cls({fmt: Artefact.from_dict(r) for fmt, r in data.items() if isinstance(r, dict)})

    def to_dict(self) -> dict:
        return {fmt: a.to_dict() for fmt, a in self.artefacts.items()}

    @classmethod
    def read(cls, folder: RunFolder) -> "Exports":
        """The folder's artefacts (none before export)."""
        return cls.from_dict(folder.read_json(cls.FILE)) if folder.has(cls.FILE) else cls()

    def write(self, folder: RunFolder) -> None:
        folder.write_json(self.FILE, self.to_dict())

    @property
    def shipped(self) -> Artefact | None:
        """The artefact that carries the deployed network."""
        return next((a for a in self.artefacts.values() if a.deployed), None)
