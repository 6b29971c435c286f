"""modelzoo's home folder on disk: who owns it, its lock files, and the filesystem steps
every writer under it shares (atomic writes, blob moves, deletes, hashes).

The home (``MODELZOO_HOME``) holds the cache, the registry settings and the registries'
cached metadata. A ``CACHEDIR.TAG`` marker says which folders modelzoo created, so
``cache clear`` never deletes a folder it does not own.

Writes go to a temporary file in the destination folder, are fsynced and then renamed
into place, so a crash leaves either the old file or the new one, never half of one.
Every ``OSError`` becomes a :class:`~modelzoo.errors.CacheError` naming the path and the
next step (free space, fix permissions, or set ``MODELZOO_HOME``).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .. import config, files
from ..errors import CacheError, LockTimeoutError

__all__ = [
    "MARKER",
    "OWNED",
    "cache_error",
    "claim_home",
    "delete",
    "digests",
    "foreign_entries",
    "hold_lock",
    "is_marked",
    "is_ours",
    "lock_is_held",
    "looks_like_cache",
    "mkdir",
    "move_read_only",
    "mtime",
    "remove_lock_if_free",
    "tree_size",
    "write_json",
]

logger = logging.getLogger(__name__)


def cache_error(exc: OSError, path: Path, action: str) -> CacheError:
    """Translate an OSError into a CacheError that names the path and the next step."""
    code = exc.errno
    if code in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)):
        hint = (
            f"No space left on the device while trying to {action} {path}. Free space "
            "(`modelzoo cache prune` or `modelzoo cache clear`) or set MODELZOO_HOME to a "
            "folder on a larger disk."
        )
    elif code == errno.EFBIG:
        hint = (
            f"File too large while trying to {action} {path} (a file size limit is in "
            "effect). Raise the limit (ulimit -f) or set MODELZOO_HOME to another disk."
        )
    elif code == errno.EROFS:
        hint = (
            f"{path} is on a read-only file system, so modelzoo cannot {action} it. Set "
            "MODELZOO_HOME to a writable folder."
        )
    elif code in (errno.EACCES, errno.EPERM):
        hint = (
            f"Permission denied while trying to {action} {path}. Make the cache folder "
            "writable or set MODELZOO_HOME to a folder you can write."
        )
    else:
        hint = (
            f"Cannot {action} {path}: {exc.strerror or exc}. Check that the cache folder is "
            "a writable directory, or set MODELZOO_HOME to another folder."
        )
    return CacheError(hint)


def mkdir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise cache_error(exc, path, "create the folder") from exc


def _atomic_write(path: Path, data: bytes) -> None:
    """:func:`modelzoo.files.atomic_write`, failing with a :class:`CacheError`."""
    try:
        files.atomic_write(path, data)
    except OSError as exc:
        raise cache_error(exc, path, "write") from exc


def write_json(path: Path, data: Any) -> None:
    _atomic_write(path, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode("utf-8"))


def tree_size(path: Path) -> int:
    if path.is_symlink() or path.is_file():
        with contextlib.suppress(OSError):
            return path.lstat().st_size
        return 0
    total = 0
    for dirpath, _dirs, names in os.walk(path):
        for fname in names:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, fname)).st_size
    return total


def delete(path: Path) -> int:
    """Delete a file or tree; return the bytes it held."""
    size = tree_size(path)
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    except OSError as exc:
        raise cache_error(exc, path, "delete") from exc
    return size


def digests(path: Path, algorithms: set[str]) -> dict[str, str]:
    hashers = {algo: hashlib.new(algo) for algo in algorithms}
    try:
        with open(path, "rb") as fh:
            while chunk := fh.read(config.CHUNK_SIZE):
                for h in hashers.values():
                    h.update(chunk)
    except OSError as exc:
        raise cache_error(exc, path, "read") from exc
    return {algo: h.hexdigest() for algo, h in hashers.items()}


def mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def move_read_only(src: Path, dest: Path) -> None:
    """:func:`modelzoo.files.move_read_only`, failing with a :class:`CacheError`."""
    try:
        files.move_read_only(src, dest)
    except OSError as exc:
        raise cache_error(exc, dest, "store the blob") from exc


# --------------------------------------------------------------------------- ownership

#: The marker file that says "modelzoo created this folder". It follows the Cache
#: Directory Tagging convention (https://bford.info/cachedir/), so backup tools skip
#: the cache too; the modelzoo line tells it apart from other tools' tags.
MARKER = "CACHEDIR.TAG"
_MARKER_TEXT = (
    "Signature: 8a477f597d28d172789f06886806bc55\n"
    "# This file is a cache directory tag created by modelzoo.\n"
    "# `modelzoo cache clear` deletes only modelzoo's own files in folders holding it.\n"
)
#: Top-level entries modelzoo creates in its home (anything else belongs to someone else).
OWNED = frozenset(
    {"blobs", "models", "tmp", "locks", "features", "tofu.json", "cache.lock"}
    | {"registries", "config.json", "config.json.lock", MARKER}
)


def is_marked(root: Path) -> bool:
    try:
        return "created by modelzoo" in (root / MARKER).read_text("utf-8", "replace")
    except OSError:
        return False


def is_ours(entry: Path) -> bool:
    """Whether a top-level entry of the home is one modelzoo creates (or its temp file)."""
    name = entry.name
    if name.startswith(".") and name.endswith(".tmp"):
        # an atomic write interrupted mid-way: .<file>.<pid>.<hex>.tmp / .<file>.<rand>.tmp
        return name[1:].split(".")[0] in {"tofu", "config"}
    return name in OWNED


def foreign_entries(root: Path) -> list[Path]:
    """Top-level entries of ``root`` that modelzoo does not create, sorted."""
    try:
        return sorted(e for e in root.iterdir() if not is_ours(e))
    except OSError:
        return []


def looks_like_cache(root: Path) -> bool:
    """Whether an unmarked folder has exactly modelzoo's layout (a cache made before the
    marker existed): known entries only, ``blobs`` holding only ``sha256/``, ``models``
    holding only ``<name>/<version>/*.json``."""
    if foreign_entries(root):
        return False
    try:
        blobs = root / "blobs"
        if blobs.is_dir() and any(e.name != "sha256" for e in blobs.iterdir()):
            return False
        models = root / "models"
        if models.is_dir():
            for version_dir in models.glob("*/*"):
                if not version_dir.is_dir():
                    return False
                if any(not f.name.endswith(".json") for f in version_dir.iterdir()):
                    return False
    except OSError:
        return False
    return True


