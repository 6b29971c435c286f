"""TransferLearner: feature cache equivalence and invalidation, save/load, the bundled base."""

from __future__ import annotations

import json

import numpy as np
import pytest

from modelzoo.errors import UsageError

pytestmark = pytest.mark.tf


@pytest.fixture(scope="module")
def base():
    import tf_keras as keras

    keras.utils.set_random_seed(1)
    return keras.applications.MobileNet(
        alpha=0.25, input_shape=(32, 32, 3), include_top=False, weights=None
    )


def _data(n=48, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 255, (n, 32, 32, 3)).astype("float32")
    y = rng.integers(0, 3, n)
    x[y == 1] *= 0.3  # learnable signal
    return x, y


def _learner(base, **kw):
    import tf_keras as keras

    from modelzoo import TransferLearner

    keras.utils.set_random_seed(3)
    kw = {"num_classes": 3, "labels": ["a", "b", "c"], **kw}
    return TransferLearner(base, "conv_pw_13_relu", **kw)


def test_feature_cache_gives_the_same_model_as_plain_fit(base):
    x, y = _data()
    cached = _learner(base)
    plain = _learner(base, feature_cache=False)
    cached.fit(x, y, epochs=3, batch_size=16, shuffle=False, verbose=0)
    plain.fit(x, y, epochs=3, batch_size=16, shuffle=False, verbose=0)
    assert cached.last_fit["feature_cache"] == "miss"
    assert plain.last_fit["feature_cache"] == "off"
    np.testing.assert_allclose(cached.predict(x), plain.predict(x), atol=1e-4)
    np.testing.assert_allclose(cached.history["loss"], plain.history["loss"], rtol=1e-3)


def test_feature_cache_hits_then_invalidates_when_data_changes(base, _isolated_home):
    x, y = _data()
    learner = _learner(base)
    learner.fit(x, y, epochs=1, verbose=0)
    assert learner.last_fit["feature_cache"] == "miss"
    assert list((_isolated_home / "features").glob("*.npy"))
    learner.fit(x, y, epochs=1, verbose=0)
    assert learner.last_fit["feature_cache"] == "hit"
    x2 = x.copy()
    x2[0, 0, 0, 0] += 1.0
    learner.fit(x2, y, epochs=1, verbose=0)
    assert learner.last_fit["feature_cache"] == "miss"
    assert len(learner.history["loss"]) == 3


def test_unfrozen_base_trains_through_the_base(base):
    from modelzoo import unfreeze

    x, y = _data()
    learner = _learner(base)
    unfreeze(learner.base, top=3)
    learner.fit(x, y, epochs=1, verbose=0)
    assert learner.last_fit["feature_cache"] == "off"


def test_save_loads_with_plain_keras_and_keeps_labels(base, tmp_path):
    import tf_keras as keras

    x, y = _data()
    learner = _learner(base)
    learner.fit(x, y, epochs=2, verbose=0, validation=0.25)
    assert "val_loss" in learner.history
    path = learner.save(tmp_path / "out" / "m.keras")
    again = keras.models.load_model(path)
    np.testing.assert_allclose(again.predict(x, verbose=0), learner.predict(x), atol=1e-6)
    meta = json.loads((tmp_path / "out" / "m.labels.json").read_text())
    assert meta["labels"] == ["a", "b", "c"] and meta["cut"] == "conv_pw_13_relu"
    with pytest.raises(UsageError):
        learner.save(tmp_path / "m.h5")


def test_argument_errors(base):
    x, y = _data()
    with pytest.raises(UsageError, match="disagree"):
        _learner(base, num_classes=4)
    learner = _learner(base)
    with pytest.raises(UsageError):
        learner.fit(x, None)
    with pytest.raises(UsageError):
        learner.fit(x, y, epochs=0)


def test_dataset_input_and_one_hot_labels(base):
    import tensorflow as tf

    x, y = _data()
    learner = _learner(base)
    ds = tf.data.Dataset.from_tensor_slices((x, np.eye(3)[y])).batch(8)
    hist = learner.fit(ds, epochs=2, verbose=0)
    assert len(hist["loss"]) == 2
    # One-hot labels are scored like integer ones: evaluate agrees with predict's argmax.
    accuracy = learner.evaluate(x, np.eye(3)[y])["accuracy"]
    assert accuracy == pytest.approx(float((learner.predict(x).argmax(-1) == y).mean()), abs=1e-6)
    assert accuracy == pytest.approx(learner.evaluate(x, y)["accuracy"], abs=1e-6)


