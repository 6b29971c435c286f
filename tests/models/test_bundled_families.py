"""Every family in the bundled registry loads at its manifest's shapes and takes the default head.

One model per family (the smallest), through the real loading path: the bundled manifest
copied into a registry served over HTTP on 127.0.0.1, its ``notop`` artifact replaced by
random stand-in weights in the same ``h5-weights`` format (built with the constructor,
``weights=None``) with their real hash. Then ``modelzoo.load(name, cut=<the manifest's
cut point>)`` must give the manifest's input and cut shapes, and the default head must
attach and train a step. The family-by-family table prints at the end (``pytest -s``).
"""

from __future__ import annotations

import gc
import json
import time

import numpy as np
import pytest
from _server import LocalServer
from _stand_ins import BUNDLED, bundled_doc, publish_stand_in

import modelzoo

pytestmark = [pytest.mark.tf, pytest.mark.slow]

#: The smallest bundled model of each family (by weights file size).
FAMILY_MODELS = {
    "ConvNeXt": "convnext_tiny",
    "DenseNet": "densenet121",
    "EfficientNet": "efficientnet_b0",
    "EfficientNetV2": "efficientnet_v2_b0",
    "InceptionResNetV2": "inception_resnet_v2",
    "InceptionV3": "inception_v3",
    "MobileNet": "mobilenet_v1_0.25_128",
    "MobileNetV2": "mobilenet_v2_0.35_96",
    "MobileNetV3": "mobilenet_v3_small_minimalistic_1.0_224",
    "NASNet": "nasnet_mobile",
    "RegNet": "regnetx_002",
    "ResNet": "resnet50",
    "ResNetV2": "resnet50_v2",
    "ResNetRS": "resnetrs_50_i160",
    "VGG": "vgg16",
    "Xception": "xception",
}

_ROWS: list[tuple] = []


def test_every_bundled_family_is_covered():
    families = {
        json.loads(p.read_text("utf-8")).get("family")
        for p in BUNDLED.glob("models/*/*/manifest.json")
        if "keras-applications" in json.loads(p.read_text("utf-8"))["tags"]
    }
    assert families == set(FAMILY_MODELS)
    for family, name in FAMILY_MODELS.items():
        assert bundled_doc(name)["family"] == family


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("families")
    (root / "models").mkdir()
    with LocalServer(root) as server:
        yield root, server
    if _ROWS:
        head = ("family", "model", "cut", "manifest shape", "loaded shape", "seconds")
        widths = [max(len(str(r[i])) for r in [head, *_ROWS]) for i in range(len(head))]
        print("\n\nFamily-by-family cut shapes (load through a local registry):")
        for row in [head, *_ROWS]:
            print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)))


@pytest.mark.parametrize("family", sorted(FAMILY_MODELS))
def test_family_loads_at_the_manifest_shape_and_takes_the_default_head(family, served, monkeypatch):
    import tf_keras as keras

    from modelzoo import TransferLearner

    root, server = served
    name = FAMILY_MODELS[family]
    doc = publish_stand_in(root, server.url, name)
    monkeypatch.setenv("MODELZOO_REGISTRY", server.url)
    [cut, *_] = doc["cut_points"]
    start = time.perf_counter()
    try:
        features = modelzoo.load(name, cut=cut["layer"])
        loaded = list(features.output_shape[1:])
        _ROWS.append(
            (family, name, cut["layer"], cut["shape"], loaded, f"{time.perf_counter() - start:.0f}")
        )
        assert list(features.input_shape[1:]) == doc["input"]["shape"]
        assert loaded == cut["shape"]
        mine = [p for p in server.paths("GET") if p.startswith(f"/models/{name}/")]
        got = {p for p in mine if p.endswith(".h5")}  # large files come in ranged parts
        assert got == {f"/models/{name}/1.0.0/{doc['artifacts']['notop']['file_name']}"}

        # the default learner: features computed once, then the head trains on them
        learner = TransferLearner(features, num_classes=2)
        assert learner.model.output_shape == (None, 2)
        x = np.random.default_rng(0).uniform(0, 255, (2, *doc["input"]["shape"]))
        history = learner.fit(
            x.astype("float32"), np.array([0, 1]), epochs=1, batch_size=2, verbose=0
        )
        assert np.isfinite(history["loss"][0])
    finally:
        keras.backend.clear_session()
        gc.collect()
