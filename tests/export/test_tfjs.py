"""TensorFlow.js export: the files on disk, the refusals, and real TF.js in Node and Chromium.

Unit tests read the exported bytes back and compare them with the Keras weights. The
``browser`` tests install ``@tensorflow/tfjs`` (cached, see ``_browser.ensure_tfjs``),
load the exports with it in Node.js and in headless Chromium (through the demo page) and
compare predictions with Keras.
"""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path

import numpy as np
import pytest

from modelzoo.errors import ExportError, ModelZooError, UsageError

pytestmark = pytest.mark.tf

#: float32 TF.js vs Keras (both compute in float32; only summation order differs).
TOL_F32 = 1e-4
#: float16 weights vs Keras float32 on the softmax outputs of the tiny MobileNet head.
#: Measured 1.3e-2: this untrained net's calibrated BatchNorm has variances down to 2e-8,
#: which amplify rounding (a briefly trained digits MobileNet moves by only 2.4e-5).
TOL_F16 = 3e-2

LABELS = ["cat", "dog", "bird"]


# ----------------------------------------------------------------------- models


def _keras():
    from modelzoo.backend import keras

    return keras()


def _mobilenet_with_head():
    """A tiny MobileNet cut at conv_pw_13_relu, nested under a new head like attach_head."""
    keras = _keras()
    keras.utils.set_random_seed(0)
    full = keras.applications.MobileNet(
        input_shape=(32, 32, 3), alpha=0.25, include_top=False, weights=None
    )
    # Untrained BatchNorm statistics make deep features vanish; calibrate them on a batch
    # (momentum 0: one training-mode pass sets the moving stats) so outputs depend on x.
    for layer in full.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.0
    calib = np.random.default_rng(1).uniform(-1, 1, (32, 32, 32, 3)).astype("float32")
    full(calib, training=True)
    base = keras.Model(full.input, full.get_layer("conv_pw_13_relu").output, name="features")
    base.trainable = False
    inputs = keras.Input((32, 32, 3), name="image")
    x = base(inputs, training=False)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(
        16, activation="relu", name="hidden", kernel_regularizer=keras.regularizers.L2(1e-3)
    )(x)
    outputs = keras.layers.Dense(len(LABELS), activation="softmax", name="probs")(x)
    return keras.Model(inputs, outputs, name="pets")


def _baked():
    """A model with modelzoo's baked-in preprocessing layer (what load(...,
    include_preprocessing=True) and TransferLearner produce) in front of a small conv net."""
    from modelzoo.models.preprocessing import with_preprocessing

    keras = _keras()
    keras.utils.set_random_seed(5)
    inputs = keras.Input((8, 8, 3))
    small = keras.initializers.RandomNormal(stddev=0.005)  # caffe inputs reach ±150
    x = keras.layers.Conv2D(4, 3, activation="relu", kernel_initializer=small)(inputs)
    outputs = keras.layers.Dense(3, activation="softmax")(keras.layers.Flatten()(x))
    return with_preprocessing(keras.Model(inputs, outputs, name="small"), "caffe")


def _array_constant():
    """A Conv2D whose config holds an array-valued Constant initializer. tf_keras writes the
    array as a ``__numpy__`` object; the demo page failed to load such a model in Chromium
    ("values passed to tensor(values) must be ..."), so the export writes Zeros instead."""
    keras = _keras()
    inputs = keras.Input((4, 4, 3))
    init = keras.initializers.Constant(np.arange(9, dtype="float32").reshape(1, 1, 3, 3) / 10)
    x = keras.layers.Conv2D(3, 1, kernel_initializer=init, bias_initializer="ones")(inputs)
    return keras.Model(inputs, keras.layers.Flatten()(x), name="array_constant")


def _sequential():
    keras = _keras()
    keras.utils.set_random_seed(2)
    return keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(4, 3, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Flatten(),
            keras.layers.Dense(5, activation="softmax"),
        ],
        name="seq",
    )


def _coverage():
    """Many TF.js-supported layer kinds in one small functional model."""
    keras = _keras()
    L = keras.layers
    keras.utils.set_random_seed(3)
    inp = keras.Input((16, 16, 3))
    x = L.Rescaling(1 / 127.5, offset=-1)(inp)
    x = L.Conv2D(8, 3, padding="same", kernel_initializer="lecun_normal")(x)
    x = L.BatchNormalization()(x)
    x = L.ReLU(max_value=6.0)(x)
    x = L.DepthwiseConv2D(3, padding="same", activation="relu6")(x)
    x = L.SeparableConv2D(8, 3, padding="same", activation="swish")(x)
    pooled = L.MaxPooling2D()(x)  # 8x8x8
    y = L.ZeroPadding2D(1)(pooled)
    y = L.Conv2D(8, 3, kernel_constraint=keras.constraints.MaxNorm(3.0))(y)  # 8x8x8
    y = L.PReLU()(y)
    z = L.Add()([pooled, y])
    z = L.LeakyReLU(0.1)(z)
    z = L.Concatenate()([z, L.AveragePooling2D(1)(pooled)])  # 8x8x16
    z = L.UpSampling2D()(z)
    z = L.Cropping2D(((1, 1), (1, 1)))(z)  # 14x14x16
    z = L.Conv2DTranspose(4, 3, strides=2, activation="elu")(z)
    z = L.GlobalAveragePooling2D()(z)
    z = L.Dense(12, activation="selu")(z)
    z = L.LayerNormalization()(z)
    z = L.Dropout(0.5)(z)
    z = L.Reshape((3, 4))(z)
    z = L.Permute((2, 1))(z)
    z = L.Flatten()(z)
    a = L.Dense(6, activation="tanh")(z)
    b = L.Dense(6, activation="sigmoid")(z)
    z = L.Multiply()([a, b])
    z = L.Maximum()([z, L.Dense(6, activation="softplus")(z)])
    out = L.Softmax()(L.Dense(4)(z))
    return keras.Model(inp, out, name="coverage")


