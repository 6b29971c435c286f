"""Matplotlib figures for :mod:`modelzoo.viz.maps`: feature-map grids, filter tiles, curves.

Everything here takes plain numpy data (no TensorFlow) and returns a
``matplotlib.figure.Figure`` built on the Agg canvas directly, never through
``pyplot``: no GUI backend is ever selected, no global figure registry fills up, and
drawing works in scripts, servers and threads alike. Layouts are computed in inches, so
a picture's pixel size follows from its content (and tests can predict it).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DependencyError, UsageError

__all__ = [
    "DPI",
    "grid_shape",
    "maps_figure",
    "filters_figure",
    "history_figure",
    "render",
    "require_matplotlib",
    "save",
]

#: Resolution of every picture modelzoo draws (pixels per inch).
DPI = 100

# Layout of a tile grid, in inches.
_TILE = 0.8  # side of one map / filter tile
_LABEL = 0.17  # room above a tile for its channel index
_GAP = 0.06  # between tiles
_SIDE = 0.3  # left and right margin
_HEADER = 0.62  # title lines above a grid
_FOOTER = 0.34  # legend line below a grid
_MIN_WIDTH = 6.0  # so the title always fits

# Metric names that are not per-epoch scores worth a curve.
_NOT_METRICS = frozenset({"lr", "learning_rate"})


def require_matplotlib():
    """``(Figure, FigureCanvasAgg)``, or a one-line DependencyError when missing."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise DependencyError(
            "matplotlib", "pip install 'modelzoo[viz]'", "drawing pictures"
        ) from exc
    return Figure, FigureCanvasAgg


def _new_figure(width: float, height: float):
    figure_cls, canvas_cls = require_matplotlib()
    fig = figure_cls(figsize=(width, height), dpi=DPI)
    canvas_cls(fig)  # attaches itself as fig.canvas
    return fig


