"""The `pipeline` command: thin wrappers that parse, call one library function, and print.

Only this module turns errors into exit codes: a UsageError exits 2, a RunFailure 1, each as one
line; `--debug` shows the traceback instead.
"""

from __future__ import annotations

import contextlib
import json
import sys
import warnings
from pathlib import Path

import click

from pipeline.errors import PipelineError


@contextlib.contextmanager
def _bar(length: int, label: str):
    """A progress bar on stderr (the library only sees the factory)."""
    with click.progressbar(length=length, label=label, file=sys.stderr, show_eta=True, show_pos=True) as bar:
        yield bar


EXPORT_FORMATS = ["onnx", "onnx-int8", "torchscript", "exported-program", "tensorrt"]


def _log(message: str) -> None:
    click.echo(message, err=True)


model_option = click.option("--model", "model", default="efficientnet_lite0", show_default=True,
                            help="torchvision name, efficientnet_lite0/1/2, package.module:function, or a saved nn.Module file.")
weights_option = click.option("--weights", type=click.Path(dir_okay=False), default=None,
                              help="state_dict file for the model's weights.")
resolution_option = click.option("--resolution", type=click.IntRange(16, 4096), default=None,
                                 help="input resolution in pixels (default: the model's own).")
target_option = click.option("--target", type=click.Choice(["cpu", "gpu"]), default="cpu", show_default=True)
backend_option = click.option("--backend", default=None,
                              help="profiling backend: onnxruntime (default) or torch on cpu; tensorrt or torch on gpu "
                                   "(default: tensorrt when installed, else torch).")
precision_option = click.option("--precision", type=click.Choice(["fp32", "fp16", "int8"]), default="fp32",
                                show_default=True, help="precision the latency is measured in (fp16: GPU; int8: TensorRT).")
time_cap_option = click.option("--profile-time-cap", type=click.FloatRange(1, 86400), default=None,
                                help="seconds each latency measurement may take at most (default: the preset's).")
cuda_graphs_option = click.option("--cuda-graphs", is_flag=True,
                                  help="torch CUDA backend: replay each network as a captured CUDA graph.")
threads_option = click.option("--threads", type=click.IntRange(0, 1024), default=0, show_default=True,
                              help="CPU threads for profiling (0: all cores).")


def export_options(command):
    """Options of the exported artefacts, shared by `run --export` and `export`."""
    command = click.option("--tensorrt-precision", type=click.Choice(["fp32", "fp16", "int8"]), default="fp16",
                           show_default=True, help="precision of a --format tensorrt engine (int8: from the "
                           "quantized ONNX calibrated on the tiny set).")(command)
    command = click.option("--max-batch", type=click.IntRange(1, 4096), default=32, show_default=True,
                           help="largest batch a dynamic-batch TensorRT engine accepts.")(command)
    return click.option("--dynamic-batch", is_flag=True,
                        help="export ONNX with a free batch axis (and TensorRT engines with an optimization profile).")(command)


batch_option = click.option("--batch", "profile_batch", type=click.IntRange(1, 4096), default=1, show_default=True,
                            help="batch size the latency is measured at.")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="show full tracebacks on errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Make a pretrained CNN faster on your device by dropping residual blocks (PRACTISE)."""
    ctx.obj = {"debug": debug}
    if not debug:
        warnings.filterwarnings("ignore")


@cli.command()
@model_option
@weights_option
@resolution_option
@click.option("--json", "as_json", is_flag=True, help="print JSON instead of a table.")
def blocks(model: str, weights: str | None, resolution: int | None, as_json: bool) -> None:
    """List the droppable blocks of a model."""
    from pipeline.blocks import analyse
    from pipeline.models import load_model

    loaded = load_model(model, weights, resolution)
    structure = analyse(loaded.module, loaded.resolution)
    if as_json:
        click.echo(json.dumps({"model": loaded.spec, "resolution": loaded.resolution,
                               "macs_total": structure.macs_total,
                               "candidates": [c.to_dict() for c in structure.candidates]}, indent=2))
        return
    click.echo(f"{loaded.spec} at {loaded.resolution}px: {len(structure.candidates)} droppable blocks, "
               f"{structure.macs_total / 1e6:.1f} M MACs in all")
    click.echo(f"{'block':<40} {'input (C,H,W)':<18} {'MMACs':>9} {'params':>10}")
    for c in structure.candidates:
        click.echo(f"{c.name:<40} {str(tuple(c.input_shape)):<18} {c.macs / 1e6:>9.2f} {c.params:>10,}")


