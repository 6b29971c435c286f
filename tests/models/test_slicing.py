"""slicing.py: listing layers, cutting at names/paths/indices (nested too), freeze/unfreeze."""

from __future__ import annotations

import numpy as np
import pytest

from modelzoo import errors
from modelzoo.models.slicing import (
    LayerInfo,
    find_layer,
    freeze,
    has_layer,
    layers,
    slice,
    unfreeze,
)

pytestmark = pytest.mark.tf

MNV2 = "mobilenetv2_0.35_32"


@pytest.fixture(scope="module")
def keras():
    from modelzoo.backend import keras

    return keras()


def _cnn(keras, name="inner", shape=(8, 8, 3)):
    """conv -> bn -> relu -> conv2 -> gap: a tiny functional feature extractor."""
    inp = keras.Input(shape, name=f"{name}_in")
    x = keras.layers.Conv2D(4, 3, padding="same", name="conv")(inp)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.ReLU(name="relu")(x)
    x = keras.layers.Conv2D(6, 3, padding="same", name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inp, x, name=name)


def _relu_ref(cnn, x):
    """The activation of ``relu`` computed by calling the layers by hand."""
    y = cnn.get_layer("conv")(x)
    y = cnn.get_layer("bn")(y, training=False)
    return cnn.get_layer("relu")(y).numpy()


def _images(n=2, shape=(8, 8, 3), seed=0):
    return np.random.default_rng(seed).random((n, *shape), dtype=np.float32)


@pytest.fixture(scope="module")
def mnv2_seq(keras):
    base = keras.applications.MobileNetV2(
        alpha=0.35, input_shape=(32, 32, 3), include_top=False, weights=None
    )
    return keras.Sequential(
        [base, keras.layers.GlobalAveragePooling2D(name="pool"), keras.layers.Dense(3, name="out")],
        name="classifier",
    )


def _wrapped(keras):
    """Functional: input -> Rescaling (preprocessing) -> nested cnn -> Dense."""
    inner = _cnn(keras)
    inp = keras.Input((8, 8, 3), name="image")
    x = keras.layers.Rescaling(0.5, offset=-1.0, name="prep")(inp)
    x = inner(x)
    out = keras.layers.Dense(2, name="dense")(x)
    return keras.Model(inp, out, name="wrapped"), inner


# -- slicing at top-level layers --------------------------------------------------------


def test_slice_functional_top_level_by_name(keras):
    cnn = _cnn(keras)
    sliced = slice(cnn, "relu")
    x = _images()
    assert sliced.output_shape == (None, 8, 8, 4)
    np.testing.assert_allclose(sliced(x).numpy(), _relu_ref(cnn, x), rtol=1e-6)
    assert sliced.name == "inner_relu"
    assert slice(cnn, "relu", name="cut").name == "cut"


def test_slice_sequential_top_level_by_name(keras):
    seq = keras.Sequential(
        [
            keras.Input((5,)),
            keras.layers.Dense(4, activation="relu", name="d1"),
            keras.layers.Dense(3, name="d2"),
        ],
        name="seq",
    )
    x = np.ones((2, 5), np.float32)
    sliced = slice(seq, "d1")
    np.testing.assert_allclose(sliced(x).numpy(), seq.get_layer("d1")(x).numpy(), rtol=1e-6)


def test_negative_index_counts_top_level_layers(keras):
    cnn = _cnn(keras)
    x = _images()
    np.testing.assert_allclose(slice(cnn, -1)(x).numpy(), cnn(x).numpy(), rtol=1e-6)
    # functional models list their InputLayer, so -3 is relu (gap, conv2, relu)
    np.testing.assert_allclose(slice(cnn, -3)(x).numpy(), _relu_ref(cnn, x), rtol=1e-6)
    with pytest.raises(errors.UsageError, match="-7"):
        slice(cnn, -7)