def grid_shape(n: int) -> tuple[int, int]:
    """Rows and columns of the grid that shows ``n`` tiles: ``ceil(sqrt(n))`` columns.

    Args:
        n: number of tiles, at least 1.

    Returns:
        ``(rows, cols)`` with ``rows * cols >= n`` and no empty last row.

    Raises:
        UsageError: ``n`` is not a positive int.
    """
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise UsageError(f"A grid needs at least one tile. Received: n={n!r}.")
    cols = math.isqrt(int(n) - 1) + 1  # exact ceil(sqrt(n)) for ints, no float rounding
    rows = -(-int(n) // cols)
    return rows, cols


def _grid_width(cols: int) -> float:
    return max(_MIN_WIDTH, 2 * _SIDE + cols * _TILE + (cols - 1) * _GAP)


def _grid_height(rows: int) -> float:
    return _HEADER + rows * (_TILE + _LABEL) + (rows - 1) * _GAP + _FOOTER


class _Grid:
    """One axes holding ``n`` tiles in a centred ceil(sqrt) grid, in inch coordinates.

    Each tile is its own image artist placed with ``extent`` (one axes per tile would
    cost matplotlib tens of milliseconds each: seconds for a 64-channel layer).
    """

    def __init__(self, fig, n: int, *, top: float, fig_w: float, fig_h: float):
        self.rows, self.cols = grid_shape(n)
        self.n = n
        width = self.cols * _TILE + (self.cols - 1) * _GAP
        height = self.rows * (_TILE + _LABEL) + (self.rows - 1) * _GAP
        left = (fig_w - width) / 2
        bottom = fig_h - (top + _HEADER + height)
        self.ax = fig.add_axes([left / fig_w, bottom / fig_h, width / fig_w, height / fig_h])
        self.ax.set_xlim(0, width)
        self.ax.set_ylim(height, 0)  # y grows downwards, like rows
        self.ax.set_autoscale_on(False)
        self.ax.set_axis_off()
        self.ax.set_label("tile grid")

    def origin(self, i: int) -> tuple[float, float]:
        """Top-left corner of tile ``i``'s image (inches from the grid's top-left)."""
        r, c = divmod(i, self.cols)
        return c * (_TILE + _GAP), r * (_TILE + _LABEL + _GAP) + _LABEL

    def tile(self, i: int, data: np.ndarray, label: str, *, label_color="0.1", **kwargs):
        """Draw ``data`` (H, W[, 3]) as tile ``i``, keeping its aspect ratio, with a label."""
        from matplotlib.patches import Rectangle

        x, y = self.origin(i)
        h, w = data.shape[:2]
        tw, th = (_TILE, _TILE * h / w) if w >= h else (_TILE * w / h, _TILE)
        x0, y0 = x + (_TILE - tw) / 2, y + (_TILE - th) / 2
        self.ax.imshow(
            data,
            extent=(x0, x0 + tw, y0 + th, y0),
            aspect="auto",
            interpolation="nearest",
            **kwargs,
        )
        # add_artist, unlike add_patch, skips a data-limit update per tile (limits are fixed).
        self.ax.add_artist(Rectangle((x0, y0), tw, th, fill=False, linewidth=0.4, edgecolor="0.6"))
        self.ax.text(
            x + _TILE / 2, y - 0.03, label, ha="center", va="bottom", fontsize=7, color=label_color
        )


def _header(fig, *, top: float, fig_h: float, title: str, subtitle: str) -> None:
    fig.text(
        0.5,
        1 - (top + 0.24) / fig_h,
        title,
        ha="center",
        va="center",
        fontsize=11,
        fontweight="bold",
    )
    fig.text(
        0.5, 1 - (top + 0.48) / fig_h, subtitle, ha="center", va="center", fontsize=8, color="0.25"
    )


def _footer(fig, *, bottom: float, fig_h: float, text: str) -> None:
    fig.text(
        0.5,
        1 - (bottom - _FOOTER / 2) / fig_h,
        text,
        ha="center",
        va="center",
        fontsize=7.5,
        color="0.3",
    )


def _dims(shape: Sequence[int]) -> str:
    return "\u00d7".join(str(d) for d in shape)


# -- feature maps -----------------------------------------------------------------------


def _as_maps(layer: str, values: Any) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim == 4 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 3:
        raise UsageError(
            f"Feature maps need a layer whose output is (height, width, channels). Received: "
            f"{layer!r} with shape {arr.shape}. Pick a convolution or activation layer "
            "(e.g. one whose name ends in 'relu'); list them with `modelzoo layers NAME`."
        )
    if not np.issubdtype(arr.dtype, np.number):
        raise UsageError(f"Feature maps must be numbers. Received dtype {arr.dtype} for {layer!r}.")
    return arr.astype(np.float64)


def _normalise_maps(maps: np.ndarray, mode: str) -> np.ndarray:
    if mode == "layer":
        low, high = maps.min(), maps.max()
        return (maps - low) / (high - low) if high > low else np.zeros_like(maps)
    low = maps.min(axis=(0, 1), keepdims=True)
    span = maps.max(axis=(0, 1), keepdims=True) - low
    # A flat channel has nothing to stretch: draw it at the bottom of the colour scale.
    return np.where(span > 0, (maps - low) / np.where(span > 0, span, 1.0), 0.0)


def _maps_mode(maps: np.ndarray, normalize: str) -> str:
    if normalize not in ("auto", "channel", "layer"):
        raise UsageError(
            f"normalize must be 'auto', 'channel' or 'layer'. Received: {normalize!r}."
        )
    if normalize == "auto":
        # A 1x1 map normalised on its own is always flat; compare channels instead.
        return "layer" if maps.shape[0] * maps.shape[1] == 1 else "channel"
    return normalize


def maps_figure(
    maps_by_layer: Mapping[str, Any],
    *,
    max_channels: int = 64,
    normalize: str = "auto",
    cmap: str = "viridis",
):
    """One labelled grid of channels per layer, stacked into one figure.

    Args:
        maps_by_layer: layer name -> activation ``(H, W, C)`` (or ``(1, H, W, C)``).
        max_channels: draw at most this many channels per layer (the first ones).
        normalize: ``"channel"`` stretches each channel to its own min..max (shows the
            pattern of every channel), ``"layer"`` uses one scale for the whole layer
            (shows which channels fire most), ``"auto"`` = channel, except layer for 1x1
            maps.
        cmap: a matplotlib colormap name.

    Returns:
        A ``matplotlib.figure.Figure``.
    """
    if isinstance(max_channels, bool) or not isinstance(max_channels, int) or max_channels < 1:
        raise UsageError(f"max_channels must be a positive int. Received: {max_channels!r}.")
    if not maps_by_layer:
        raise UsageError("Nothing to draw: no layers given.")
    blocks = [(name, _as_maps(name, values)) for name, values in maps_by_layer.items()]
    shown = [min(m.shape[2], max_channels) for _, m in blocks]
    width = max(_grid_width(grid_shape(n)[1]) for n in shown)
    heights = [_grid_height(grid_shape(n)[0]) for n in shown]
    fig = _new_figure(width, sum(heights))
    top = 0.0
    for (name, maps), n, height in zip(blocks, shown, heights, strict=True):
        mode = _maps_mode(maps, normalize)
        scaled = _normalise_maps(maps[:, :, :n], mode)
        channels = maps.shape[2]
        how = (
            "each channel stretched to its own min\u2013max"
            if mode == "channel"
            else "one colour scale for the whole layer"
        )
        which = (
            f"all {channels} channels"
            if n == channels
            else f"channels 0\u2013{n - 1} of {channels}"
        )
        _header(
            fig,
            top=top,
            fig_h=sum(heights),
            title=f"{name}   output {_dims(maps.shape)}",
            subtitle=f"{which}; {how}",
        )
        grid = _Grid(fig, n, top=top, fig_w=width, fig_h=sum(heights))
        for c in range(n):
            channel = maps[:, :, c]
            tag = ""
            if not channel.any():
                tag = " dead"
            elif mode == "channel" and channel.min() == channel.max():
                tag = " flat"
            grid.tile(
                c,
                scaled[:, :, c],
                f"{c}{tag}",
                label_color="0.55" if tag else "0.1",
                cmap=cmap,
                vmin=0.0,
                vmax=1.0,
            )
        dead = int(np.sum(~maps.reshape(-1, channels).any(axis=0)))
        _footer(
            fig,
            bottom=top + height,
            fig_h=sum(heights),
            text=(
                f"dark = low, bright = high; values {maps.min():.3g} to {maps.max():.3g}, "
                f"mean {maps.mean():.3g}; {dead} of {channels} channels all zero"
            ),
        )
        top += height
    return fig


# -- filters ----------------------------------------------------------------------------


def _wrap(text: str, width_inches: float) -> list[str]:
    import textwrap

    # About 16 characters per inch at the 7.5 pt footnote size.
    return textwrap.wrap(text, width=max(40, int(width_inches * 16)))


def filters_figure(tiles) -> Any:
    """Draw a :class:`modelzoo.viz.maps.FilterTiles`: RGB or grayscale tiles, or a 1x1 matrix."""
    if tiles.kind == "matrix":
        return _matrix_figure(tiles)
    n = len(tiles.tiles)
    rows, cols = grid_shape(n)
    width = _grid_width(cols)
    note = _wrap(tiles.note, width - 2 * _SIDE)
    height = _grid_height(rows) + 0.14 * (len(note) - 1)
    fig = _new_figure(width, height)
    colours = "RGB" if tiles.kind == "rgb" else "grayscale"
    which = f"all {tiles.total}" if n == tiles.total else f"{n} of {tiles.total}"
    _header(
        fig,
        top=0.0,
        fig_h=height,
        title=f"{tiles.layer}   {tiles.layer_type} kernel {_dims(tiles.kernel_shape)}",
        subtitle=f"{which} filters; {colours}, each stretched to its own min\u2013max",
    )
    grid = _Grid(fig, n, top=0.0, fig_w=width, fig_h=height)
    for i in range(n):
        if tiles.kind == "rgb":
            grid.tile(i, tiles.tiles[i], str(i))
        else:
            grid.tile(i, tiles.tiles[i], str(i), cmap="gray", vmin=0.0, vmax=1.0)
    fig.text(
        0.5,
        (0.1 + 0.14 * len(note)) / height,
        "\n".join(note),
        ha="center",
        va="top",
        fontsize=7.5,
        color="0.3",
        linespacing=1.3,
    )
    return fig


def _matrix_figure(tiles):
    matrix = np.asarray(tiles.tiles, dtype=np.float64)
    fig = _new_figure(7.0, 5.2)
    ax = fig.add_axes([0.1, 0.17, 0.72, 0.7])
    bound = float(np.abs(matrix).max()) or 1.0
    image = ax.imshow(
        matrix, cmap="RdBu_r", vmin=-bound, vmax=bound, aspect="auto", interpolation="nearest"
    )
    ax.set_xlabel("filter (output channel)")
    ax.set_ylabel("input channel")
    colorbar = fig.colorbar(image, cax=fig.add_axes([0.85, 0.17, 0.025, 0.7]))
    colorbar.set_label("weight")
    fig.text(
        0.5,
        0.94,
        f"{tiles.layer}   {tiles.layer_type} kernel {_dims(tiles.kernel_shape)}",
        ha="center",
        fontsize=11,
        fontweight="bold",
    )
    fig.text(0.5, 0.05, tiles.note, ha="center", va="center", fontsize=7.5, color="0.3", wrap=True)
    return fig


# -- training curves --------------------------------------------------------------------


def _curves(history: Mapping[str, Any]) -> dict[str, np.ndarray]:
    if hasattr(history, "history") and isinstance(history.history, Mapping):
        history = history.history  # a keras History object
    if not isinstance(history, Mapping) or not history:
        raise UsageError(
            "plot_history needs a dict of metric name -> per-epoch values, like "
            "keras' History.history or TransferLearner.history. Received: "
            f"{type(history).__name__} {history!r:.80}. Train first (fit), then plot."
        )
    curves = {}
    for key, values in history.items():
        arr = np.asarray(values, dtype=np.float64).reshape(-1) if values is not None else None
        if arr is None or arr.size == 0:
            continue
        curves[str(key)] = arr
    if not curves:
        raise UsageError(f"The history has no values to plot. Received keys: {list(history)}.")
    return curves


def history_figure(history: Mapping[str, Any]):
    """Loss and the other metrics per epoch (training solid, validation dashed).

    Args:
        history: metric name -> per-epoch values (``val_x`` is the validation value of
            ``x``), or a keras ``History`` object.

    Returns:
        A ``matplotlib.figure.Figure`` with one panel for the losses and, when there are
        other metrics (accuracy...), a second panel for them. Each line's label is the
        history key it draws.
    """
    curves = _curves(history)
    bases = list(dict.fromkeys(k[4:] if k.startswith("val_") else k for k in curves))
    bases = [b for b in bases if b not in _NOT_METRICS]
    losses = [b for b in bases if b == "loss" or b.endswith("loss")]
    metrics = [b for b in bases if b not in losses]
    panels = [p for p in (losses, metrics) if p]
    if not panels:
        raise UsageError(f"The history has no loss or metric to plot. Keys: {list(curves)}.")
    fig = _new_figure(5.0 * len(panels), 3.8)
    grid = fig.add_gridspec(
        1,
        len(panels),
        left=0.09 if len(panels) == 2 else 0.15,
        right=0.97,
        bottom=0.18,
        top=0.86,
        wspace=0.25,
    )
    colours = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown"]
    from matplotlib.ticker import MaxNLocator

    for p, names in enumerate(panels):
        ax = fig.add_subplot(grid[0, p])
        for i, base in enumerate(names):
            colour = colours[i % len(colours)]
            for key, style in ((base, "-"), (f"val_{base}", "--")):
                if key not in curves:
                    continue
                ys = curves[key]
                xs = np.arange(1, len(ys) + 1)
                ax.plot(
                    xs,
                    ys,
                    style,
                    color=colour,
                    marker="o" if len(ys) <= 30 else None,
                    markersize=3,
                    linewidth=1.5,
                    label=key,
                )
        best = f"val_{names[0]}"
        if best in curves and len(curves[best]) > 1:
            values = curves[best]
            k = int(np.argmax(values) if _higher_is_better(names[0]) else np.argmin(values))
            # In the legend, not on the plot: a label there would cross the curves.
            ax.axvline(k + 1, color="0.6", linestyle=":", linewidth=1)
            ax.plot(
                [k + 1],
                [values[k]],
                linestyle="none",
                marker="*",
                markersize=10,
                color="0.25",
                label=f"best {best}: {values[k]:.3g} (epoch {k + 1})",
            )
        ax.set_xlabel("epoch")
        ax.set_title("loss" if names is losses else ", ".join(names), fontsize=10)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, linewidth=0.4, alpha=0.5)
        ax.legend(fontsize=8, frameon=True, framealpha=0.85, edgecolor="none")
    epochs = max(len(v) for v in curves.values())
    last = ", ".join(f"{k} {v[-1]:.3g}" for k, v in curves.items() if k not in _NOT_METRICS)
    fig.suptitle(
        f"Training history, {epochs} epochs (solid: training, dashed: validation)",
        fontsize=11,
        y=0.97,
    )
    fig.text(0.5, 0.015, f"last epoch: {last}", ha="center", fontsize=7.5, color="0.3")
    return fig