def claim_home(root: Path) -> bool:
    """Make sure ``root`` exists; mark it as modelzoo's when it is new, empty, or a cache
    made before the marker existed. Returns whether ``root`` carries the marker.

    A folder that already holds other files is used but never marked, so ``cache
    clear`` refuses to treat it as a cache.
    """
    if is_marked(root):
        return True
    mkdir(root)
    try:
        if not looks_like_cache(root):
            return False
        with open(root / MARKER, "x", encoding="utf-8") as fh:
            fh.write(_MARKER_TEXT)
    except FileExistsError:
        return is_marked(root)
    except OSError as exc:
        raise cache_error(exc, root / MARKER, "write") from exc
    return True


# --------------------------------------------------------------------------- lock files


@contextlib.contextmanager
def hold_lock(path: Path, timeout: float) -> Iterator[Any]:
    """Hold the inter-process lock file at ``path`` (``timeout`` < 0 waits forever)."""
    import filelock  # imported lazily: only installs and prune need locks

    flock = filelock.FileLock(str(path))
    try:
        try:
            flock.acquire(timeout=0)
        except filelock.Timeout:
            logger.info("waiting for another process to release %s", path)
            flock.acquire(timeout=timeout)
    except filelock.Timeout as exc:
        raise LockTimeoutError(
            f"Another process held {path} for more than {timeout:g} s (it is probably "
            "downloading the same file). Wait for it to finish and retry; if no modelzoo "
            "process is running, delete the lock file and retry."
        ) from exc
    except OSError as exc:
        raise cache_error(exc, path, "lock") from exc
    try:
        yield flock
    finally:
        flock.release()


def lock_is_held(path: Path) -> bool:
    """Whether another holder has the lock at ``path`` right now (no lock file: no)."""
    import filelock

    if not path.exists():
        return False
    flock = filelock.FileLock(str(path))
    try:
        flock.acquire(timeout=0)
    except filelock.Timeout:
        return True
    except OSError:
        return False
    flock.release()
    return False


def remove_lock_if_free(path: Path) -> bool:
    """Delete the lock file at ``path`` unless someone holds it."""
    import filelock

    flock = filelock.FileLock(str(path))
    try:
        flock.acquire(timeout=0)
    except (filelock.Timeout, OSError):
        return False
    try:
        # Unlink while holding it so nobody can be inside the critical section. A process
        # already waiting on this file may still win it while a newcomer locks a fresh
        # file: prune is maintenance, not meant to run beside installs (see prune()).
        path.unlink(missing_ok=True)
    except OSError as exc:
        raise cache_error(exc, path, "delete") from exc
    finally:
        flock.release()
    return True
