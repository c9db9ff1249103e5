"""The `pipeline` command: one small module per command, each parsing, calling one library function, printing."""

from pipeline.cli.main import cli, main

__all__ = ["cli", "main"]
