"""The bundled registry: every manifest valid, faithful to the Keras reference, index fresh."""

from __future__ import annotations

import functools
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from modelzoo.hub.index import dumps_index
from modelzoo.hub.manifest import load_manifest
from modelzoo.hub.registry import build_index, bundled_registry_path, resolve, search

REPO = Path(__file__).resolve().parents[2]
REFERENCE = json.loads((REPO / "tests/data/keras_applications_weights.json").read_text("utf-8"))
GENERATOR = REPO / "scripts/gen_keras_applications.py"
ROOT = bundled_registry_path()


@functools.cache
def keras_manifests() -> dict:
    """The generated Keras Applications manifests, by name (loaded once, on first use)."""
    paths = sorted(ROOT.glob("models/*/*/manifest.json"))
    manifests = (load_manifest(p) for p in paths)
    return {m.name: m for m in manifests if "keras-applications" in m.tags}


PREPROCESSING = {"caffe": "caffe", "tf": "tf", "torch": "torch", "built-in rescaling": "builtin"}
REGENERATE = "python scripts/gen_keras_applications.py"


def test_bundled_path_is_the_checkout_registry_or_the_packaged_copy():
    assert ROOT.is_dir()
    assert ROOT.name in ("registry", "_registry")


def test_every_bundled_manifest_validates_and_the_index_is_fresh():
    fresh = dumps_index(build_index(ROOT))  # validates every manifest, errors name the file
    committed = (ROOT / "index.json").read_bytes()
    assert committed == fresh, (
        f"{ROOT / 'index.json'} is stale. Rebuild it: `{REGENERATE} --index-only` "
        f"(or `modelzoo registry index {ROOT}`)."
    )


