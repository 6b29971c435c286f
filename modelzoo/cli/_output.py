"""How the CLI shows things: tables for people, ``--json`` for scripts, one-line errors."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

__all__ = [
    "out",
    "err",
    "emit_json",
    "table",
    "human_size",
    "to_jsonable",
    "fail",
    "offline_mode",
    "env_switch",
]


@contextlib.contextmanager
def offline_mode(enabled: bool) -> Iterator[None]:
    """``--offline``: the same switch as ``MODELZOO_OFFLINE=1``, for one command."""
    with env_switch("MODELZOO_OFFLINE", enabled):
        yield


@contextlib.contextmanager
def env_switch(variable: str, enabled: bool) -> Iterator[None]:
    """A CLI flag that is the same switch as ``VARIABLE=1``, for one command."""
    if not enabled:
        yield
        return
    previous = os.environ.get(variable)
    os.environ[variable] = "1"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(variable, None)
        else:
            os.environ[variable] = previous


def out():
    """A rich console on stdout (imported lazily: rich costs start-up time)."""
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True)


def err():
    """A rich console on stderr."""
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)


def to_jsonable(value: Any) -> Any:
    """Dataclasses, paths, tuples and sets → plain JSON values."""
    import dataclasses
    from pathlib import PurePath

    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: to_jsonable(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if f.name != "raw" and f.repr
        }
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_jsonable(v) for v in value]
    if isinstance(value, PurePath):
        return str(value)
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return value.item()
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


def emit_json(data: Any) -> None:
    """Print ``data`` as indented JSON on stdout."""
    sys.stdout.write(json.dumps(to_jsonable(data), indent=2, sort_keys=False) + "\n")


def table(columns: Sequence[str], rows: Iterable[Sequence[Any]], *, title: str | None = None):
    """Print a simple table on stdout."""
    from rich.table import Table

    t = Table(title=title, show_edge=False, header_style="bold", pad_edge=False)
    for c in columns:
        t.add_column(c, overflow="fold")
    for row in rows:
        t.add_row(*("" if v is None else str(v) for v in row))
    out().print(t)


def human_size(n: int | None) -> str:
    """``1234567`` → ``1.2 MB`` (decimal units, like download sizes on the web)."""
    if n is None:
        return "?"
    size = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n} B"  # pragma: no cover


def fail(message: str, code: int = 1):
    """Print ``error: message`` on stderr and exit with ``code``."""
    import typer
    from rich.markup import escape

    err().print(f"[bold red]error:[/] {escape(message)}", markup=True)
    raise typer.Exit(code)