def test_negative_index_on_sequential_with_nested_base(mnv2_seq):
    assert slice(mnv2_seq, -1).output_shape == (None, 3)
    assert slice(mnv2_seq, -3).output_shape == (None, 1, 1, 1280)  # the nested base


def test_list_gives_multi_output_model(keras):
    model, inner = _wrapped(keras)
    sliced = slice(model, ["prep", "inner/relu", "inner/conv2", "dense"])
    x = _images()
    prep, relu, conv2, dense = (t.numpy() for t in sliced(x))
    rescaled = x * 0.5 - 1.0
    np.testing.assert_allclose(prep, rescaled, rtol=1e-6)
    np.testing.assert_allclose(relu, _relu_ref(inner, rescaled), rtol=1e-5)
    assert conv2.shape == (2, 8, 8, 6)
    np.testing.assert_allclose(dense, model(x).numpy(), rtol=1e-5)
    assert sliced.name == "wrapped_sliced"
    # "dense" needs the whole nested model, so its truncated copy takes another name
    assert {"inner", "inner_cut"} <= {layer.name for layer in sliced.layers}


def test_list_into_two_nested_models_in_sequence(keras):
    first = _cnn(keras, "first")
    inp = keras.Input((4,), name="v")
    second = keras.Model(
        inp,
        keras.layers.Dense(3, name="mid")(keras.layers.Dense(5, name="pre")(inp)),
        name="second",
    )
    image = keras.Input((8, 8, 3), name="image")
    proj = keras.layers.Dense(4, name="proj")(first(image))
    model = keras.Model(image, second(proj), name="chain")
    sliced = slice(model, ["first/relu", "second/pre"])
    x = _images()
    relu, pre = (t.numpy() for t in sliced(x))
    np.testing.assert_allclose(relu, _relu_ref(first, x), rtol=1e-5, atol=1e-6)
    expected = second.get_layer("pre")(model.get_layer("proj")(first(x))).numpy()
    np.testing.assert_allclose(pre, expected, rtol=1e-5, atol=1e-6)


def test_list_of_one_is_single_output(keras):
    cnn = _cnn(keras)
    assert slice(cnn, ["relu"]).output_shape == (None, 8, 8, 4)


# -- slicing inside nested models -------------------------------------------------------


def test_slice_inside_nested_mobilenet_in_sequential(keras, mnv2_seq):
    path = f"{MNV2}/block_13_expand_relu"
    sliced = slice(mnv2_seq, path)
    base = mnv2_seq.get_layer(MNV2)
    x = _images(2, (32, 32, 3))
    reference = keras.Model(base.input, base.get_layer("block_13_expand_relu").output)(x)
    assert sliced.output_shape == (None, 2, 2, 192)
    np.testing.assert_allclose(sliced(x).numpy(), reference.numpy(), rtol=1e-5, atol=1e-6)
    # the truncated base keeps its name, so the path still resolves on the result
    assert has_layer(sliced, path)
    assert find_layer(sliced, path) is base.get_layer("block_13_expand_relu")


def test_slice_inside_nested_model_after_preprocessing(keras):
    model, inner = _wrapped(keras)
    sliced = slice(model, "inner/relu")
    x = _images()
    np.testing.assert_allclose(
        sliced(x).numpy(), _relu_ref(inner, x * 0.5 - 1.0), rtol=1e-5, atol=1e-6
    )
    assert sliced.input_shape == model.input_shape


def test_slice_nested_in_nested(keras):
    middle, inner = _wrapped(keras)
    inp = keras.Input((8, 8, 3), name="outer_in")
    x = keras.layers.Rescaling(2.0, name="outer_prep")(inp)
    out = keras.layers.Dense(1, name="outer_out")(middle(x))
    outer = keras.Sequential([keras.Model(inp, out, name="outer")], name="top")
    sliced = slice(outer, "outer/wrapped/inner/relu")
    x = _images()
    np.testing.assert_allclose(
        sliced(x).numpy(), _relu_ref(inner, x * 2.0 * 0.5 - 1.0), rtol=1e-5, atol=1e-6
    )
    assert has_layer(outer, "outer/wrapped/inner/bn")
    assert not has_layer(outer, "outer/inner/bn")


