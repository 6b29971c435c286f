"""Predictions on image files from a trained model (``.keras`` + labels) or a registry model."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UsageError
from .images import read_images

__all__ = ["Prediction", "Predictor"]


@dataclass(frozen=True)
class Prediction:
    """Top classes for one image: ``top`` is a list of ``(label, probability)``."""

    image: str
    top: tuple[tuple[str, float], ...]


class Predictor:
    """Loads a model once and classifies image files.

    Args:
        model: a trained ``.keras`` file saved by ``modelzoo train`` / ``TransferLearner.save``
            (its ``.labels.json`` gives labels and preprocessing), or a registry name.
        trust_remote_code: skip the safety scan (trusted files only).
        cut: take the model only up to this layer (its outputs are features, so there
            are no labels then); a registry model fetches only the weights that needs.

    Attributes:
        meta: a trained file's ``.labels.json`` contents (``{}`` for a registry name).
    """

    def __init__(
        self,
        model: str | os.PathLike[str],
        *,
        trust_remote_code: bool = False,
        cut: str | None = None,
    ):
        from .learner import read_sidecar

        path = Path(os.fspath(model))
        self.preprocessing = "baked"
        self.labels: list[str] | None = None
        self.meta: dict[str, Any] = {}
        if path.suffix in (".keras", ".h5"):
            if not path.exists():
                raise UsageError(f"No such model file: {path}.")
            from ..safety.scan import load_model_file

            meta = self.meta = read_sidecar(path)  # a bad labels file fails before the load
            fmt = "keras" if path.suffix == ".keras" else "h5"
            self.model = load_model_file(
                path, expected_format=fmt, trust_remote_code=trust_remote_code
            )
            self.labels = meta.get("labels")
            self.preprocessing = meta.get("preprocessing", "none")
            if cut is not None:
                from .slicing import slice

                self.model = slice(self.model, cut)
        else:
            from .loading import load, manifest_of

            self.model = load(str(model), cut, include_preprocessing=True)
            manifest = manifest_of(self.model)
            if manifest is not None and isinstance(manifest.labels, list):
                self.labels = list(manifest.labels)
        if cut is not None:
            self.labels = None  # a cut model's outputs are features, not classes
        shape = self.model.input_shape
        if isinstance(shape, list):
            raise UsageError("predict supports single-input models only.")
        self.input_shape = tuple(shape[1:])

    def _size(self) -> tuple[int, int]:
        h, w = self.input_shape[0], self.input_shape[1]
        if h is None or w is None:
            return (224, 224)
        return (int(h), int(w))

    def predict_arrays(self, images: Any) -> np.ndarray:
        """Class probabilities for 0–255 RGB images ``(N, H, W, 3)``."""
        from .preprocessing import preprocess

        x = np.asarray(images, dtype=np.float32)
        if self.preprocessing not in ("baked", "builtin", "none"):
            x = preprocess(x, self.preprocessing)
        return np.asarray(self.model.predict(x, verbose=0))

    def predict_files(self, paths: Sequence[str | os.PathLike[str]], *, top: int = 5):
        """Top-``top`` predictions for each image file."""
        if top < 1:
            raise UsageError(f"top must be >= 1. Received: top={top}.")
        probs = self.predict_arrays(read_images(paths, self._size()))
        results = []
        for path, row in zip(paths, probs, strict=True):
            row = row.reshape(-1)
            order = np.argsort(-row)[:top]
            names = [
                self.labels[i] if self.labels and i < len(self.labels) else str(i) for i in order
            ]
            results.append(
                Prediction(
                    str(path), tuple((n, float(row[i])) for n, i in zip(names, order, strict=True))
                )
            )
        return results
