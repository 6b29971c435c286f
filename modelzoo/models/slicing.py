"""Look inside tf_keras models, cut them at named layers (nested models too), freeze/unfreeze.

Layers are addressed by *paths*: a top-level layer by its name (``"conv_pw_13_relu"``),
a layer inside a nested model by the names along the way joined with ``/``
(``"mobilenetv2_0.35_32/block_13_expand_relu"``), to any depth. Paths are what
:func:`layers` lists and what :func:`slice`, :func:`unfreeze` and :func:`find_layer`
accept.

Keras lets one layer (or nested model) be called several times. Slicing follows the
single call a layer has *inside the graph of the model being sliced* (the node that the
model's own forward pass runs); a layer called more than once there is ambiguous and
refused with a :class:`~modelzoo.errors.UsageError`.
"""

from __future__ import annotations

import fnmatch
import logging
from dataclasses import dataclass
from typing import Any

from .. import backend
from ..errors import LayerNotFoundError, UsageError, nearest

__all__ = [
    "SEPARATOR",
    "LayerInfo",
    "layers",
    "slice",
    "freeze",
    "unfreeze",
    "has_layer",
    "find_layer",
    "require_model",
]

logger = logging.getLogger(__name__)

#: Joins the names along a path into nested models.
SEPARATOR = "/"

Shape = tuple[int | None, ...]


@dataclass(frozen=True)
class LayerInfo:
    """One layer of a model, as listed by :func:`layers`.

    Attributes:
        index: position in the flattened walk (parents before their children), counted
            before any filter is applied, so indices stay stable across filters.
        name: the layer's path (``outer/inner`` for layers inside nested models).
        type: the layer's class name (``"Conv2D"``, ``"Functional"``...).
        output_shape: the output shape in the parent model's graph (batch dimension
            ``None``); a list of shapes for layers with several outputs; None when the
            layer has never been called.
        params: number of weights (trainable or not) the layer owns, nested ones included.
        trainable: whether the layer's weights are trained: its own flag *and* the flags
            of every model around it.
        depth: 0 for top-level layers, 1 inside a nested model, and so on.
        is_model: the layer is itself a model (a nested model you can look into).
    """

    index: int
    name: str
    type: str
    output_shape: Shape | list[Shape] | None
    params: int
    trainable: bool
    depth: int
    is_model: bool


@dataclass(frozen=True)
class _Entry:
    layer: Any
    path: str
    depth: int
    parent: Any
    trainable: bool
    ancestors: tuple[int, ...]  # walk indices of the enclosing nested models


# -- walking and paths ------------------------------------------------------------------


def _is_model(layer) -> bool:
    return isinstance(layer, backend.keras().Model)


def _is_input_layer(layer) -> bool:
    return isinstance(layer, backend.keras().layers.InputLayer)


def _is_batchnorm(layer) -> bool:
    # By class name along the MRO: covers BatchNormalization and SyncBatchNormalization
    # (whose common base is not public in tf_keras) without importing private modules.
    return any(
        cls.__name__ in ("BatchNormalization", "BatchNormalizationBase")
        for cls in type(layer).__mro__
    )


def require_model(model, func: str) -> None:
    """Raise a one-line :class:`UsageError` unless ``model`` is a tf_keras model."""
    if not _is_model(model):
        raise UsageError(
            f"{func}() needs a tf_keras Model. Received: {type(model).__name__} {model!r:.80}. "
            "Pass a model built with tf_keras (not keras 3 / tf.keras), or a model name to "
            "modelzoo.load()."
        )


def _walk(model, *, expand_nested: bool = True) -> list[_Entry]:
    """Every layer of ``model`` in order, nested models' layers right after the model."""
    entries: list[_Entry] = []

    def visit(container, prefix: str, depth: int, trainable: bool, ancestors: tuple[int, ...]):
        for layer in container.layers:
            effective = trainable and layer.trainable
            index = len(entries)
            path = prefix + layer.name
            entries.append(_Entry(layer, path, depth, container, effective, ancestors))
            if expand_nested and _is_model(layer):
                visit(layer, path + SEPARATOR, depth + 1, effective, (*ancestors, index))

    visit(model, "", 0, model.trainable, ())
    return entries


