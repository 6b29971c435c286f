"""TensorFlow.js compatibility: which Keras models TF.js can rebuild, and topology rewrites.

:func:`~modelzoo.export.tfjs.check_tfjs` and :func:`~modelzoo.export.tfjs.export_tfjs`
refuse a model
before anything is written when TF.js 4.22 could not rebuild it (Lambda layers, raw
TensorFlow ops, custom or subclassed classes, layers and options TF.js lacks or computes
differently), listing every offending layer. The topology of a model that passes is then
rewritten so that TF.js can parse its training-only details. :mod:`modelzoo.export.tfjs`
re-exports :data:`TFJS_LAYERS` and :data:`TFJS_ACTIVATIONS`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

from ..errors import ExportError, UsageError

__all__ = ["TFJS_LAYERS", "TFJS_ACTIVATIONS", "checked_topology", "check_portable"]

logger = logging.getLogger(__name__)

#: Keras layer classes that TF.js 4.22 rebuilds from a layers-model topology.
TFJS_LAYERS = frozenset(
    """
    Functional Sequential InputLayer Dense Activation Dropout SpatialDropout1D Flatten
    Reshape Permute RepeatVector Embedding Masking
    Conv1D Conv2D Conv2DTranspose Conv3D Conv3DTranspose SeparableConv2D DepthwiseConv2D
    Cropping2D UpSampling2D ZeroPadding2D ConvLSTM2D
    ReLU LeakyReLU PReLU ELU ThresholdedReLU Softmax
    Add Average Concatenate Maximum Minimum Multiply Dot
    BatchNormalization LayerNormalization GaussianNoise GaussianDropout AlphaDropout
    AveragePooling1D AveragePooling2D AveragePooling3D MaxPooling1D MaxPooling2D
    MaxPooling3D GlobalAveragePooling1D GlobalAveragePooling2D GlobalMaxPooling1D
    GlobalMaxPooling2D
    SimpleRNN GRU LSTM RNN SimpleRNNCell GRUCell LSTMCell StackedRNNCells
    Bidirectional TimeDistributed
    Rescaling Resizing CenterCrop
    """.split()  # noqa: SIM905 - a word list reads better than one name per line
)

#: Activation names whose TF.js implementation matches Keras (checked numerically in
#: the tests). Keras's ``hard_sigmoid`` and ``gelu`` use different formulas in TF.js.
TFJS_ACTIVATIONS = frozenset(
    """
    linear relu relu6 elu selu sigmoid softmax softplus softsign tanh swish mish
    """.split()  # noqa: SIM905
)

# Layers created when TensorFlow functions are applied to Keras tensors (``x + 1``,
# ``tf.reshape(x, ...)``, ``x[:, 0]``): they wrap a Python callable, like Lambda.
_TF_OP_LAYERS = frozenset(
    {"TFOpLambda", "SlicingOpLambda", "ClassMethod", "InstanceMethod", "InstanceProperty"}
)

# TF.js class names of the non-layer objects a layer config may carry.
_TFJS_INITIALIZERS = frozenset(
    """
    Zeros Ones Constant RandomNormal RandomUniform TruncatedNormal VarianceScaling
    GlorotNormal GlorotUniform HeNormal HeUniform LeCunNormal LeCunUniform Orthogonal
    Identity
    """.split()  # noqa: SIM905
)
_KERAS_TO_TFJS_INITIALIZER = {"LecunNormal": "LeCunNormal", "LecunUniform": "LeCunUniform"}
_TFJS_CONSTRAINTS = frozenset({"MaxNorm", "MinMaxNorm", "NonNeg", "UnitNorm"})


# --------------------------------------------------------------------------- checks


def checked_topology(model: Any) -> dict[str, Any]:
    """The model's Keras JSON topology, after every TF.js compatibility check passed."""
    _check_model_object(model)
    problems = list(_class_problems(model, prefix=""))
    try:
        topology = json.loads(model.to_json())
    except Exception as exc:  # a custom object without get_config, typically
        if not problems:
            problems.append((model.name, f"its topology cannot be serialised ({exc})"))
        topology = None
    if topology is not None:
        layers = (topology.get("config") or {}).get("layers", [])
        problems += [p for p in _config_problems(layers) if p not in problems]
    if problems:
        lines = [f"{path}: {why}" for path, why in problems]
        raise ExportError(
            f"Model {model.name!r} cannot run in TensorFlow.js ({len(lines)} problem"
            f"{'s' if len(lines) > 1 else ''}):\n  - "
            + "\n  - ".join(lines)
            + "\nRebuild those parts from built-in Keras layers (supported classes: "
            "modelzoo.export.tfjs.TFJS_LAYERS), then export again.",
            layer=problems[0][0],
            problems=lines,
        )
    return topology


