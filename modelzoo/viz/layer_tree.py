"""A text map of a model's layers: nesting, output shapes, cut points, resolution drops.

Where the spatial resolution halves is where a network changes scale, and the last layer
before each drop is where one usually cuts (the manifest's cut points are marked too).
Used by ``modelzoo layers NAME --tree`` and re-exported by :mod:`modelzoo.viz.maps`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["LayerMapRow", "layer_map", "format_layer_map", "layer_map_tree"]


@dataclass(frozen=True)
class LayerMapRow:
    """One layer in :func:`layer_map`, with where the resolution drops.

    Attributes:
        index: position in the flattened walk (as in :func:`modelzoo.layers`).
        path: the layer's path; ``name`` is its last part.
        type: class name.
        depth: nesting depth (0 = top level).
        output_shape: output shape with the batch dimension.
        params: weights the layer owns.
        is_model: a nested model (its layers follow, one level deeper).
        cut_point: the manifest's note when this is a listed cut point ("" without a
            note), else None.
        downsample: ``((h, w), (h2, w2))`` when this conv/pool layer lowers the spatial
            resolution, else None.
        stage_end: ``(h, w)`` when this is the last layer at that resolution before it
            drops (or the last spatial layer): the usual place to cut.
    """

    index: int
    path: str
    name: str
    type: str
    depth: int
    output_shape: Any
    params: int
    is_model: bool
    cut_point: str | None = None
    downsample: tuple[tuple[int, int], tuple[int, int]] | None = None
    stage_end: tuple[int, int] | None = None


def _is_preprocessing(path: str) -> bool:
    from ..hub.manifest import PREPROCESSING_MODES

    return path in {f"preprocess_{mode}" for mode in PREPROCESSING_MODES}


def _spatial(shape: Any) -> tuple[int, int] | None:
    if isinstance(shape, tuple) and len(shape) == 4 and all(isinstance(d, int) for d in shape[1:3]):
        return int(shape[1]), int(shape[2])
    return None


def _cut_notes(model, cut_points) -> dict[str, str]:
    if cut_points is None:
        from ..models.loading import manifest_of

        manifest = manifest_of(model)
        cut_points = manifest.cut_points if manifest is not None else ()
    notes = {}
    for point in cut_points:
        if isinstance(point, str):
            notes[point] = ""
        else:
            notes[point.layer] = getattr(point, "note", None) or ""
    return notes


def layer_map(
    model_or_name, *, cut_points: Iterable[Any] | None = None, trust_remote_code: bool = False
) -> list[LayerMapRow]:
    """Every layer (nested too) with its output shape, cut points and resolution drops.

    Args:
        model_or_name: a tf_keras model, a registry name, or a ``.keras``/``.h5`` file.
        cut_points: layer names or manifest ``CutPoint`` objects to mark; default the
            cut points of the manifest the model was loaded from.
        trust_remote_code: skip the safety scan when loading a saved model by path.

    Returns:
        A list of :class:`LayerMapRow` in walk order.
    """
    from ..models.slicing import SEPARATOR, layers

    if isinstance(model_or_name, str | os.PathLike):
        from ..models.loading import load

        model = load(model_or_name, trust_remote_code=trust_remote_code)
    else:
        model = model_or_name
    notes = _cut_notes(model, cut_points)
    infos = layers(model)
    downsample: dict[int, tuple] = {}
    stage_end: dict[int, tuple[int, int]] = {}
    current: tuple[int, int] | None = None
    candidate: int | None = None  # last layer seen at the current resolution
    for i, info in enumerate(infos):
        if info.type.startswith("Global") or info.type == "Flatten":
            break  # the classifier head starts: its 1x1 maps are no stage to cut at
        hw = _spatial(info.output_shape)
        if hw is None or info.is_model:
            continue
        if current is None:
            current = hw
            continue
        if info.type.startswith(("ZeroPadding", "Cropping")):
            continue  # padding only prepares the next strided layer
        if hw != current:
            if (
                ("Conv" in info.type or "Pool" in info.type)
                and hw[0] <= current[0]
                and hw[1] <= current[1]
            ):
                downsample[i] = (current, hw)
                if candidate is not None:
                    stage_end[candidate] = current
            current, candidate = hw, None
        # Baked-in preprocessing (modelzoo.models.preprocessing) computes no features to cut at.
        if info.type != "InputLayer" and not _is_preprocessing(info.name):
            candidate = i
    if candidate is not None and current is not None:
        stage_end[candidate] = current
    rows = []
    for i, info in enumerate(infos):
        leaf = info.name.rsplit(SEPARATOR, 1)[-1]
        note = notes.get(info.name, notes.get(leaf))
        rows.append(
            LayerMapRow(
                index=info.index,
                path=info.name,
                name=leaf,
                type=info.type,
                depth=info.depth,
                output_shape=info.output_shape,
                params=info.params,
                is_model=info.is_model,
                cut_point=note,
                downsample=downsample.get(i),
                stage_end=stage_end.get(i),
            )
        )
    return rows


def _hw(hw: tuple[int, int]) -> str:
    return f"{hw[0]}x{hw[1]}"


def _shape_text(shape: Any) -> str:
    if isinstance(shape, tuple):
        return "x".join("?" if d is None else str(d) for d in shape[1:]) or "scalar"
    if isinstance(shape, list):
        return " + ".join(_shape_text(s) for s in shape)
    return "?"


def _annotations(row: LayerMapRow) -> list[str]:
    notes = []
    if row.downsample is not None:
        (h, w), (h2, w2) = row.downsample
        halves = h2 in (h // 2, -(-h // 2)) and w2 in (w // 2, -(-w // 2))
        what = "halves" if halves else "drops"
        notes.append(f"v {what} {_hw((h, w))} -> {_hw((h2, w2))}")
    if row.stage_end is not None:
        notes.append(f"last at {_hw(row.stage_end)}")
    if row.cut_point is not None:
        notes.append("* CUT POINT" + (f": {row.cut_point}" if row.cut_point else ""))
    return notes


def format_layer_map(rows: Sequence[LayerMapRow], *, title: str | None = None) -> str:
    """The layer map as an indented plain-text tree with a summary of resolutions and cuts."""
    lines = []
    if title:
        lines.append(title)
    if not rows:
        return "\n".join([*lines, "(no layers)"])
    cells = [("  " * r.depth + r.name, r.type, _shape_text(r.output_shape)) for r in rows]
    widths = [max(len(c[k]) for c in cells) for k in range(3)]
    header = ("layer", "type", "output")
    widths = [max(w, len(h)) for w, h in zip(widths, header, strict=True)]
    lines.append("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip())
    for row, cell in zip(rows, cells, strict=True):
        text = "  ".join(c.ljust(w) for c, w in zip(cell, widths, strict=True))
        lines.append(f"{text}  {'; '.join(_annotations(row))}".rstrip())
    drops = [r for r in rows if r.downsample is not None]
    if drops:
        steps = [_hw(drops[0].downsample[0])] + [
            f"{_hw(r.downsample[1])} ({r.name})" for r in drops
        ]
        lines += ["", "resolution: " + " -> ".join(steps)]
    ends = [r for r in rows if r.stage_end is not None]
    if ends:
        lines.append(
            "last layer at each resolution (usual cuts): "
            + ", ".join(f"{r.path} {_shape_text(r.output_shape)}" for r in ends)
        )
    cuts = [r for r in rows if r.cut_point is not None]
    if cuts:
        lines.append("manifest cut points (*): " + ", ".join(r.path for r in cuts))
    lines.append("legend: v = the resolution drops here; * = cut point listed in the manifest")
    return "\n".join(lines)


def layer_map_tree(rows: Sequence[LayerMapRow]) -> list[dict[str, Any]]:
    """The layer map as nested dicts (a nested model's layers under its ``"layers"``)."""
    root: list[dict[str, Any]] = []
    stack: list[tuple[int, list]] = [(-1, root)]
    for row in rows:
        node = {
            "name": row.name,
            "path": row.path,
            "type": row.type,
            "output_shape": row.output_shape,
            "params": row.params,
            "cut_point": row.cut_point,
            "downsample": row.downsample,
            "stage_end": row.stage_end,
        }
        while stack[-1][0] >= row.depth:
            stack.pop()
        stack[-1][1].append(node)
        if row.is_model:
            node["layers"] = []
            stack.append((row.depth, node["layers"]))
    return root