def _match(container, path: str) -> list | None:
    """The chain of layers from ``container`` down to ``path``, or None."""
    children = container.layers
    # An exact name wins over a path split, so names that contain "/" still work.
    for layer in children:
        if layer.name == path:
            return [layer]
    for layer in children:
        if _is_model(layer) and path.startswith(layer.name + SEPARATOR):
            rest = _match(layer, path[len(layer.name) + len(SEPARATOR) :])
            if rest is not None:
                return [layer, *rest]
    return None


def _not_found(model, path: str) -> LayerNotFoundError:
    entries = _walk(model)
    suggestions = nearest(path, [entry.path for entry in entries])
    # A user who typed an inner layer's bare name (no model prefix) gets its full path
    # first, however different the strings look.
    tail = path.rsplit(SEPARATOR, 1)[-1]
    for entry in entries:
        if entry.layer.name == tail and entry.path not in suggestions:
            suggestions.insert(0, entry.path)
    return LayerNotFoundError(path, suggestions=suggestions[:3], model=model.name)


def _chain(model, at) -> list:
    """Resolve one ``at`` (path or int index) to the chain of layers leading to it."""
    if isinstance(at, bool) or not isinstance(at, str | int):
        raise UsageError(
            "A layer is named by a path string ('conv_pw_13_relu', 'outer/inner') or an "
            f"integer index into model.layers. Received: {at!r} ({type(at).__name__})."
        )
    if isinstance(at, int):
        top = model.layers
        if not -len(top) <= at < len(top):
            raise UsageError(
                f"Received: index {at}, but {model.name} has {len(top)} top-level layers "
                f"(valid: {-len(top)} to {len(top) - 1}; -1 is the last). Use a path to "
                "reach layers inside nested models."
            )
        return [top[at]]
    chain = _match(model, at)
    if chain is None:
        raise _not_found(model, at)
    return chain


def has_layer(model, path: str) -> bool:
    """Whether ``model`` has a layer at ``path`` (``name`` or ``outer/inner``).

    Args:
        model: a tf_keras model.
        path: a layer name, or names joined with ``/`` into nested models.

    Returns:
        True if the path resolves to a layer.
    """
    require_model(model, "has_layer")
    return isinstance(path, str) and _match(model, path) is not None


def find_layer(model, path: str | int):
    """The layer at ``path`` in ``model``.

    Args:
        model: a tf_keras model.
        path: a layer name, names joined with ``/`` into nested models, or an integer
            index into ``model.layers`` (top level only).

    Returns:
        The ``tf_keras.layers.Layer`` object itself (not a copy).

    Raises:
        LayerNotFoundError: no such layer; the error suggests the nearest paths.
        UsageError: ``path`` is neither a string nor an int, or the index is out of range.
    """
    require_model(model, "find_layer")
    return _chain(model, path)[-1]


# -- listing ----------------------------------------------------------------------------


def _nodes_in(container, layer) -> list:
    """The calls of ``layer`` that belong to ``container``'s own graph.

    Functional models (Sequential included) record the nodes of their forward pass by
    depth; this is private tf_keras state but the only reliable way to tell the call
    that matters from the extra calls a shared layer may have elsewhere.
    """
    by_depth = getattr(container, "_nodes_by_depth", None) or {}
    return [node for nodes in by_depth.values() for node in nodes if node.layer is layer]


def _shape_of(outputs) -> Shape | list[Shape] | None:
    flat = backend.tf().nest.flatten(outputs)
    shapes = []
    for tensor in flat:
        shape = getattr(tensor, "shape", None)
        rank = getattr(shape, "rank", None)
        shapes.append(None if rank is None else tuple(shape.as_list()))
    if len(shapes) == 1:
        return shapes[0]
    return shapes