def test_slice_inside_sequential_nested_in_functional(keras):
    # An unbuilt Sequential gets its graph when first called on a Keras tensor.
    inner = keras.Sequential(
        [keras.layers.Dense(4, name="a"), keras.layers.Dense(2, name="b")], name="stack"
    )
    inp = keras.Input((3,), name="vec")
    model = keras.Model(inp, keras.layers.Dense(1, name="c")(inner(inp)), name="m")
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    sliced = slice(model, "stack/a")
    np.testing.assert_allclose(sliced(x).numpy(), inner.get_layer("a")(x).numpy(), rtol=1e-6)


def test_slice_keeps_training_false_of_nested_call(keras):
    inner = _cnn(keras)
    inp = keras.Input((8, 8, 3), name="image")
    model = keras.Model(inp, inner(inp, training=False), name="m")
    sliced = slice(model, "inner/relu")
    x = _images()
    # training=True on the outer call must not switch the inner BN to batch statistics
    np.testing.assert_allclose(
        sliced(x, training=True).numpy(), _relu_ref(inner, x), rtol=1e-5, atol=1e-6
    )


def test_sliced_model_shares_weights(keras):
    model, inner = _wrapped(keras)
    sliced = slice(model, "inner/conv2")
    conv = find_layer(model, "inner/conv")
    assert find_layer(sliced, "inner/conv") is conv
    original_ids = {id(v) for v in model.weights}
    assert {id(v) for v in sliced.weights} <= original_ids
    x = _images()
    before = sliced(x).numpy()
    kernel, bias = conv.get_weights()
    conv.set_weights([kernel * 2.0, bias])
    assert not np.allclose(sliced(x).numpy(), before)


# -- errors -----------------------------------------------------------------------------


def test_typo_raises_layer_not_found_with_suggestions(mnv2_seq):
    with pytest.raises(errors.LayerNotFoundError) as info:
        slice(mnv2_seq, f"{MNV2}/block_13_expand_rleu")
    assert isinstance(info.value, ValueError)
    assert info.value.layer == f"{MNV2}/block_13_expand_rleu"
    assert f"{MNV2}/block_13_expand_relu" in info.value.suggestions
    assert "classifier" in str(info.value)


def test_bare_inner_name_suggests_full_path(mnv2_seq):
    with pytest.raises(errors.LayerNotFoundError) as info:
        slice(mnv2_seq, "block_13_expand_relu")
    assert info.value.suggestions[0] == f"{MNV2}/block_13_expand_relu"


def test_top_level_typo_suggests(keras):
    with pytest.raises(errors.LayerNotFoundError, match="Did you mean: 'relu'"):
        slice(_cnn(keras), "rleu")


@pytest.mark.parametrize("at", [1.5, None, True, []])
def test_bad_at_values(keras, at):
    with pytest.raises(errors.UsageError, match="Received"):
        slice(_cnn(keras), at)


def test_slice_needs_a_tf_keras_model():
    with pytest.raises(errors.UsageError, match="tf_keras Model"):
        slice(object(), "relu")


def test_shared_layer_is_ambiguous(keras):
    dense = keras.layers.Dense(3, name="shared")
    inp = keras.Input((3,), name="x")
    out = keras.layers.Add(name="add")([dense(inp), dense(dense(inp))])
    model = keras.Model(inp, out, name="siamese")
    with pytest.raises(errors.UsageError, match="called 3 times"):
        slice(model, "shared")
    assert slice(model, "add").output_shape == (None, 3)


