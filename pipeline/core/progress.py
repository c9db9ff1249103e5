"""Progress reporting without tying the library to a terminal.

Library functions take a `progress` callable with the shape of `click.progressbar`'s use:
`with progress(length, label) as bar: bar.update(n)`. The default does nothing, the CLI passes a
real bar. This keeps long loops observable without printing from library code.
"""

from __future__ import annotations

import contextlib
from typing import Callable, ContextManager, Protocol


class Bar(Protocol):
    def update(self, n: int) -> None: ...


ProgressFactory = Callable[[int, str], ContextManager[Bar]]


class _SilentBar:
    def update(self, n: int) -> None:
        pass


@contextlib.contextmanager
def silent(length: int, label: str):
    """A progress factory that reports nothing (library default, tests)."""
    yield _SilentBar()


Log = Callable[[str], None]


def quiet_log(message: str) -> None:
    """A log sink that discards messages (library default, tests)."""