def _recurrent():
    keras = _keras()
    L = keras.layers
    keras.utils.set_random_seed(4)
    inp = keras.Input((7,))
    x = L.Embedding(20, 6)(inp)
    x = L.Bidirectional(L.LSTM(5, return_sequences=True))(x)
    x = L.GRU(4, return_sequences=True, reset_after=False)(x)
    x = L.TimeDistributed(L.Dense(3, activation="softsign"))(x)
    x = L.SimpleRNN(3)(x)
    out = L.Dense(2, activation="softmax")(x)
    return keras.Model(inp, out, name="recurrent")


def _activations():
    """One Dense per activation modelzoo declares TF.js-compatible."""
    from modelzoo.export.tfjs import TFJS_ACTIVATIONS

    keras = _keras()
    keras.utils.set_random_seed(5)
    inp = keras.Input((8,))
    heads = [
        keras.layers.Dense(4, activation=act, name=f"act_{act}")(inp)
        for act in sorted(TFJS_ACTIVATIONS)
    ]
    return keras.Model(inp, keras.layers.Concatenate()(heads), name="activations")


def _no_weights():
    keras = _keras()
    return keras.Sequential(
        [keras.Input((4, 4, 3)), keras.layers.GlobalMaxPooling2D(), keras.layers.Softmax()],
        name="no_weights",
    )


def _predict(model, x):
    return model(x, training=False).numpy()


def _images(n=4, size=32, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, (n, size, size, 3)).astype("float32")


@pytest.fixture(scope="module")
def pets():
    return _mobilenet_with_head()


@pytest.fixture(scope="module")
def pets_export(pets, tmp_path_factory):
    from modelzoo.export.tfjs import export_tfjs

    out = tmp_path_factory.mktemp("exports") / "pets"
    return export_tfjs(pets, out, labels=LABELS, preprocessing="tf", with_demo=True)


@pytest.fixture(scope="module")
def pets_export_f16(pets, tmp_path_factory):
    from modelzoo.export.tfjs import export_tfjs

    return export_tfjs(pets, tmp_path_factory.mktemp("exports") / "pets16", dtype="float16")


#: Quantized exports checked in Node: every weight uint8; convolutions uint8 and the rest
#: float16 (layer-name pattern + fallback); kernels uint16 by weight-name pattern.
QUANTIZED = {
    "pets_uint8": "uint8",
    "pets_mixed": ["uint8:conv_pw_*", "float16"],
    "pets_uint16": {"uint16": "*/kernel"},
}


@pytest.fixture(scope="module")
def pets_quantized(pets, tmp_path_factory):
    from modelzoo.export.tfjs import export_tfjs

    root = tmp_path_factory.mktemp("quantized")
    return {
        name: export_tfjs(pets, root / name, quantize=spec, shard_size=50_000)
        for name, spec in QUANTIZED.items()
    }


def _predict_with(model, arrays, x):
    """Keras predictions with the model's weights replaced by ``arrays`` (name -> value)."""
    original = model.get_weights()
    try:
        model.set_weights([arrays[w.name.removesuffix(":0")] for w in model.weights])
        return _predict(model, x)
    finally:
        model.set_weights(original)


def _read_weights(result) -> dict[str, np.ndarray]:
    """Decode an export's shards back into arrays, the way TF.js does."""
    manifest = json.loads(result.model_json.read_text("utf-8"))["weightsManifest"]
    arrays: dict[str, np.ndarray] = {}
    for group in manifest:
        blob = b"".join((result.out_dir / p).read_bytes() for p in group["paths"])
        offset = 0
        for spec in group["weights"]:
            quant = spec.get("quantization", {})
            stored = quant.get("dtype", spec["dtype"])
            np_dtype = {
                "float32": "<f4",
                "float16": "<f2",
                "int32": "<i4",
                "uint8": "u1",
                "uint16": "<u2",
            }[stored]
            count = math.prod(spec["shape"])
            arr = np.frombuffer(blob, np_dtype, count, offset).reshape(spec["shape"])
            offset += arr.nbytes
            if stored in ("uint8", "uint16"):  # TF.js: q * scale + min, in double, to float32
                arr = arr.astype(np.float64) * quant["scale"] + quant["min"]
            arrays[spec["name"]] = arr.astype(np.float32)
        assert offset == len(blob)
    return arrays


# ------------------------------------------------------------------ file format


