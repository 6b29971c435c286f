"""Export tf-keras models to the TensorFlow.js layers format (``tf.loadLayersModel``).

modelzoo writes the format itself (the ``tensorflowjs`` pip package does not install
beside TensorFlow 2.21). An export folder looks like::

    out_dir/
        model.json              topology (the Keras JSON) + weights manifest
        group1-shard1of2.bin    all weights, little-endian, concatenated in manifest
        group1-shard2of2.bin    order and split into shards of at most shard_size bytes
        labels.json             optional: class names, index = output unit
        preprocessing.json      optional: input size + per-channel mean/std for the demo
        index.html              optional: a no-build demo page (file picker, drop, webcam)
        modelzoo-page.js        with the page: the code it shares with the training page
        tfjs.min.js             with the page: TensorFlow.js (unless tfjs_url is given)
        .modelzoo-export        marker: this folder holds a modelzoo export, so a later
                                export may replace its files

Everything is written to a temporary folder beside ``out_dir`` first and moved into
place at the end, so an interrupted export never leaves a half-written model behind.
Models TF.js cannot rebuild (Lambda layers, raw TensorFlow ops, custom classes) are
refused before anything is written; :func:`check_tfjs` runs the same check on its own.
Those checks, and the rewrites that make a topology parseable by TF.js, live in
:mod:`modelzoo.export._tfjs_compat` (:data:`TFJS_LAYERS` and :data:`TFJS_ACTIVATIONS` are
re-exported here).
"""

from __future__ import annotations

import collections
import fnmatch
import json
import logging
import math
import os
import re
import shutil
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ExportError, UsageError
from ..hub.manifest import PREPROCESSING_MODES as MANIFEST_MODES
from ._tfjs_compat import TFJS_ACTIVATIONS, TFJS_LAYERS, check_portable, checked_topology

__all__ = [
    "ExportResult",
    "export_tfjs",
    "check_tfjs",
    "check_export_target",
    "EXPORT_MARKER",
    "TFJS_VERSION",
    "TFJS_CDN_URL",
    "TFJS_FILE",
    "PAGE_SCRIPT",
    "QUANTIZE_DTYPES",
    "vendored_tfjs",
    "TFJS_LAYERS",
    "TFJS_ACTIVATIONS",
    "PREPROCESSING_MODES",
    # the steps export.browser builds its page export from
    "checked_model",
    "find_image_input",
    "page_files",
    "preprocessing_mode",
    "write_export",
]

logger = logging.getLogger(__name__)

#: The TensorFlow.js release the format and the demo page are tested against.
TFJS_VERSION = "4.22.0"
#: Where the demo page loads TF.js from when no local ``tfjs.min.js`` sits beside it.
TFJS_CDN_URL = f"https://cdn.jsdelivr.net/npm/@tensorflow/tfjs@{TFJS_VERSION}/dist/tf.min.js"
#: The name of the TF.js bundle copied beside an exported page.
TFJS_FILE = "tfjs.min.js"
_VENDORED_TFJS = "tf.min.js"
#: The script both exported pages load beside them (pixels -> tensor, webcam, status line).
PAGE_SCRIPT = "modelzoo-page.js"

_FLOAT16_MAX = float(np.finfo(np.float16).max)

_SHARD_RE = re.compile(r"\Agroup\d+-shard\d+of\d+\.bin\Z")
#: Written into every export folder; a non-empty folder without it is not overwritten.
EXPORT_MARKER = ".modelzoo-export"

