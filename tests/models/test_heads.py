"""heads.py: attach_head for every task/pooling, the training=False guarantee, compile defaults."""

from __future__ import annotations

import numpy as np
import pytest

from modelzoo import errors
from modelzoo.models.heads import attach_head, compile_defaults, label_format
from modelzoo.models.slicing import freeze, unfreeze

pytestmark = pytest.mark.tf


@pytest.fixture(scope="module")
def keras():
    from modelzoo.backend import keras

    return keras()


@pytest.fixture(scope="module")
def tf():
    from modelzoo.backend import tf

    return tf()


def _base(keras, name="base"):
    """conv -> bn -> relu -> conv2 -> bn2 -> relu2: a (None, 4, 4, 6) feature map."""
    inp = keras.Input((8, 8, 3), name="pixels")
    x = keras.layers.Conv2D(4, 3, padding="same", name="conv")(inp)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.ReLU(name="relu")(x)
    x = keras.layers.Conv2D(6, 3, strides=2, padding="same", name="conv2")(x)
    x = keras.layers.BatchNormalization(name="bn2")(x)
    x = keras.layers.ReLU(name="relu2")(x)
    return keras.Model(inp, x, name=name)


def _data(n=32, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    # offset from 0 so that batch statistics differ clearly from the initial moving ones
    x = rng.normal(3.0, 2.0, (n, 8, 8, 3)).astype(np.float32)
    y = rng.integers(0, classes, n)
    return x, y


def _snapshot(layer):
    return [w.copy() for w in layer.get_weights()]


def _same(a, b):
    return all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


# -- building ---------------------------------------------------------------------------


def test_classification_head_layout(keras):
    base = freeze(_base(keras))
    model = attach_head(base, 3, hidden=(16, 8), dropout=0.25)
    names = [layer.name for layer in model.layers]
    assert names == [
        "pixels",
        "base",
        "head_pool",
        "head_dense_1",
        "head_dropout_1",
        "head_dense_2",
        "head_dropout_2",
        "head_output",
    ]
    assert model.get_layer("base") is base
    assert model.name == "base_with_head"
    assert model.output_shape == (None, 3)
    assert model.get_layer("head_output").activation.__name__ == "softmax"
    assert model.get_layer("head_output").dtype == "float32"
    assert model.get_layer("head_dense_1").activation.__name__ == "relu"
    probs = model(np.ones((2, 8, 8, 3), np.float32)).numpy()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    # the base is called with training=False in the new graph
    call = [n for n in base.inbound_nodes if n.layer is base][-1]
    assert call.call_kwargs == {"training": False}


@pytest.mark.parametrize(
    ("pooling", "pool_type", "pooled"),
    [
        ("flatten", "Flatten", 96),
        ("avg", "GlobalAveragePooling2D", 6),
        ("max", "GlobalMaxPooling2D", 6),
        (None, None, None),
    ],
)
def test_pooling_choices(keras, pooling, pool_type, pooled):
    model = attach_head(_base(keras), 2, hidden=(), pooling=pooling, name="m")
    if pool_type is None:
        assert "head_pool" not in [layer.name for layer in model.layers]
        assert model.output_shape == (None, 4, 4, 2)  # Dense on the last axis
    else:
        pool = model.get_layer("head_pool")
        assert type(pool).__name__ == pool_type
        assert pool.output_shape == (None, pooled)
        assert model.output_shape == (None, 2)


def test_pooling_of_sequences_and_vectors(keras):
    seq_in = keras.Input((7, 5), name="tokens")
    seq = keras.Model(seq_in, keras.layers.Dense(4, name="emb")(seq_in), name="seq")
    model = attach_head(seq, 2, hidden=(), pooling="max")
    assert type(model.get_layer("head_pool")).__name__ == "GlobalMaxPooling1D"
    vec_in = keras.Input((5,), name="v")
    vec = keras.Model(vec_in, keras.layers.Dense(4, name="f")(vec_in), name="vec")
    model = attach_head(vec, 2, hidden=(3,), pooling="flatten")
    assert [layer.name for layer in model.layers][2:] == ["head_dense_1", "head_output"]


@pytest.mark.parametrize(
    ("task", "activation", "n"),
    [("classification", "softmax", 4), ("multilabel", "sigmoid", 5), ("regression", "linear", 1)],
)
def test_tasks(keras, task, activation, n):
    model = attach_head(_base(keras), n, task=task, hidden=(8,), pooling="avg")
    out = model.get_layer("head_output")
    assert out.activation.__name__ == activation
    assert model.output_shape == (None, n)
    y = model(np.ones((2, 8, 8, 3), np.float32)).numpy()
    if task == "multilabel":
        assert ((y > 0) & (y < 1)).all()


def test_hidden_int_and_dropout_without_hidden(keras):
    model = attach_head(_base(keras), 2, hidden=12, pooling="avg")
    assert model.get_layer("head_dense_1").units == 12
    model = attach_head(_base(keras), 2, hidden=(), dropout=0.5, pooling="avg")
    assert [layer.name for layer in model.layers][2:] == [
        "head_pool",
        "head_dropout",
        "head_output",
    ]


def test_custom_head_layer_and_callable(keras):
    base = _base(keras)
    custom = keras.layers.Conv2D(3, 4, name="my_head")  # (4, 4, 6) -> (1, 1, 3)
    model = attach_head(base, head=custom, pooling="bogus-is-ignored", hidden=-1)
    assert model.get_layer("my_head") is custom
    assert model.output_shape == (None, 1, 1, 3)

    def head(x):
        x = keras.layers.GlobalAveragePooling2D(name="g")(x)
        return keras.layers.Dense(1, name="score")(x)

    model = attach_head(_base(keras), head=head, name="scorer")
    assert model.output_shape == (None, 1)
    assert model.name == "scorer"


def test_custom_head_must_return_keras_tensors(keras):
    with pytest.raises(errors.UsageError, match="Keras tensor"):
        attach_head(_base(keras), head=lambda x: 3)
    with pytest.raises(errors.UsageError, match="callable"):
        attach_head(_base(keras), head="dense")


def test_multi_input_features(keras):
    a = keras.Input((3,), name="a")
    b = keras.Input((2,), name="b", dtype="int32")
    embedded = keras.layers.Flatten(name="flat")(keras.layers.Embedding(5, 2, name="emb")(b))
    joined = keras.layers.Concatenate(name="cat")([a, embedded])
    features = keras.Model([a, b], keras.layers.Dense(4, name="f")(joined), name="two_in")
    model = attach_head(features, 2, hidden=())
    assert model.input_names == ["a", "b"]
    assert model.inputs[1].dtype == "int32"
    out = model([np.ones((2, 3), np.float32), np.ones((2, 2), np.int32)])
    assert out.shape == (2, 2)


def test_multi_output_features_need_a_custom_head(keras):
    inp = keras.Input((4,), name="v")
    two = keras.Model(
        inp,
        [keras.layers.Dense(2, name="p")(inp), keras.layers.Dense(3, name="q")(inp)],
        name="two",
    )
    with pytest.raises(errors.UsageError, match="2 outputs"):
        attach_head(two, 2)
    model = attach_head(two, head=keras.layers.Concatenate(name="join"))
    assert model.output_shape == (None, 5)


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        ((None,), {}, "num_classes=None"),
        ((1,), {}, "task='multilabel'"),
        ((0,), {"task": "regression"}, "positive int"),
        ((2.0,), {}, "positive int"),
        ((3,), {"task": "segmentation"}, "task='segmentation'"),
        ((3,), {"pooling": "mean"}, "'mean'"),
        ((3,), {"hidden": (10, 0)}, r"hidden=\(10, 0\)"),
        ((3,), {"hidden": "100"}, "'100'"),
        ((3,), {"dropout": 1.0}, "dropout=1.0"),
        ((3,), {"dropout": "0.1"}, "'0.1'"),
        ((3,), {"activation": "relux"}, "relux"),
    ],
)
def test_argument_errors_before_building(keras, args, kwargs, match):
    base = _base(keras)
    calls = len(base.inbound_nodes)
    with pytest.raises(errors.UsageError, match=match) as info:
        attach_head(base, *args, **kwargs)
    assert "Received" in str(info.value) or "Use a Keras activation" in str(info.value)
    assert len(base.inbound_nodes) == calls  # nothing was built