def _check_model_object(model: Any) -> None:
    from ..backend import keras

    k = keras()
    if not isinstance(model, k.Model):
        hint = ""
        if type(model).__module__.startswith(("keras", "tensorflow")):
            hint = " (Keras 3 / tf.keras models are not supported: build it with tf_keras)"
        raise UsageError(
            f"export_tfjs needs a tf_keras model. Received: {type(model).__module__}."
            f"{type(model).__qualname__}{hint}. Load or build the model with modelzoo or "
            "`import tf_keras as keras`."
        )
    if type(model).__name__ not in ("Functional", "Sequential") or not _is_builtin(model):
        raise ExportError(
            f"Model {model.name!r} is a subclassed model ({_qualname(model)}); TF.js can only "
            "rebuild Functional and Sequential models. Rebuild it with keras.Model(inputs, "
            "outputs) or keras.Sequential, then export again.",
            layer=model.name,
            problems=[f"{model.name}: subclassed model {_qualname(model)}"],
        )
    if not model.built or not model.inputs:
        raise UsageError(
            f"Model {model.name!r} is not built (its input shape is unknown). Call it on "
            "data or give the first layer an input_shape, then export again."
        )


def _is_builtin(obj: Any) -> bool:
    return type(obj).__module__.startswith("tf_keras.")


def _qualname(obj: Any) -> str:
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


def _class_problems(container: Any, *, prefix: str) -> Iterator[tuple[str, str]]:
    """(path, reason) for every layer object TF.js cannot rebuild, depth first."""
    for layer in getattr(container, "layers", []):
        path = f"{prefix}{layer.name}"
        cls = type(layer).__name__
        why = _class_problem(layer)
        if why:
            yield path, why
        if cls in ("Functional", "Sequential"):
            yield from _class_problems(layer, prefix=f"{path}/")
        inner = []
        if cls == "TimeDistributed":
            inner = [layer.layer]
        elif cls == "Bidirectional":
            inner = [layer.forward_layer, layer.backward_layer]
        elif cls == "RNN":  # the one recurrent layer whose cell the user supplies
            inner = list(getattr(layer.cell, "cells", None) or [layer.cell])
        for sub in inner:
            if sub_why := _class_problem(sub):
                yield f"{path}/{sub.name}", sub_why


def _class_problem(layer: Any) -> str | None:
    cls = type(layer).__name__
    if cls == "Lambda":
        return (
            "Lambda layer (arbitrary Python code has no TF.js equivalent); replace it with "
            "built-in layers (e.g. Rescaling, Activation, Reshape)"
        )
    if cls in _TF_OP_LAYERS:
        op = layer.get_config().get("function", "?")
        return (
            f"TensorFlow op {op!r} applied directly to a Keras tensor ({cls}); use a Keras "
            "layer instead (Add, Multiply, Rescaling, Reshape, ...)"
        )
    if not _is_builtin(layer):
        return (
            f"custom layer class {_qualname(layer)} is not a tf_keras built-in; TF.js would "
            "need a JavaScript implementation registered with tf.serialization.registerClass"
        )
    if cls not in TFJS_LAYERS:
        return f"tf_keras layer {cls} has no TensorFlow.js implementation"
    return None


