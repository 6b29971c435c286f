"""Trainable heads on top of (frozen) feature extractors, and the matching compile defaults.

:func:`attach_head` wraps a feature model as one nested layer and adds predictably named
head layers after it::

    head_input -> <features> -> head_pool -> head_dense_1 -> head_dropout_1 -> head_output

:func:`compile_defaults` picks the optimizer, loss and metrics for the task and the
label format; :func:`label_format` tells one-hot from integer labels.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from .. import backend
from ..errors import UsageError

__all__ = [
    "TASKS",
    "POOLINGS",
    "attach_head",
    "compile_defaults",
    "label_format",
]

logger = logging.getLogger(__name__)

#: Tasks a head can be built and compiled for.
TASKS = ("classification", "multilabel", "regression")
#: Ways to reduce a feature map before the dense layers.
POOLINGS = ("flatten", "avg", "max", None)

_LABEL_FORMATS = ("categorical", "sparse")
_OUTPUT_ACTIVATION = {"classification": "softmax", "multilabel": "sigmoid", "regression": None}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_keras_tensor(value) -> bool:
    try:
        return bool(backend.keras().backend.is_keras_tensor(value))
    except ValueError:  # tf_keras raises, rather than answers False, for non-tensors
        return False


def _check_features(features) -> None:
    keras = backend.keras()
    if not isinstance(features, keras.Model):
        raise UsageError(
            "attach_head() needs a tf_keras Model as features. Received: "
            f"{type(features).__name__}. Load one with modelzoo.load(name, cut=...) or "
            "build it with tf_keras (not keras 3 / tf.keras)."
        )
    if not getattr(features, "inputs", None) or not getattr(features, "outputs", None):
        raise UsageError(
            f"attach_head() needs features with known inputs and outputs; {features.name!r} "
            "has none (an unbuilt Sequential or a subclassed model). Build it first, e.g. "
            "give its first layer an input_shape."
        )


def _check_hidden(hidden) -> tuple[int, ...]:
    if _is_int(hidden):
        hidden = (hidden,)
    if not isinstance(hidden, Sequence) or isinstance(hidden, str):
        raise UsageError(
            f"hidden must be a sequence of layer sizes, e.g. (100,) or (). Received: {hidden!r}."
        )
    for size in hidden:
        if not _is_int(size) or size < 1:
            raise UsageError(
                f"hidden sizes must be positive ints. Received: hidden={tuple(hidden)!r}."
            )
    return tuple(hidden)


def _check_num_classes(num_classes, task: str) -> int:
    if num_classes is None:
        raise UsageError(
            f"num_classes is required for task={task!r} (outputs for regression) unless "
            "you pass your own head=. Received: num_classes=None."
        )
    if not _is_int(num_classes) or num_classes < 1:
        raise UsageError(f"num_classes must be a positive int. Received: {num_classes!r}.")
    if task == "classification" and num_classes < 2:
        raise UsageError(
            "classification needs num_classes >= 2 (a softmax over the classes). "
            f"Received: num_classes={num_classes}. For a single sigmoid output (binary "
            "yes/no) use task='multilabel' with num_classes=1."
        )
    return num_classes


def _pool_layer(pooling: str | None, rank: int | None):
    """The reduction for a features tensor of ``rank`` (batch included), or None."""
    keras = backend.keras()
    if pooling is None or rank == 2:
        return None  # already (batch, features), or the caller wants the map itself
    if rank is None:
        raise UsageError(
            "The features output has an unknown rank, so it cannot be pooled. Pass "
            "pooling=None, or a head= that knows how to reduce it."
        )
    if pooling == "flatten":
        return keras.layers.Flatten(name="head_pool")
    kinds = {
        ("avg", 3): keras.layers.GlobalAveragePooling1D,
        ("avg", 4): keras.layers.GlobalAveragePooling2D,
        ("avg", 5): keras.layers.GlobalAveragePooling3D,
        ("max", 3): keras.layers.GlobalMaxPooling1D,
        ("max", 4): keras.layers.GlobalMaxPooling2D,
        ("max", 5): keras.layers.GlobalMaxPooling3D,
    }
    cls = kinds.get((pooling, rank))
    if cls is None:
        raise UsageError(
            f"pooling={pooling!r} needs a 3-D to 5-D features output (batch included). "
            f"Received: rank {rank}. Use pooling='flatten' or None."
        )
    return cls(name="head_pool")


def attach_head(
    features,
    num_classes: int | None = None,
    *,
    hidden: Sequence[int] | int = (100,),
    pooling: str | None = "flatten",
    dropout: float = 0.0,
    task: str = "classification",
    activation: str | Callable = "relu",
    head: Callable | None = None,
    name: str | None = None,
):
    """Put a new trainable head on a feature model.

    The features model becomes one nested layer (keeping its own name) that is called
    with ``training=False``: its BatchNormalization layers stay in inference mode and
    their moving statistics are never updated, even after :func:`modelzoo.unfreeze`
    for fine-tuning. Trainability of ``features`` is left as it is (``modelzoo.load``
    returns it frozen). Multi-input features are supported: the new model has one input
    per features input, with the same names, shapes and dtypes.

    The head is ``head_pool`` (when needed) -> ``head_dense_i`` (+ ``head_dropout_i``
    when ``dropout > 0``) per hidden size -> ``head_output``. With ``hidden=()`` and
    ``dropout > 0`` one ``head_dropout`` precedes the output. ``head_output`` computes
    in float32, so the head stays numerically safe under a mixed-precision policy.

    Args:
        features: a tf_keras Model, usually frozen and sliced.
        num_classes: classes for ``"classification"`` (>= 2, softmax) and
            ``"multilabel"`` (>= 1, sigmoid; 1 = binary yes/no); outputs for
            ``"regression"`` (linear). Not needed with ``head``.
        hidden: sizes of the dense layers between pooling and output (an int means one).
        pooling: ``"flatten"``, ``"avg"`` (global average), ``"max"`` (global max) or
            None (keep the feature map; Dense then acts on its last axis). Features that
            are already 2-D (batch, n) are not pooled.
        dropout: dropout rate after each hidden layer, in [0, 1).
        task: ``"classification"``, ``"multilabel"`` or ``"regression"``.
        activation: activation of the hidden dense layers.
        head: a Keras layer (or any callable on a Keras tensor) that maps the raw
            features output to the model's output; ``pooling``, ``hidden``, ``dropout``,
            ``activation`` and ``num_classes`` are then ignored.
        name: name of the new model; default ``"<features>_with_head"``.

    Returns:
        A new ``tf_keras.Model`` (not compiled; see :func:`compile_defaults`).

    Raises:
        UsageError: an argument cannot work (checked before any layer is built), or
            ``features`` has several outputs and no ``head`` is given.
    """
    keras = backend.keras()
    tf = backend.tf()
    _check_features(features)
    out_specs = tf.nest.flatten(features.output)
    if head is not None:
        if not callable(head):
            raise UsageError(
                "head must be a Keras layer or a callable taking a tensor. "
                f"Received: {type(head).__name__}."
            )
    else:
        if task not in TASKS:
            raise UsageError(f"task must be one of {TASKS}. Received: task={task!r}.")
        num_classes = _check_num_classes(num_classes, task)
        hidden = _check_hidden(hidden)
        if pooling not in POOLINGS:
            raise UsageError(f"pooling must be one of {POOLINGS}. Received: {pooling!r}.")
        if not isinstance(dropout, int | float) or isinstance(dropout, bool):
            raise UsageError(f"dropout must be a float in [0, 1). Received: {dropout!r}.")
        if not 0.0 <= dropout < 1.0:
            raise UsageError(f"dropout must be in [0, 1). Received: dropout={dropout!r}.")
        try:
            keras.activations.get(activation)
        except (ValueError, TypeError) as exc:
            raise UsageError(
                f"Unknown activation {activation!r}. Use a Keras activation name such as "
                "'relu', 'gelu' or 'tanh', or a callable."
            ) from exc
        if len(out_specs) != 1:
            raise UsageError(
                f"features {features.name!r} has {len(out_specs)} outputs; the built-in head "
                "needs one. Slice at a single layer, or pass head= a callable that takes "
                "the list of outputs."
            )
        pool = _pool_layer(pooling, out_specs[0].shape.rank)
        shape = out_specs[0].shape
        if pooling == "flatten" and pool is not None and None in shape[1:]:
            # Flatten of an unknown size gives Dense an undefined input dimension
            raise UsageError(
                f"features {features.name!r} have shape {tuple(shape)}: sizes unknown until "
                "an image arrives cannot be flattened for the Dense head. Build the base at a "
                "fixed input_shape (modelzoo.load uses the manifest's), or use "
                "pooling='avg' or 'max'."
            )

    inputs = tf.nest.map_structure(
        lambda t: keras.Input(shape=t.shape[1:], dtype=t.dtype, name=t.name.split(":")[0]),
        features.input,
    )
    x = features(inputs, training=False)

    if head is not None:
        outputs = head(x)
        if not all(_is_keras_tensor(t) for t in tf.nest.flatten(outputs)):
            raise UsageError(
                "head must return Keras tensor(s) when called on the features output. "
                f"Received: {type(outputs).__name__}."
            )
    else:
        if pool is not None:
            x = pool(x)
        for i, size in enumerate(hidden, start=1):
            x = keras.layers.Dense(size, activation=activation, name=f"head_dense_{i}")(x)
            if dropout > 0:
                x = keras.layers.Dropout(dropout, name=f"head_dropout_{i}")(x)
        if not hidden and dropout > 0:
            x = keras.layers.Dropout(dropout, name="head_dropout")(x)
        outputs = keras.layers.Dense(
            num_classes,
            activation=_OUTPUT_ACTIVATION[task],
            dtype="float32",
            name="head_output",
        )(x)
    model = keras.Model(inputs, outputs, name=name or f"{features.name}_with_head")
    logger.debug("attached head to %s -> %s", features.name, model.name)
    return model


def label_format(y) -> str:
    """Whether classification labels are integer class ids or one-hot rows.

    Args:
        y: labels as a NumPy array / list / tensor (first axis = samples), a
            ``tf.data.Dataset`` yielding ``(x, y)`` or ``(x, y, weights)``, or a
            ``tf.TensorSpec`` of the labels.

    Returns:
        ``"sparse"`` for class ids (shape ``(n,)`` or ``(n, 1)``), ``"categorical"`` for
        one-hot rows (shape ``(n, classes)``). For datasets only the element spec is
        read: a floating last axis of known size > 1 (or any rank >= 2 last axis > 1)
        is one-hot; integer vectors (batched class ids) and scalars are sparse.

    Raises:
        UsageError: the labels are not class labels (scalar, non-integer ids, dict...).
    """
    tf = backend.tf()
    if isinstance(y, tf.data.Dataset):
        spec = y.element_spec
        if isinstance(spec, tuple | list):
            if len(spec) < 2:
                raise UsageError(
                    "The dataset yields a single element; label_format needs (x, y) pairs. "
                    f"Received element_spec={spec!r}."
                )
            spec = spec[1]
        y = spec
    if isinstance(y, tf.TensorSpec):
        return _spec_format(y)
    import numpy as np

    try:
        arr = np.asarray(y)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"Cannot read labels of type {type(y).__name__}.") from exc
    if arr.ndim == 0 or arr.dtype == object:
        raise UsageError(
            "Labels must be an array with one entry (or one-hot row) per sample. "
            f"Received: {type(y).__name__} with shape {arr.shape}, dtype {arr.dtype}."
        )
    if arr.ndim >= 2 and arr.shape[-1] > 1:
        return "categorical"
    if arr.ndim > 2:
        raise UsageError(f"Labels of shape {arr.shape} are neither class ids nor one-hot rows.")
    if arr.size and np.issubdtype(arr.dtype, np.floating) and not np.all(arr == np.round(arr)):
        raise UsageError(
            f"Class ids must be whole numbers; these labels (shape {arr.shape}) are not. "
            "For real-valued targets use task='regression'."
        )
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise UsageError(
            f"Class ids must be numbers. Received dtype {arr.dtype}; map names to ids "
            "first (e.g. with sklearn's LabelEncoder)."
        )
    return "sparse"


def _spec_format(spec) -> str:
    shape = spec.shape
    if shape.rank is None:
        raise UsageError(f"Cannot tell the label format of a spec with unknown rank: {spec}.")
    if shape.rank == 0:
        return "sparse"
    last = shape[-1]
    if last is None or last == 1:
        return "sparse"
    if shape.rank >= 2 or spec.dtype.is_floating:
        return "categorical"
    # (k,) integers: a fixed-size batch of class ids (one-hot rows are usually float).
    return "sparse"


def compile_defaults(
    model,
    *,
    task: str = "classification",
    labels: str = "categorical",
    learning_rate: float = 1e-3,
    metrics: Sequence[Any] | None = None,
    optimizer: Any = None,
    steps_per_execution: int = 1,
):
    """Compile ``model`` with Adam and the loss/metrics that fit the task.

    =================  ==========================================  ====================
    task               loss                                        default metrics
    =================  ==========================================  ====================
    classification     categorical_crossentropy (one-hot labels)   accuracy
                       sparse_categorical_crossentropy (class ids)
    multilabel         binary_crossentropy                         accuracy (binary)
    regression         mean_squared_error                          mae
    =================  ==========================================  ====================

    Call it inside ``strategy.scope()`` when training distributed, so the optimizer's
    variables are created there.

    Args:
        model: a tf_keras model (e.g. from :func:`attach_head`).
        task: ``"classification"``, ``"multilabel"`` or ``"regression"``.
        labels: ``"categorical"`` (one-hot) or ``"sparse"`` (integer ids); only
            classification uses it. :func:`label_format` tells them apart.
        learning_rate: Adam's learning rate (> 0).
        metrics: metrics to use instead of the defaults.
        optimizer: an optimizer to use instead of a new Adam, e.g. the model's own to
            recompile without losing its state (``iterations``, moments).
        steps_per_execution: training steps per call into TensorFlow (Keras's compile
            argument); :func:`modelzoo.distribute.replicas.steps_per_execution_for` suggests one.

    Returns:
        The same model, compiled.

    Raises:
        UsageError: an unknown task or label format, ``labels="sparse"`` for another
            task than classification, a non-positive learning rate, or a
            ``steps_per_execution`` that is not a positive integer.
    """
    keras = backend.keras()
    if task not in TASKS:
        raise UsageError(f"task must be one of {TASKS}. Received: task={task!r}.")
    if labels not in _LABEL_FORMATS:
        raise UsageError(
            f"labels must be 'categorical' (one-hot) or 'sparse' (integer ids). Received: "
            f"labels={labels!r}. modelzoo.models.heads.label_format(y) detects it."
        )
    if labels == "sparse" and task != "classification":
        raise UsageError(
            f"labels='sparse' only applies to task='classification'. Received: task={task!r}."
        )
    if (
        isinstance(learning_rate, bool)
        or not isinstance(learning_rate, int | float)
        or not learning_rate > 0
    ):
        raise UsageError(f"learning_rate must be > 0. Received: {learning_rate!r}.")
    if (
        isinstance(steps_per_execution, bool)
        or not isinstance(steps_per_execution, int)
        or steps_per_execution < 1
    ):
        raise UsageError(
            f"steps_per_execution must be a positive integer. Received: {steps_per_execution!r}."
        )

    if task == "classification" and labels == "sparse":
        loss = keras.losses.SparseCategoricalCrossentropy()
        default = [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
    elif task == "classification":
        loss = keras.losses.CategoricalCrossentropy()
        default = [keras.metrics.CategoricalAccuracy(name="accuracy")]
    elif task == "multilabel":
        loss = keras.losses.BinaryCrossentropy()
        default = [keras.metrics.BinaryAccuracy(name="accuracy")]
    else:
        loss = keras.losses.MeanSquaredError()
        default = [keras.metrics.MeanAbsoluteError(name="mae")]
    # Weighted metrics equal plain ones without sample weights, and let weight-0
    # padding (static TPU batches, see TransferLearner) count for nothing.
    model.compile(
        optimizer=optimizer or keras.optimizers.Adam(learning_rate=float(learning_rate)),
        loss=loss,
        weighted_metrics=list(metrics) if metrics is not None else default,
        steps_per_execution=steps_per_execution,
    )
    return model