def test_features_must_be_a_built_model(keras):
    with pytest.raises(errors.UsageError, match="Received: Dense"):
        attach_head(keras.layers.Dense(3), 2)
    lazy = keras.Sequential([keras.layers.Dense(3)], name="lazy")
    with pytest.raises(errors.UsageError, match="Build it first"):
        attach_head(lazy, 2)


def test_rank_that_cannot_be_pooled(keras):
    inp = keras.Input((2, 2, 2, 2, 2), name="v")
    six = keras.Model(inp, keras.layers.Dense(2, name="d")(inp), name="six")
    with pytest.raises(errors.UsageError, match="rank 6"):
        attach_head(six, 2, pooling="avg")
    assert attach_head(six, 2, pooling="flatten").output_shape == (None, 2)


def test_model_with_head_on_nested_slice_saves_and_reloads(keras, tmp_path):
    from modelzoo.models.slicing import slice

    inner = _base(keras, name="inner")
    inp = keras.Input((8, 8, 3), name="image")
    outer = keras.Model(inp, inner(keras.layers.Rescaling(0.5, name="prep")(inp)), name="outer")
    model = attach_head(freeze(slice(outer, "inner/relu")), 3, hidden=(4,))
    compile_defaults(model)
    path = tmp_path / "model.keras"
    model.save(path)
    reloaded = keras.models.load_model(path)  # safe_mode: no Lambda, no custom code
    x = _data(2)[0]
    np.testing.assert_allclose(reloaded(x).numpy(), model(x).numpy(), rtol=1e-5, atol=1e-6)


