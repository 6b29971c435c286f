"""The one place that imports TensorFlow and tf_keras (Keras 2), lazily.

Everything else calls :func:`tf` / :func:`keras` inside the functions that need them, so
``import modelzoo`` and the package-manager commands stay fast and TensorFlow-free.

The CLI calls :func:`quiet_logs` before any command runs: TensorFlow's C++ start-up
logging (absl's pre-initialisation banner, the CUDA stub and ``cuInit`` messages, oneDNN
notes) is then filtered out of stderr while TensorFlow loads, and its Python loggers
report errors only. Library users keep TensorFlow's own behaviour apart from
``TF_CPP_MIN_LOG_LEVEL=2`` (set only when unset).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import tempfile

from .errors import DependencyError

__all__ = ["tf", "keras", "h5py", "quiet_logs", "native_logs_quiet", "frozen_function"]

_quiet = False

# A line of TensorFlow's C++ logging ("I0000 00:00:17.. 123 cudart_stub.cc:31] ...") or
# absl's banner printed before its logging is initialised.
_CPP_LOG_LINE = re.compile(
    r"^(?:[IWEF]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ [\w./-]+:\d+\]"
    r"|WARNING: All log messages before absl::InitializeLog\(\) is called"
    # LiteRT: the interpreter's delegate notice, the int8 quantizer's settings
    r"|INFO: Created TensorFlow Lite XNNPACK delegate for CPU\."
    r"|fully_quantize: \d+, inference_type: )"
)


def quiet_logs(enabled: bool = True) -> None:
    """Hide TensorFlow's start-up logging in this process (the CLI does, unless ``-v``).

    Call before TensorFlow is imported. With ``enabled=False`` TensorFlow logs everything
    it would by default (``TF_CPP_MIN_LOG_LEVEL`` is left for the user to set).
    """
    global _quiet
    _quiet = enabled
    if not enabled:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0")


@contextlib.contextmanager
def native_logs_quiet():
    """While the CLI keeps TensorFlow quiet (:func:`quiet_logs`), hide the C++ logging of
    TensorFlow and LiteRT written during the block, and all of the block's native output
    when it raises: the caller turns that failure into one line of its own (the LiteRT
    converter prints its whole MLIR diagnostic on stderr before raising)."""
    if not _quiet:
        yield
        return
    with _cpp_logs_filtered(drop_on_error=True):
        yield


@contextlib.contextmanager
def _cpp_logs_filtered(*, drop_on_error: bool = False):
    """Capture file descriptor 2 (C++ writes there directly), then replay all but TF's logs."""
    sys.stderr.flush()
    saved = os.dup(2)
    failed = False
    with tempfile.TemporaryFile(mode="w+b") as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        except BaseException:
            failed = drop_on_error
            raise
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            text = capture.read().decode("utf-8", "replace")
            lines = [] if failed else text.splitlines(keepends=True)
            kept = [ln for ln in lines if not _CPP_LOG_LINE.match(ln)]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


def _import_tensorflow():
    try:
        import tensorflow
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise DependencyError(
            "tensorflow", "pip install 'tensorflow>=2.21,<2.22'", "loading models"
        ) from exc
    return tensorflow


def tf():
    """Return the ``tensorflow`` module, importing it on first use."""
    # Quiet TF's C++ start-up chatter unless the user asked for it.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if not _quiet or "tensorflow" in sys.modules:
        return _import_tensorflow()
    with _cpp_logs_filtered():
        tensorflow = _import_tensorflow()
        # Device discovery logs too (cuInit on a machine without a GPU); it does not start
        # the runtime, so logical-device and cluster set-up stay possible afterwards.
        tensorflow.config.list_physical_devices()
    for name in ("tensorflow", "absl"):
        logging.getLogger(name).setLevel(logging.ERROR)
    return tensorflow


def frozen_function(concrete_function):
    """``concrete_function`` with its variables folded in as constants (TensorFlow's own
    ``convert_variables_to_constants_v2``; TensorFlow is pinned to 2.21, where it lives in
    ``tensorflow.python``). The LiteRT converter takes it without first writing the
    variables to a SavedModel checkpoint, 2-4x faster."""
    tf()
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    return convert_variables_to_constants_v2(concrete_function)


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