def _output_shape(entry: _Entry) -> Shape | list[Shape] | None:
    nodes = _nodes_in(entry.parent, entry.layer)
    if nodes:
        return _shape_of(nodes[0].outputs)
    try:
        # Not part of the parent's graph (e.g. a subclassed parent): Keras' own view.
        shape = entry.layer.output_shape
    except (AttributeError, RuntimeError, ValueError):
        return None
    if isinstance(shape, list):
        return [tuple(s) for s in shape]
    return tuple(shape) if shape is not None else None


def _params(layer) -> int:
    try:
        return int(layer.count_params())
    except ValueError:  # never built: it owns no weights yet
        return 0


def layers(model, *, filter: str | None = None, expand_nested: bool = True):
    """List a model's layers with their paths, shapes and parameter counts.

    Args:
        model: a tf_keras model (``modelzoo.layers`` also takes a name or file path, see
            :func:`modelzoo.models.loading.layers`).
        filter: a glob (``fnmatch``, case-insensitive) matched against each layer's
            name and its full path, e.g. ``"*relu"`` or ``"mobilenet*/block_1*"``.
        expand_nested: also list the layers inside nested models (depth > 0).

    Returns:
        A list of :class:`LayerInfo`, in walk order. The ``params`` of the depth-0
        entries sum to ``model.count_params()``.

    Raises:
        UsageError: ``model`` is not a tf_keras model.
    """
    require_model(model, "layers")
    if filter is not None and not isinstance(filter, str):
        raise UsageError(f"filter must be a glob string like '*relu'. Received: {filter!r}.")
    pattern = filter.lower() if filter else None
    result = []
    for index, entry in enumerate(_walk(model, expand_nested=expand_nested)):
        if pattern is not None and not (
            fnmatch.fnmatchcase(entry.path.lower(), pattern)
            or fnmatch.fnmatchcase(entry.layer.name.lower(), pattern)
        ):
            continue
        result.append(
            LayerInfo(
                index=index,
                name=entry.path,
                type=type(entry.layer).__name__,
                output_shape=_output_shape(entry),
                params=_params(entry.layer),
                trainable=entry.trainable,
                depth=entry.depth,
                is_model=_is_model(entry.layer),
            )
        )
    return result


# -- slicing ----------------------------------------------------------------------------


def _only_node(container, layer):
    if not getattr(container, "_is_graph_network", False):
        hint = (
            "build it first (give the first layer an input_shape, or call model.build((None, ...)))"
            if isinstance(container, backend.keras().Sequential)
            else "slice at the subclassed model itself, or rebuild it with the functional API"
        )
        raise UsageError(
            f"Cannot slice inside {container.name!r}: it is a {type(container).__name__} "
            f"without a static layer graph; {hint}."
        )
    nodes = _nodes_in(container, layer)
    if not nodes:
        raise UsageError(
            f"Layer {layer.name!r} belongs to {container.name!r} but is not used in its "
            "forward pass, so there is no output to slice at. Pick a layer listed with a "
            "shape by modelzoo.layers(model)."
        )
    if len(nodes) > 1:
        raise UsageError(
            f"Layer {layer.name!r} is called {len(nodes)} times inside {container.name!r} "
            "(a shared layer), so slicing at it is ambiguous. Slice at a layer that is "
            "called once, e.g. the layer right after the call you want."
        )
    return nodes[0]


def _call_arguments(node) -> list:
    return backend.tf().nest.flatten((node.call_args, node.call_kwargs))