# -- training: the training=False guarantee ---------------------------------------------


def _bn_stats(layer):
    return [layer.moving_mean.numpy().copy(), layer.moving_variance.numpy().copy()]


def test_frozen_base_is_unchanged_by_fit(keras):
    base = freeze(_base(keras))
    model = compile_defaults(attach_head(base, 3, hidden=(8,), pooling="avg"), labels="sparse")
    before = _snapshot(base)
    head_before = _snapshot(model.get_layer("head_dense_1"))
    x, y = _data()
    model.fit(x, y, epochs=2, batch_size=8, verbose=0)
    assert _same(_snapshot(base), before)  # kernels, gamma/beta and moving stats
    assert not _same(_snapshot(model.get_layer("head_dense_1")), head_before)


def test_unfrozen_base_trains_but_batchnorm_statistics_stay(keras):
    base = freeze(_base(keras))
    model = attach_head(base, 3, hidden=(8,), pooling="avg")
    unfreeze(model, top=100, keep_batchnorm_frozen=False)
    compile_defaults(model, labels="sparse", learning_rate=1e-2)
    conv, bn = base.get_layer("conv"), base.get_layer("bn")
    conv_before, gamma_before, stats_before = _snapshot(conv), bn.gamma.numpy(), _bn_stats(bn)
    x, y = _data()
    model.fit(x, y, epochs=2, batch_size=8, verbose=0)
    assert not _same(_snapshot(conv), conv_before)
    assert not np.array_equal(bn.gamma.numpy(), gamma_before)  # BN trains its scale...
    assert _same(_bn_stats(bn), stats_before)  # ...but never updates its statistics


def test_control_batchnorm_statistics_move_without_training_false(keras):
    # Proves the test above can fail: the same base trained directly updates them.
    base = _base(keras, name="direct")
    inp = keras.Input((8, 8, 3), name="img")
    x = keras.layers.GlobalAveragePooling2D(name="g")(base(inp))
    model = keras.Model(inp, keras.layers.Dense(3, activation="softmax", name="o")(x))
    compile_defaults(model, labels="sparse")
    bn = base.get_layer("bn")
    before = _bn_stats(bn)
    x, y = _data()
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    assert not _same(_bn_stats(bn), before)


def test_unfreeze_keeps_batchnorm_frozen_by_default(keras):
    base = freeze(_base(keras))
    model = attach_head(base, 3, hidden=(8,), pooling="avg")
    unfreeze(model, top=100)
    compile_defaults(model, labels="sparse", learning_rate=1e-2)
    bn = base.get_layer("bn")
    before = _snapshot(bn)
    conv_before = _snapshot(base.get_layer("conv2"))
    x, y = _data()
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    assert _same(_snapshot(bn), before)
    assert not _same(_snapshot(base.get_layer("conv2")), conv_before)


def test_unfreeze_top_on_a_head_model_counts_head_layers_last(keras):
    from modelzoo.models.slicing import layers

    model = attach_head(freeze(_base(keras)), 3, hidden=(8,), pooling="avg")
    freeze(model)
    unfreeze(model, top=4)  # relu2, head_pool, head_dense_1, head_output
    trainable = [i.name for i in layers(model) if i.trainable and i.params and not i.is_model]
    assert trainable == ["head_dense_1", "head_output"]
    unfreeze(model, top=5)  # bn2 stays frozen
    trainable = [i.name for i in layers(model) if i.trainable and i.params and not i.is_model]
    assert trainable == ["head_dense_1", "head_output"]
    unfreeze(model, top=6)
    trainable = [i.name for i in layers(model) if i.trainable and i.params and not i.is_model]
    assert trainable == ["base/conv2", "head_dense_1", "head_output"]


