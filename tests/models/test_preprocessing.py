"""Preprocessing modes: numpy, the baked-in layer, and tf_keras's preprocess_input agree."""

from __future__ import annotations

import numpy as np
import pytest

from modelzoo.errors import UsageError
from modelzoo.models.preprocessing import affine, preprocess

RAW = np.random.default_rng(0).uniform(0, 255, (2, 5, 5, 3)).astype("float32")


def test_identity_modes_leave_pixels_alone():
    for mode in ("builtin", "none"):
        assert affine(mode) is None
        np.testing.assert_array_equal(preprocess(RAW, mode), RAW)


def test_unknown_mode_and_wrong_channels_are_clear_errors():
    with pytest.raises(UsageError, match="Valid: caffe, tf, torch"):
        preprocess(RAW, "imagenet")
    with pytest.raises(UsageError, match="3 channels"):
        preprocess(RAW[..., :1], "tf")


@pytest.mark.tf
@pytest.mark.parametrize(
    ("mode", "module"),
    [("tf", "mobilenet"), ("caffe", "vgg16"), ("torch", "densenet")],
)
def test_numpy_and_layer_match_keras_preprocess_input(mode, module):
    import importlib

    import tf_keras as keras

    from modelzoo.models.preprocessing import preprocessing_layer

    keras_fn = importlib.import_module(f"tf_keras.applications.{module}").preprocess_input
    expected = keras_fn(RAW.copy())
    np.testing.assert_allclose(preprocess(RAW, mode), expected, rtol=1e-5, atol=1e-4)
    layer = preprocessing_layer(mode)
    inputs = keras.Input((5, 5, 3))
    model = keras.Model(inputs, layer(inputs))
    assert not model.trainable_weights  # never trained away by a later fit
    np.testing.assert_allclose(model.predict(RAW, verbose=0), expected, rtol=1e-5, atol=1e-4)
