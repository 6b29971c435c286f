"""The bottleneck-feature cache: a frozen base's outputs computed once, reused across fits.

When the pretrained base is frozen and the data is not augmented, every epoch would
push the same images through the same base. Instead the learner computes the features
once, stores them under ``$MODELZOO_HOME/features/<key>.npy`` and trains only the head.
The key covers everything that changes the features: the base's weights, the cut, the
input shape, the preprocessing, and a fingerprint of the data itself.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from . import constants
from .errors import CacheError

__all__ = ["fingerprint_arrays", "fingerprint_weights", "feature_key", "FeatureCache"]

logger = logging.getLogger("modelzoo")


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
        self.root = Path(root) if root is not None else constants.home() / "features"

    def path(self, key: str) -> Path:
        """Where the features for ``key`` live."""
        if not key.isalnum():
            raise ValueError(f"bad feature key {key!r}")
        return self.root / f"{key}.npy"

    def get(self, key: str) -> np.ndarray | None:
        """The cached features, or None on a miss (or an unreadable file)."""
        path = self.path(key)
        if not path.exists():
            return None
        try:
            return np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            logger.warning("ignoring unreadable feature cache %s: %s", path, exc)
            return None

    def put(self, key: str, features: np.ndarray) -> Path:
        """Store ``features`` under ``key`` atomically."""
        path = self.path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".npy")
            try:
                with os.fdopen(fd, "wb") as f:
                    np.save(f, np.asarray(features), allow_pickle=False)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            raise CacheError(
                f"Cannot write the feature cache {path}: {exc.strerror or exc}. Free some space "
                "(`modelzoo cache prune`) or pass feature_cache=False."
            ) from exc
        return path
