"""Files on disk: the one JSON reader and the one atomic write.

Writes go through :func:`atomic_write` (a fsynced temporary file renamed over the
target, then the folder fsynced) and :func:`move_read_only` (a finished download or
blob moved into place read-only, across filesystems too): a reader sees the old file or
the new one, never half of one, and a crash right after the call loses nothing.

Indexes, manifests, ``bundle.json``, lockfiles, ``config.json``, ``tofu.json``, install
records and partial-download sidecars all go through :func:`loads`, so every way a
document can fail to decode -- bad syntax, bad UTF-8, nesting deep enough to exhaust
Python's recursion limit, an integer too long to convert -- becomes one
:class:`InvalidJSONError` whose message fits on one line. Callers add the file and the
next step; because the error is also a ``ValueError``, existing ``except ValueError``
handlers keep working.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import ModelZooError

__all__ = [
    "InvalidJSONError",
    "atomic_output",
    "atomic_write",
    "fsync_dir",
    "loads",
    "move_read_only",
    "read",
]


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


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Make a rename into the folder ``path`` durable (where the platform allows it)."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _temp_name(path: Path) -> Path:
    # Hidden, unique per process and call, in the target's folder (same filesystem).
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike[str], *, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block succeeds, it becomes ``path``.

    For writers that need a path or a stream of their own (``model.save``, a tar file, a
    feature array): the block writes the temporary file, which is then fsynced and
    renamed over ``path`` in one step, and the folder fsynced. On any exception the
    temporary file is removed and ``path`` is untouched. Parent folders are created.

    Args:
        path: the file to produce.
        suffix: appended to the temporary name (e.g. ``".keras"`` for writers that pick
            the format from the name).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_name(path).with_suffix(".tmp" + suffix)
    try:
        yield tmp
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write(path: str | os.PathLike[str], data: bytes | str) -> None:
    """Write ``data`` to ``path`` so readers see the old file or the new one, never half.

    The parent folders are created. The file gets the umask's normal permissions (0644
    under umask 022), like any file a user creates: a published ``index.json`` must be
    readable by the web server. ``str`` data is written as UTF-8.

    Raises:
        OSError: the folder or file cannot be written (callers name the next step); the
            temporary file is removed.
    """
    if isinstance(data, str):
        data = data.encode("utf-8")
    with atomic_output(path) as tmp:
        # os.open applies the umask to 0o666 (tempfile.mkstemp would force 0600)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
        with os.fdopen(os.open(tmp, flags, 0o666), "wb") as handle:
            handle.write(data)


def move_read_only(src: str | os.PathLike[str], dest: str | os.PathLike[str]) -> None:
    """Move the finished file ``src`` to ``dest`` read-only (0o444), durably.

    Across filesystems the file is copied next to ``dest`` and renamed, then ``src`` is
    removed, so ``dest`` is never half-written either way.

    Raises:
        OSError: the move failed (``src`` is left as it was, or already in place).
    """
    src, dest = Path(src), Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with open(src, "rb") as fh:
        os.fsync(fh.fileno())
    os.chmod(src, 0o444)
    try:
        os.replace(src, dest)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        tmp = _temp_name(dest)
        try:
            shutil.copyfile(src, tmp)
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
            os.chmod(tmp, 0o444)
            os.replace(tmp, dest)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        src.unlink()
    fsync_dir(dest.parent)