def test_generated_manifests_are_committed():
    out = subprocess.run(
        [sys.executable, str(GENERATOR), "--check"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, f"generated files are stale; run `{REGENERATE}`:\n{out.stderr}"


def test_one_model_per_reference_pair():
    assert len(REFERENCE) == 246
    assert len(keras_manifests()) == 123
    for name in [
        "xception",
        "vgg16",
        "vgg19",
        "resnet50",
        "resnet101",
        "resnet152",
        "resnet50_v2",
        "inception_v3",
        "inception_resnet_v2",
        "mobilenet_v1_1.0_224",
        "mobilenet_v1_0.25_128",
        "mobilenet_v2_1.0_224",
        "mobilenet_v2_0.35_96",
        "mobilenet_v3_small_1.0_224",
        "mobilenet_v3_small_0.75_224",
        "mobilenet_v3_small_minimalistic_1.0_224",
        "mobilenet_v3_large_1.0_224",
        "densenet121",
        "nasnet_mobile",
        "nasnet_large",
        "efficientnet_b0",
        "efficientnet_b7",
        "efficientnet_v2_b0",
        "efficientnet_v2_s",
        "efficientnet_v2_l",
        "convnext_tiny",
        "regnetx_002",
        "regnety_320",
        "resnetrs_50_i160",
    ]:
        assert name in keras_manifests(), name
    for m in keras_manifests().values():
        assert m.version == "1.0.0"
        assert set(m.artifacts) == {"full", "notop"}
        assert m.license == "Apache-2.0" and "their terms apply" in m.notes
        assert re.fullmatch(r"https://arxiv\.org/abs/\d{4}\.\d{4,5}", m.paper), m.name
        assert m.homepage == "https://keras.io/api/applications/"
        assert m.task == "image-classification" and m.labels == "imagenet"
        assert {m.family.lower(), "imagenet", "keras-applications"} <= set(m.tags)
        assert "ImageNet" in m.summary and "Keras Applications" in m.summary


def _find(entry):
    """The (manifest, variant) whose artifact is this reference entry's file."""
    hits = [
        (m, v)
        for m in keras_manifests().values()
        for v, art in m.artifacts.items()
        if art.url == entry["url"] and art.file_name == entry["file_name"]
    ]
    assert len(hits) == 1, f"{entry['url']} appears {len(hits)} times"
    return hits[0]


@pytest.mark.parametrize("entry", REFERENCE, ids=lambda e: e["file_name"])
def test_reference_entry_matches_exactly_one_artifact(entry):
    manifest, variant = _find(entry)
    art = manifest.artifacts[variant]
    assert variant == ("full" if entry["include_top"] else "notop")
    expected_hash = f"{entry['hash_algorithm']}:{entry['hash']}" if entry["hash"] else None
    assert (str(art.hash) if art.hash else None) == expected_hash
    assert art.size is None and art.mirrors == () and art.format == "h5-weights"

    assert manifest.family == entry["family"]
    assert manifest.build.kind == "keras-application"
    assert manifest.build.constructor == entry["constructor"]
    kwargs = {k: v for k, v in entry["kwargs"].items() if k not in ("include_top", "weights")}
    # every manifest states the input size loading builds at (issue 11 item 1)
    kwargs["input_shape"] = entry["input_shape"]
    assert manifest.build.kwargs == kwargs
    assert list(manifest.input.shape) == entry["input_shape"]
    assert manifest.input.min_size == entry["min_size"]
    assert manifest.input.dtype == "float32"
    assert manifest.input.preprocessing == PREPROCESSING[entry["preprocessing"]]

    [cut] = manifest.cut_points
    assert cut.variant == "notop"
    if entry["cut_layer"] is not None:
        assert cut.layer == entry["cut_layer"]
    else:
        # the nearest named layer the reference notes point at, and the note says so
        assert f"'{cut.layer}'" in entry["notes"]
        assert cut.note.startswith("Nearest named layer")
    for sentence in re.split(r"(?<=[.!?])\s+(?=[A-Z'(])", entry["notes"] or ""):
        assert sentence in manifest.notes
    if entry["family"] == "ResNetRS":
        res = entry["kwargs"]["weights"].removeprefix("imagenet-i")
        assert manifest.name.endswith(f"_i{res}") and f"{res}x{res}" in manifest.summary


def test_hashes_and_upstream_gaps():
    unhashed = [
        m.name for m in keras_manifests().values() for a in m.artifacts.values() if a.hash is None
    ]
    assert len(unhashed) == 92
    assert all(n.startswith(("mobilenet_v1_", "mobilenet_v2_")) for n in unhashed)
    unverified = sorted(
        m.name for m in keras_manifests().values() if "unverified-upstream" in m.tags
    )
    assert len(unverified) == 8  # 16 reference entries: a full and a notop file each
    assert all(re.fullmatch(r"mobilenet_v2_1\.[34]_(96|128|160|192)", n) for n in unverified)
    for name in unverified:
        assert "may not exist" in keras_manifests()[name].notes
    mobile = {m.name for m in keras_manifests().values() if "mobile" in m.tags}
    assert "nasnet_mobile" in mobile and "mobilenet_v1_0.25_128" in mobile
    assert "resnet50" not in mobile


def test_cut_point_shapes_are_known():
    missing = sorted(m.name for m in keras_manifests().values() if m.cut_points[0].shape is None)
    assert missing == [], f"cut-point shape unknown for {missing}; run `{REGENERATE}`"
    assert keras_manifests()["mobilenet_v1_1.0_224"].cut_points[0].shape == (7, 7, 1024)
    assert keras_manifests()["vgg16"].cut_points[0].shape == (14, 14, 512)
    assert keras_manifests()["resnet50"].cut_points[0].shape == (7, 7, 2048)


def test_bundled_models_resolve_to_official_urls():
    r = resolve("vgg16")
    assert r.registry == "bundled"
    assert r.artifact_urls("notop") == [
        "https://storage.googleapis.com/tensorflow/keras-applications/vgg16/"
        "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
    ]
    hits = search("mobilenet_v1")
    assert hits and all(h.name.startswith("mobilenet_v1") for h in hits[:16])
    assert {h.name for h in search(tag="unverified-upstream")} == {
        m.name for m in keras_manifests().values() if "unverified-upstream" in m.tags
    }


@pytest.mark.tf
def test_constructors_exist_in_tf_keras_applications():
    from modelzoo import backend

    applications = backend.keras().applications
    missing = sorted(
        {m.build.constructor for m in keras_manifests().values()}
        - {n for n in dir(applications) if callable(getattr(applications, n))}
    )
    assert missing == []


@pytest.mark.tf
@pytest.mark.parametrize(
    "name",
    [
        "mobilenet_v1_0.25_128",
        "mobilenet_v2_0.35_96",
        "mobilenet_v3_small_minimalistic_1.0_224",  # a nearest-named-layer fallback
        "regnetx_002",
    ],
)
def test_cut_points_exist_in_the_notop_model(name):
    from modelzoo import backend

    keras = backend.keras()
    manifest = keras_manifests()[name]
    kwargs = dict(manifest.build.kwargs)
    kwargs["input_shape"] = tuple(manifest.input.shape)
    ctor = getattr(keras.applications, manifest.build.constructor)
    try:
        model = ctor(include_top=False, weights=None, **kwargs)
        [cut] = manifest.cut_points
        layer = model.get_layer(cut.layer)  # raises ValueError when missing
        assert tuple(layer.output.shape[1:]) == cut.shape
    finally:
        keras.backend.clear_session()