def test_slicing_inside_subclassed_model_is_refused(keras):
    class Block(keras.Model):
        def __init__(self):
            super().__init__(name="block")
            self.d = keras.layers.Dense(2, name="inner_dense")

        def call(self, x):
            return self.d(x)

    inp = keras.Input((3,), name="x")
    model = keras.Model(inp, Block()(inp), name="m")
    with pytest.raises(errors.UsageError, match="static layer graph"):
        slice(model, "block/inner_dense")
    assert slice(model, "block").output_shape == (None, 2)


def test_unbuilt_sequential_is_refused(keras):
    seq = keras.Sequential([keras.layers.Dense(2, name="d")], name="lazy")
    with pytest.raises(errors.UsageError, match="build it first"):
        slice(seq, "d")


# -- listing ----------------------------------------------------------------------------


def test_layers_paths_and_params(mnv2_seq):
    info = layers(mnv2_seq)
    assert all(isinstance(i, LayerInfo) for i in info)
    assert [i.index for i in info] == list(range(len(info)))
    first = info[0]
    assert (first.name, first.type, first.depth, first.is_model) == (MNV2, "Functional", 0, True)
    assert first.output_shape == (None, 1, 1, 1280)
    relu = next(i for i in info if i.name == f"{MNV2}/block_13_expand_relu")
    assert (relu.depth, relu.type, relu.output_shape) == (1, "ReLU", (None, 2, 2, 192))
    total = mnv2_seq.count_params()
    assert sum(i.params for i in info if i.depth == 0) == total
    assert sum(i.params for i in info if not i.is_model) == total
    assert [i.name for i in info if i.depth == 0] == [MNV2, "pool", "out"]


def test_layers_filter_globs(mnv2_seq):
    by_name = layers(mnv2_seq, filter="BLOCK_13_*RELU")  # case-insensitive, leaf name
    assert [i.name for i in by_name] == [
        f"{MNV2}/block_13_expand_relu",
        f"{MNV2}/block_13_depthwise_relu",
    ]
    by_path = layers(mnv2_seq, filter="mobilenet*/conv1*")
    assert [i.name for i in by_path] == [f"{MNV2}/Conv1", f"{MNV2}/Conv1_relu"]
    assert layers(mnv2_seq, filter="no-such-layer") == []
    # indices are positions in the unfiltered walk
    full = layers(mnv2_seq)
    assert all(full[i.index] == i for i in by_name)


def test_layers_without_nested(mnv2_seq):
    assert [i.name for i in layers(mnv2_seq, expand_nested=False)] == [MNV2, "pool", "out"]


def test_layers_multi_output_and_shared_layers(keras):
    inp = keras.Input((4,), name="x")
    two = keras.Model(
        inp,
        [keras.layers.Dense(2, name="p")(inp), keras.layers.Dense(3, name="q")(inp)],
        name="two",
    )
    shared = keras.layers.Dense(4, name="shared")
    outer_in = keras.Input((4,), name="y")
    a, b = two(shared(shared(outer_in)))
    model = keras.Model(outer_in, keras.layers.Concatenate(name="cat")([a, b]), name="m")
    info = {i.name: i for i in layers(model)}
    assert info["two"].output_shape == [(None, 2), (None, 3)]
    assert info["shared"].output_shape == (None, 4)
    assert info["cat"].output_shape == (None, 5)
    assert sum(i.params for i in info.values() if i.depth == 0) == model.count_params()


def test_layers_reports_effective_trainability(keras):
    model, _ = _wrapped(keras)
    find_layer(model, "inner").trainable = False
    info = {i.name: i for i in layers(model)}
    assert info["inner"].trainable is False
    assert info["inner/conv"].trainable is False  # frozen through its parent
    assert info["dense"].trainable is True


def test_layers_rejects_non_models():
    with pytest.raises(errors.UsageError, match="Received: list"):
        layers([1, 2])