# -- compile defaults -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("task", "labels", "loss", "metric"),
    [
        ("classification", "categorical", "CategoricalCrossentropy", "CategoricalAccuracy"),
        ("classification", "sparse", "SparseCategoricalCrossentropy", "SparseCategoricalAccuracy"),
        ("multilabel", "categorical", "BinaryCrossentropy", "BinaryAccuracy"),
        ("regression", "categorical", "MeanSquaredError", "MeanAbsoluteError"),
    ],
)
def test_compile_defaults_per_task(keras, task, labels, loss, metric):
    model = attach_head(_base(keras), 2, task=task, hidden=(), pooling="avg")
    assert compile_defaults(model, task=task, labels=labels, learning_rate=0.01) is model
    assert type(model.loss).__name__ == loss
    assert [type(m).__name__ for m in model.compiled_metrics._user_weighted_metrics] == [metric]
    assert type(model.optimizer).__name__ == "Adam"
    assert np.isclose(float(model.optimizer.learning_rate.numpy()), 0.01)


def test_compile_defaults_fit_with_detected_format(keras):
    x, y = _data(16)
    for labels in (y, np.eye(3, dtype=np.float32)[y]):
        model = attach_head(_base(keras), 3, hidden=(), pooling="avg")
        compile_defaults(model, labels=label_format(labels))
        history = model.fit(x, labels, epochs=1, batch_size=8, verbose=0)
        assert {"loss", "accuracy"} <= set(history.history)


def test_compile_defaults_custom_metrics(keras):
    model = attach_head(_base(keras), 2, task="regression", hidden=(), pooling="avg")
    compile_defaults(model, task="regression", metrics=["mse"])
    assert model.compiled_metrics._user_weighted_metrics == ["mse"]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"task": "ranking"},
        {"labels": "onehot"},
        {"task": "regression", "labels": "sparse"},
        {"learning_rate": 0},
        {"learning_rate": "fast"},
    ],
)
def test_compile_defaults_argument_errors(keras, kwargs):
    model = attach_head(_base(keras), 2, hidden=(), pooling="avg")
    with pytest.raises(errors.UsageError, match="Received"):
        compile_defaults(model, **kwargs)


# -- label format -----------------------------------------------------------------------


def test_label_format_arrays():
    assert label_format(np.array([0, 2, 1])) == "sparse"
    assert label_format([0, 1, 1]) == "sparse"
    assert label_format(np.array([[0], [2]])) == "sparse"
    assert label_format(np.array([0.0, 2.0])) == "sparse"
    assert label_format(np.eye(3)) == "categorical"
    assert label_format(np.eye(3, dtype=np.int64)) == "categorical"


def test_label_format_tensors_and_datasets(tf):
    assert label_format(tf.constant([1, 0])) == "sparse"
    x = np.zeros((6, 2), np.float32)
    ids = np.array([0, 1, 2, 0, 1, 2])
    onehot = np.eye(3, dtype=np.float32)[ids]
    ds = tf.data.Dataset.from_tensor_slices
    assert label_format(ds((x, ids))) == "sparse"  # unbatched: scalars
    assert label_format(ds((x, ids)).batch(4)) == "sparse"  # (None,)
    assert label_format(ds((x, ids)).batch(3, drop_remainder=True)) == "sparse"  # (3,) ints
    assert label_format(ds((x, onehot))) == "categorical"  # (3,) floats
    assert label_format(ds((x, onehot)).batch(4)) == "categorical"  # (None, 3)
    assert label_format(ds((x, onehot, np.ones(6))).batch(2)) == "categorical"
    assert label_format(tf.TensorSpec((None, 1), tf.int32)) == "sparse"


@pytest.mark.parametrize(
    ("labels", "match"),
    [
        (np.float32(3.0), "shape"),
        (np.array([0.5, 1.2]), "whole numbers"),
        (np.array(["cat", "dog"]), "map names to ids"),
        (np.zeros((2, 1, 1)), "neither"),
    ],
)
def test_label_format_errors(labels, match):
    with pytest.raises(errors.UsageError, match=match):
        label_format(labels)


def test_label_format_needs_pairs(tf):
    with pytest.raises(errors.UsageError, match="single element"):
        label_format(tf.data.Dataset.from_tensor_slices((np.zeros(3),)))


def test_flattening_features_of_unknown_size_is_one_line(keras):
    """A base built at (None, None, 3) cannot feed Flatten -> Dense (issue 11 item 1)."""
    inp = keras.Input((None, None, 3), name="img")
    conv = keras.Model(inp, keras.layers.Conv2D(4, 3, name="c")(inp), name="conv")
    with pytest.raises(errors.UsageError, match="input_shape") as info:
        attach_head(conv, 2)
    assert "pooling='avg'" in str(info.value) and "\n" not in str(info.value)
    assert attach_head(conv, 2, pooling="avg").output_shape == (None, 2)