def _upstream(tensors) -> set[int]:
    """ids of the layers whose calls (transitively) produce ``tensors``."""
    seen: set[int] = set()
    found: set[int] = set()
    stack = [t for t in backend.tf().nest.flatten(tensors) if hasattr(t, "_keras_history")]
    while stack:
        history = stack.pop()._keras_history
        node = history.layer._inbound_nodes[history.node_index]
        if id(node) in seen:
            continue
        seen.add(id(node))
        found.add(id(history.layer))
        stack.extend(t for t in _call_arguments(node) if hasattr(t, "_keras_history"))
    return found


def _outputs_in(container, chains: list[list]) -> list:
    """Tensors in ``container``'s graph for each chain of layers (one output per chain).

    A chain ending at a top-level layer reads that layer's output tensor. A chain that
    goes into a nested model becomes a sub-model of the nested one (its input up to the
    inner layers) called on the very arguments the nested model receives in this graph;
    so whatever precedes the nested model (preprocessing, other layers) stays in the path
    and Keras never sees a "graph disconnected" cut. Chains into the same nested model
    share one sub-model, which keeps layer names unique in the result.
    """
    keras = backend.keras()
    results: list = [None] * len(chains)
    groups: dict[int, list[int]] = {}
    for i, chain in enumerate(chains):
        node = _only_node(container, chain[0])
        if len(chain) == 1:
            results[i] = node.outputs
        else:
            groups.setdefault(id(chain[0]), []).append(i)
    if not groups:
        return results
    # Tensors the result will contain besides the sub-models: if one of them needs the
    # whole nested model (another output lies after it), the truncated copy cannot take
    # its name, as names must be unique within a model.
    needed = _upstream(
        [results]
        + [_call_arguments(_only_node(container, chains[m[0]][0])) for m in groups.values()]
    )
    for members in groups.values():
        nested = chains[members[0]][0]
        node = _only_node(container, nested)
        inner = _outputs_in(nested, [chains[i][1:] for i in members])
        # Named like the nested model where possible so paths stay valid in the result.
        sub_name = nested.name if id(nested) not in needed else f"{nested.name}_cut"
        if len(members) == 1:
            sub = keras.Model(nested.input, inner[0], name=sub_name)
            outs = [sub(*node.call_args, **node.call_kwargs)]
        else:
            sub = keras.Model(nested.input, inner, name=sub_name)
            outs = sub(*node.call_args, **node.call_kwargs)
        for i, out in zip(members, outs, strict=True):
            results[i] = out
    return results


def slice(model, at, *, name: str | None = None):
    """Cut ``model`` at one or more layers: a new model from its input to their outputs.

    The result reuses the original layer objects, so it shares their weights (nothing
    is copied) and its input is the original model's input. Cutting inside nested
    models works at any depth, e.g. a ``Sequential([MobileNetV2(...), ...])`` at
    ``"mobilenetv2_0.35_32/block_13_expand_relu"``: the layers that run before the
    nested model (preprocessing...) stay in the path, and the nested model is replaced
    by a truncated model of the same name, so paths keep working on the result (named
    ``<nested>_cut`` instead when another requested output needs the whole nested model,
    since names must be unique).

    Args:
        model: a functional or Sequential tf_keras model with a defined input.
        at: where to cut: a layer name; an ``outer/inner`` path into nested models; an
            int indexing the top-level ``model.layers`` (negative counts from the end,
            ``-1`` is the last top-level layer; Sequential models do not list their
            input layer there, functional ones do); or a list/tuple of those, which gives
            a multi-output model with one output per entry (a list of one gives a
            single-output model, as in Keras).
        name: name of the new model; default ``"<model>_<layer>"`` for a single cut and
            ``"<model>_sliced"`` for several.

    Returns:
        A new ``tf_keras.Model`` sharing layers and weights with ``model``.

    Raises:
        LayerNotFoundError: a path does not exist (the error suggests the nearest paths).
        UsageError: ``at`` has the wrong type or is empty; an index is out of range; the
            cut goes inside a subclassed or unbuilt model; or a layer on the path is
            called more than once in its model (ambiguous).
    """
    require_model(model, "slice")
    many = isinstance(at, list | tuple)
    targets = list(at) if many else [at]
    if not targets:
        raise UsageError("slice() needs at least one layer. Received: at=[].")
    chains = [_chain(model, target) for target in targets]
    outputs = _outputs_in(model, chains)
    if name is None:
        name = f"{model.name}_sliced" if many else f"{model.name}_{chains[0][-1].name}"
    keras = backend.keras()
    sliced = keras.Model(model.input, outputs if many else outputs[0], name=name)
    logger.debug("sliced %s at %r -> %s", model.name, at, name)
    return sliced