def test_layers_rejects_non_string_filter(keras):
    with pytest.raises(errors.UsageError, match="filter"):
        layers(_cnn(keras), filter=3)


def test_find_and_has_layer(keras):
    model, inner = _wrapped(keras)
    assert find_layer(model, "inner/bn") is inner.get_layer("bn")
    assert find_layer(model, -1) is model.get_layer("dense")
    assert has_layer(model, "inner/bn") and has_layer(model, "inner")
    assert not has_layer(model, "inner/nope") and not has_layer(model, "bn")
    with pytest.raises(errors.LayerNotFoundError) as info:
        find_layer(model, "inner/bnn")
    assert "inner/bn" in info.value.suggestions


def test_name_with_slash_still_resolves(keras):
    inp = keras.Input((2,), name="x")
    model = keras.Model(inp, keras.layers.Dense(1, name="a/b")(inp), name="m")
    assert find_layer(model, "a/b").name == "a/b"


# -- freeze / unfreeze ------------------------------------------------------------------


def _trainable_leaves(model):
    return [i.name for i in layers(model) if i.trainable and not i.is_model and i.params]


def test_freeze_everything(keras):
    model, _ = _wrapped(keras)
    assert freeze(model) is model
    assert model.trainable_weights == []
    assert not any(i.trainable for i in layers(model))


def test_unfreeze_top_counts_nested_leaves_and_keeps_bn_frozen(keras):
    model, _ = _wrapped(keras)
    freeze(model)
    # leaf order: prep, inner/conv, inner/bn, inner/relu, inner/conv2, inner/gap, dense
    assert unfreeze(model, top=5) is model
    assert _trainable_leaves(model) == ["inner/conv2", "dense"]
    unfreeze(model, top=6)
    assert _trainable_leaves(model) == ["inner/conv", "inner/conv2", "dense"]
    assert find_layer(model, "inner/bn").trainable is False
    names = {v.name for v in model.trainable_weights}
    assert not any("bn" in n for n in names)


def test_unfreeze_batchnorm_when_asked(keras):
    model, _ = _wrapped(keras)
    freeze(model)
    unfreeze(model, top=6, keep_batchnorm_frozen=False)
    assert _trainable_leaves(model) == ["inner/conv", "inner/bn", "inner/conv2", "dense"]
    # gamma and beta train; moving statistics never are trainable weights
    bn_trainable = [v.name for v in model.trainable_weights if "bn" in v.name]
    assert len(bn_trainable) == 2


def test_unfreeze_from_layer(keras):
    model, _ = _wrapped(keras)
    freeze(model)
    unfreeze(model, from_layer="inner/relu")
    assert _trainable_leaves(model) == ["inner/conv2", "dense"]
    unfreeze(model, from_layer="dense")
    assert _trainable_leaves(model) == ["dense"]
    info = {i.name: i for i in layers(model)}
    assert info["inner"].trainable is False  # nothing open inside: container closed too
    unfreeze(model, from_layer="inner")  # a nested model means its first layer on
    assert _trainable_leaves(model) == ["inner/conv", "inner/conv2", "dense"]


def test_unfreeze_top_larger_than_model_opens_all(keras):
    model, _ = _wrapped(keras)
    freeze(model)
    unfreeze(model, top=1000, keep_batchnorm_frozen=False)
    assert len(model.trainable_weights) == 8  # conv(2) bn(2) conv2(2) dense(2)


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"top": 2, "from_layer": "dense"}, {"top": 0}, {"top": -1}, {"top": True}],
)
def test_unfreeze_argument_errors(keras, kwargs):
    model, _ = _wrapped(keras)
    with pytest.raises(errors.UsageError, match="Received"):
        unfreeze(model, **kwargs)


def test_unfreeze_unknown_from_layer(keras):
    model, _ = _wrapped(keras)
    with pytest.raises(errors.LayerNotFoundError, match="inner/relu"):
        unfreeze(model, from_layer="inner/rel")