def _config_problems(node: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """Problems visible only in layer configs (activations, ReLU options, GRU, groups)."""
    if isinstance(node, list):
        for item in node:
            yield from _config_problems(item, path)
        return
    config = node.get("config") if isinstance(node, dict) else None
    if not (isinstance(config, dict) and "name" in config and node.get("class_name")):
        return
    cls, here = node["class_name"], f"{path}{config['name']}"
    found = []
    for key in ("activation", "recurrent_activation"):
        act = config.get(key)
        if key in config and not (isinstance(act, str) and act in TFJS_ACTIVATIONS):
            found.append(
                f"activation {act!r} is not available (or differs) in TensorFlow.js; "
                f"supported: {', '.join(sorted(TFJS_ACTIVATIONS))}"
            )
    if cls == "ReLU" and (config.get("negative_slope") or config.get("threshold")):
        found.append(
            "ReLU with negative_slope/threshold: TF.js's ReLU only supports max_value; "
            "use LeakyReLU or ThresholdedReLU"
        )
    if cls in ("GRU", "GRUCell") and config.get("reset_after"):
        found.append(
            "GRU with reset_after=True (the Keras default) is not supported by TF.js; "
            "build it with keras.layers.GRU(..., reset_after=False)"
        )
    if cls.startswith("Conv") and (config.get("groups") or 1) != 1:
        found.append("grouped convolution (groups > 1) is not supported by TensorFlow.js")
    for why in found:
        yield here, why
    # Containers: nested models, wrappers, RNN cells.
    for key in ("layers", "layer", "forward_layer", "backward_layer", "cell", "cells"):
        if key in config:
            yield from _config_problems(config[key], f"{here}/")


# ------------------------------------------------------------------ topology rewrite


#: Global pooling layers whose ``keepdims`` TF.js 4.22 ignores (it always drops the axes).
_GLOBAL_POOLING_RANK = {
    "GlobalAveragePooling1D": 1,
    "GlobalMaxPooling1D": 1,
    "GlobalAveragePooling2D": 2,
    "GlobalMaxPooling2D": 2,
}


def _keepdims_reshape(layer: dict[str, Any], taken: set[str]) -> dict[str, Any] | None:
    """For a global pooling layer with ``keepdims=True``: turn it off and return the
    Reshape layer that puts the pooled axes back (TF.js would silently drop them)."""
    config = layer.get("config")
    rank = _GLOBAL_POOLING_RANK.get(layer.get("class_name"))
    if rank is None or not isinstance(config, dict) or not config.get("keepdims"):
        return None
    config["keepdims"] = False
    shape = (layer.get("build_config") or {}).get("input_shape") or []
    first = config.get("data_format") == "channels_first"
    channels = shape[1 if first else -1] if len(shape) == rank + 2 else None
    channels = channels if isinstance(channels, int) else -1
    target = [channels, *[1] * rank] if first else [*[1] * rank, channels]
    name = f"{config.get('name', 'pooling')}_keepdims"
    while name in taken:
        name += "_"
    taken.add(name)
    return {
        "class_name": "Reshape",
        "config": {"name": name, "trainable": False, "dtype": "float32", "target_shape": target},
    }


def _restore_keepdims(kind: str, config: dict[str, Any]) -> None:
    """Give every keepdims global pooling layer of one model a Reshape after it."""
    layers = config.get("layers")
    if not isinstance(layers, list):
        return
    taken = {str((lay.get("config") or {}).get("name")) for lay in layers if isinstance(lay, dict)}
    out: list[Any] = []
    renamed: dict[str, str] = {}
    for layer in layers:
        out.append(layer)
        reshape = _keepdims_reshape(layer, taken) if isinstance(layer, dict) else None
        if reshape is None:
            continue
        if kind == "Sequential":
            out.append(reshape)
            continue
        # Functional: the Reshape takes each call of the pooling layer, and every layer
        # (and model output) that read the pooling layer reads the Reshape instead.
        pooling = layer.get("name")
        new = reshape["config"]["name"]
        calls = len(layer.get("inbound_nodes") or [])
        reshape["name"] = new
        reshape["inbound_nodes"] = [[[pooling, i, 0, {}]] for i in range(calls)]
        renamed[pooling] = new
        out.append(reshape)
    if len(out) == len(layers):
        return
    config["layers"] = out

    def retarget(ref: Any) -> None:
        if isinstance(ref, list) and ref and isinstance(ref[0], str) and ref[0] in renamed:
            ref[0] = renamed[ref[0]]
        elif isinstance(ref, list):
            for item in ref:
                retarget(item)

    for layer in out:
        if isinstance(layer, dict) and layer.get("name") not in renamed.values():
            retarget(layer.get("inbound_nodes"))
    retarget(config.get("output_layers"))


def check_portable(node: Any) -> None:
    """Rewrite, in place, what TF.js would parse differently or not at all.

    Initializers, regularizers and constraints are used when a layer is created or
    trained, never by inference on loaded weights, but TF.js still parses them: map
    Keras names to TF.js ones and replace what TF.js cannot parse with a neutral value.
    Mixed-precision policies become float32 (TF.js computes in float32). Global pooling
    with ``keepdims=True`` (MobileNet's classifier) becomes pooling plus a Reshape.
    """
    if isinstance(node, list):
        for item in node:
            check_portable(item)
        return
    if not isinstance(node, dict):
        return
    config = node.get("config")
    if node.get("class_name") in ("Functional", "Model", "Sequential") and isinstance(config, dict):
        _restore_keepdims(node["class_name"], config)
    if node.get("class_name") == "SeparableConv2D" and isinstance(config, dict):
        # tf_keras inherits unused kernel_* settings from Conv; TF.js rejects them.
        for key in ("kernel_initializer", "kernel_regularizer", "kernel_constraint"):
            config.pop(key, None)
    for key, value in list(node.items()):
        if key.endswith("_initializer") and isinstance(value, dict):
            cls = value.get("class_name")
            cls = _KERAS_TO_TFJS_INITIALIZER.get(cls, cls)
            cfg = value.get("config") or {}
            if cls == "Constant" and not isinstance(cfg.get("value", 0), int | float):
                # tf_keras writes arrays as a __numpy__ object TF.js cannot use; weights replace it.
                node[key] = {"class_name": "Zeros", "config": {}}
            elif cls in _TFJS_INITIALIZERS:
                value["class_name"] = cls
            else:
                # Overwritten by the loaded weights anyway.
                node[key] = {"class_name": "Zeros", "config": {}}
        elif key.endswith("_regularizer") and isinstance(value, dict):
            node[key] = _portable_regularizer(value)
        elif key.endswith("_constraint") and isinstance(value, dict):
            if value.get("class_name") not in _TFJS_CONSTRAINTS:
                logger.warning(
                    "TF.js has no %s constraint; %s is dropped from the exported topology "
                    "(it only matters when training in the browser).",
                    value.get("class_name"),
                    key,
                )
                node[key] = None
        elif key == "dtype" and isinstance(value, dict):
            # A mixed-precision Policy: variables are float32 in either case.
            node[key] = "float32"
        elif key == "dtype" and value in ("float16", "bfloat16", "float64"):
            node[key] = "float32"
        else:
            check_portable(value)


def _portable_regularizer(value: dict[str, Any]) -> dict[str, Any] | None:
    cls = value.get("class_name")
    cfg = value.get("config") or {}
    if cls in ("L1L2", "L1", "L2"):  # TF.js only knows L1L2, which covers the others
        l1l2 = {k: float(cfg.get(k, 0.0)) for k in ("l1", "l2")}
        return {"class_name": "L1L2", "config": l1l2}
    logger.warning(
        "TF.js has no %s regularizer; it is dropped from the exported topology "
        "(it only matters when training in the browser).",
        cls,
    )
    return None
