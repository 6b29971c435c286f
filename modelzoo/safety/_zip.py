"""Structural checks of a ``.keras`` zip archive, done before tf_keras opens it.

tf_keras extracts every member of a ``.keras`` archive to a temporary folder and opens
``model.weights.h5`` inside it with h5py. So the member list is checked first (names
that escape a folder, symlinks, duplicates, unexpected members, sizes and compression
ratios of a zip bomb), then ``config.json`` is read with a size cap, and the weights
member is scanned like any HDF5 file without extracting it.
"""

from __future__ import annotations

import re
import shutil
import stat
import struct
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import UnsafeModelError
from ._hdf5 import Hdf5Facts, scan_hdf5
from ._window import Window

__all__ = [
    "ZipFacts",
    "scan_keras_zip",
    "KERAS_MEMBERS",
    "MAX_MEMBERS",
    "MAX_RATIO",
    "MAX_CONFIG_BYTES",
]

#: The members tf_keras writes into a ``.keras`` file (plus anything under ``assets/``).
KERAS_MEMBERS = frozenset({"config.json", "metadata.json", "model.weights.h5", "model.weights.npz"})
#: More members than any real model has; a huge central directory is itself a DoS.
MAX_MEMBERS = 10_000
#: Uncompressed/compressed ratio allowed per member (JSON compresses ~10x, weights ~1x;
#: 200 MB of zeros compresses ~1000x).
MAX_RATIO = 100
#: Members smaller than this may have any ratio: they cannot hurt.
RATIO_FLOOR_BYTES = 1 << 20
#: config.json is read into memory, so it gets its own cap.
MAX_CONFIG_BYTES = 64 << 20

_DRIVE = re.compile(r"^[A-Za-z]:")
_LOCAL_HEADER = struct.Struct("<4s2B4HL2L2H")  # zipfile's local file header layout


@dataclass(frozen=True)
class ZipFacts:
    """What the scan learnt about a ``.keras`` archive."""

    config_text: str
    members: tuple[str, ...]
    uncompressed_bytes: int
    weights: Hdf5Facts | None


def scan_keras_zip(path: str, *, max_bytes: int, source: Any = None) -> ZipFacts:
    """Check a ``.keras`` archive and return its config text.

    Args:
        path: the archive (named in errors).
        max_bytes: cap on the total uncompressed size.
        source: a seekable binary file object holding the archive's bytes, read instead
            of opening ``path`` (the caller's one mapping of the file).

    Raises:
        UnsafeModelError: naming ``path`` and the first problem found.
    """
    try:
        archive = zipfile.ZipFile(path if source is None else source)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise UnsafeModelError(path, f"it is not a valid zip archive ({exc})") from None
    with archive:
        infos = archive.infolist()
        total = check_members(
            infos,
            path=path,
            max_bytes=max_bytes,
            allowed=_keras_member,
            expected=", ".join(sorted(KERAS_MEMBERS)) + " and assets/...",
        )
        names = {info.filename: info for info in infos}
        if "config.json" not in names:
            raise UnsafeModelError(path, "the archive has no config.json, so it is not a .keras")
        config_text = _read_config(archive, names["config.json"], path)
        weights = None
        if "model.weights.h5" in names:
            weights = _scan_weights_h5(archive, names["model.weights.h5"], path, max_bytes)
        elif "model.weights.npz" in names:
            _scan_npz(archive, names["model.weights.npz"], path, max_bytes)
        else:
            raise UnsafeModelError(
                path, "the archive has neither model.weights.h5 nor model.weights.npz"
            )
    members = tuple(info.filename for info in infos)
    return ZipFacts(config_text, members, total, weights)


def check_members(
    infos: list[zipfile.ZipInfo],
    *,
    path: str,
    max_bytes: int,
    allowed: Callable[[str], bool],
    expected: str,
    context: str = "",
) -> int:
    """Refuse dangerous or unexpected members; return the total uncompressed size.

    Args:
        infos: the archive's members.
        path: the file named in errors.
        max_bytes: cap on the total uncompressed size.
        allowed: whether a member name belongs in this kind of archive.
        expected: the allowed names, for the error message.
        context: prefix for reasons (which nested archive).
    """

    def refuse(reason: str) -> UnsafeModelError:
        return UnsafeModelError(path, context + reason)

    if len(infos) > MAX_MEMBERS:
        raise refuse(f"the archive has {len(infos):,} members (at most {MAX_MEMBERS:,})")
    seen: set[str] = set()
    total = 0
    for info in infos:
        name = info.filename
        problem = _name_problem(name)
        if problem:
            raise refuse(f"member {name!r} {problem}")
        if stat.S_ISLNK(info.external_attr >> 16):
            raise refuse(f"member {name!r} is a symbolic link")
        if name in seen:
            raise refuse(f"member {name!r} appears twice (which copy is read depends on the tool)")
        seen.add(name)
        if info.flag_bits & 0x1:
            raise refuse(f"member {name!r} is encrypted")
        if not allowed(name):
            raise refuse(f"member {name!r} is not expected here (expected {expected})")
        size = info.file_size
        if size > RATIO_FLOOR_BYTES and size > MAX_RATIO * max(info.compress_size, 1):
            raise refuse(
                f"member {name!r} expands from {info.compress_size:,} to {size:,} bytes "
                f"(more than {MAX_RATIO}x): a zip bomb or padding that would be extracted in full"
            )
        total += size
        if total > max_bytes:
            raise refuse(
                f"the archive expands to more than {max_bytes:,} bytes (member {name!r} "
                f"brings it to {total:,})"
            )
    return total


