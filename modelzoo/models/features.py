"""The bottleneck-feature cache: a frozen base's outputs computed once, reused across fits.

When the pretrained base is frozen and the data is not augmented, every epoch would
push the same images through the same base. Instead the learner computes the features
once, stores them under ``$MODELZOO_HOME/features/<key>.npy`` and trains only the head.
The key covers everything that changes the features: the base's weights (fingerprinted
at every ``fit``, so fine-tuning invalidates them), the cut, the input shape, the
preprocessing, and a fingerprint of the data itself.

Features of an image folder never sit in memory at once: they are written in chunks
(:meth:`FeatureCache.writer`) and read back block by block through a memory map that
is released after each block (:func:`feature_blocks`), so the process's resident
memory stays at a few blocks whatever the data set's size.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .. import config
from ..errors import CacheError
from ..files import atomic_output

__all__ = [
    "fingerprint_arrays",
    "fingerprint_weights",
    "feature_key",
    "feature_blocks",
    "FeatureCache",
]

#: Bytes of features read per block when streaming them from the cache.
BLOCK_BYTES = 64 << 20

logger = logging.getLogger(__name__)


def fingerprint_arrays(*arrays: Any) -> str:
    """sha256 over the dtype, shape and bytes of each array (None allowed)."""
    h = hashlib.sha256()
    for a in arrays:
        if a is None:
            h.update(b"<none>")
            continue
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(memoryview(a).cast("B"))
    return h.hexdigest()


def fingerprint_weights(model) -> str:
    """sha256 over a model's weights, in order (identifies the exact base)."""
    h = hashlib.sha256()
    for w in model.weights:
        value = np.ascontiguousarray(w.numpy())
        h.update(f"{w.name}{value.dtype.str}{value.shape}".encode())
        h.update(memoryview(value).cast("B"))
    return h.hexdigest()


def feature_key(**parts: Any) -> str:
    """A stable key from named parts (JSON-encoded, sorted)."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class FeatureCache:
    """Feature arrays on disk, written atomically; a partial file is never read."""

    def __init__(self, root: str | os.PathLike[str] | None = None):
        self.root = Path(root) if root is not None else config.home() / "features"

    def path(self, key: str) -> Path:
        """Where the features for ``key`` live."""
        if not key.isalnum():
            raise ValueError(f"bad feature key {key!r}")
        return self.root / f"{key}.npy"

    def get(self, key: str, *, mmap: bool = False) -> np.ndarray | None:
        """The cached features, or None on a miss (or an unreadable file).

        Args:
            key: from :func:`feature_key`.
            mmap: return a read-only memory map instead of reading the file.
        """
        path = self.path(key)
        if not path.exists():
            return None
        try:
            return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
        except (OSError, ValueError) as exc:
            logger.warning("ignoring unreadable feature cache %s: %s", path, exc)
            return None

    @contextlib.contextmanager
    def writer(
        self, key: str | None, rows: int, shape: tuple[int, ...], dtype: str = "float32"
    ) -> Iterator[_ChunkWriter]:
        """Write ``rows`` feature rows of ``shape`` in chunks; published atomically on success.

        With ``key=None`` the file is private to the caller (a worker that must not
        publish): it is written to a temporary name that the caller removes.

        Yields:
            A writer: ``w.write(chunk)`` appends rows; ``w.path`` is the final file.
        """
        path = self.path(key) if key is not None else None
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".tmp-", suffix=".npy")
        except OSError as exc:
            raise self._write_error(path or self.root, exc) from exc
        try:
            with os.fdopen(fd, "wb") as f:
                header = {"descr": np.dtype(dtype).str, "fortran_order": False}
                np.lib.format.write_array_header_1_0(f, {**header, "shape": (rows, *shape)})
                writer = _ChunkWriter(f, rows, tuple(shape), np.dtype(dtype), path or Path(tmp))
                yield writer
                if writer.written != rows:
                    raise ValueError(f"wrote {writer.written} of {rows} feature rows")
                f.flush()
                os.fsync(f.fileno())
            if path is not None:
                os.replace(tmp, path)
        except OSError as exc:
            Path(tmp).unlink(missing_ok=True)
            raise self._write_error(path or self.root, exc) from exc
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @staticmethod
    def _write_error(path: Path, exc: OSError) -> CacheError:
        return CacheError(
            f"Cannot write the feature cache {path}: {exc.strerror or exc}. Free some space "
            "(`modelzoo cache prune`) or pass feature_cache=False."
        )

    def put(self, key: str, features: np.ndarray) -> Path:
        """Store ``features`` under ``key`` atomically."""
        path = self.path(key)
        try:
            with atomic_output(path, suffix=".npy") as tmp, open(tmp, "wb") as f:
                np.save(f, np.asarray(features), allow_pickle=False)
        except OSError as exc:
            raise self._write_error(path, exc) from exc
        return path


class _ChunkWriter:
    """Appends rows to an open ``.npy`` file (plain writes: no pages stay mapped)."""

    def __init__(self, f, rows: int, shape: tuple[int, ...], dtype: np.dtype, path: Path):
        self._f = f
        self.rows, self.shape, self.dtype, self.path = rows, shape, dtype, path
        self.written = 0

    def write(self, chunk: np.ndarray) -> None:
        chunk = np.ascontiguousarray(chunk, dtype=self.dtype)
        if chunk.shape[1:] != self.shape or self.written + len(chunk) > self.rows:
            raise ValueError(f"feature chunk {chunk.shape} does not fit {self.shape}")
        self._f.write(memoryview(chunk).cast("B"))
        self.written += len(chunk)


def feature_blocks(
    path: str | os.PathLike[str],
    labels: np.ndarray,
    *,
    shuffle: bool,
    seed: int = 0,
    block_bytes: int = BLOCK_BYTES,
):
    """A generator factory over ``(features, labels)`` blocks of a cached ``.npy`` file.

    Each block is copied out of a fresh memory map that is closed right after, so pages
    never accumulate in the process. With ``shuffle`` every call (= epoch) visits the
    blocks in a new order and shuffles the rows inside each block; the cache is written
    in a shuffled file order, so a block is a random sample of the data.

    Returns:
        A no-argument callable returning an iterator (for ``tf.data.Dataset.from_generator``).
    """
    path = os.fspath(path)
    head = np.load(path, mmap_mode="r", allow_pickle=False)
    n, row_bytes = len(head), max(1, head[:1].nbytes)
    del head
    if len(labels) != n:
        raise ValueError(f"{n} cached feature rows for {len(labels)} labels")
    block = max(1, block_bytes // row_bytes)
    epoch = [0]

    def blocks():
        rng = np.random.default_rng([seed, epoch[0]])
        epoch[0] += 1
        starts = np.arange(0, n, block)
        for start in rng.permutation(starts) if shuffle else starts:
            mm = np.load(path, mmap_mode="r", allow_pickle=False)
            rows = np.array(mm[start : start + block])
            del mm  # unmap: the block's pages leave the process
            ys = labels[start : start + block]
            if shuffle:
                order = rng.permutation(len(rows))
                rows, ys = rows[order], ys[order]
            yield rows, ys

    return blocks
