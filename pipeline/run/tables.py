"""`pipeline profile` and `pipeline tables`: build, validate, list, export and import latency tables."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

from pipeline.core import paths
from pipeline.core.atomic import write_json_atomic
from pipeline.core.errors import UsageError
from pipeline.core.progress import Log, ProgressFactory, quiet_log, silent
from pipeline.latency.profiling import TableChoice, obtain_table, validate_table
from pipeline.models import load_model
from pipeline.network.blocks import analyse
from pipeline.run.presets import get_preset
from profilers import DeviceFingerprint, LatencyTable, TableStore, default_backend, get_profiler


@dataclass
class ProfileRequest:
    model: str
    weights: str | None
    resolution: int | None
    target: str
    backend: str | None
    profile_batch: int
    threads: int
    precision: str
    cuda_graphs: bool
    profile_time_cap: float | None
    reprofile: bool
    preset: str
    validate: int


@dataclass
class ProfileResult:
    choice: TableChoice
    validation: dict | None
    validation_path: Path | None


def profile_table(request: ProfileRequest, progress: ProgressFactory = silent, log: Log = quiet_log) -> ProfileResult:
    """Reuse or measure the table of a model on this device; with `validate`, check it on random multi-block drops."""
    if request.backend is None:
        log(default_backend(request.target)[1])
    loaded = load_model(request.model, request.weights, request.resolution)
    structure = analyse(loaded.module, loaded.resolution)
    settings = replace(get_preset(request.preset).profile, batch=request.profile_batch, resolution=loaded.resolution,
                       channels=loaded.channels,
                       threads=request.threads, precision=request.precision, cuda_graphs=request.cuda_graphs)
    if request.profile_time_cap:
        settings = replace(settings, time_cap_s=request.profile_time_cap)
    with get_profiler(request.target, request.backend, settings) as profiler:
        profiler.log = log
        choice = obtain_table(loaded, structure, profiler, TableStore(paths.table_store_dir()), None,
                              request.reprofile, progress, log)
        if not request.validate:
            return ProfileResult(choice, None, None)
        validation = validate_table(loaded, structure, choice.table, profiler, request.validate, progress=progress)
    assert choice.path is not None  # a table measured here is stored (TableStore) before it is validated
    validation_path = choice.path.with_name(choice.path.stem + ".validation.json")
    write_json_atomic(validation_path, validation)
    fitted = choice.table.with_model_fitted(validation["checks"])
    TableStore(paths.table_store_dir()).save(fitted)
    log(f"latency model: {fitted.latency_model.describe()}")
    return ProfileResult(replace(choice, table=fitted), validation, validation_path)


def fit_table_model(table_file: Path, validation_file: Path, destination: Path | None = None) -> tuple[LatencyTable, Path]:
    """Fit a table's latency model on a validation file measured beside it (`profile --validate`); write it
    to `destination` (default: the table file itself)."""
    table = LatencyTable.read(table_file)
    if destination is None and "model" not in json.loads(Path(table_file).read_text()):
        raise UsageError(f"'{table_file}' is a run folder's record of its table, which fitting in place would replace: "
                         "pass --output FILE for the fitted table.")
    validation = _read_validation(validation_file)
    measured_on = DeviceFingerprint.from_dict(validation["table_fingerprint"])
    if measured_on != table.fingerprint:
        raise UsageError(f"'{validation_file}' validates a table measured on other settings or another device "
                         f"than '{table_file}' [{table.fingerprint.describe()}]; pass the validation file written "
                         "beside this table by 'pipeline profile --validate'.")
    fitted = table.with_model_fitted(validation["checks"])
    target = Path(destination) if destination is not None else Path(table_file)
    write_json_atomic(target, fitted.to_dict())
    return fitted, target


def _read_validation(path: Path) -> dict:
    try:
        data = json.loads(Path(path).read_text())
        if not isinstance(data.get("checks"), list) or not isinstance(data.get("table_fingerprint"), dict):
            raise KeyError("checks or table_fingerprint")
        return data
    except FileNotFoundError as exc:
        raise UsageError(f"validation file '{path}' does not exist.") from exc
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, AttributeError) as exc:
        raise UsageError(f"'{path}' is not a validation file from 'pipeline profile --validate' "
                         f"({type(exc).__name__}: {exc}).") from exc


def stored_tables() -> list[tuple[Path, LatencyTable]]:
    return TableStore(paths.table_store_dir()).list()


def export_table(table_file: str, destination: Path) -> LatencyTable:
    """Copy a stored table (a file name from `tables list`, or a path) to `destination`."""
    source = Path(table_file)
    if not source.exists() and (paths.table_store_dir() / table_file).exists():
        source = paths.table_store_dir() / table_file
    table = LatencyTable.read(source)
    write_json_atomic(destination, table.to_dict())
    return table


def import_table(table_file: Path) -> tuple[LatencyTable, Path]:
    """Add a table measured elsewhere to this machine's store."""
    table = LatencyTable.read(table_file)
    return table, TableStore(paths.table_store_dir()).save(table)