def _higher_is_better(metric: str) -> bool:
    return not any(word in metric for word in ("loss", "error", "mse", "mae"))


# -- output -----------------------------------------------------------------------------


def render(fig) -> np.ndarray:
    """The figure's pixels as an RGB ``uint8`` array ``(height, width, 3)``."""
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[:, :, :3].copy()


def save(fig, path: str | os.PathLike[str]) -> Path:
    """Write ``fig`` to ``path`` (format from the suffix; PNG when there is none)."""
    target = Path(os.fspath(path))
    suffix = target.suffix.lower().lstrip(".")
    supported = fig.canvas.get_supported_filetypes()
    if suffix and suffix not in supported:
        raise UsageError(
            f"Cannot write a picture as {target.suffix!r}. Received: {target}. "
            f"Valid suffixes: {', '.join('.' + s for s in sorted(supported))}."
        )
    if target.is_dir():
        raise UsageError(f"{target} is a folder; give a file name such as {target / 'maps.png'}.")
    target.parent.mkdir(parents=True, exist_ok=True)
    fmt = suffix or "png"
    # Pillow's optimising encoder makes these flat images markedly smaller.
    extra = {"pil_kwargs": {"optimize": True}} if fmt == "png" else {}
    fig.savefig(target, format=fmt, dpi=DPI, facecolor="white", **extra)
    return target
