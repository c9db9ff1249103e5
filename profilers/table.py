"""Latency lookup tables and their on-disk store.

A table holds, for one network architecture on one device fingerprint, the full network's latency and
the latency saved by dropping each candidate block, each measured as a whole-network difference.
Tables are JSON, written atomically under a file lock, and refused on another device.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

from pipeline.core.atomic import write_json_atomic
from pipeline.core.errors import UsageError
from pipeline.core.locks import exclusive_lock
from profilers.fingerprint import DeviceFingerprint
from profilers.latency_model import Drop, LatencyModel, fit_latency_model, predicted_ratio
from profilers.stats import TimingStats

FORMAT_VERSION = 1
RUN_FOLDER_TABLE = "latency_table.json"  # where a run folder keeps the table it used, wrapped


@dataclass
class LatencyTable:
    model: str
    architecture_hash: str
    fingerprint: DeviceFingerprint
    full: TimingStats
    savings: dict[str, TimingStats]  # candidate block -> latency saved by dropping it alone
    method: dict = field(default_factory=dict)  # how it was measured: warm-up, repeats, rounds, ...
    created_at: str = ""
    latency_model: LatencyModel = field(default_factory=LatencyModel)  # additive unless fitted on measured drops

    @property
    def has_savings(self) -> bool:
        """Whether each block's saving was measured (a run measures the whole network alone until a plan needs
        dropped blocks)."""
        return bool(self.savings)

    def predicted_ms(self, dropped: list[str] | tuple[str, ...]) -> float:
        """Full latency minus the summed single-block savings, corrected by the table's latency model (its
        interactions, when it carries one fitted on measured multi-block drops); checked end to end later."""
        return self.predicted_ratio(dropped) * self.full.median_ms

    def predicted_ratio(self, dropped) -> float:
        return predicted_ratio(self.saving_fractions(), self.latency_model, dropped)

    def additive_ratio(self, dropped) -> float:
        """The prediction of summed single-block savings alone, whatever model the table carries."""
        return predicted_ratio(self.saving_fractions(), LatencyModel(), dropped)

    def saving_fractions(self) -> dict[str, float]:
        return {b: s.median_ms / self.full.median_ms for b, s in self.savings.items()}

    def with_model_fitted(self, checks: list[dict]) -> "LatencyTable":
        """This table carrying the latency model fitted on validation `checks` (dropped, measured_ratio)."""
        drops = [Drop(tuple(c["dropped"]), float(c["measured_ratio"])) for c in checks]
        unknown = sorted({b for d in drops for b in d.dropped} - set(self.savings))
        if unknown:
            raise UsageError(f"the validation drops name blocks the table does not have ({', '.join(unknown)}); "
                             "fit a table with the validation file measured beside it.")
        return replace(self, latency_model=fit_latency_model(self.saving_fractions(), drops))

    def saving_fraction(self, block: str) -> float:
        return self.savings[block].median_ms / self.full.median_ms

    def to_dict(self) -> dict:
        return {
            "format_version": FORMAT_VERSION,
            "model": self.model,
            "architecture_hash": self.architecture_hash,
            "fingerprint": self.fingerprint.to_dict(),
            "full": self.full.to_dict(),
            "savings": {k: v.to_dict() for k, v in self.savings.items()},
            "method": self.method,
            "created_at": self.created_at,
            "latency_model": self.latency_model.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict) -> "LatencyTable":
        return cls(
            model=data["model"],
            architecture_hash=data["architecture_hash"],
            fingerprint=DeviceFingerprint.from_dict(data["fingerprint"]),
            full=TimingStats.from_dict(data["full"]),
            savings={k: TimingStats.from_dict(v) for k, v in data["savings"].items()},
            method=data.get("method", {}),
            created_at=data.get("created_at", ""),
            latency_model=LatencyModel.from_dict(data.get("latency_model")),
        )

    @classmethod
    def read(cls, path: Path) -> "LatencyTable":
        """A table file, a run folder's `latency_table.json` (the table under "table", beside where it came
        from) or the run folder itself: users pass the run folder's file first, so it is taken as it is."""
        path = Path(path)
        if path.is_dir():
            if not (path / RUN_FOLDER_TABLE).is_file():
                raise UsageError(f"'{path}' is a folder without a {RUN_FOLDER_TABLE}: pass a latency table file "
                                 "(pipeline tables export) or a run folder that has one.")
            path = path / RUN_FOLDER_TABLE
        try:
            data = json.loads(path.read_text())
            if isinstance(data, dict) and "model" not in data and isinstance(data.get("table"), dict):
                data = data["table"]  # a run folder's record of the table it used
            return cls.from_dict(data)
        except FileNotFoundError as exc:
            raise UsageError(f"latency table '{path}' does not exist.") from exc
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
            why = f"no field {exc}" if isinstance(exc, KeyError) else f"{type(exc).__name__}: {exc}".splitlines()[0]
            raise UsageError(f"'{path}' is not a latency table ({why}): pass a file from 'pipeline profile' or "
                             f"'pipeline tables export', a run folder's {RUN_FOLDER_TABLE}, or the run folder.") from exc

    def check_usable(self, architecture_hash: str, fingerprint: DeviceFingerprint | None, candidates: list[str]) -> None:
        """Refuse a table measured for another network or, when `fingerprint` is given, another device."""
        if not self.has_savings and candidates:
            raise UsageError(f"latency table for '{self.model}' holds the whole network only (its run settled on a "
                             "precision without dropping blocks, so no block's saving was measured); profile this "
                             "model with 'pipeline profile', or pass a run folder that planned dropped blocks.")
        if self.architecture_hash != architecture_hash or set(self.savings) != set(candidates):
            raise UsageError(
                f"latency table for '{self.model}' ({self.architecture_hash}) was measured on another network "
                f"architecture than this one ({architecture_hash}); profile this model with 'pipeline profile'."
            )
        if fingerprint is not None and fingerprint != self.fingerprint:
            raise UsageError(
                "latency table was measured on another device or settings: "
                + "; ".join(self.fingerprint.differences(fingerprint))
                + f". Table: [{self.fingerprint.describe()}]; here: [{fingerprint.describe()}]. "
                "Profile on this device with 'pipeline profile', or match --backend/--batch/--resolution/--threads."
            )