def _name_problem(name: str) -> str | None:
    if "\x00" in name:
        return "contains a NUL character"
    if "\\" in name:
        return "contains a backslash (a Windows path separator)"
    if name.startswith("/"):
        return "is an absolute path"
    if _DRIVE.match(name):
        return "starts with a drive letter"
    parts = name.rstrip("/").split("/")
    if ".." in parts:
        return "contains '..' and would escape the extraction folder"
    if any(part in ("", ".") for part in parts):
        return "has an empty or '.' path component"
    return None


def _keras_member(name: str) -> bool:
    return name in KERAS_MEMBERS or name == "assets/" or name.startswith("assets/")


def _read_config(archive: zipfile.ZipFile, info: zipfile.ZipInfo, path: str) -> str:
    if info.file_size > MAX_CONFIG_BYTES:
        raise UnsafeModelError(
            path, f"config.json is {info.file_size:,} bytes (at most {MAX_CONFIG_BYTES:,})"
        )
    try:
        with archive.open(info) as fh:
            data = fh.read(MAX_CONFIG_BYTES + 1)
        return data.decode("utf-8")
    except (zipfile.BadZipFile, OSError, UnicodeDecodeError, EOFError) as exc:
        raise UnsafeModelError(path, f"config.json cannot be read ({exc})") from None


def _scan_weights_h5(archive, info: zipfile.ZipInfo, path: str, max_bytes: int) -> Hdf5Facts:
    context = "member model.weights.h5: "
    kwargs = {"path": path, "size": info.file_size, "max_bytes": max_bytes, "context": context}
    if info.compress_type == zipfile.ZIP_STORED:
        if info.compress_size != info.file_size:
            raise UnsafeModelError(path, f"{context}its stored and declared sizes differ")
        # Stored (tf_keras' default): read the bytes in place, no copy.
        offset = _data_offset(archive, info, path)
        with open(path, "rb") as raw, Window(raw, offset, info.file_size) as window:
            return scan_hdf5(window, **kwargs)
    # Compressed: h5py seeks a lot, so inflate once into a temp file (size already capped).
    with tempfile.TemporaryFile() as spool:
        try:
            with archive.open(info) as member:
                shutil.copyfileobj(member, spool, 1 << 20)
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise UnsafeModelError(path, f"{context}it cannot be decompressed ({exc})") from None
        spool.seek(0)
        return scan_hdf5(spool, **kwargs)


def _scan_npz(archive, info: zipfile.ZipInfo, path: str, max_bytes: int) -> None:
    context = "member model.weights.npz: "
    try:
        with archive.open(info) as member, zipfile.ZipFile(member) as inner:
            check_members(
                inner.infolist(),
                path=path,
                max_bytes=max_bytes,
                allowed=lambda n: n.endswith(".npy"),
                expected="*.npy arrays",
                context=context,
            )
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise UnsafeModelError(path, f"{context}it is not a valid .npz archive ({exc})") from None


def _data_offset(archive: zipfile.ZipFile, info: zipfile.ZipInfo, path: str) -> int:
    """Where a stored member's bytes start, checked against its local header."""
    fp = archive.fp
    fp.seek(info.header_offset)
    header = fp.read(_LOCAL_HEADER.size)
    if len(header) != _LOCAL_HEADER.size or header[:4] != b"PK\x03\x04":
        raise UnsafeModelError(path, f"member {info.filename!r} has a corrupt local header")
    fields = _LOCAL_HEADER.unpack(header)
    name_len, extra_len = fields[10], fields[11]
    name = fp.read(name_len)
    if (
        name.decode("utf-8", "replace") != info.filename
        and name.decode("cp437", "replace") != info.filename
    ):
        raise UnsafeModelError(
            path,
            f"member {info.filename!r} has a different name in its local header "
            f"({name!r}): tools would disagree about the archive's content",
        )
    return info.header_offset + _LOCAL_HEADER.size + name_len + extra_len