def test_model_json_has_the_layers_model_fields(pets, pets_export):
    import modelzoo

    doc = json.loads(pets_export.model_json.read_text("utf-8"))
    assert doc["format"] == "layers-model"
    assert doc["generatedBy"] == f"modelzoo {modelzoo.__version__}"
    assert doc["convertedBy"] == "modelzoo"
    topo = doc["modelTopology"]
    assert topo["class_name"] == "Functional"
    assert topo["backend"] == "tensorflow"
    assert topo["keras_version"].startswith("2.")
    assert topo["config"]["name"] == "pets"
    nested = [layer for layer in topo["config"]["layers"] if layer["class_name"] == "Functional"]
    assert [n["config"]["name"] for n in nested] == ["features"]
    (group,) = doc["weightsManifest"]
    assert group["paths"] == [p.name for p in pets_export.shards]
    assert all(p.is_file() for p in pets_export.shards)
    assert pets_export.n_weights == len(group["weights"]) == len(pets.weights)
    assert pets_export.dtype == "float32"


def test_weights_match_keras_by_name_shape_and_value(pets, pets_export):
    stored = _read_weights(pets_export)
    expected = {w.name.removesuffix(":0"): w.numpy() for w in pets.weights}
    assert set(stored) == set(expected)
    for name, value in expected.items():
        assert stored[name].shape == value.shape, name
        np.testing.assert_array_equal(stored[name], value, err_msg=name)
    total = sum(v.size * 4 for v in expected.values())
    assert pets_export.total_bytes == total
    assert sum(p.stat().st_size for p in pets_export.shards) == total


def test_nested_model_weights_are_named_without_the_outer_model(pets_export):
    names = [
        w["name"]
        for w in json.loads(pets_export.model_json.read_text())["weightsManifest"][0]["weights"]
    ]
    # TF.js builds a nested model's layers in their own scope: no "features/" prefix.
    assert "conv1/kernel" in names
    assert "conv_pw_13_bn/moving_variance" in names
    assert "probs/bias" in names
    assert not any(n.startswith("features/") or n.endswith(":0") for n in names)


def test_shards_are_at_most_shard_size_and_concatenate_in_order(pets, tmp_path):
    from modelzoo.export.tfjs import export_tfjs

    shard = 100_000
    result = export_tfjs(pets, tmp_path / "small", shard_size=shard)
    sizes = [p.stat().st_size for p in result.shards]
    assert len(sizes) == math.ceil(result.total_bytes / shard) > 1
    assert all(s == shard for s in sizes[:-1]) and 0 < sizes[-1] <= shard
    n = len(sizes)
    assert [p.name for p in result.shards] == [f"group1-shard{i}of{n}.bin" for i in range(1, n + 1)]
    assert _read_weights(result).keys() == {w.name.removesuffix(":0") for w in pets.weights}


def test_float16_halves_the_size_and_rounds_each_weight(pets, pets_export, pets_export_f16):
    assert pets_export_f16.dtype == "float16"
    assert pets_export_f16.total_bytes * 2 == pets_export.total_bytes
    doc = json.loads(pets_export_f16.model_json.read_text())
    for spec in doc["weightsManifest"][0]["weights"]:
        # TF.js dequantises on load: the declared dtype stays float32.
        assert spec["dtype"] == "float32"
        assert spec["quantization"] == {"dtype": "float16", "original_dtype": "float32"}
    stored = _read_weights(pets_export_f16)
    for w in pets.weights:
        expected = w.numpy().astype(np.float16).astype(np.float32)
        np.testing.assert_array_equal(stored[w.name.removesuffix(":0")], expected)


def test_uint8_stores_a_quarter_with_min_and_scale_per_weight(pets, pets_export, pets_quantized):
    result = pets_quantized["pets_uint8"]
    assert result.dtype == "uint8" and result.weight_dtypes == {"uint8": result.n_weights}
    assert result.total_bytes * 4 == pets_export.total_bytes
    assert len(result.shards) == math.ceil(result.total_bytes / 50_000)
    specs = json.loads(result.model_json.read_text())["weightsManifest"][0]["weights"]
    stored = _read_weights(result)
    for spec, w in zip(specs, pets.weights, strict=True):
        q = spec["quantization"]
        assert spec["dtype"] == "float32"  # what TF.js hands the model after dequantizing
        assert set(q) == {"dtype", "min", "scale", "original_dtype"} and q["dtype"] == "uint8"
        value = w.numpy()
        err = np.abs(stored[spec["name"]] - value)
        assert float(err.max()) <= q["scale"] * 0.5 + 1e-6 * max(1.0, float(np.abs(value).max()))
        if value.min() <= 0 <= value.max() and value.max() > value.min():
            zero = -q["min"] / q["scale"]  # nudged: 0.0 is stored exactly
            assert abs(zero - round(zero)) < 1e-6, spec["name"]
    # A constant tensor (moving_mean of an untrained BN is not; a zero bias would be).
    from modelzoo.export.tfjs import _affine_range

    assert _affine_range(0.0, 0.0, 255) == (0.0, 1.0)
    assert _affine_range(-1.0, 3.0, 255)[1] == pytest.approx(4 / 255)


