"""Look inside a model: feature maps, filters, training curves and a map of its layers.

Pictures are drawn with matplotlib (the optional extra ``pip install 'modelzoo[viz]'``)
on the Agg canvas, never a GUI backend. The layer map is plain text and needs nothing
beyond tf_keras::

    import modelzoo as mz
    from modelzoo import viz

    mz.feature_maps("mobilenet_v1_0.25_32_digits", "conv_pw_1_relu", "digit.png")  # RGB array
    viz.save_feature_maps(model, ["conv_pw_1_relu", "conv_pw_5_relu"], image, "sheet.png")
    mz.plot_filters("mobilenet_v1_0.25_32_digits", "filters.png")      # first Conv2D
    mz.plot_history(learner.history, "history.png")
    print(viz.format_layer_map(viz.layer_map(model)))

Images are raw 0–255 RGB pixels (a file path, or an array ``(H, W, C)`` / ``(N, H, W, C)``);
for a registry model the manifest's preprocessing is applied before the forward pass.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DependencyError, UsageError
from . import plots
from .layer_tree import LayerMapRow, format_layer_map, layer_map, layer_map_tree
from .plots import grid_shape, history_figure

__all__ = [
    "FilterTiles",
    "LayerMapRow",
    "activation_stats",
    "activations",
    "feature_maps",
    "feature_maps_figure",
    "filter_tiles",
    "filters_figure",
    "format_layer_map",
    "grid_shape",
    "history_figure",
    "layer_map",
    "layer_map_tree",
    "plot_filters",
    "plot_history",
    "require_tensorboard",
    "save_feature_maps",
    "save_figure",
    "tensorboard_callback",
]

# -- models, layers and images ----------------------------------------------------------


def _as_model(model_or_name, *, trust_remote_code: bool):
    if isinstance(model_or_name, str | os.PathLike):
        from ..models.loading import load

        return load(model_or_name, trust_remote_code=trust_remote_code)
    from ..models.slicing import require_model

    require_model(model_or_name, "viz")
    return model_or_name


def _resolve_layer(model, layer: str | int) -> str | int:
    """A path :func:`modelzoo.slice` accepts; a bare name inside one nested model works too."""
    from ..models.slicing import SEPARATOR, find_layer, has_layer, layers

    if isinstance(layer, str) and not has_layer(model, layer):
        # A model wrapped by with_preprocessing or a learner keeps its base nested: let
        # the user name the base's layer without the prefix when that is unambiguous.
        tails = [i.name for i in layers(model) if i.name.rsplit(SEPARATOR, 1)[-1] == layer]
        if len(tails) == 1:
            return tails[0]
        find_layer(model, layer)  # raises LayerNotFoundError with suggestions
    return layer


def _preprocessing(model, preprocessing: str | None) -> str:
    from ..models.loading import manifest_of

    if preprocessing not in (None, "auto"):
        return preprocessing
    manifest = manifest_of(model)
    if manifest is None:
        return "none"
    mode = manifest.input.preprocessing
    # load(include_preprocessing=True) bakes the mode in as a layer of this name.
    if any(layer.name == f"preprocess_{mode}" for layer in model.layers):
        return "none"
    return mode


def _input_spec(model) -> tuple[int | None, int | None, int | None]:
    shape = model.input_shape
    if isinstance(shape, list):
        raise UsageError(
            f"{model.name} has {len(shape)} inputs; feature maps need a single image input."
        )
    if len(shape) != 4:
        raise UsageError(
            f"{model.name} takes inputs of shape {tuple(shape)}, not images (N, H, W, C)."
        )
    return shape[1], shape[2], shape[3]


def _is_path(x: Any) -> bool:
    return isinstance(x, str | os.PathLike)


def _image_batch(model, images: Any) -> np.ndarray:
    """Raw pixels ``(N, H, W, C)`` float32 at the model's input size."""
    h, w, c = _input_spec(model)
    if _is_path(images) or (
        isinstance(images, list | tuple) and images and all(_is_path(p) for p in images)
    ):
        from ..models.images import read_images

        paths = [images] if _is_path(images) else list(images)
        size = (h, w) if h and w else None  # a fully convolutional model: native size
        batch = read_images(paths, size)  # type: ignore[arg-type]
        if c == 1:  # files are read as RGB; a one-channel model sees their luminance
            batch = batch.mean(axis=-1, keepdims=True)
        return batch
    try:
        batch = np.asarray(images, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise UsageError(
            f"An image is a file path or an array (H, W, C). Received: {type(images).__name__}."
        ) from exc
    if batch.ndim == 2:
        batch = batch[:, :, None]
    if batch.ndim == 3:
        batch = batch[None]
    if batch.ndim != 4:
        raise UsageError(
            f"Images must be (H, W, C) or (N, H, W, C) arrays. Received: shape {batch.shape}."
        )
    if batch.shape[-1] == 1 and c == 3:
        batch = np.repeat(batch, 3, axis=-1)
    expected = (h, w, c)
    if any(e is not None and e != got for e, got in zip(expected, batch.shape[1:], strict=True)):
        raise UsageError(
            f"{model.name} takes images of shape {tuple(expected)}. Received: "
            f"{batch.shape[1:]}. Resize the array, or pass the image's file path (it is "
            "resized to the model's input size)."
        )
    return batch


def activations(
    model_or_name,
    layer: str | int | Sequence[str | int],
    images: Any,
    *,
    preprocessing: str | None = "auto",
    batch_size: int = 32,
    trust_remote_code: bool = False,
):
    """What a layer outputs for some images (the raw numbers behind :func:`feature_maps`).

    Args:
        model_or_name: a tf_keras model, a registry name, or a ``.keras``/``.h5`` file.
        layer: a layer name, an ``outer/inner`` path, a top-level index, or a list of
            those (one forward pass for all). A bare name inside a single nested model
            (e.g. a learner's base) is found without its prefix.
        images: raw 0–255 pixels: a file path or a list of paths (resized to the input
            size), or an array ``(H, W, C)`` / ``(N, H, W, C)`` of the input size.
        preprocessing: ``"auto"`` applies the manifest's mode when the model came from
            the registry (and does not have it baked in); or a mode (``"tf"``,
            ``"caffe"``, ``"torch"``, ``"none"`` when the pixels are already
            preprocessed...).
        batch_size: images per forward pass.
        trust_remote_code: skip the safety scan when loading a saved model by path.

    Returns:
        A float32 array ``(N, *layer output shape)``, or a list of them for a list of layers.

    Raises:
        LayerNotFoundError: no such layer (the error suggests the nearest names).
        UsageError: images of the wrong shape or an unreadable file.
    """
    from ..models.preprocessing import preprocess
    from ..models.slicing import slice

    model = _as_model(model_or_name, trust_remote_code=trust_remote_code)
    many = isinstance(layer, list | tuple)
    targets = [_resolve_layer(model, t) for t in (layer if many else [layer])]
    if not targets:
        raise UsageError("activations() needs at least one layer. Received: [].")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise UsageError(f"batch_size must be a positive int. Received: {batch_size!r}.")
    x = preprocess(_image_batch(model, images), _preprocessing(model, preprocessing))
    probe = slice(model, targets, name=f"{model.name}_probe")
    chunks: list[list[np.ndarray]] = [[] for _ in targets]
    for start in range(0, len(x), batch_size):
        outputs = probe(x[start : start + batch_size], training=False)
        for i, out in enumerate(outputs if isinstance(outputs, list | tuple) else [outputs]):
            chunks[i].append(np.asarray(out, dtype=np.float32))
    results = [np.concatenate(parts) for parts in chunks]
    return results if many else results[0]


def activation_stats(values: Any) -> dict[str, Any]:
    """Summary numbers of one image's activation ``(H, W, C)``: shape, range, sparsity.

    Returns:
        ``{"shape", "min", "max", "mean", "std", "zero_fraction", "dead_channels"}``;
        a dead channel is zero everywhere (common after ReLU).
    """
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim == 4 and arr.shape[0] == 1:
        arr = arr[0]
    channels = arr.reshape(-1, arr.shape[-1]) if arr.ndim else arr.reshape(1, 1)
    return {
        "shape": list(arr.shape),
        "min": float(arr.min()),
        "max": float(arr.max()),
        "mean": float(arr.mean()),
        "std": float(arr.std()),
        "zero_fraction": float(np.mean(arr == 0)),
        "dead_channels": int(np.sum(~channels.any(axis=0))),
    }


# -- feature maps -----------------------------------------------------------------------


def _one_image(model, image: Any) -> Any:
    if _is_path(image):
        return image
    arr = np.asarray(image)
    if arr.ndim == 4 and arr.shape[0] != 1:
        raise UsageError(
            f"Feature maps are drawn for one image. Received a batch of {arr.shape[0]}; "
            "pass images[i]."
        )
    return arr


def _layer_maps(model_or_name, layers, image, *, preprocessing, trust_remote_code):
    model = _as_model(model_or_name, trust_remote_code=trust_remote_code)
    names = list(layers) if isinstance(layers, list | tuple) else [layers]
    values = activations(model, names, _one_image(model, image), preprocessing=preprocessing)
    return {str(name): v[0] for name, v in zip(names, values, strict=True)}


def feature_maps_figure(
    maps_by_layer: Mapping[str, Any],
    *,
    max_channels: int = 64,
    normalize: str = "auto",
    cmap: str = "viridis",
):
    """A figure of precomputed activations: one labelled channel grid per layer.

    Args:
        maps_by_layer: layer name -> one image's activation ``(H, W, C)``, e.g. from
            :func:`activations` (``values[0]``).
        max_channels: at most this many channels per layer (the first ones).
        normalize: ``"channel"`` (each channel to its own min..max), ``"layer"`` (one
            scale per layer) or ``"auto"`` (channel, but layer for 1x1 maps).
        cmap: a matplotlib colormap name.

    Returns:
        A ``matplotlib.figure.Figure`` (not registered with pyplot; show it in a notebook
        with ``display(fig)``, write it with :func:`fig.savefig`).
    """
    return plots.maps_figure(
        maps_by_layer, max_channels=max_channels, normalize=normalize, cmap=cmap
    )


def feature_maps(
    model_or_name,
    layer: str | int,
    image: Any,
    *,
    max_channels: int = 64,
    normalize: str = "auto",
    preprocessing: str | None = "auto",
    trust_remote_code: bool = False,
) -> np.ndarray:
    """Picture of a layer's channels for one image, as an RGB ``uint8`` array.

    The grid has ``min(channels, max_channels)`` tiles in ``ceil(sqrt(n))`` columns, each
    labelled with its channel index, under a title with the layer name and output shape.

    Args:
        model_or_name: a tf_keras model, a registry name, or a ``.keras``/``.h5`` file.
        layer: the layer (name, ``outer/inner`` path or top-level index).
        image: raw 0–255 pixels: a file path or an array ``(H, W, C)``.
        max_channels: draw at most this many channels (the first ones).
        normalize: ``"auto"``, ``"channel"`` or ``"layer"`` (see :func:`feature_maps_figure`).
        preprocessing: ``"auto"`` (the manifest's mode for registry models) or a mode.
        trust_remote_code: skip the safety scan when loading a saved model by path.

    Returns:
        An array ``(height, width, 3)`` of ``uint8``.
    """
    maps = _layer_maps(
        model_or_name,
        [layer],
        image,
        preprocessing=preprocessing,
        trust_remote_code=trust_remote_code,
    )
    fig = plots.maps_figure(maps, max_channels=max_channels, normalize=normalize)
    return plots.render(fig)


def save_feature_maps(
    model_or_name,
    layer: str | int | Sequence[str | int],
    image: Any,
    path: str | os.PathLike[str],
    *,
    max_channels: int = 64,
    normalize: str = "auto",
    preprocessing: str | None = "auto",
    trust_remote_code: bool = False,
) -> Path:
    """Write the picture of :func:`feature_maps` to ``path``; a list of layers -> one sheet.

    Returns:
        The path written (format from its suffix, PNG by default).
    """
    maps = _layer_maps(
        model_or_name,
        layer,
        image,
        preprocessing=preprocessing,
        trust_remote_code=trust_remote_code,
    )
    fig = plots.maps_figure(maps, max_channels=max_channels, normalize=normalize)
    return plots.save(fig, path)


def save_figure(fig, path: str | os.PathLike[str]) -> Path:
    """Write a figure from this module to ``path`` (format from the suffix, PNG by default).

    Creates missing parent folders; an unknown suffix raises a UsageError listing the
    valid ones.
    """
    return plots.save(fig, path)


# -- filters ----------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class FilterTiles:
    """A convolution's kernels, ready to draw.

    Attributes:
        layer: the layer's path.
        layer_type: its class name (``"Conv2D"``, ``"DepthwiseConv2D"``...).
        kernel_shape: the kernel's shape, ``(kh, kw, in, out)`` (``out`` is the depth
            multiplier for depthwise convolutions).
        kind: ``"rgb"`` (a first layer on 3-channel input: tiles ``(n, kh, kw, 3)``),
            ``"gray"`` (tiles ``(n, kh, kw)``, averaged over input channels) or
            ``"matrix"`` (a 1x1 convolution: raw weights ``(in, out)``).
        tiles: values in 0..1 per filter (rgb, gray) or raw weights (matrix).
        total: how many filters the layer has (``tiles`` may hold fewer).
        note: one sentence on how to read the picture.
    """

    layer: str
    layer_type: str
    kernel_shape: tuple[int, ...]
    kind: str
    tiles: np.ndarray
    total: int
    note: str


def _convolutions(model) -> list[tuple[str, Any]]:
    from ..backend import keras
    from ..hub.manifest import PREPROCESSING_MODES
    from ..models.slicing import find_layer, layers

    conv_base = keras().layers.Conv2D.__mro__[1]  # tf_keras' private base of all 2D convs
    baked = {f"preprocess_{mode}" for mode in PREPROCESSING_MODES}
    found = []
    for info in layers(model):
        if info.is_model:
            continue
        layer = find_layer(model, info.name)
        is_conv2d = isinstance(layer, conv_base) and getattr(layer, "rank", 2) == 2
        if is_conv2d and layer.name not in baked:
            found.append((info.name, layer))
    return found


def _stretch(tiles: np.ndarray) -> np.ndarray:
    axes = tuple(range(1, tiles.ndim))
    low = tiles.min(axis=axes, keepdims=True)
    span = tiles.max(axis=axes, keepdims=True) - low
    return np.where(span > 0, (tiles - low) / np.where(span > 0, span, 1.0), 0.5)


def filter_tiles(
    model_or_name,
    layer: str | int | None = None,
    *,
    max_filters: int = 64,
    trust_remote_code: bool = False,
) -> FilterTiles:
    """A convolution's kernels as tiles: RGB for a first layer, grayscale deeper down.

    Args:
        model_or_name: a tf_keras model, a registry name, or a ``.keras``/``.h5`` file.
        layer: a convolution layer; default the first ``Conv2D``-like layer found in
            the flattened walk (nested models too; a baked-in preprocessing layer is
            skipped).
        max_filters: keep at most this many filters (the first ones).
        trust_remote_code: skip the safety scan when loading a saved model by path.

    Raises:
        LayerNotFoundError: no such layer.
        UsageError: the layer is not a 2D convolution, or the model has none.
    """
    from ..backend import keras
    from ..models.loading import manifest_of
    from ..models.slicing import find_layer

    if isinstance(max_filters, bool) or not isinstance(max_filters, int) or max_filters < 1:
        raise UsageError(f"max_filters must be a positive int. Received: {max_filters!r}.")
    model = _as_model(model_or_name, trust_remote_code=trust_remote_code)
    convs = _convolutions(model)
    if layer is None:
        if not convs:
            raise UsageError(f"{model.name} has no 2D convolution layer to show filters of.")
        path, conv = convs[0]
    else:
        path = _resolve_layer(model, layer)
        conv = find_layer(model, path)
        if all(conv is not c for _, c in convs):
            names = ", ".join(p for p, _ in convs[:5]) or "none"
            raise UsageError(
                f"{path!r} is a {type(conv).__name__}, not a 2D convolution, so it has no "
                f"filters to draw. Convolutions in {model.name}: {names}"
                f"{' ...' if len(convs) > 5 else ''}."
            )
        path = str(path) if isinstance(path, str) else conv.name
    depthwise = hasattr(conv, "depthwise_kernel")
    kernel = np.asarray(conv.depthwise_kernel if depthwise else conv.kernel, dtype=np.float64)
    if isinstance(conv, keras().layers.Conv2DTranspose):
        kernel = kernel.swapaxes(2, 3)  # stored as (kh, kw, out, in)
    kh, kw, fan_in, out = kernel.shape
    kind_name = type(conv).__name__
    if depthwise:
        # One (kh, kw) filter per input channel and multiplier: nothing to average.
        filters = kernel.reshape(kh, kw, fan_in * out).transpose(2, 0, 1)
        kind, note = (
            "gray",
            (
                "Depthwise filters, one per input channel. Deeper filters are not directly "
                "interpretable: they act on learned features, not on colours."
            ),
        )
    elif kh == kw == 1:
        kind, note = (
            "matrix",
            (
                "A 1\u00d71 convolution mixes channels: each column is one filter's weight on "
                "every input channel (red positive, blue negative)."
            ),
        )
        return FilterTiles(path, kind_name, kernel.shape, kind, kernel[0, 0], out, note)
    elif fan_in == 3:
        filters = kernel.transpose(3, 0, 1, 2)
        manifest = manifest_of(model)
        if manifest is not None and manifest.input.preprocessing == "caffe":
            filters = filters[..., ::-1]  # caffe models see BGR: show the kernels as RGB
        kind, note = (
            "rgb",
            "Kernels of the first convolution: the colours and edges it responds to.",
        )
    else:
        filters = kernel.mean(axis=2).transpose(2, 0, 1)
        kind, note = (
            "gray",
            (
                f"Each tile is a filter averaged over its {fan_in} input channels. Deeper filters "
                "are not directly interpretable: they act on learned features, not on colours."
            ),
        )
    total = len(filters)
    return FilterTiles(
        path, kind_name, kernel.shape, kind, _stretch(filters[:max_filters]), total, note
    )


def filters_figure(tiles: FilterTiles):
    """A ``matplotlib.figure.Figure`` of :func:`filter_tiles`' result."""
    return plots.filters_figure(tiles)


def plot_filters(
    model_or_name,
    path: str | os.PathLike[str] = "filters.png",
    *,
    layer: str | int | None = None,
    max_filters: int = 64,
    trust_remote_code: bool = False,
) -> Path:
    """Draw a convolution's filters (default: the first Conv2D) into a picture file.

    Returns:
        The path written.
    """
    tiles = filter_tiles(
        model_or_name, layer, max_filters=max_filters, trust_remote_code=trust_remote_code
    )
    return plots.save(plots.filters_figure(tiles), path)


# -- training curves --------------------------------------------------------------------


def plot_history(history: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write loss and metric curves per epoch (training and ``val_`` validation) to ``path``.

    Args:
        history: metric name -> per-epoch values (``TransferLearner.history``,
            ``keras.callbacks.History.history``), or a keras ``History`` object.
        path: the picture file (``.png``, ``.svg``, ``.pdf``...).

    Returns:
        The path written.
    """
    return plots.save(history_figure(history), path)


def require_tensorboard() -> None:
    """Check that TensorBoard is installed (it is an optional extra).

    Raises:
        DependencyError: the ``tensorboard`` package is not installed.
    """
    try:
        import tensorboard  # noqa: F401
    except ImportError as exc:
        raise DependencyError(
            "tensorboard", "pip install 'tensorboard>=2.21,<2.22'", "TensorBoard logs"
        ) from exc


def tensorboard_callback(log_dir: str | os.PathLike[str], **kwargs: Any):
    """A ``tf_keras.callbacks.TensorBoard`` writing to ``log_dir``, checked up front.

    TensorFlow 2.21 no longer ships TensorBoard, and without it the callback fails only
    at the end of the first epoch, deep inside ``fit``. This checks first.

    Args:
        log_dir: the folder for the event files (view with ``tensorboard --logdir``).
        **kwargs: passed to the callback (``histogram_freq``, ``update_freq``...).

    Raises:
        DependencyError: the ``tensorboard`` package is not installed.
    """
    require_tensorboard()
    from ..backend import keras

    return keras().callbacks.TensorBoard(log_dir=os.fspath(log_dir), **kwargs)
