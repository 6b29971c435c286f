"""The one place that imports TensorFlow and tf_keras (Keras 2), lazily.

Everything else calls :func:`tf` / :func:`keras` inside the functions that need them, so
``import modelzoo`` and the package-manager commands stay fast and TensorFlow-free.
"""

from __future__ import annotations

import os

from .errors import DependencyError

__all__ = ["tf", "keras", "h5py"]


def tf():
    """Return the ``tensorflow`` module, importing it on first use."""
    # Quiet TF's C++ start-up chatter unless the user asked for it.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import tensorflow
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise DependencyError(
            "tensorflow", "pip install 'tensorflow>=2.21,<2.22'", "loading models"
        ) from exc
    return tensorflow


def keras():
    """Return ``tf_keras`` (the Keras 2 API); never ``tf.keras``, which is Keras 3."""
    tf()
    try:
        import tf_keras
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise DependencyError(
            "tf-keras", "pip install 'tf-keras>=2.21,<2.22'", "loading models"
        ) from exc
    return tf_keras


def h5py():
    """Return ``h5py`` (used to inspect HDF5 files before Keras reads them)."""
    try:
        import h5py as _h5py
    except ImportError as exc:  # pragma: no cover
        raise DependencyError("h5py", "pip install h5py", "reading HDF5 model files") from exc
    return _h5py
