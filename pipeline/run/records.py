"""Typed stage records: what the stages store in the run folder and hand each other, read and written here.

Each record has its file name, a schema version and one migration from the run folders older versions wrote, so a
reader (and mypy) can follow a value from the stage that writes it to the one that reads it, and a default for an old
folder is written once. The run folder's other files are still plain JSON (see docs/run-folder.md).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import ClassVar

from pipeline.run.runfolder import RunFolder


@dataclass(frozen=True)
class DeployedNetwork:
    """dropped_blocks.json: the network the run deploys. Recovery writes the recovered plan's; evaluation replaces it
    by the network the report images chose (and keeps the plan's in `plan_dropped`/`plan_precision` for a
    reselection)."""

    FILE: ClassVar[str] = "dropped_blocks.json"
    SCHEMA: ClassVar[int] = 2

    dropped: list[str]
    model: str = ""
    weights_source: str = ""
    resolution: int | None = None  # the model's own input size
    precision: str = "fp32"
    int8_fp32_end_layers: int = 0  # compute layers at each end kept in FP32 (INT8 and half-precision plans)
    input_resolution: int | None = None  # the deployed input size, when a --min-resolution plan shipped
    plan_dropped: list[str] | None = None
    plan_precision: str | None = None
    rebuild: str = ""
    schema: int = SCHEMA

    @classmethod
    def migrate(cls, data: dict) -> dict:
        """Schema 1 (no `schema` key): folders written before precisions (FP32), end layers or input sizes; their
        missing keys take the fields' defaults (keys this version does not know are left out)."""
        known = {f.name for f in fields(cls)}
        return {k: v for k, v in data.items() if k in known} | {"schema": cls.SCHEMA}

    @classmethod
    def from_dict(cls, data: dict) -> "DeployedNetwork":
        return cls(**cls.migrate(data))

    @classmethod
    def read(cls, folder: RunFolder) -> "DeployedNetwork":
        return cls.from_dict(folder.read_json(cls.FILE))

    def write(self, folder: RunFolder) -> None:
        folder.write_json(self.FILE, asdict(self))

    def deploying(self, dropped: list[str], precision: str, fp32_end_layers: int,
                  input_resolution: int | None) -> "DeployedNetwork":
        """This record once evaluation chose what ships; the recovered plan's blocks and precision are kept."""
        return replace(self, dropped=dropped, precision=precision, int8_fp32_end_layers=fp32_end_layers,
                       input_resolution=input_resolution,
                       plan_dropped=self.dropped if self.plan_dropped is None else self.plan_dropped,
                       plan_precision=self.precision if self.plan_precision is None else self.plan_precision)

    def as_planned(self) -> "DeployedNetwork":
        """The record as recovery wrote it (before evaluation chose), for choosing again."""
        if self.plan_dropped is None:
            return self
        return replace(self, dropped=self.plan_dropped, precision=self.plan_precision or "fp32",
                       int8_fp32_end_layers=0, input_resolution=None)
