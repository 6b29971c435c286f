"""Input preprocessing modes (``caffe``, ``tf``, ``torch``, ``builtin``, ``none``).

Every mode the Keras Applications use is a per-channel affine map, optionally with an
RGB→BGR swap: ``y = x @ W + b``. That lets us bake preprocessing into a model as one
frozen 1×1 ``Conv2D`` — a built-in layer, so the model still saves as plain ``.keras``,
passes the safety scan (no Lambda) and exports to TF.js — and apply exactly the same
numbers in numpy when a caller preprocesses by hand.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import UsageError
from ..hub.manifest import PREPROCESSING_MODES

__all__ = ["affine", "baked_mode", "preprocess", "preprocessing_layer", "with_preprocessing"]

_IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float64)
_IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float64)
_CAFFE_BGR_MEAN = np.array([103.939, 116.779, 123.68], dtype=np.float64)


def affine(mode: str) -> tuple[np.ndarray, np.ndarray] | None:
    """``(W, b)`` with ``y = x @ W + b`` for 0–255 RGB input, or None for identity modes.

    Raises:
        UsageError: for an unknown mode.
    """
    if mode not in PREPROCESSING_MODES:
        raise UsageError(
            f"Unknown preprocessing mode. Received: mode={mode!r}. "
            f"Valid: {', '.join(PREPROCESSING_MODES)}."
        )
    if mode in ("builtin", "none"):
        return None
    if mode == "tf":  # [0, 255] -> [-1, 1]
        return np.eye(3) / 127.5, np.full(3, -1.0)
    if mode == "torch":  # [0, 1] then ImageNet mean/std per channel
        scale = 1.0 / (255.0 * _IMAGENET_STD)
        return np.diag(scale), -_IMAGENET_MEAN / _IMAGENET_STD
    # caffe: RGB -> BGR, subtract the BGR ImageNet means, no scaling
    swap = np.eye(3)[::-1].copy()  # x @ swap reverses the channel order
    return swap, -_CAFFE_BGR_MEAN


def preprocess(images: Any, mode: str) -> np.ndarray:
    """Apply ``mode`` to 0–255 RGB images (channels last) in numpy; returns float32."""
    x = np.asarray(images, dtype=np.float32)
    params = affine(mode)
    if params is None:
        return x
    w, b = params
    if x.shape[-1] != 3:
        raise UsageError(
            f"Preprocessing mode {mode!r} expects 3 channels (RGB). Received: shape={x.shape}."
        )
    return (x @ w.astype(np.float32) + b.astype(np.float32)).astype(np.float32)


def preprocessing_layer(mode: str, *, name: str | None = None):
    """A frozen 1×1 Conv2D implementing ``mode``, or None for identity modes."""
    from ..backend import keras

    params = affine(mode)
    if params is None:
        return None
    w, b = params
    layer = keras().layers.Conv2D(
        3, 1, use_bias=True, trainable=False, name=name or f"preprocess_{mode}"
    )
    # Set the numbers as weights, not as Constant initializers: array-valued initializers
    # do not survive every format (TF.js accepts only scalar Constant values).
    # Build under the layer's name scope, as a first call would: weight names
    # ("preprocess_tf/kernel:0") then match a clone of the model (feature-cache keys).
    from ..backend import tf

    with tf().name_scope(layer.name):
        layer.build((None, None, None, 3))
    layer.set_weights([w.reshape(1, 1, 3, 3).astype("float32"), b.astype("float32")])
    return layer


def with_preprocessing(model, mode: str, *, name: str | None = None):
    """Wrap ``model`` so it takes raw 0–255 RGB images; returns ``model`` for identity modes."""
    from ..backend import keras

    layer = preprocessing_layer(mode)
    if layer is None:
        return model
    k = keras()
    inputs = k.Input(shape=model.input_shape[1:], name="image")
    outputs = model(layer(inputs))
    return k.Model(inputs, outputs, name=name or f"{model.name}_with_preprocessing")


def baked_mode(model) -> str | None:
    """The mode baked into ``model`` by :func:`preprocessing_layer` (nested models searched),
    or None when the model takes its input already preprocessed."""
    names = {f"preprocess_{mode}": mode for mode in PREPROCESSING_MODES}
    for layer in getattr(model, "layers", ()):
        found = names.get(layer.name) or baked_mode(layer)
        if found:
            return found
    return None
