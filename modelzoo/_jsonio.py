"""Decoding JSON documents: the one reader for every JSON file modelzoo reads.

Indexes, manifests, ``bundle.json``, lockfiles, ``config.json``, ``tofu.json``, install
records and partial-download sidecars all go through :func:`loads`, so every way a
document can fail to decode -- bad syntax, bad UTF-8, nesting deep enough to exhaust
Python's recursion limit, an integer too long to convert -- becomes one
:class:`InvalidJSONError` whose message fits on one line. Callers add the file and the
next step; because the error is also a ``ValueError``, existing ``except ValueError``
handlers keep working.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .errors import ModelZooError

__all__: list[str] = []  # internal helper; nothing here is public API


class InvalidJSONError(ModelZooError, ValueError):
    """A document is not valid JSON; ``str(exc)`` is the one-line reason (no file name).

    Attributes:
        reason: the same text as ``str(exc)``.
    """

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def loads(raw: bytes | bytearray | str) -> Any:
    """Decode one JSON document.

    Raises:
        InvalidJSONError: on any decode failure, with a one-line reason.
    """
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        reason = f"not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
    except UnicodeDecodeError as exc:
        reason = f"not UTF-8 text (byte {exc.start})"
    except RecursionError:
        # Raised by the C decoder itself at ~1000 levels; the stack unwinds before we act.
        reason = "not valid JSON (it nests too deeply)"
    except (ValueError, TypeError) as exc:  # e.g. an integer beyond int_max_str_digits
        reason = f"not valid JSON ({' '.join(str(exc).split())[:200]})"
    raise InvalidJSONError(reason)


def read(path: str | os.PathLike[str]) -> Any:
    """Read and decode the JSON file at ``path``.

    Raises:
        OSError: the file cannot be read (callers decide what a missing file means).
        InvalidJSONError: it is not valid JSON.
    """
    return loads(Path(path).read_bytes())
