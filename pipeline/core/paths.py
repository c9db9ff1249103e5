"""Where the tool keeps what outlives a run: latency tables and the embedded default tiny set."""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    """`$PRACTISE_HOME`, or ~/.cache/practise-pipeline."""
    return Path(os.environ.get("PRACTISE_HOME", Path.home() / ".cache" / "practise-pipeline"))


def table_store_dir() -> Path:
    return home() / "tables"