@cli.command()
@model_option
@weights_option
@resolution_option
@target_option
@backend_option
@batch_option
@threads_option
@precision_option
@cuda_graphs_option
@time_cap_option
@click.option("--reprofile", is_flag=True, help="measure again even if a table for this device exists.")
@click.option("--preset", type=click.Choice(["fast", "paper"]), default="fast", show_default=True,
              help="measurement effort (rounds, time cap).")
@click.option("--validate", type=click.IntRange(0, 1000), default=0, show_default=True,
              help="also measure K random multi-block drops end to end against the table's prediction.")
def profile(model, weights, resolution, target, backend, profile_batch, threads, precision, cuda_graphs,
            profile_time_cap, reprofile, preset, validate) -> None:
    """Build (or reuse) the latency table of a model on this device."""
    from dataclasses import replace

    from pipeline import paths
    from pipeline.blocks import analyse
    from pipeline.models import load_model
    from pipeline.presets import get_preset
    from pipeline.profiling import obtain_table
    from profilers import TableStore, default_backend, get_profiler

    if backend is None:
        _log(default_backend(target)[1])
    loaded = load_model(model, weights, resolution)
    structure = analyse(loaded.module, loaded.resolution)
    settings = replace(get_preset(preset).profile, batch=profile_batch, resolution=loaded.resolution, threads=threads,
                       precision=precision, cuda_graphs=cuda_graphs)
    if profile_time_cap:
        settings = replace(settings, time_cap_s=profile_time_cap)
    with get_profiler(target, backend, settings) as profiler:
        choice = obtain_table(loaded, structure, profiler, TableStore(paths.table_store_dir()), None, reprofile, _bar, _log)
        validation = None
        if validate:
            from pipeline.profiling import validate_table

            validation = validate_table(loaded, structure, choice.table, profiler, validate, progress=_bar)
    _print_table(choice.table)
    if validation is not None:
        from profilers.table import write_json_atomic

        click.echo(f"{'validation: dropped blocks':<60} {'predicted':>9} {'measured':>9} {'error':>7}")
        for check in validation["checks"]:
            click.echo(f"{', '.join(check['dropped'])[:60]:<60} {check['predicted_ratio']:>9.3f} "
                       f"{check['measured_ratio']:>9.3f} {100 * check['relative_error']:>6.1f}%")
        click.echo(f"median |error| {100 * validation['median_abs_relative_error']:.1f}%, worst "
                   f"{100 * validation['worst_abs_relative_error']:.1f}%")
        report = choice.path.with_name(choice.path.stem + ".validation.json")
        write_json_atomic(report, validation)
        click.echo(f"validation: {report}")
    click.echo(f"table: {choice.path} ({choice.source})")


def describe_artefact_latency(latency: dict) -> str:
    if not latency["measured"]:
        return f"not measured ({latency['reason']})"
    verdict = "meets" if latency["meets_budget"] else "MISSES"
    return (f"{latency['artefact_ms']:.3f} ms vs original {latency['original_ms']:.3f} ms in {latency['backend']} "
            f"({latency['precision']}): ratio {latency['ratio']:.3f}, {verdict} the target {latency['target_ratio']:.3f}")


def _print_table(table) -> None:
    click.echo(f"{table.model} on [{table.fingerprint.describe()}]")
    click.echo(f"full network: {table.full.median_ms:.3f} ms (IQR {table.full.spread_ms:.3f} ms, {table.full.rounds} rounds)")
    click.echo(f"{'block':<40} {'saved (ms)':>11} {'saved %':>8} {'IQR (ms)':>9}")
    for block, s in table.savings.items():
        click.echo(f"{block:<40} {s.median_ms:>11.3f} {100 * s.median_ms / table.full.median_ms:>7.1f}% {s.spread_ms:>9.3f}")


@cli.command()
@model_option
@weights_option
@click.option("--data", type=click.Path(), default=None,
              help="folder of tiny-set images (default: the embedded set from pip-packaged images).")
@click.option("--val", "val_data", type=click.Path(), default=None,
              help="folder of held-out images for the report (labelled in ImageFolder layout or not).")
@target_option
@backend_option
@click.option("--latency-budget", "budget", default="0.78", show_default=True,
              help="fraction of the original latency to keep (0.78, 78%) or a time (12ms).")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="run folder (default: runs/<model>-<target>-<budget>-<settings hash>).")
@click.option("--preset", type=click.Choice(["fast", "paper"]), default="fast", show_default=True)
@click.option("--selector", type=click.Choice(["greedy", "knapsack"]), default="greedy", show_default=True)
@click.option("--recovery", "recovery_method", type=click.Choice(["adaptors", "mimic", "none"]), default=None,
              help="recovery method (default: the preset's).")