# -- trainability -----------------------------------------------------------------------


def freeze(model):
    """Make every layer of ``model`` (nested ones included) non-trainable.

    Frozen BatchNormalization layers run in inference mode in tf_keras. Recompile the
    model after changing trainability for it to take effect in ``fit``.

    Args:
        model: a tf_keras model (or layer).

    Returns:
        The same model, for chaining.
    """
    model.trainable = False
    return model


def unfreeze(
    model,
    *,
    top: int | None = None,
    from_layer: str | int | None = None,
    keep_batchnorm_frozen: bool = True,
):
    """Make the last layers of ``model`` trainable (for fine-tuning); freeze the rest.

    Layers are counted in the flattened order of :func:`layers`, looking inside nested
    models and skipping input layers and the nested-model containers themselves; a model
    made by ``attach_head`` therefore counts its head layers last. Recompile the model
    afterwards (with a small learning rate) for the change to take effect.

    Args:
        model: a tf_keras model, possibly with nested models.
        top: unfreeze the last ``top`` layers (a positive int).
        from_layer: unfreeze this layer (name, ``outer/inner`` path or top-level index)
            and every layer after it; a nested model's path means its first layer.
        keep_batchnorm_frozen: leave BatchNormalization layers frozen (trainable=False,
            so tf_keras runs them in inference mode and keeps their moving statistics),
            the usual choice when fine-tuning with small batches.

    Returns:
        The same model, for chaining.

    Raises:
        UsageError: not exactly one of ``top`` / ``from_layer`` is given, or ``top`` is
            not a positive int.
        LayerNotFoundError: ``from_layer`` does not exist.
    """
    require_model(model, "unfreeze")
    if (top is None) == (from_layer is None):
        raise UsageError(
            "unfreeze() needs exactly one of top=N (the last N layers) or from_layer=PATH. "
            f"Received: top={top!r}, from_layer={from_layer!r}."
        )
    entries = _walk(model)
    leaves = [
        i
        for i, entry in enumerate(entries)
        if not _is_model(entry.layer) and not _is_input_layer(entry.layer)
    ]
    if top is not None:
        if isinstance(top, bool) or not isinstance(top, int) or top < 1:
            raise UsageError(f"top must be a positive int. Received: top={top!r}.")
        chosen = set(leaves[-top:])
    else:
        chain = _chain(model, from_layer)
        path = SEPARATOR.join(layer.name for layer in chain)
        start = next(i for i, e in enumerate(entries) if e.layer is chain[-1] and e.path == path)
        chosen = {i for i in leaves if i >= start}

    # Keras cascades `trainable` from a model to everything inside it, so open
    # everything first, then close leaves and the containers with nothing open inside.
    model.trainable = True
    open_containers: set[int] = set()
    for i in leaves:
        layer = entries[i].layer
        trainable = i in chosen and not (keep_batchnorm_frozen and _is_batchnorm(layer))
        layer.trainable = trainable
        if trainable:
            open_containers.update(entries[i].ancestors)
    for i, entry in enumerate(entries):
        if _is_model(entry.layer) and i not in open_containers:
            entry.layer.trainable = False
    logger.debug(
        "unfroze %d of %d layers of %s", len(chosen & set(leaves)), len(leaves), model.name
    )
    return model
