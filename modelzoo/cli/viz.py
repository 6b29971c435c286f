"""Picture commands: ``activations`` (feature maps) and ``filters`` (need matplotlib and TF)."""

from __future__ import annotations

import re
from pathlib import Path

import typer

from ._options import JSON_OPTION, TRUST_REMOTE_CODE_OPTION
from ._output import emit_json, out

__all__ = ["register"]


def _safe(layer: str) -> str:
    """A layer path as a file-name part (``outer/inner`` -> ``outer__inner``)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", layer.replace("/", "__")).strip("._") or "layer"


def _targets(layers: list[str], out_path: Path | None, sheet: bool) -> list[Path]:
    """Where each picture goes: one file per layer, or one sheet."""
    folder = out_path if out_path is not None and out_path.is_dir() else None
    if sheet:
        if out_path is None or folder is not None:
            return [(folder or Path()) / "maps.png"]
        return [out_path]
    if out_path is not None and folder is None:
        if len(layers) == 1:
            return [out_path]
        # One --out for several layers names a pattern: maps.png -> maps_<layer>.png
        suffix = out_path.suffix or ".png"
        return [out_path.with_name(f"{out_path.stem}_{_safe(lay)}{suffix}") for lay in layers]
    return [(folder or Path()) / f"maps_{_safe(lay)}.png" for lay in layers]


def _load(name: str, trust_remote_code: bool):
    from ..models.loading import load

    return load(name, trust_remote_code=trust_remote_code)


def activations_cmd(
    name: str = typer.Argument(..., help="Registry model (name[@version]) or a .keras/.h5 file."),
    layer: list[str] = typer.Option(
        ...,
        "--layer",
        "-l",
        metavar="LAYER",
        help="Layer to show (repeat for several; see `modelzoo layers`).",
    ),
    image: Path = typer.Option(
        ..., "--image", "-i", help="Image file, resized to the model's input."
    ),
    out_path: Path = typer.Option(
        None,
        "--out",
        "-o",
        help="Picture file, or a folder. Default maps_<layer>.png (maps.png with --sheet).",
    ),
    max_channels: int = typer.Option(64, "--max-channels", help="Channels shown per layer."),
    sheet: bool = typer.Option(False, "--sheet", help="All layers in one picture."),
    normalize: str = typer.Option(
        "auto", "--normalize", help="auto | channel (each to its own range) | layer (one scale)."
    ),
    json_out: bool = JSON_OPTION,
    trust_remote_code: bool = TRUST_REMOTE_CODE_OPTION,
) -> None:
    """Draw what layers see: a grid of each layer's channels for one image."""
    from ..models.loading import manifest_of
    from ..viz.maps import activation_stats, activations, feature_maps_figure, save_figure
    from ..viz.plots import require_matplotlib

    require_matplotlib()  # fail on a missing matplotlib before loading TensorFlow
    model = _load(name, trust_remote_code)
    values = activations(model, list(layer), image)
    maps = {lay: v[0] for lay, v in zip(layer, values, strict=True)}
    targets = _targets(list(layer), out_path, sheet)
    files = []
    if sheet:
        fig = feature_maps_figure(maps, max_channels=max_channels, normalize=normalize)
        files.append(save_figure(fig, targets[0]))
        where = [files[0]] * len(layer)
    else:
        for (lay, v), target in zip(maps.items(), targets, strict=True):
            fig = feature_maps_figure({lay: v}, max_channels=max_channels, normalize=normalize)
            files.append(save_figure(fig, target))
        where = files
    stats = [
        {"layer": lay, "file": str(path), **activation_stats(v)}
        for (lay, v), path in zip(maps.items(), where, strict=True)
    ]
    manifest = manifest_of(model)
    if json_out:
        emit_json(
            {
                "model": name,
                "image": str(image),
                "preprocessing": manifest.input.preprocessing if manifest else "none",
                "files": [str(f) for f in files],
                "layers": stats,
            }
        )
        return
    console = out()
    for s in stats:
        shape = "x".join(str(d) for d in s["shape"])
        console.print(
            f"{s['layer']}: {shape}, values {s['min']:.3g} to {s['max']:.3g} "
            f"(mean {s['mean']:.3g}), {s['dead_channels']} of {s['shape'][-1]} channels "
            f"all zero -> {s['file']}",
            markup=False,
        )


def filters_cmd(
    name: str = typer.Argument(..., help="Registry model (name[@version]) or a .keras/.h5 file."),
    layer: str = typer.Option(
        None, "--layer", "-l", help="A convolution layer (default: the first Conv2D)."
    ),
    out_path: Path = typer.Option(Path("filters.png"), "--out", "-o", help="Picture file."),
    max_filters: int = typer.Option(64, "--max-filters", help="Filters shown at most."),
    json_out: bool = JSON_OPTION,
    trust_remote_code: bool = TRUST_REMOTE_CODE_OPTION,
) -> None:
    """Draw a convolution's filters: RGB for the first layer, grayscale deeper down."""
    from ..viz.maps import filter_tiles, filters_figure, save_figure
    from ..viz.plots import require_matplotlib

    require_matplotlib()
    model = _load(name, trust_remote_code)
    tiles = filter_tiles(model, layer, max_filters=max_filters)
    target = out_path / "filters.png" if out_path.is_dir() else out_path
    written = save_figure(filters_figure(tiles), target)
    shown = tiles.total if tiles.kind == "matrix" else len(tiles.tiles)
    if json_out:
        emit_json(
            {
                "model": name,
                "layer": tiles.layer,
                "type": tiles.layer_type,
                "kernel_shape": tiles.kernel_shape,
                "view": tiles.kind,
                "filters": tiles.total,
                "shown": shown,
                "file": str(written),
            }
        )
        return
    kernel = "x".join(str(d) for d in tiles.kernel_shape)
    out().print(
        f"{tiles.layer} ({tiles.layer_type}, kernel {kernel}): {shown} of {tiles.total} "
        f"filters as {tiles.kind} -> {written}",
        markup=False,
    )


def register(app: typer.Typer) -> None:
    """Add the picture commands to ``app``."""
    app.command("activations")(activations_cmd)
    app.command("filters")(filters_cmd)
