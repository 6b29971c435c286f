"""The one progress bar every long operation uses (downloads, hashing, feature caching).

Bars are drawn with ``rich`` on stderr, only when stderr is a terminal and
``MODELZOO_DISABLE_PROGRESS_BARS`` is not set; a disabled bar is a no-op object, so
library code can update it per chunk without caring whether anyone is watching.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

from . import config

__all__ = ["ProgressBar", "progress_bar", "progress_enabled"]


class ProgressBar(Protocol):
    """What :func:`progress_bar` yields."""

    def update(self, n: int) -> None:
        """Advance by ``n`` units."""

    def set(self, completed: int, total: int | None = None) -> None:
        """Show ``completed`` units (and ``total``, when known): a resumed task's position."""


class _NoBar:
    __slots__ = ()

    def update(self, n: int) -> None:
        pass

    def set(self, completed: int, total: int | None = None) -> None:
        pass


class _RichBar:
    __slots__ = ("_progress", "_task")

    def __init__(self, progress, task) -> None:
        self._progress = progress
        self._task = task

    def update(self, n: int) -> None:
        self._progress.advance(self._task, n)

    def set(self, completed: int, total: int | None = None) -> None:
        self._progress.update(self._task, completed=completed, total=total)


_NO_BAR = _NoBar()


def progress_enabled(enabled: bool | None = None) -> bool:
    """Whether a bar would be drawn: ``enabled`` if given, else stderr is a terminal and
    ``MODELZOO_DISABLE_PROGRESS_BARS`` is off."""
    if enabled is not None:
        return bool(enabled)
    if config.progress_disabled():
        return False
    stream = sys.stderr
    return stream is not None and hasattr(stream, "isatty") and stream.isatty()


@contextmanager
def progress_bar(
    total: int | None,
    *,
    desc: str,
    enabled: bool | None = None,
    unit: str = "B",
) -> Iterator[ProgressBar]:
    """A progress bar on stderr for the duration of the ``with`` block.

    Args:
        total: units expected, or None when unknown (the bar then shows a spinner-like
            pulse and the count so far).
        desc: a short label, e.g. the file name.
        enabled: force the bar on or off; None decides from the terminal and
            ``MODELZOO_DISABLE_PROGRESS_BARS``.
        unit: ``"B"`` shows sizes and transfer speed; anything else shows ``n/total unit``.

    Yields:
        An object with ``update(n)``.
    """
    if not progress_enabled(enabled):
        yield _NO_BAR
        return
    # rich is imported only here: a disabled bar must not cost an import.
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    if unit == "B":
        columns = [DownloadColumn(), TransferSpeedColumn()]
    else:
        columns = [MofNCompleteColumn(), TextColumn(unit)]
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        *columns,
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=False,
    )
    with progress:
        task = progress.add_task(desc, total=total)
        yield _RichBar(progress, task)
