"""`pipeline profile` and `pipeline tables`: build, validate, list, export and import latency tables."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from pipeline.core import paths
from pipeline.core.atomic import write_json_atomic
from pipeline.core.progress import Log, ProgressFactory, quiet_log, silent
from pipeline.latency.profiling import TableChoice, obtain_table, validate_table
from pipeline.models import load_model
from pipeline.network.blocks import analyse
from pipeline.run.presets import get_preset
from profilers import LatencyTable, TableStore, default_backend, get_profiler


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
        choice = obtain_table(loaded, structure, profiler, TableStore(paths.table_store_dir()), None,
                              request.reprofile, progress, log)
        if not request.validate:
            return ProfileResult(choice, None, None)
        validation = validate_table(loaded, structure, choice.table, profiler, request.validate, progress=progress)
    validation_path = choice.path.with_name(choice.path.stem + ".validation.json")
    write_json_atomic(validation_path, validation)
    return ProfileResult(choice, validation, validation_path)


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
