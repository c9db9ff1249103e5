"""The `pipeline` command group and its entry point.

Only this module turns errors into exit codes: a UsageError exits 2, a RunFailure 1, each as one
line; `--debug` shows the traceback instead. Each command lives in its own module and calls one
library function.
"""

from __future__ import annotations

import sys

import click

from pipeline.cli.blocks import blocks
from pipeline.cli.compare import compare
from pipeline.cli.evaluate import evaluate
from pipeline.cli.export import export_command
from pipeline.cli.profile import profile
from pipeline.cli.run import run
from pipeline.cli.runs import runs
from pipeline.cli.tables import tables
from pipeline.core import distributed
from pipeline.core.errors import PipelineError
from pipeline.core.extras import install_hint


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="show full tracebacks on errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Make a pretrained CNN faster on your device by dropping residual blocks (PRACTISE)."""
    ctx.obj = {"debug": debug}  # warnings are shown: the exporters silence only the ones they name


for command in (blocks, profile, run, export_command, evaluate, tables, runs, compare):
    cli.add_command(command)


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
        if not _quiet_on_this_rank(exc):
            click.echo(f"error: {distributed.current().tag()}{exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted; rerun the same command to resume from the last finished stage", err=True)
        sys.exit(130)
    except ModuleNotFoundError as exc:
        if debug:
            raise
        hint = install_hint(exc.name or "")
        if hint is None:
            click.echo(f"error: {_describe_unexpected(exc)}", err=True)
            sys.exit(1)
        click.echo(f"error: this needs the optional package '{exc.name}', which is not installed: {hint}", err=True)
        sys.exit(2)
    except Exception as exc:  # noqa: BLE001 - the last line of defence against raw tracebacks
        if debug:
            raise
        click.echo(f"error: {distributed.current().tag()}{_describe_unexpected(exc)}", err=True)
        sys.exit(1)


def _quiet_on_this_rank(exc: PipelineError) -> bool:
    """Under torchrun one line says why the run stopped: rank 0's (or the failing rank's), not every rank's."""
    if getattr(exc, "quiet", False):
        return True
    return getattr(exc, "quiet_on_followers", False) and not distributed.current().is_main


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
