"""A registry of tiny *real* models for loading tests: a keras-application and a keras-model.

``tiny_mobilenet`` is MobileNet(alpha=0.25, 32x32, classes=3) with seeded random weights
saved as ``full.h5`` / ``notop.h5`` weights files, exactly like the official Keras
Applications artifacts but a few hundred kB. ``tiny_saved`` is a small functional model
saved whole as ``.keras``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

__all__ = ["build_registry", "MOBILENET_KWARGS"]

MOBILENET_KWARGS = {"alpha": 0.25, "input_shape": [32, 32, 3], "classes": 3}


def _sha(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def _write_manifest(folder: Path, doc: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "manifest.json").write_text(json.dumps(doc, indent=2), encoding="utf-8")


def build_registry(root: Path) -> dict:
    """Write the registry under ``root`` and return reference models for comparisons."""
    import tf_keras as keras

    from modelzoo.hub import registry

    keras.utils.set_random_seed(7)
    kwargs = dict(MOBILENET_KWARGS, input_shape=tuple(MOBILENET_KWARGS["input_shape"]))
    full = keras.applications.MobileNet(include_top=True, weights=None, **kwargs)
    notop = keras.applications.MobileNet(include_top=False, weights=None, **kwargs)
    # Random BN statistics make the comparisons meaningful (fresh ones are 0/1).
    for layer in full.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([gamma * 1.1, beta + 0.05, mean + 0.1, var * 0.9 + 0.05])
    for layer in notop.layers:
        if layer.weights:
            layer.set_weights(full.get_layer(layer.name).get_weights())
    folder = root / "models" / "tiny_mobilenet" / "1.0.0"
    folder.mkdir(parents=True, exist_ok=True)
    full.save_weights(folder / "full.h5")
    notop.save_weights(folder / "notop.h5")
    _write_manifest(
        folder,
        {
            "schema_version": 1,
            "name": "tiny_mobilenet",
            "version": "1.0.0",
            "family": "MobileNet",
            "summary": "tiny MobileNet for tests",
            "license": "MIT",
            "input": {"shape": [32, 32, 3], "min_size": 32, "preprocessing": "tf"},
            "labels": ["a", "b", "c"],
            "build": {
                "kind": "keras-application",
                "constructor": "MobileNet",
                "kwargs": MOBILENET_KWARGS,
            },
            "artifacts": {
                v: {
                    "url": f"{v}.h5",
                    "format": "h5-weights",
                    "hash": _sha(folder / f"{v}.h5"),
                    "size": (folder / f"{v}.h5").stat().st_size,
                }
                for v in ("full", "notop")
            },
            "cut_points": [{"layer": "conv_pw_13_relu", "shape": [1, 1, 256], "variant": "notop"}],
        },
    )

    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(inputs)
    x = keras.layers.Flatten(name="flat")(x)
    outputs = keras.layers.Dense(2, activation="softmax", name="out")(x)
    saved = keras.Model(inputs, outputs, name="tiny_saved")
    folder = root / "models" / "tiny_saved" / "1.0.0"
    folder.mkdir(parents=True, exist_ok=True)
    saved.save(folder / "model.keras")
    _write_manifest(
        folder,
        {
            "schema_version": 1,
            "name": "tiny_saved",
            "version": "1.0.0",
            "summary": "tiny saved model for tests",
            "input": {"shape": [8, 8, 3], "preprocessing": "none"},
            "build": {"kind": "keras-model"},
            "artifacts": {
                "full": {
                    "url": "model.keras",
                    "format": "keras",
                    "hash": _sha(folder / "model.keras"),
                }
            },
        },
    )
    evil = root / "models" / "not_allowed" / "1.0.0"
    _write_manifest(
        evil,
        {
            "schema_version": 1,
            "name": "not_allowed",
            "version": "1.0.0",
            "summary": "names a constructor outside the allow-list",
            "input": {"shape": [32, 32, 3]},
            "build": {"kind": "keras-application", "constructor": "system", "kwargs": {}},
            "artifacts": {"full": {"url": "w.h5", "format": "h5-weights", "hash": None}},
        },
    )
    (evil / "w.h5").write_bytes(b"x")
    registry.write_index(root)
    return {"full": full, "notop": notop, "saved": saved}