#: Input preprocessing the demo page can apply, as a per-channel ``(x - mean) / std``
#: on 0-255 pixels after an optional RGB->BGR swap: the manifest's modes, with
#: ``builtin`` called "baked" (the model does it itself).
PREPROCESSING_MODES = tuple("baked" if m == "builtin" else m for m in MANIFEST_MODES)
_PREPROCESSING_ALIASES = {"builtin": "baked"}


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export_tfjs` wrote.

    Attributes:
        out_dir: the export folder.
        model_json: path of ``model.json``.
        shards: the weight shard files, in order.
        total_bytes: size of all weight shards together.
        n_weights: number of weight tensors.
        dtype: how float weights are stored: ``"float32"``, ``"float16"``, ``"uint8"``,
            ``"uint16"``, or ``"mixed"`` (see ``weight_dtypes``).
        labels_json: path of ``labels.json``, or None.
        preprocessing_json: path of ``preprocessing.json``, or None.
        index_html: path of the page, or None.
        weight_dtypes: number of float weights stored as each dtype.
        files: the other files written beside the model (page, scripts, TF.js).
    """

    out_dir: Path
    model_json: Path
    shards: tuple[Path, ...]
    total_bytes: int
    n_weights: int
    dtype: str
    labels_json: Path | None = None
    preprocessing_json: Path | None = None
    index_html: Path | None = None
    weight_dtypes: dict[str, int] = field(default_factory=dict)
    files: tuple[Path, ...] = ()


# --------------------------------------------------------------------------- checks


def check_tfjs(model: Any) -> None:
    """Raise if TensorFlow.js could not rebuild ``model``; return None when it can.

    Refused: Lambda layers, TensorFlow ops applied to Keras tensors (``TFOpLambda``,
    ``SlicingOpLambda``), custom (non tf_keras) classes, subclassed models, tf_keras
    layers TF.js has no implementation of, and options TF.js computes differently
    (some activations, GRU ``reset_after``, grouped convolutions). Nested models,
    wrappers and RNN cells are checked recursively.

    Raises:
        UsageError: ``model`` is not a built tf_keras Functional or Sequential model.
        ExportError: listing every offending layer by path (``outer/inner/name``).
    """
    checked_topology(model)


# ------------------------------------------------------------------------- weights


def _named_weights(model: Any) -> list[tuple[str, Any]]:
    """Every weight variable with the name TF.js gives it when it rebuilds the model.

    TF.js names a variable ``<layer>/<weight>``: the scope of the layer that owns it,
    without the ``:0`` output slot and without the names of enclosing models (a nested
    model's layers are built inside their own model, not the outer one). That is what
    Keras names them too, except for layers renamed after they were built, so the
    layer's current name is used for the first part.
    """
    named: list[tuple[str, Any]] = []
    seen: set[int] = set()

    def visit(container: Any) -> None:
        for layer in container.layers:
            if type(layer).__name__ in ("Functional", "Sequential"):
                visit(layer)
                continue
            for var in layer.weights:
                if id(var) in seen:
                    continue  # a shared layer: its variables are stored once
                seen.add(id(var))
                named.append((_tfjs_weight_name(layer.name, var.name), var))

    visit(model)
    counts = collections.Counter(name for name, _ in named)
    dupes = sorted(n for n, c in counts.items() if c > 1)
    if dupes:
        raise ExportError(
            f"Model {model.name!r} has layers with the same name in different sub-models, "
            f"so TF.js cannot tell their weights apart: {', '.join(dupes)}. Give the "
            "layers unique names (e.g. build the second copy with a name prefix), then "
            "export again.",
            layer=dupes[0].split("/")[0],
            problems=[f"duplicate weight name {d}" for d in dupes],
        )
    return named


def _tfjs_weight_name(layer_name: str, var_name: str) -> str:
    name = var_name[:-2] if var_name.endswith(":0") else var_name
    parts = name.split("/")
    if layer_name in parts:
        return "/".join(parts[parts.index(layer_name) :])
    return f"{layer_name}/{parts[-1]}"


# TF.js weight dtype -> (bytes per element, little-endian numpy storage type)
_STORAGE = {
    "float32": (4, "<f4"),
    "float16": (2, "<f2"),
    "uint16": (2, "<u2"),
    "uint8": (1, "u1"),
    "int32": (4, "<i4"),
}

#: How float weights may be stored besides float32: TF.js converts them back on load.
QUANTIZE_DTYPES = ("float16", "uint8", "uint16")


def _quantize_rules(quantize: Any) -> list[tuple[str, tuple[str, ...] | None]]:
    """``(dtype, patterns)`` rules from the user's ``quantize``; None patterns: every weight.

    Accepted forms: ``"uint8"``; ``"uint8:conv*,dense*"``; a list of those; a mapping
    ``{"uint8": ["conv*"], "float16": True}`` (True, ``"*"`` or None: every other weight).
    """
    if quantize is None:
        return []
    if isinstance(quantize, str):
        quantize = [quantize]
    items: list[tuple[Any, Any]] = []
    if isinstance(quantize, Mapping):
        items = list(quantize.items())
    elif isinstance(quantize, Sequence) and all(isinstance(q, str) for q in quantize):
        for text in quantize:
            dtype, sep, patterns = text.partition(":")
            items.append((dtype.strip(), patterns if sep else None))
    else:
        raise UsageError(
            f"quantize must be a dtype such as 'float16', 'DTYPE:PATTERN,...', a list of "
            f"those or a mapping {{dtype: patterns}}. Received: quantize={quantize!r:.80}."
        )
    rules: list[tuple[str, tuple[str, ...] | None]] = []
    for dtype, patterns in items:
        if dtype not in QUANTIZE_DTYPES:
            raise UsageError(
                f"Unknown quantization dtype. Received: {dtype!r}. Valid: "
                f"{', '.join(QUANTIZE_DTYPES)} (optionally followed by ':PATTERN,...')."
            )
        if patterns is None or patterns is True or patterns in ("*", ""):
            rules.append((dtype, None))
            continue
        if isinstance(patterns, str):
            patterns = patterns.split(",")
        if not isinstance(patterns, Sequence) or not all(isinstance(x, str) for x in patterns):
            raise UsageError(
                f"quantize patterns for {dtype} must be strings such as 'conv*' or "
                f"'*/kernel'. Received: {patterns!r:.80}."
            )
        cleaned = tuple(x.strip() for x in patterns if x.strip())
        rules.append((dtype, cleaned or None))
    everything = [d for d, pats in rules if pats is None]
    if len(everything) > 1:
        raise UsageError(
            f"quantize gives more than one dtype for all weights ({', '.join(everything)}). "
            "Give patterns to all but one, e.g. 'uint8:conv*' and 'float16'."
        )
    return rules


def _quantize_plan(quantize: Any, names: list[str]) -> dict[str, str]:
    """Stored dtype for each float weight name that is quantized (others stay float32).

    A pattern matches a weight name (``conv1/kernel``) or its layer name (``conv1``), with
    shell wildcards. As in tensorflowjs_converter, a dtype without patterns applies to every
    weight no pattern claims, and two dtypes whose patterns claim one weight are an error.
    """
    rules = _quantize_rules(quantize)
    plan: dict[str, str] = {}
    fallback = None
    for dtype, patterns in rules:
        if patterns is None:
            fallback = dtype
            continue
        for pattern in patterns:
            hits = [
                n
                for n in names
                if fnmatch.fnmatchcase(n, pattern)
                or fnmatch.fnmatchcase(n.split("/", 1)[0], pattern)
            ]
            if not hits:
                sample = ", ".join(names[:6]) + (", ..." if len(names) > 6 else "")
                raise UsageError(
                    f"quantize pattern {pattern!r} ({dtype}) matches no weight. Patterns match "
                    f"weight names or their layer names, e.g.: {sample or '(no weights)'}."
                )
            for name in hits:
                if plan.get(name, dtype) != dtype:
                    raise UsageError(
                        f"Weight {name!r} matches quantize patterns of two dtypes "
                        f"({plan[name]} and {dtype}). Make the patterns exclusive."
                    )
                plan[name] = dtype
    if fallback is not None:
        for name in names:
            plan.setdefault(name, fallback)
    return plan


def _affine_range(low: float, high: float, levels: int) -> tuple[float, float]:
    """``(min, scale)`` of an affine uint quantization of [low, high] with ``levels`` steps.

    As tensorflowjs_converter does, the range is nudged so that 0.0 (when inside it) is
    stored exactly: padding and zero-initialised biases stay zero after the round trip.
    """
    if not high > low:
        return low, 1.0  # a constant tensor: every value is stored as 0 -> min
    scale = (high - low) / levels
    if low <= 0.0 <= high:
        low = -round(-low / scale) * scale
    return float(low), float(scale)


def _manifest_entry(name: str, var: Any, stored: str | None) -> dict[str, Any]:
    """The weightsManifest entry for one variable (its bytes are written later)."""
    entry: dict[str, Any] = {"name": name, "shape": [int(d) for d in var.shape]}
    if not var.dtype.is_floating:  # every layer TF.js supports has float weights only
        entry["dtype"] = "int32"
        return entry
    entry["dtype"] = "float32"  # float64 / bfloat16 weights are stored as float32
    if stored == "float16":
        # TF.js reads 2-byte halves and hands float32 to the model.
        entry["quantization"] = {"dtype": "float16", "original_dtype": "float32"}
    elif stored in ("uint8", "uint16"):
        value = np.asarray(var.numpy(), dtype=np.float64)
        if value.size and not np.isfinite(value).all():
            raise UsageError(
                f"Weight {name!r} holds NaN or infinite values, which {stored} cannot store. "
                "Export it unquantized (leave it out of quantize)."
            )
        low = float(value.min()) if value.size else 0.0
        high = float(value.max()) if value.size else 0.0
        low, scale = _affine_range(low, high, np.iinfo(stored).max)
        # TF.js dequantizes each value as q * scale + min.
        entry["quantization"] = {
            "dtype": stored,
            "min": low,
            "scale": scale,
            "original_dtype": "float32",
        }
    return entry


def _stored_dtype(entry: dict[str, Any]) -> str:
    return entry.get("quantization", {}).get("dtype", entry["dtype"])


def _nbytes(entry: dict[str, Any]) -> int:
    return math.prod(entry["shape"]) * _STORAGE[_stored_dtype(entry)][0]


def _weight_bytes(var: Any, entry: dict[str, Any]) -> bytes:
    """The little-endian bytes stored for one variable, as described by ``entry``."""
    stored = _stored_dtype(entry)
    value = np.asarray(var.numpy())
    if stored == "float16":
        peak = float(np.max(np.abs(value.astype(np.float32)))) if value.size else 0.0
        if not math.isfinite(peak) or peak > _FLOAT16_MAX:
            raise UsageError(
                f"Weight {entry['name']!r} holds values up to {peak:g}, beyond float16's "
                f"range (±{_FLOAT16_MAX:g}). Export with dtype='float32', or leave it out "
                "of quantize."
            )
    elif stored in ("uint8", "uint16"):
        q = entry["quantization"]
        levels = np.iinfo(stored).max
        steps = np.round((value.astype(np.float64) - q["min"]) / q["scale"])
        value = np.clip(steps, 0, levels)
    return np.ascontiguousarray(value.astype(_STORAGE[stored][1])).tobytes()


class _ShardWriter:
    """Writes a byte stream into ``group1-shard{i}of{n}.bin`` files of bounded size."""

    def __init__(self, folder: Path, total: int, shard_size: int):
        self.folder = folder
        self.shard_size = shard_size
        self.count = max(1, math.ceil(total / shard_size)) if total else 0
        self.paths: list[Path] = []
        self._file = None
        self._room = 0

    def write(self, data: bytes | memoryview) -> None:
        view = memoryview(data).cast("B")
        while len(view):
            if self._room == 0:
                self._next()
            n = min(self._room, len(view))
            self._file.write(view[:n])
            self._room -= n
            view = view[n:]

    def _next(self) -> None:
        self.close()
        path = self.folder / f"group1-shard{len(self.paths) + 1}of{self.count}.bin"
        self.paths.append(path)
        self._file = open(path, "wb")  # noqa: SIM115 - closed in close()
        self._room = self.shard_size

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


# -------------------------------------------------------------------------- export


def export_tfjs(
    model: Any,
    out_dir: str | os.PathLike[str],
    *,
    shard_size: int = 4 * 1024 * 1024,
    dtype: str = "float32",
    quantize: str | Sequence[str] | Mapping[str, Any] | None = None,
    labels: Sequence[str] | None = None,
    preprocessing: str | None = None,
    with_demo: bool = False,
    tfjs_url: str | None = None,
    force: bool = False,
    check: Callable[[Path], Any] | None = None,
) -> ExportResult:
    """Write ``model`` in the TensorFlow.js layers format, ready for ``tf.loadLayersModel``.

    Args:
        model: a built tf_keras Functional or Sequential model (nested models, sliced
            models and models from ``attach_head`` included).
        out_dir: folder to write; created if missing. It must be empty or hold an earlier
            modelzoo export (its files are replaced, stale weight shards removed; other
            files are left alone), unless ``force``.
        shard_size: maximum bytes per weight file (default 4 MiB, which browsers cache well).
        dtype: ``"float32"`` (exact) or ``"float16"`` (half the size; TF.js converts the
            weights back to float32 when it loads them). Same as ``quantize="float16"``.
        quantize: store float weights smaller, as tensorflowjs_converter's
            ``--quantize_*`` options do: ``"float16"`` (half size), ``"uint8"`` (a quarter;
            affine, with each weight's min and scale in the manifest) or ``"uint16"``;
            ``"uint8:conv*,*/kernel"`` limits it to weights whose name or layer name
            matches a pattern; a list (``["uint8:conv_pw_*", "float16"]``) or a mapping
            (``{"uint8": ["conv*"], "float16": True}``) combines dtypes: a dtype without
            patterns takes every weight the others leave. TF.js dequantizes on load.
        labels: class names, one per output unit; written to ``labels.json``.
        preprocessing: what the demo page does to 0-255 RGB pixels before predicting:
            ``"tf"``, ``"caffe"``, ``"torch"``, ``"none"``, or ``"baked"`` (the model does
            it itself; ``"builtin"`` is accepted too). Written to ``preprocessing.json``.
        with_demo: also write ``index.html``, a page that classifies an image from a
            file, a drop or the webcam, and ``tfjs.min.js`` (TensorFlow.js, shipped with
            modelzoo) so the page works offline. Serve the folder over HTTP to use it
            (``modelzoo serve out_dir``).
        tfjs_url: load TF.js from this URL instead (no ``tfjs.min.js`` is copied; the
            page still prefers a ``tfjs.min.js`` placed beside it).
        force: write into a non-empty folder that holds no earlier export (files with
            the export's names are replaced; nothing else is touched).
        check: called with the finished export's (temporary) folder before it is moved
            into place, e.g. to compare it with golden outputs in TF.js
            (:func:`modelzoo.export.tfjs_runtime.check_golden_tfjs`); if it raises, nothing is
            written.

    Returns:
        An :class:`ExportResult` describing the files written.

    Raises:
        UsageError: an argument is invalid (dtype, quantize, shard_size, labels,
            preprocessing...).
        ExportError: the model holds something TF.js cannot run (see :func:`check_tfjs`).
    """
    if dtype not in ("float32", "float16"):
        raise UsageError(
            f"Unsupported export dtype. Received: dtype={dtype!r}. Valid: 'float32', 'float16' "
            "(use quantize= for uint8 / uint16)."
        )
    if dtype == "float16":
        if quantize is not None:
            raise UsageError(
                f"Pass either dtype='float16' or quantize=, not both. Received: "
                f"quantize={quantize!r:.60}."
            )
        quantize = "float16"
    _quantize_rules(quantize)  # a bad value fails before the model is inspected
    out = check_export_target(out_dir, force=force)
    mode = preprocessing_mode(preprocessing)
    if tfjs_url is not None and not with_demo:
        logger.warning("tfjs_url=%r is only used by the demo page; pass with_demo=True.", tfjs_url)
    files: dict[str, bytes | Path] = {}
    if with_demo:
        files.update(page_files("index.html", tfjs_url or TFJS_CDN_URL))
        if tfjs_url is None:
            files[TFJS_FILE] = vendored_tfjs()
    if with_demo and find_image_input(checked_model(model)) is None:
        raise UsageError(
            f"The demo page needs a model with one image input (batch, height, width, "
            f"channels with 1 or 3 channels). Received input shape(s): {model.input_shape}. "
            "Export without with_demo."
        )
    if with_demo and mode is None:
        logger.warning(
            "No preprocessing given: the demo page will feed raw 0-255 pixels to the model. "
            "Pass preprocessing='tf'|'caffe'|'torch' (see the model's manifest) or 'baked'."
        )
        mode = "none"
    return write_export(
        model,
        out,
        shard_size=shard_size,
        quantize=quantize,
        labels=labels,
        mode=mode,
        files=files,
        check=check,
    )


def checked_model(model: Any) -> Any:
    """``model`` once TF.js could rebuild it (a model it cannot run is reported first)."""
    checked_topology(model)
    return model


def write_export(
    model: Any,
    out: Path,
    *,
    shard_size: int,
    quantize: Any,
    labels: Sequence[str] | None,
    mode: str | None,
    files: dict[str, bytes | Path],
    check: Callable[[Path], Any] | None = None,
) -> ExportResult:
    """Check ``model``, then write it and ``files`` (name -> bytes, or a file to copy)
    into ``out`` through a temporary folder; ``check(tmp)`` runs before ``model.json`` and
    the rest are published (``model.json`` last)."""
    if isinstance(shard_size, bool) or not isinstance(shard_size, int) or shard_size <= 0:
        raise UsageError(
            f"shard_size must be a positive number of bytes. Received: shard_size={shard_size!r}."
        )
    topology = checked_topology(model)
    label_list = _check_labels(model, labels)
    image_input = find_image_input(model)

    from ..config import VERSION

    check_portable(topology)
    named = _named_weights(model)
    float_names = [name for name, var in named if var.dtype.is_floating]
    plan = _quantize_plan(quantize, float_names)
    entries = [_manifest_entry(name, var, plan.get(name)) for name, var in named]
    total = sum(_nbytes(e) for e in entries)

    # A plain mkdir (not mkdtemp's 0700) so the published folder gets the usual mode.
    tmp = out.parent / f".{out.name}.{uuid.uuid4().hex[:12]}.partial"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp.mkdir()
        writer = _ShardWriter(tmp, total, shard_size)
        try:
            for (_, var), entry in zip(named, entries, strict=True):
                writer.write(_weight_bytes(var, entry))  # one weight in memory at a time
        finally:
            writer.close()
        model_json = {
            "format": "layers-model",
            "generatedBy": f"modelzoo {VERSION}",
            "convertedBy": "modelzoo",
            "modelTopology": topology,
            "weightsManifest": [{"paths": [p.name for p in writer.paths], "weights": entries}],
        }
        written = [p.name for p in writer.paths]
        if label_list is not None:
            _write_json(tmp / "labels.json", label_list)
            written.append("labels.json")
        if mode is not None:
            _write_json(tmp / "preprocessing.json", _preprocessing_spec(mode, image_input))
            written.append("preprocessing.json")
        for name, content in files.items():
            if isinstance(content, Path):
                shutil.copyfile(content, tmp / name)
            else:
                (tmp / name).write_bytes(content)
            written.append(name)
        (tmp / EXPORT_MARKER).write_text(f"modelzoo {VERSION} TF.js export\n", "utf-8")
        written.append(EXPORT_MARKER)
        _write_json(tmp / "model.json", model_json)
        written.append("model.json")  # last: a reader never sees it before its shards
        if check is not None:
            check(tmp)
        _move_into_place(tmp, out, written)
    except OSError as exc:
        raise ExportError(
            f"Could not write the export to {out}: {exc}. Check that the path is a writable "
            "folder on a disk with free space, then export again."
        ) from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    counts = collections.Counter(_stored_dtype(e) for e in entries if e["dtype"] == "float32")
    stored = next(iter(counts)) if len(counts) == 1 else ("mixed" if counts else "float32")
    result = ExportResult(
        out_dir=out,
        model_json=out / "model.json",
        shards=tuple(out / p.name for p in writer.paths),
        total_bytes=total,
        n_weights=len(entries),
        dtype=stored,
        labels_json=out / "labels.json" if label_list is not None else None,
        preprocessing_json=out / "preprocessing.json" if mode is not None else None,
        index_html=out / "index.html" if "index.html" in files else None,
        weight_dtypes=dict(sorted(counts.items())),
        files=tuple(out / name for name in files),
    )
    logger.info(
        "Exported %s to TF.js: %s (%d weights, %d bytes in %d shard(s), %s)",
        model.name,
        out,
        result.n_weights,
        total,
        len(result.shards),
        stored,
    )
    return result


def check_export_target(out_dir: str | os.PathLike[str], *, force: bool = False) -> Path:
    """Refuse an export folder that would mix the export with someone else's files.

    Cheap (no TensorFlow): callers run it before loading a model.

    Returns:
        The folder path.

    Raises:
        UsageError: ``out_dir`` is a file, or a non-empty folder without an earlier
            export and ``force`` is not set.
    """
    out = Path(out_dir).expanduser()
    if out.exists() and not out.is_dir():
        raise UsageError(f"Export target {out} exists and is not a folder. Choose a folder path.")
    if not force and not _may_write_into(out):
        raise UsageError(
            f"Export folder {out} is not empty and holds no earlier modelzoo export; refusing "
            "to write model.json and weight shards among its files. Choose a new or empty "
            "folder, or pass --force (force=True) to write into it anyway."
        )
    return out


def _may_write_into(out: Path) -> bool:
    """Whether ``out`` is missing, empty, or an earlier export (marker, or a model.json
    written by modelzoo before the marker existed)."""
    try:
        if not out.is_dir() or not any(out.iterdir()) or (out / EXPORT_MARKER).is_file():
            return True
        with open(out / "model.json", "rb") as fh:
            head = fh.read(4096)
    except OSError:
        return False
    return b'"convertedBy": "modelzoo"' in head


def _write_json(path: Path, obj: Any) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, allow_nan=False)


def _move_into_place(tmp: Path, out: Path, names: list[str]) -> None:
    """Publish the files written in ``tmp`` to ``out`` (in ``names`` order)."""
    if not out.exists():
        try:
            os.replace(tmp, out)  # one rename: the folder appears complete
            return
        except OSError:
            if not out.is_dir():  # not a lost race with another exporter
                raise
    for name in names:
        os.replace(tmp / name, out / name)
    for stale in out.iterdir():
        if _SHARD_RE.match(stale.name) and stale.name not in names:
            stale.unlink()


def _check_labels(model: Any, labels: Sequence[str] | None) -> list[str] | None:
    if labels is None:
        return None
    if (
        not isinstance(labels, Sequence)
        or isinstance(labels, str)
        or not all(isinstance(x, str) for x in labels)
    ):
        raise UsageError(
            f"labels must be a list of class names (strings). Received: {labels!r:.80}."
        )
    label_list = list(labels)
    shape = model.output_shape
    units = shape[-1] if isinstance(shape, tuple) and len(shape) == 2 else None
    if units is not None and units != len(label_list):
        raise UsageError(
            f"The model has {units} output units but {len(label_list)} labels were given. "
            "Pass one label per output unit, in output order."
        )
    return label_list


def find_image_input(model: Any) -> tuple[int | None, int | None, int] | None:
    """(height, width, channels) when the model has a single image-like input."""
    shape = model.input_shape
    if not isinstance(shape, tuple) or len(shape) != 4 or shape[-1] not in (1, 3):
        return None
    return shape[1], shape[2], shape[3]


def preprocessing_mode(preprocessing: str | None) -> str | None:
    if preprocessing is None:
        return None
    mode = _PREPROCESSING_ALIASES.get(preprocessing, preprocessing)
    if mode not in PREPROCESSING_MODES:
        raise UsageError(
            f"Unknown preprocessing mode. Received: preprocessing={preprocessing!r}. "
            f"Valid: {', '.join(PREPROCESSING_MODES)} (or 'builtin', same as 'baked'); the "
            "model's manifest names its mode under input.preprocessing."
        )
    return mode


_DEFAULT_DEMO_SIZE = 224


def _preprocessing_spec(mode: str, image_input: tuple | None) -> dict[str, Any]:
    """``preprocessing.json``: y[c] = (pixel[order[c]] - mean[c]) / std[c] on 0-255 input."""
    from ..models.preprocessing import affine

    order, mean, std = "rgb", [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]
    params = affine("builtin" if mode == "baked" else mode)
    if params is not None:
        # The same numbers the model layer uses: y = x @ W + b, where each output channel
        # reads one input channel j with a scale, so y[c] = (x[j] - mean[c]) / std[c].
        w, b = params
        source = [int(abs(w[:, c]).argmax()) for c in range(3)]
        scale = [float(w[j, c]) for c, j in enumerate(source)]
        order = "bgr" if source == [2, 1, 0] else "rgb"
        std = [1.0 / k for k in scale]
        mean = [-float(b[c]) / scale[c] for c in range(3)]
    spec: dict[str, Any] = {"mode": mode, "channel_order": order, "mean": mean, "std": std}
    if image_input is not None:
        height, width, channels = image_input
        if height is None or width is None:
            logger.warning(
                "The model accepts any image size; the demo page will resize to %dx%d.",
                _DEFAULT_DEMO_SIZE,
                _DEFAULT_DEMO_SIZE,
            )
        spec["input_size"] = [height or _DEFAULT_DEMO_SIZE, width or _DEFAULT_DEMO_SIZE]
        spec["channels"] = channels
        if channels == 1:
            # Grayscale models: the page converts to luma first; one mean / std.
            spec["mean"], spec["std"] = spec["mean"][:1], spec["std"][:1]
    return spec


def vendored_tfjs() -> Path:
    """The TensorFlow.js browser bundle shipped with modelzoo (``tf.min.js``, 4.22.0).

    Exported pages serve it from their own folder, so they work without a CDN.
    """
    path = Path(str(resources.files("modelzoo.export").joinpath(f"_web/vendor/{_VENDORED_TFJS}")))
    if not path.is_file():
        raise ExportError(
            f"modelzoo's copy of TensorFlow.js is missing ({path}); reinstall modelzoo, or "
            "pass tfjs_url= (--tfjs-url) to load TF.js from elsewhere."
        )
    return path


def page_files(template: str, tfjs_url: str) -> dict[str, bytes | Path]:
    """An exported page: ``index.html`` from ``template`` and the script it loads."""
    script = Path(str(resources.files("modelzoo.export").joinpath(f"_web/{PAGE_SCRIPT}")))
    return {"index.html": _page(template, tfjs_url).encode("utf-8"), PAGE_SCRIPT: script}


def _page(template: str, tfjs_url: str) -> str:
    """A page template with ``"{{TFJS_URL}}"`` replaced by a safe JS string literal."""
    if not isinstance(tfjs_url, str) or not tfjs_url.strip():
        raise UsageError(f"tfjs_url must be a URL string. Received: tfjs_url={tfjs_url!r}.")
    text = resources.files("modelzoo.export").joinpath(f"_web/{template}").read_text("utf-8")
    # A JSON string is a valid JS string literal; escaping "<" keeps "</script>" inert.
    literal = json.dumps(tfjs_url).replace("<", "\\u003c")
    return text.replace('"{{TFJS_URL}}"', literal)