def test_quantize_patterns_choose_weights_by_weight_or_layer_name(pets, pets_quantized):
    mixed = json.loads(pets_quantized["pets_mixed"].model_json.read_text())
    dtypes = {w["name"]: w["quantization"]["dtype"] for w in mixed["weightsManifest"][0]["weights"]}
    assert dtypes["conv_pw_13/kernel"] == "uint8"  # layer name matches conv_pw_*
    assert dtypes["conv_pw_13_bn/gamma"] == "uint8"
    assert dtypes["conv1/kernel"] == dtypes["probs/bias"] == "float16"  # the fallback
    assert pets_quantized["pets_mixed"].dtype == "mixed"
    only = json.loads(pets_quantized["pets_uint16"].model_json.read_text())
    for w in only["weightsManifest"][0]["weights"]:
        if w["name"].endswith("/kernel"):
            assert w["quantization"]["dtype"] == "uint16"
        else:
            assert "quantization" not in w, w["name"]
    counts = pets_quantized["pets_uint16"].weight_dtypes
    assert counts["uint16"] == sum(w.name.endswith("/kernel:0") for w in pets.weights)


@pytest.mark.parametrize(
    ("quantize", "match"),
    [
        ("int8", r"Unknown quantization dtype. Received: 'int8'"),
        (["uint8", "float16"], r"more than one dtype for all weights"),
        (["uint8:conv*", "float16:conv1*"], r"'conv1/kernel' matches quantize patterns of two"),
        ("uint8:nothing_like_this*", r"'nothing_like_this\*' \(uint8\) matches no weight"),
        (3, r"quantize must be a dtype"),
    ],
)
def test_bad_quantize_values(pets, quantize, match, tmp_path):
    from modelzoo.export.tfjs import export_tfjs

    with pytest.raises(UsageError, match=match):
        export_tfjs(pets, tmp_path / "out", quantize=quantize)
    with pytest.raises(UsageError, match="either dtype='float16' or quantize="):
        export_tfjs(pets, tmp_path / "out", dtype="float16", quantize="uint8")
    assert not (tmp_path / "out").exists()


def test_cli_quantize_and_shard_size(tmp_path):
    from typer.testing import CliRunner

    from modelzoo.cli import app

    runner = CliRunner()
    name = "mobilenet_v1_0.25_32_digits"
    res = runner.invoke(
        app,
        ["export", name, "--out", str(tmp_path / "a"), "--shard-size", "100000"]
        + ["--quantize", "uint8:conv_pw_1*", "--quantize", "float16", "--json"],
    )
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["dtype"] == "mixed" and set(doc["weight_dtypes"]) == {"uint8", "float16"}
    sizes = [os.path.getsize(p) for p in doc["shards"]]
    assert max(sizes) == 100_000 and len(sizes) == math.ceil(doc["total_bytes"] / 100_000)
    res = runner.invoke(app, ["export", name, "--out", str(tmp_path / "b"), "--shard-mb", "0.5"])
    assert res.exit_code == 0, res.output
    shards = sorted((tmp_path / "b").glob("group1-shard*.bin"))
    assert len(shards) > 1 and max(p.stat().st_size for p in shards) == 512 * 1024
    both = runner.invoke(
        app, ["export", name, "--out", str(tmp_path / "c"), "--shard-mb", "1", "--shard-size", "9"]
    )
    assert both.exit_code == 1 and "--shard-size BYTES or --shard-mb" in both.output
    twice = runner.invoke(
        app, ["export", name, "--out", str(tmp_path / "c"), "--float16", "--quantize", "uint8"]
    )
    assert twice.exit_code == 1 and "--float16 or --quantize" in twice.output


def test_float16_refuses_weights_beyond_its_range(tmp_path):
    from modelzoo.export.tfjs import export_tfjs

    model = _sequential()
    layer = model.layers[-1]
    kernel, bias = layer.get_weights()
    kernel[0, 0] = 1e6
    layer.set_weights([kernel, bias])
    with pytest.raises(UsageError, match=r"float16's range.*dtype='float32'"):
        export_tfjs(model, tmp_path / "out", dtype="float16")
    assert not (tmp_path / "out").exists()


def test_sequential_export(tmp_path):
    from modelzoo.export.tfjs import export_tfjs

    model = _sequential()
    result = export_tfjs(model, tmp_path / "seq")
    doc = json.loads(result.model_json.read_text())
    assert doc["modelTopology"]["class_name"] == "Sequential"
    assert result.n_weights == 4
    assert result.labels_json is None and result.index_html is None
    assert result.preprocessing_json is None
    assert sorted(p.name for p in (tmp_path / "seq").iterdir()) == [
        ".modelzoo-export",
        "group1-shard1of1.bin",
        "model.json",
    ]
    # The published folder has the usual mode (not the 0700 of a private temp dir).
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "seq").stat().st_mode & 0o777 == 0o777 & ~umask


def test_training_only_config_is_made_portable(pets_export, tmp_path):
    from modelzoo.export.tfjs import export_tfjs

    doc = json.loads(pets_export.model_json.read_text())
    hidden = next(x for x in doc["modelTopology"]["config"]["layers"] if x["name"] == "hidden")
    reg = hidden["config"]["kernel_regularizer"]
    assert reg["class_name"] == "L1L2"
    assert reg["config"]["l1"] == 0.0 and reg["config"]["l2"] == pytest.approx(1e-3)
    cov = export_tfjs(_coverage(), tmp_path / "cov")
    text = cov.model_json.read_text()
    assert '"LeCunNormal"' in text and '"LecunNormal"' not in text