def test_bundled_digits_base_learns_new_digits():
    """The seed use case, offline: base pretrained on 0-4, learn 5-9 from 10 shots."""
    from modelzoo import TransferLearner
    from modelzoo.models.datasets import digits_to_rgb, split_digits

    split = split_digits(range(5, 10))
    few = split.few_shot(10, seed=0)
    learner = TransferLearner(
        "mobilenet_v1_0.25_32_digits",
        "conv_pw_13_relu",
        num_classes=5,
        labels=[str(d) for d in split.classes],
    )
    learner.fit(digits_to_rgb(few.x_train), few.y_train, epochs=40, batch_size=16, verbose=0)
    acc = learner.evaluate(digits_to_rgb(split.x_test), split.y_test)["accuracy"]
    assert acc > 0.5  # chance is 0.2; the README reports the measured numbers


def test_registry_base_without_a_cut_uses_the_first_cut_point(caplog):
    """Not the classifier's softmax (issue 11 item 8): the manifest's first cut point."""
    import logging

    from modelzoo import TransferLearner

    with caplog.at_level(logging.INFO, logger="modelzoo"):
        learner = TransferLearner("mobilenet_v1_0.25_32_digits", num_classes=2)
    assert learner.cut == "conv_pw_13_relu"
    assert learner.base.output_shape == (None, 1, 1, 256)
    assert "cut at conv_pw_13_relu (the manifest's first cut point)" in caplog.text


# -- augmentation, fine-tuning, validation, labels (issue 11 items 3-5, issue 12.3) --------


def _pixel_recorder():
    """A base whose only layer records a hash of every batch of pixels it is given."""
    import hashlib

    import tensorflow as tf
    import tf_keras as keras

    seen: list[str] = []

    def record(x):
        seen.append(hashlib.sha256(np.ascontiguousarray(x.numpy()).tobytes()).hexdigest())
        return x

    class Recorder(keras.layers.Layer):
        def call(self, inputs):
            out = tf.py_function(record, [inputs], tf.float32)
            out.set_shape(inputs.shape)
            return out

    inputs = keras.Input((8, 8, 3))
    base = keras.Model(inputs, keras.layers.Conv2D(2, 3)(Recorder()(inputs)), name="recorder")
    return base, seen


@pytest.mark.parametrize("augment", [True, False])
def test_augmentation_changes_the_pixels_the_base_sees_every_epoch(augment):
    import tf_keras as keras

    from modelzoo import TransferLearner, freeze

    keras.utils.set_random_seed(4)
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (8, 8, 8, 3)).astype("float32")
    y = np.array([0, 1] * 4)
    base, seen = _pixel_recorder()
    freeze(base)
    layer = keras.layers.RandomTranslation(0.3, 0.3, seed=1) if augment else None
    learner = TransferLearner(base, num_classes=2, augment=layer, feature_cache=False)
    learner.fit(x, y, epochs=3, batch_size=8, shuffle=False, verbose=0)
    assert len(seen) == 3  # one full batch per epoch
    if augment:
        assert len(set(seen)) == 3, "augmented training saw the same pixels twice"
        seen.clear()  # inference (predict/evaluate) is not augmented
        learner.predict(x, batch_size=8)
        learner.predict(x, batch_size=8)
        assert len(set(seen)) == 1
    else:
        assert len(set(seen)) == 1


def _small_learner(**kw):
    """A two-conv frozen base whose gradients are healthy (random MobileNets saturate)."""
    import tf_keras as keras

    from modelzoo import TransferLearner, freeze

    keras.utils.set_random_seed(6)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu", name="c1")(inputs)
    x = keras.layers.Conv2D(4, 3, activation="relu", name="c2")(x)
    base = freeze(keras.Model(inputs, x, name="small"))
    rng = np.random.default_rng(1)
    data = rng.uniform(0, 1, (32, 8, 8, 3)).astype("float32"), rng.integers(0, 2, 32)
    return TransferLearner(base, num_classes=2, learning_rate=0.01, **kw), data


def test_unfreezing_after_a_fit_trains_the_base():
    from modelzoo import unfreeze

    learner, (x, y) = _small_learner(feature_cache=False)
    learner.fit(x, y, epochs=1, batch_size=8, verbose=0)
    before = learner.base.get_layer("c2").get_weights()
    frozen_c1 = learner.base.get_layer("c1").get_weights()[0]
    unfreeze(learner.base, top=1)  # the plain function: the learner notices on fit
    learner.fit(x, y, epochs=1, batch_size=8, verbose=0)
    after = learner.base.get_layer("c2").get_weights()
    assert not np.array_equal(before[0], after[0]), "fit after unfreeze left the base as it was"
    assert np.array_equal(frozen_c1, learner.base.get_layer("c1").get_weights()[0])


