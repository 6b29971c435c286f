"""modelzoo.load: both manifest kinds over real HTTP, cut-aware downloads, preprocessing."""

from __future__ import annotations

import numpy as np
import pytest
from _server import LocalServer
from _tiny_apps import build_registry

import modelzoo
from modelzoo.errors import LayerNotFoundError, UsageError
from modelzoo.models.preprocessing import preprocess

pytestmark = pytest.mark.tf


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("apps-registry")
    refs = build_registry(root)
    return root, refs


@pytest.fixture
def server(built, monkeypatch):
    root, _ = built
    with LocalServer(root) as srv:
        monkeypatch.setenv("MODELZOO_REGISTRY", srv.url)
        yield srv


def _images(n=4, size=32, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (n, size, size, 3)).astype("float32")


def _gets(server):
    return [p for p in server.paths("GET") if p.endswith((".h5", ".keras"))]


def test_full_model_matches_the_reference_and_is_frozen(built, server):
    _, refs = built
    model = modelzoo.load("tiny_mobilenet")
    x = preprocess(_images(), "tf")
    np.testing.assert_allclose(
        model.predict(x, verbose=0), refs["full"].predict(x, verbose=0), atol=1e-6
    )
    assert model.trainable_weights == []
    assert _gets(server) == ["/models/tiny_mobilenet/1.0.0/full.h5"]


def test_cut_inside_the_notop_graph_fetches_only_the_notop_file(built, server):
    _, refs = built
    model = modelzoo.load("tiny_mobilenet", cut="conv_pw_13_relu")
    assert model.output_shape == (None, 1, 1, 256)
    x = preprocess(_images(), "tf")
    ref = refs["notop"].get_layer("conv_pw_13_relu").output
    import tf_keras as keras

    expected = keras.Model(refs["notop"].input, ref).predict(x, verbose=0)
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, atol=1e-6)
    assert _gets(server) == ["/models/tiny_mobilenet/1.0.0/notop.h5"]


def test_unlisted_cut_is_found_in_the_notop_graph(server):
    modelzoo.load("tiny_mobilenet", cut="conv_pw_5_relu")
    assert _gets(server) == ["/models/tiny_mobilenet/1.0.0/notop.h5"]


def test_cut_in_the_classifier_needs_the_full_file(server):
    model = modelzoo.load("tiny_mobilenet", cut="conv_preds")
    assert model.layers[-1].name == "conv_preds"
    assert _gets(server) == ["/models/tiny_mobilenet/1.0.0/full.h5"]


def test_other_input_shape_with_notop_weights(server):
    model = modelzoo.load("tiny_mobilenet", include_top=False, input_shape=(64, 64, 3))
    assert model.input_shape == (None, 64, 64, 3)
    assert model.output_shape == (None, 2, 2, 256)


def test_include_preprocessing_takes_raw_images(server):
    raw = _images()
    plain = modelzoo.load("tiny_mobilenet", cut="conv_pw_13_relu")
    baked = modelzoo.load("tiny_mobilenet", cut="conv_pw_13_relu", include_preprocessing=True)
    np.testing.assert_allclose(
        baked.predict(raw, verbose=0), plain.predict(preprocess(raw, "tf"), verbose=0), atol=1e-5
    )


def test_trainable_flag_and_typo_suggestions(server):
    model = modelzoo.load("tiny_mobilenet", cut="conv_pw_13_relu", trainable=True)
    assert model.trainable_weights
    with pytest.raises(LayerNotFoundError) as info:
        modelzoo.load("tiny_mobilenet", cut="conv_pw_13_rleu")
    assert "conv_pw_13_relu" in info.value.suggestions


def test_saved_keras_model_loads_and_slices(built, server):
    _, refs = built
    model = modelzoo.load("tiny_saved")
    x = _images(size=8)
    np.testing.assert_allclose(
        model.predict(x, verbose=0), refs["saved"].predict(x, verbose=0), atol=1e-6
    )
    cut = modelzoo.load("tiny_saved", cut="flat")
    assert cut.output_shape == (None, 6 * 6 * 4)
    with pytest.raises(UsageError):
        modelzoo.load("tiny_saved", input_shape=(16, 16, 3))


def test_constructor_outside_the_allow_list_is_refused(server):
    with pytest.raises(UsageError, match="allow-listed"):
        modelzoo.load("not_allowed")


def test_load_a_local_keras_file(built, tmp_path):
    _, refs = built
    path = tmp_path / "m.keras"
    refs["saved"].save(path)
    model = modelzoo.load(path, cut="conv")
    assert model.output_shape == (None, 6, 6, 4)


@pytest.mark.parametrize(
    ("shape", "fragment"),
    [
        ((100000, 100000, 3), "too large"),
        ((0, 64, 3), "positive integers"),
        ((64, 64), "(height, width, channels)"),
        ((64.5, 64, 3), "positive integers"),
    ],
)
def test_absurd_input_shape_is_one_line_before_any_download(server, shape, fragment):
    with pytest.raises(UsageError, match="input_shape") as info:
        modelzoo.load("tiny_mobilenet", include_top=False, input_shape=shape)
    assert fragment in str(info.value) and "\n" not in str(info.value)
    assert _gets(server) == []


def test_manifest_input_shape_is_the_default_when_kwargs_lack_it(built):
    """A manifest need not repeat its input shape in build.kwargs (issue 11 item 1)."""
    import json

    from modelzoo.hub.manifest import parse_manifest
    from modelzoo.models.loading import build_application

    root, _ = built
    doc = json.loads((root / "models/tiny_mobilenet/1.0.0/manifest.json").read_text("utf-8"))
    del doc["build"]["kwargs"]["input_shape"]
    manifest = parse_manifest(doc)
    notop = build_application(manifest, include_top=False)
    assert notop.input_shape == (None, 32, 32, 3)
    assert notop.get_layer("conv_pw_13_relu").output.shape[1:] == (1, 1, 256)
    other = build_application(manifest, include_top=False, input_shape=(64, 64, 3))
    assert other.output_shape == (None, 2, 2, 256)