def test_training_only_objects_tfjs_lacks_are_dropped_with_a_warning(tmp_path, caplog):
    from modelzoo.export.tfjs import export_tfjs

    keras = _keras()

    class Halves(keras.initializers.Initializer):
        def __call__(self, shape, dtype=None, **kwargs):
            return keras.backend.constant(0.5, shape=shape, dtype=dtype)

    inp = keras.Input((4,))
    x = keras.layers.Dense(
        3,
        name="fc",
        kernel_initializer=Halves(),
        kernel_constraint=keras.constraints.RadialConstraint(),
        kernel_regularizer=keras.regularizers.OrthogonalRegularizer(0.01),
    )(inp)
    policy = keras.mixed_precision.Policy("mixed_float16")
    out = keras.layers.Dense(2, name="mixed", dtype=policy)(x)
    with caplog.at_level(logging.WARNING, logger="modelzoo"):
        result = export_tfjs(keras.Model(inp, out), tmp_path / "out")
    layers = json.loads(result.model_json.read_text())["modelTopology"]["config"]["layers"]
    fc = next(x for x in layers if x["name"] == "fc")["config"]
    assert fc["kernel_constraint"] is None and fc["kernel_regularizer"] is None
    # Initial values never matter after loading: an unknown initializer becomes Zeros.
    assert fc["kernel_initializer"] == {"class_name": "Zeros", "config": {}}
    assert next(x for x in layers if x["name"] == "mixed")["config"]["dtype"] == "float32"
    text = caplog.text
    assert "RadialConstraint constraint" in text and "OrthogonalRegularizer regularizer" in text


#: Page code that exists once, in modelzoo-page.js, for the demo and the training page.
SHARED_PAGE_FUNCTIONS = (
    "fetchJSON",
    "loadScript",
    "fail",
    "setStatus",
    "readyText",
    "toInput",
    "startWebcam",
    "stopWebcam",
)


def _shipped(name: str) -> Path:
    from importlib import resources

    return Path(str(resources.files("modelzoo.export").joinpath(f"_web/{name}")))


def test_labels_preprocessing_and_demo_files(pets_export):
    from modelzoo.export.tfjs import PAGE_SCRIPT

    assert json.loads(pets_export.labels_json.read_text("utf-8")) == LABELS
    spec = json.loads(pets_export.preprocessing_json.read_text("utf-8"))
    assert spec == {
        "mode": "tf",
        "channel_order": "rgb",
        "mean": [127.5] * 3,
        "std": [127.5] * 3,
        "input_size": [32, 32],
        "channels": 3,
    }
    page = pets_export.index_html.read_text("utf-8")
    assert "{{TFJS_URL}}" not in page
    assert '"https://cdn.jsdelivr.net/npm/@tensorflow/tfjs@4.22.0/dist/tf.min.js"' in page
    assert "tf.loadLayersModel(" in page and '"tfjs.min.js"' in page
    # The code both pages share is written beside the page, and lives only there.
    script = pets_export.out_dir / PAGE_SCRIPT
    assert '<script src="modelzoo-page.js"></script>' in page
    assert script.read_bytes() == _shipped(PAGE_SCRIPT).read_bytes()
    training_page = _shipped("train.html").read_text("utf-8")
    for name in SHARED_PAGE_FUNCTIONS:
        assert f"function {name}(" in script.read_text("utf-8"), name
        assert f"function {name}(" not in page and f"function {name}(" not in training_page, name


@pytest.mark.parametrize(
    ("mode", "order", "mean", "std"),
    [
        ("caffe", "bgr", [103.939, 116.779, 123.68], [1.0, 1.0, 1.0]),
        ("torch", "rgb", [123.675, 116.28, 103.53], [58.395, 57.12, 57.375]),
        ("builtin", "rgb", [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]),
    ],
)
def test_preprocessing_modes(mode, order, mean, std, tmp_path):
    from modelzoo.export.tfjs import export_tfjs

    keras = _keras()
    model = keras.Sequential([keras.Input((4, 4, 3)), keras.layers.GlobalAveragePooling2D()])
    result = export_tfjs(model, tmp_path / "p", preprocessing=mode)
    spec = json.loads(result.preprocessing_json.read_text())
    assert spec["mode"] == ("baked" if mode == "builtin" else mode)
    assert spec["channel_order"] == order
    assert spec["mean"] == pytest.approx(mean) and spec["std"] == pytest.approx(std)


def test_tfjs_url_is_escaped_into_the_page(tmp_path):
    from modelzoo.export.tfjs import export_tfjs

    keras = _keras()
    model = keras.Sequential([keras.Input((4, 4, 3)), keras.layers.Flatten()])
    url = 'https://example.test/tf.js"</script><script>alert(1)</script>'
    result = export_tfjs(model, tmp_path / "d", with_demo=True, tfjs_url=url)
    page = result.index_html.read_text("utf-8")
    assert "alert(1)</script>" not in page
    literal = json.dumps(url).replace("<", "\\u003c")
    assert f"const TFJS_URL = {literal};" in page