def test_refreezing_after_fine_tuning_recomputes_the_cached_features():
    from modelzoo import freeze, unfreeze

    learner, (x, y) = _small_learner()
    learner.fit(x, y, epochs=1, batch_size=8, verbose=0)
    assert learner.last_fit["feature_cache"] == "miss"
    learner.fit(x, y, epochs=1, batch_size=8, verbose=0)
    assert learner.last_fit["feature_cache"] == "hit"
    unfreeze(learner.base, top=1)
    learner.fit(x, y, epochs=1, batch_size=8, verbose=0)
    assert learner.last_fit["feature_cache"] == "off"
    freeze(learner.base)
    learner.fit(x, y, epochs=1, batch_size=8, verbose=0)
    assert learner.last_fit["feature_cache"] == "miss", "features from before fine-tuning reused"
    learner.fit(x, y, epochs=1, batch_size=8, verbose=0)
    assert learner.last_fit["feature_cache"] == "hit"


def test_learner_unfreeze_method_fine_tunes_with_a_new_rate():
    learner, (x, y) = _small_learner(feature_cache=False)
    learner.fit(x, y, epochs=1, batch_size=8, verbose=0)
    assert learner.base.trainable_weights == []
    learner.unfreeze(top=1, learning_rate=1e-3)
    assert [w.name for w in learner.base.trainable_weights] == ["c2/kernel:0", "c2/bias:0"]
    before = learner.base.get_layer("c2").get_weights()
    learner.fit(x, y, epochs=1, batch_size=8, verbose=0)
    assert float(learner.model.optimizer.learning_rate.numpy()) == pytest.approx(1e-3)
    assert not np.array_equal(before[0], learner.base.get_layer("c2").get_weights()[0])
    learner.freeze()
    assert not learner.base.trainable_weights


def _tpu_shaped():
    import tensorflow as tf

    from modelzoo.distribute.strategies import StrategyChoice

    return StrategyChoice(
        strategy=tf.distribute.get_strategy(),
        spec="tpu",
        kind="tpu",
        devices=("/cpu:0",),
        replicas=1,
        reason="test: tpu-shaped choice on the CPU",
    )


@pytest.mark.parametrize("feature_cache", [True, False])
def test_static_batch_validation_counts_every_example(base, feature_cache):
    import tensorflow as tf

    x, y = _data(148, seed=4)
    vx, vy = x[48:], y[48:]  # 100 validation images: 6 batches of 16 and 4 left over
    learner = _learner(base, strategy=_tpu_shaped(), feature_cache=feature_cache)
    hist = learner.fit(x[:48], y[:48], epochs=1, batch_size=16, validation=(vx, vy), verbose=0)
    plain = learner.evaluate(vx, vy, batch_size=16)
    assert hist["val_loss"][-1] == pytest.approx(plain["loss"], rel=1e-4)
    assert hist["val_accuracy"][-1] == pytest.approx(plain["accuracy"], abs=1e-6)
    # A dataset validates the same way; a validation set smaller than a batch works too.
    val_ds = tf.data.Dataset.from_tensor_slices((vx, vy)).batch(7)
    hist = learner.fit(x[:48], y[:48], epochs=1, batch_size=16, validation=val_ds, verbose=0)
    plain = learner.evaluate(vx, vy, batch_size=16)
    assert hist["val_loss"][-1] == pytest.approx(plain["loss"], rel=1e-4)
    small = learner.fit(x[:48], y[:48], batch_size=16, epochs=1, validation=(vx[:5], vy[:5]))
    assert small["val_loss"][-1] == pytest.approx(
        learner.evaluate(vx[:5], vy[:5])["loss"], rel=1e-4
    )


def test_wrong_labels_are_one_line_errors(base):
    import tensorflow as tf

    from modelzoo.errors import DataError

    x, y = _data(16)
    learner = _learner(base, feature_cache=False)
    with pytest.raises(DataError, match=r"class ids 0\.\.2 .*Received ids from 0 to 7"):
        learner.fit(x, np.arange(16) % 8, epochs=1, verbose=0)
    with pytest.raises(DataError, match="16 images but 15 labels"):
        learner.fit(x, y[:15], epochs=1, verbose=0)
    with pytest.raises(DataError, match="One-hot labels have 4 columns"):
        learner.fit(x, np.eye(4)[y], epochs=1, verbose=0)
    bad = tf.data.Dataset.from_tensor_slices((x, np.full(16, 5))).batch(4)
    with pytest.raises(
        DataError, match=r"A label is 5, but this model's classes are 0\.\.2"
    ) as info:
        learner.fit(bad, epochs=1, verbose=0)
    assert "\n" not in str(info.value)