@click.option("--scoring-steps", type=click.IntRange(0, 10**6), default=None, help="adaptor-fit steps per candidate.")
@click.option("--recovery-steps", type=click.IntRange(0, 10**6), default=None, help="recovery steps.")
@click.option("--recovery-points", "recovery_point_weight", type=click.FloatRange(0), default=None,
              help="weight of also mimicking each dropped block's output (multi-point; default: the preset's, 0).")
@click.option("--recovery-mixing", type=click.Choice(["none", "cutmix", "mixup"]), default=None,
              help="mix half of each recovery batch (default: the preset's, none).")
@click.option("--recovery-synthetic", type=click.IntRange(0, 100000), default=None, metavar="N",
              help="make N tiny-set views match the original's BatchNorm statistics and draw half of each "
                   "recovery batch from them (default: the preset's, 0; costly on a CPU).")
@click.option("--recovery-blends", default=None, metavar="W[,W...]|none",
              help="blends of the recovered and unrecovered weights also offered for deployment (weights of the "
                   "recovered change, between 0 and 1, e.g. 0.5); the report images choose among the unrecovered "
                   "network, these blends and the recovered one (default: none).")
@click.option("--recovery-views", type=click.Choice(["random", "confident"]), default=None,
              help="tiny-set views recovery mimics on: fresh random crops, or the quarter of 1024 random crops the "
                   "original classifies most confidently (default: the preset's, random).")
@click.option("--batch-size", type=click.IntRange(1, 4096), default=None, help="training batch size.")
@click.option("--train-device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
              help="where scoring and recovery train (auto: the GPU when --target gpu and one is present, else the CPU).")
@click.option("--latency-table", type=click.Path(dir_okay=False), default=None,
              help="use this latency table file instead of profiling here.")
@batch_option
@threads_option
@precision_option
@cuda_graphs_option
@time_cap_option
@resolution_option
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--allow-random-weights", is_flag=True, help="accept a model without trained weights (testing only).")
@click.option("--reprofile", is_flag=True, help="measure the latency table again.")
@click.option("--overwrite", is_flag=True, help="replace an existing run folder with other settings or a finished run.")
@click.option("--export", "export", multiple=True, default=("onnx",), show_default=True,
              type=click.Choice(EXPORT_FORMATS), help="artefacts to write at the end (repeatable).")
@export_options
def run(**kwargs) -> None:
    """Compress a model under a latency budget: profile, score, select, recover, evaluate, export."""
    from pipeline.run import RunConfig, run as run_pipeline

    kwargs["export"] = tuple(kwargs["export"])
    folder = run_pipeline(RunConfig(**kwargs), _bar, _log)
    report = json.loads((folder.path / "report.json").read_text())
    lat, ev = report["latency"], report["evaluation"]["report"]
    measured = "n/a" if lat["measured_ratio"] is None else f"{lat['measured_ratio']:.3f}"
    click.echo(f"dropped {len(report['selection']['dropped'])} blocks: {', '.join(report['selection']['dropped'])}")
    click.echo(f"latency ratio: predicted {lat['predicted_ratio']:.3f}, measured {measured}, target {lat['target_ratio']:.3f}")
    others = [n for n in report["evaluation"].get("candidates", ["unrecovered", "recovered"]) if n != "unrecovered"]
    click.echo(f"top-1 agreement with the original on {ev['images']} held-out images: "
               f"{100 * ev['unrecovered']['top1_agreement']:.1f}% unrecovered -> "
               + ", ".join(f"{100 * ev[n]['top1_agreement']:.1f}% {n}" for n in others))
    click.echo(f"verdict: {report['evaluation']['verdict']}")
    if report["evaluation"]["report_source"] != "validation folder":
        click.echo("note: the held-out images are part of the tiny set; pass --val with a few deployment images "
                   "to judge recovery on them (see report.md)")
    click.echo(f"deployed network: {report['evaluation'].get('deployed', report['recovery']['kept'])}")
    click.echo(f"report: {folder.path / 'report.md'}")


@cli.command("export")
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--format", "formats", multiple=True, required=True, type=click.Choice(EXPORT_FORMATS),
              help="artefact format (repeatable).")
@export_options
def export_command(run_dir: str, formats: tuple[str, ...], dynamic_batch: bool, max_batch: int,
                   tensorrt_precision: str) -> None:
    """Write a finished run's compressed network in more formats, each checked against PyTorch and timed."""
    from pipeline.run import export_existing_run

    records = export_existing_run(Path(run_dir), list(formats), _bar, _log, dynamic_batch=dynamic_batch,
                                  max_batch=max_batch, tensorrt_precision=tensorrt_precision)
    for fmt, art in records.items():
        check = art["check"]
        click.echo(f"{fmt:<17} {Path(run_dir) / art['path']}  max abs error {check['max_abs_error']:.2e}, "
                   f"top-1 agreement {100 * check['top1_agreement_with_pytorch']:.1f}%"
                   + (f"  ({check['note']})" if "note" in check else ""))
        click.echo(f"{'':<17} latency: {describe_artefact_latency(art['latency'])}")