def test_reexport_replaces_files_and_removes_stale_shards(pets, tmp_path):
    from modelzoo.export.tfjs import export_tfjs

    out = tmp_path / "out"
    first = export_tfjs(pets, out, shard_size=100_000)
    (out / "notes.txt").write_text("mine")
    second = export_tfjs(pets, out)
    assert len(first.shards) > 1 and len(second.shards) == 1
    assert sorted(p.name for p in out.iterdir()) == [
        ".modelzoo-export",
        "group1-shard1of1.bin",
        "model.json",
        "notes.txt",
    ]
    assert _read_weights(second).keys() == _read_weights(first).keys()
    # Nothing temporary left beside the export.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


# ---------------------------------------------------------------------- refusals


def _refusal(model, tmp_path) -> ExportError:
    from modelzoo.export.tfjs import export_tfjs

    with pytest.raises(ExportError) as info:
        export_tfjs(model, tmp_path / "refused")
    assert not (tmp_path / "refused").exists()  # refused before anything is written
    assert [p.name for p in tmp_path.iterdir()] == []
    return info.value


def test_refuses_lambda_naming_the_layer_path(tmp_path):
    keras = _keras()
    inner_in = keras.Input((4,))
    inner = keras.Model(
        inner_in, keras.layers.Lambda(lambda t: t * 2, name="double")(inner_in), name="sub"
    )
    inp = keras.Input((4,))
    out = keras.layers.Dense(2)(inner(inp))
    err = _refusal(keras.Model(inp, out, name="outer"), tmp_path)
    assert err.layer == "sub/double"
    assert "sub/double: Lambda layer" in str(err)
    assert isinstance(err, ModelZooError) and isinstance(err, ValueError)


def test_refuses_tf_op_layers(tmp_path):
    keras = _keras()
    inp = keras.Input((4,))
    x = keras.layers.Dense(3, name="fc")(inp)
    out = x + 1  # becomes a TFOpLambda layer
    model = keras.Model(inp, out)
    op_layer = model.layers[-1]
    assert type(op_layer).__name__ == "TFOpLambda"
    err = _refusal(model, tmp_path)
    assert err.layer == op_layer.name
    assert "TFOpLambda" in str(err) and op_layer.name in str(err)


def test_refuses_slicing_op_layers(tmp_path):
    keras = _keras()
    inp = keras.Input((4, 3))
    out = inp[:, 0]
    model = keras.Model(inp, out)
    err = _refusal(model, tmp_path)
    assert "SlicingOpLambda" in str(err)


def test_refuses_custom_layers_and_subclassed_models(tmp_path):
    keras = _keras()

    class Twice(keras.layers.Layer):
        def call(self, x):
            return x * 2

    inp = keras.Input((4,))
    err = _refusal(keras.Model(inp, Twice(name="twice")(inp)), tmp_path)
    assert err.layer == "twice"
    assert "custom layer class" in str(err) and "Twice" in str(err)

    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.fc = keras.layers.Dense(2)

        def call(self, x):
            return self.fc(x)

    net = Net()
    net(np.zeros((1, 4), "float32"))
    err = _refusal(net, tmp_path)
    assert "subclassed model" in str(err)


def test_refuses_builtins_tfjs_lacks_and_lists_every_problem(tmp_path):
    keras = _keras()
    inp = keras.Input((6, 2))
    x = keras.layers.UpSampling1D(name="up")(inp)
    x = keras.layers.Dense(3, activation="hard_sigmoid", name="hs")(x)
    x = keras.layers.ReLU(negative_slope=0.2, name="leaky")(x)
    x = keras.layers.GRU(2, name="gru")(x)
    err = _refusal(keras.Model(inp, x), tmp_path)
    assert err.layer == "up"
    assert len(err.problems) == 4
    text = str(err)
    assert "up: tf_keras layer UpSampling1D has no TensorFlow.js implementation" in text
    assert "hs: activation 'hard_sigmoid'" in text
    assert "leaky: ReLU with negative_slope" in text
    assert "gru: GRU with reset_after=True" in text


def test_refuses_duplicate_weight_names_across_submodels(tmp_path):
    keras = _keras()
    a = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="fc")], name="a")
    b = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="fc")], name="b")
    inp = keras.Input((3,))
    model = keras.Model(inp, keras.layers.Add()([a(inp), b(inp)]))
    err = _refusal(model, tmp_path)
    assert "fc/kernel" in str(err) and "unique names" in str(err)


def test_check_tfjs_accepts_supported_models(pets):
    from modelzoo.export.tfjs import check_tfjs

    assert check_tfjs(pets) is None
    assert check_tfjs(_recurrent()) is None


# ------------------------------------------------------------------ usage errors


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"dtype": "int8"}, r"dtype='int8'.*'float32', 'float16'"),
        ({"shard_size": 0}, r"shard_size=0"),
        ({"shard_size": 1.5}, r"shard_size=1.5"),
        ({"labels": ["a", "b"]}, r"5 output units but 2 labels"),
        ({"labels": "abcde"}, r"list of class names"),
        ({"labels": 5}, r"list of class names"),
        ({"preprocessing": "imagenet"}, r"preprocessing='imagenet'.*caffe, tf, torch"),
    ],
)
def test_bad_arguments(kwargs, match, tmp_path):
    from modelzoo.export.tfjs import export_tfjs

    with pytest.raises(UsageError, match=match):
        export_tfjs(_sequential(), tmp_path / "out", **kwargs)
    assert not (tmp_path / "out").exists()