class TableStore:
    """A folder of latency tables, one file per (architecture, device fingerprint)."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def path_for(self, model: str, architecture_hash: str, fingerprint: DeviceFingerprint) -> Path:
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", model)[-60:]
        return self.root / f"{slug}-{architecture_hash}-{fingerprint.key()}.json"

    def _locked(self):
        return exclusive_lock(self.root / ".lock")

    def find(self, model: str, architecture_hash: str, fingerprint: DeviceFingerprint,
             log: Callable[[str], None] | None = None) -> LatencyTable | None:
        """The stored table for this network and device; a damaged one is set aside (and named), so it is measured again."""
        path = self.path_for(model, architecture_hash, fingerprint)
        if not path.exists():
            return None
        try:
            return LatencyTable.read(path)
        except UsageError as exc:
            damaged = path.with_name(path.name + ".damaged")
            with self._locked():
                os.replace(path, damaged)
            if log is not None:
                log(f"stored latency table {path} is damaged ({exc.__cause__ or exc}); set aside as {damaged.name}, "
                    "measuring again")
            return None

    def save(self, table: LatencyTable) -> Path:
        path = self.path_for(table.model, table.architecture_hash, table.fingerprint)
        with self._locked():
            write_json_atomic(path, table.to_dict())
        return path

    def list(self) -> list[tuple[Path, LatencyTable]]:
        if not self.root.exists():
            return []
        found = []
        for path in sorted(p for p in self.root.glob("*.json") if not p.name.endswith(".validation.json")):
            try:
                found.append((path, LatencyTable.read(path)))
            except UsageError:
                continue
        return found
