"""The bundled offline demo model: mobilenet_v1_0.25_32_digits (MobileNet on UCI digits 0-4).

Checks the committed manifest and artifacts, and that the weights really are pretrained:
accuracy on the held-out digits, and identical features from the full and notop files.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from modelzoo.hub.manifest import load_manifest
from modelzoo.models.datasets import digits_to_rgb, split_digits

MODEL_DIR = (
    Path(__file__).resolve().parents[2]
    / "registry"
    / "models"
    / "mobilenet_v1_0.25_32_digits"
    / "1.0.0"
)
CUT = "conv_pw_13_relu"


@pytest.fixture(scope="module")
def manifest():
    return load_manifest(MODEL_DIR / "manifest.json")


# --- manifest and artifacts (TensorFlow-free) --------------------------------------------


def test_manifest_describes_the_demo_model(manifest):
    assert manifest.spec == "mobilenet_v1_0.25_32_digits@1.0.0"
    assert manifest.family == "MobileNet"
    assert manifest.task == "image-classification"
    assert manifest.license == "CC-BY-4.0"
    assert manifest.labels == ["0", "1", "2", "3", "4"]
    assert manifest.input.shape == (32, 32, 3)
    assert manifest.input.min_size == 32
    assert manifest.input.preprocessing == "tf"
    assert set(manifest.tags) >= {"digits", "demo", "offline", "mobilenet"}
    assert manifest.build.kind == "keras-application"
    assert manifest.build.constructor == "MobileNet"
    assert manifest.build.kwargs == {"alpha": 0.25, "input_shape": [32, 32, 3], "classes": 5}
    assert "recipes/pretrain_digits.py" in manifest.notes
    assert "CC BY 4.0" in manifest.notes


def test_manifest_cut_points(manifest):
    cuts = {cp.layer: cp for cp in manifest.cut_points}
    assert cuts[CUT].shape == (1, 1, 256)
    assert cuts[CUT].variant == "notop"
    assert len(cuts) >= 2


@pytest.mark.parametrize("variant", ["full", "notop"])
def test_artifacts_are_relative_and_match_hash_and_size(manifest, variant):
    art = manifest.artifact(variant)
    assert art.url == f"{variant}.h5"  # resolved against the manifest's folder
    assert art.format == "h5-weights"
    assert art.hash is not None and art.hash.algorithm == "sha256"
    path = MODEL_DIR / art.url
    data = path.read_bytes()
    assert len(data) == art.size
    assert hashlib.sha256(data).hexdigest() == art.hash.hex
    assert art.size < 1_500_000  # a demo model small enough to ship in the wheel


def test_model_folder_holds_only_the_manifest_and_its_artifacts(manifest):
    expected = {"manifest.json"} | {a.url for a in manifest.artifacts.values()}
    assert {p.name for p in MODEL_DIR.iterdir()} == expected


# --- the weights (TensorFlow) ------------------------------------------------------------


def _build(manifest, *, include_top: bool):
    from modelzoo import backend

    keras = backend.keras()
    kwargs = dict(manifest.build.kwargs)
    kwargs["input_shape"] = tuple(kwargs["input_shape"])
    if not include_top:
        kwargs.pop("classes")
    constructor = getattr(keras.applications, manifest.build.constructor)
    return constructor(include_top=include_top, weights=None, **kwargs)


@pytest.fixture(scope="module")
def models(manifest):
    full = _build(manifest, include_top=True)
    full.load_weights(str(MODEL_DIR / manifest.artifact("full").url))
    notop = _build(manifest, include_top=False)
    notop.load_weights(str(MODEL_DIR / manifest.artifact("notop").url))
    return full, notop


@pytest.fixture(scope="module")
def held_out():
    from modelzoo import backend

    split = split_digits(range(5))
    preprocess = backend.keras().applications.mobilenet.preprocess_input  # mode "tf"
    x = preprocess(digits_to_rgb(split.x_test))
    assert x.min() >= -1.0 and x.max() <= 1.0
    return x, split.y_test


@pytest.mark.tf
def test_full_weights_classify_held_out_digits(models, held_out):
    full, _ = models
    x, y = held_out
    predicted = np.argmax(full(x, training=False).numpy(), axis=-1)
    accuracy = float(np.mean(predicted == y))
    assert accuracy >= 0.90, f"held-out accuracy {accuracy:.3f}"


@pytest.mark.tf
def test_untrained_network_is_near_chance(manifest, held_out):
    # Guards the accuracy test above: without the pretrained weights it must fail.
    from modelzoo import backend

    backend.keras().utils.set_random_seed(0)
    fresh = _build(manifest, include_top=True)
    x, y = held_out
    accuracy = float(np.mean(np.argmax(fresh(x, training=False).numpy(), axis=-1) == y))
    assert accuracy < 0.5


@pytest.mark.tf
def test_full_and_notop_give_identical_features_at_the_cut(models, held_out):
    from modelzoo import backend

    keras = backend.keras()
    full, notop = models
    x = held_out[0][:64]
    a = keras.Model(full.input, full.get_layer(CUT).output)(x, training=False).numpy()
    b = keras.Model(notop.input, notop.get_layer(CUT).output)(x, training=False).numpy()
    assert a.shape == (64, 1, 1, 256)
    assert np.array_equal(a, b)
    assert np.abs(a).sum() > 0  # real activations, not a dead layer


@pytest.mark.tf
def test_notop_file_holds_no_classifier(models):
    _, notop = models
    names = {layer.name for layer in notop.layers}
    assert "conv_preds" not in names
    assert notop.output.shape[1:] == (1, 1, 256)


@pytest.mark.tf
def test_cut_point_shapes_match_the_network(manifest, models):
    _, notop = models
    for cp in manifest.cut_points:
        assert tuple(notop.get_layer(cp.layer).output.shape[1:]) == cp.shape, cp.layer