def test_bad_targets_and_models(tmp_path):
    from modelzoo.export.tfjs import export_tfjs

    target = tmp_path / "file.txt"
    target.write_text("x")
    with pytest.raises(UsageError, match="not a folder"):
        export_tfjs(_sequential(), target)
    with pytest.raises(ExportError, match=r"Could not write the export to .*file.txt/sub"):
        export_tfjs(_sequential(), target / "sub")
    with pytest.raises(UsageError, match=r"needs a tf_keras model. Received: builtins.dict"):
        export_tfjs({}, tmp_path / "o")
    keras = _keras()
    unbuilt = keras.Sequential([keras.layers.Dense(2)])
    with pytest.raises(UsageError, match="not built"):
        export_tfjs(unbuilt, tmp_path / "o")
    vector_model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    with pytest.raises(UsageError, match="one image input"):
        export_tfjs(vector_model, tmp_path / "o", with_demo=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt"]


def test_warnings_for_ignored_or_missing_demo_settings(tmp_path, caplog):
    from modelzoo.export.tfjs import export_tfjs

    with caplog.at_level(logging.WARNING, logger="modelzoo"):
        export_tfjs(_sequential(), tmp_path / "a", tfjs_url="https://example.test/tf.js")
        export_tfjs(_sequential(), tmp_path / "b", with_demo=True)
    messages = [r.getMessage() for r in caplog.records]
    assert any("only used by the demo page" in m for m in messages)
    assert any("No preprocessing given" in m for m in messages)
    spec = json.loads((tmp_path / "b" / "preprocessing.json").read_text())
    assert spec["mode"] == "none" and spec["channels"] == 1 and spec["mean"] == [0.0]


# ------------------------------------------------------------- Node.js (TF.js)

browser = pytest.mark.browser


@pytest.fixture(scope="module")
def tfjs_prefix():
    from _browser import ensure_tfjs, node_path, tfjs_cached

    if node_path() is None:
        pytest.skip("Node.js/npm not found: install Node.js >= 18 to run the TF.js tests")
    if os.environ.get("MODELZOO_TEST_NO_INSTALLS") == "1" and not tfjs_cached():
        # `./dev test` without --browser: do not write ~300 MB under ~/.cache unasked.
        pytest.skip(
            "@tensorflow/tfjs not in ~/.cache/modelzoo-tests: ./dev test --browser installs it"
        )
    return ensure_tfjs()


@pytest.fixture(scope="module")
def node_run(tfjs_prefix, pets, pets_export, pets_export_f16, pets_quantized, tmp_path_factory):
    """One Node.js process loads every export and predicts on fixed inputs."""
    from _browser import run_node_predictions

    from modelzoo.export.tfjs import export_tfjs

    work = tmp_path_factory.mktemp("node")
    rng = np.random.default_rng(7)
    models = {
        "sequential": (_sequential(), rng.uniform(0, 1, (3, 8, 8, 1))),
        "coverage": (_coverage(), rng.uniform(0, 255, (3, 16, 16, 3))),
        "recurrent": (_recurrent(), rng.integers(0, 20, (3, 7))),
        "activations": (_activations(), rng.normal(0, 2, (5, 8))),
        "no_weights": (_no_weights(), rng.normal(0, 3, (2, 4, 4, 3))),
        "baked": (_baked(), rng.uniform(0, 255, (3, 8, 8, 3))),
        "array_constant": (_array_constant(), rng.uniform(0, 1, (2, 4, 4, 3))),
    }
    jobs = {
        "pets": (pets_export.out_dir, _images()),
        "pets16": (pets_export_f16.out_dir, _images()),
    }
    expected = {"pets": _predict(pets, _images()), "pets16": _predict(pets, _images())}
    for name, result in pets_quantized.items():
        jobs[name] = (result.out_dir, _images())
        expected[name] = _predict(pets, _images())
    for name, (model, x) in models.items():
        x = x.astype("float32")
        jobs[name] = (export_tfjs(model, work / name).out_dir, x)
        expected[name] = _predict(model, x)
    out = run_node_predictions(tfjs_prefix, jobs, workdir=work)
    return out, expected


@browser
def test_node_loads_tfjs_version_we_pin(node_run):
    out, _ = node_run
    assert out["tfjs"] == "4.22.0" and out["backend"] == "cpu"


@browser
def test_node_registers_every_class_we_allow(node_run):
    from modelzoo.export.tfjs import TFJS_ACTIVATIONS, TFJS_LAYERS

    classes = set(node_run[0]["classes"])
    assert classes >= TFJS_LAYERS, sorted(TFJS_LAYERS - classes)
    assert classes >= TFJS_ACTIVATIONS, sorted(TFJS_ACTIVATIONS - classes)


@browser
@pytest.mark.parametrize(
    "name",
    [
        "pets",
        "sequential",
        "coverage",
        "recurrent",
        "activations",
        "no_weights",
        "baked",
        "array_constant",
    ],
)
def test_node_predictions_match_keras(node_run, name):
    out, expected = node_run
    result = out["results"][name]
    assert "error" not in result, result.get("error")
    pred = np.asarray(result["pred"], dtype=np.float64)
    assert pred.shape == expected[name].shape
    diff = float(np.max(np.abs(pred - expected[name])))
    assert diff <= TOL_F32, f"{name}: max abs diff {diff:.3g} > {TOL_F32}"
    assert float(np.std(expected[name], axis=0).max()) > 1e-3  # inputs do matter


@browser
def test_node_float16_predictions_within_bound(node_run, pets):
    out, expected = node_run
    result = out["results"]["pets16"]
    assert "error" not in result, result.get("error")
    pred = np.asarray(result["pred"])
    diff = float(np.max(np.abs(pred - expected["pets16"])))
    assert diff <= TOL_F16, f"float16 max abs diff {diff:.3g} > {TOL_F16}"
    # Against the same model with float16-rounded weights the match is float32-tight:
    # TF.js dequantised exactly what we stored.
    original = pets.get_weights()
    try:
        pets.set_weights([w.astype(np.float16).astype(np.float32) for w in original])
        rounded = _predict(pets, _images())
    finally:
        pets.set_weights(original)
    assert float(np.max(np.abs(pred - rounded))) <= TOL_F32


# ------------------------------------------------------------ headless Chromium


@browser
@pytest.mark.parametrize(
    ("backend", "source"),
    [
        ("cpu", "local"),  # ./tfjs.min.js beside the page, as the docs say for offline use
        ("cpu", "tfjs_url"),  # no local copy: the URL chosen at export time
        # WebGL runs on SwiftShader here: it matches too, but compiling shaders takes ~20 s.
        pytest.param("webgl", "local", marks=pytest.mark.slow),
    ],
)
def test_demo_page_in_headless_chromium_matches_keras(
    backend, source, tfjs_prefix, pets, pets_export, tmp_path
):
    """The real demo page predicts like Keras, on tensors and through its image pipeline."""
    from _browser import LocalServer, chromium_path, run_chromium, tfjs_bundle, write_png

    from modelzoo.export.tfjs import export_tfjs

    chromium = chromium_path()
    if chromium is None:
        pytest.skip("Chromium not found: ./dev test --browser installs it (or set CHROME_BIN)")
    raw = _images(3, seed=11)
    pixels = np.random.default_rng(12).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    site = tmp_path / "site"
    site.mkdir()
    images = [f"/cases/{write_png(site / f'img{i}.png', p).name}" for i, p in enumerate(pixels)]
    cases = {"raw": {"shape": list(raw.shape), "data": raw.ravel().tolist()}, "images": images}
    (site / "cases.json").write_text(json.dumps(cases))
    routes = {"/cases/": site}
    if source == "local":
        export_dir, expected_source = pets_export.out_dir, "tfjs.min.js"
        routes["/tfjs.min.js"] = tfjs_bundle(tfjs_prefix)
    else:
        expected_source = "/vendor/tf.min.js"
        export_dir = export_tfjs(
            pets,
            tmp_path / "export",
            labels=LABELS,
            preprocessing="tf",
            with_demo=True,
            tfjs_url=expected_source,
        ).out_dir
        routes[expected_source] = tfjs_bundle(tfjs_prefix)
    routes["/"] = export_dir
    with LocalServer(routes) as server:
        url = f"{server.url}/index.html?backend={backend}&selftest=/cases/cases.json&report=/report"
        report = run_chromium(chromium, url, server, workdir=tmp_path, timeout=60)
        requests = list(server.requests)
    assert "error" not in report, report.get("stack") or report.get("error")
    if report["backend"] != backend:  # TF.js fell back: this Chromium has no WebGL
        pytest.skip(f"TF.js backend {backend!r} unavailable here (got {report['backend']!r})")
    assert report["tfjs"] == "4.22.0"
    assert report["source"] == expected_source
    assert requests.index("/tfjs.min.js") < requests.index("/model.json")  # local tried first
    shards = {f"/{p.name}" for p in pets_export.shards}
    assert {"/labels.json", "/preprocessing.json", "/modelzoo-page.js", *shards} <= set(requests)

    diff_raw = float(np.max(np.abs(np.asarray(report["raw"]) - _predict(pets, raw))))
    assert diff_raw <= TOL_F32, f"raw inputs: max abs diff {diff_raw:.3g}"

    # Images go through the page's own resize + "tf" preprocessing ((x - 127.5) / 127.5).
    expected = _predict(pets, ((pixels.astype(np.float32) - 127.5) / 127.5))
    diff_img = float(np.max(np.abs(np.asarray(report["images"]) - expected)))
    assert diff_img <= TOL_F32, f"image pipeline: max abs diff {diff_img:.3g}"
    assert report["shown"] == [LABELS[i] for i in expected.argmax(axis=1)]


@browser
@pytest.mark.parametrize("name", sorted(QUANTIZED))
def test_node_dequantizes_what_was_stored(node_run, pets, pets_quantized, name):
    """TF.js predicts like Keras running on the weights decoded from the export (float32
    tight), so it dequantized uint8 / uint16 / float16 exactly as the manifest says."""
    out, expected = node_run
    result = out["results"][name]
    assert "error" not in result, result.get("error")
    pred = np.asarray(result["pred"])
    decoded = _predict_with(pets, _read_weights(pets_quantized[name]), _images())
    assert float(np.max(np.abs(pred - decoded))) <= TOL_F32
    # ...and quantization did change the weights (the check above can fail).
    assert float(np.max(np.abs(decoded - expected[name]))) > TOL_F32