@cli.command()
@click.argument("run_dir", required=False, type=click.Path(file_okay=False))
@click.option("--data", required=True, type=click.Path(), help="image folder (ImageFolder layout for accuracy).")
@model_option
@weights_option
@resolution_option
@click.option("--json", "as_json", is_flag=True)
def evaluate(run_dir, data, model, weights, resolution, as_json) -> None:
    """Accuracy on a labelled folder, and agreement of a run's compressed network with the original."""
    from pipeline.evaluate_cli import evaluate_folder

    result = evaluate_folder(Path(run_dir) if run_dir else None, Path(data), model, weights, resolution)
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    click.echo(f"{result['images']} images from {data} ({'labelled' if result['labelled'] else 'unlabelled'})")
    for name, r in result["networks"].items():
        parts = [f"{name:<12}"]
        if r.get("top1") is not None:
            parts.append(f"top-1 {100 * r['top1']:.1f}%  top-5 {100 * r['top5']:.1f}%")
        if r.get("top1_agreement") is not None:
            parts.append(f"agreement with original {100 * r['top1_agreement']:.1f}%")
        click.echo("  ".join(parts))


@cli.group()
def tables() -> None:
    """Latency tables stored on this machine."""


@tables.command("list")
def tables_list() -> None:
    from pipeline import paths
    from profilers import TableStore

    found = TableStore(paths.table_store_dir()).list()
    if not found:
        click.echo(f"no latency tables in {paths.table_store_dir()}")
    for path, table in found:
        click.echo(f"{path.name}: {table.model}, {table.full.median_ms:.3f} ms, [{table.fingerprint.describe()}]")


@tables.command("export")
@click.argument("table_file", type=click.Path(dir_okay=False))
@click.argument("destination", type=click.Path(dir_okay=False))
def tables_export(table_file: str, destination: str) -> None:
    """Copy a stored table (a file name from `tables list`, or a path) to DESTINATION."""
    from pipeline import paths
    from profilers import LatencyTable
    from profilers.table import write_json_atomic

    source = Path(table_file)
    if not source.exists() and (paths.table_store_dir() / table_file).exists():
        source = paths.table_store_dir() / table_file
    table = LatencyTable.read(source)
    write_json_atomic(Path(destination), table.to_dict())
    click.echo(f"exported {table.model} [{table.fingerprint.describe()}] to {destination}")


@tables.command("import")
@click.argument("table_file", type=click.Path(dir_okay=False))
def tables_import(table_file: str) -> None:
    """Add a table measured elsewhere to this machine's store (`run --latency-table` also takes the file)."""
    from pipeline import paths
    from profilers import LatencyTable, TableStore

    table = LatencyTable.read(Path(table_file))
    path = TableStore(paths.table_store_dir()).save(table)
    click.echo(f"imported {table.model} [{table.fingerprint.describe()}] as {path}")


@tables.command("show")
@click.argument("path", type=click.Path(dir_okay=False))
def tables_show(path: str) -> None:
    from profilers import LatencyTable

    _print_table(LatencyTable.read(Path(path)))


def main(argv: list[str] | None = None) -> None:
    """Entry point: map library errors to one line and an exit code."""
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    try:
        cli.main(args=args, prog_name="pipeline", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("interrupted; rerun the same command to resume from the last finished stage", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except PipelineError as exc:
        if debug:
            raise
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted; rerun the same command to resume from the last finished stage", err=True)
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - the last line of defence against raw tracebacks
        if debug:
            raise
        click.echo(f"error: {_describe_unexpected(exc)}", err=True)
        sys.exit(1)


def _describe_unexpected(exc: Exception) -> str:
    """One line for failures that did not come through PipelineError: memory, disk, or a bug."""
    text = str(exc)
    if isinstance(exc, MemoryError) or "out of memory" in text.lower() or "can't allocate memory" in text.lower():
        return "out of memory at the requested batch size; use a smaller --batch-size (training) or --batch (profiling)"
    if isinstance(exc, OSError):
        if exc.errno == 28:
            return f"the disk is full while writing {exc.filename or 'a file'}; free space or choose another --out"
        return f"{exc.strerror or text}: {exc.filename or ''}"
    first_line = text.splitlines()[0][:300] if text else ""
    return (f"internal error {type(exc).__name__}: {first_line} (this is a bug; rerun with --debug for the "
            "traceback and report it)")


if __name__ == "__main__":
    main()
