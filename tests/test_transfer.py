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
    assert learner.evaluate(x, np.eye(3)[y])["accuracy"] >= 0.0


def test_bundled_digits_base_learns_new_digits():
    """The seed use case, offline: base pretrained on 0-4, learn 5-9 from 10 shots."""
    from modelzoo import TransferLearner
    from modelzoo.datasets import digits_to_rgb, split_digits

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
