"""Transfer learning inside the browser: a frozen base in TF.js and a page that trains a head.

:func:`export_browser_training` writes a folder that, served over HTTP
(``modelzoo serve DIR``), lets a user collect examples per class from the webcam or from
images drawn or dropped on a canvas, computes the base's features once per example,
trains a small head with TensorFlow.js in the page (Adam, categorical cross-entropy, the
loss drawn per batch), predicts live and downloads the trained head as a TF.js model::

    out_dir/
        index.html               the training page (window.modelzoo is its API)
        modelzoo-page.js         the code it shares with the demo page (pixels, webcam)
        modelzoo-train.js        the training code; Node.js can require() it too
        tfjs.min.js              TensorFlow.js 4.22.0, shipped with modelzoo (not written
                                 when tfjs_url is given)
        browser-training.json    classes, head and training settings, the base's names
        model.json + shards      the frozen base (a TF.js layers model)
        preprocessing.json       what the page does to 0-255 pixels (usually "baked")
        .modelzoo-export         marker (see :mod:`modelzoo.export.tfjs`)

After the page has loaded these files it makes no network request: TF.js, the model and
the code all come from the folder, and examples never leave the page.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import UsageError
from .tfjs import (
    TFJS_FILE,
    TFJS_VERSION,
    ExportResult,
    check_export_target,
    checked_model,
    find_image_input,
    page_files,
    preprocessing_mode,
    vendored_tfjs,
    write_export,
)

__all__ = [
    "BrowserTrainingExport",
    "export_browser_training",
    "DEFAULT_CLASSES",
    "TRAINING_SCRIPT",
    "CONFIG_FILE",
    "training_script",
]

logger = logging.getLogger(__name__)

#: The classes the page starts with when none are given (the talk's game controls).
DEFAULT_CLASSES = ("up", "down", "left", "right")
#: File names inside the export.
TRAINING_SCRIPT = "modelzoo-train.js"
CONFIG_FILE = "browser-training.json"
_MAX_CLASSES = 100


@dataclass(frozen=True)
class BrowserTrainingExport:
    """What :func:`export_browser_training` wrote.

    Attributes:
        out_dir: the export folder.
        index_html: the training page.
        config_json: ``browser-training.json``.
        base: the frozen base's TF.js export (``model.json``, shards, sizes).
        classes: class names the page starts with.
        feature_shape: shape of the base's features for one image.
        tfjs: where the page loads TF.js from (``tfjs.min.js`` or the given URL).
    """

    out_dir: Path
    index_html: Path
    config_json: Path
    base: ExportResult
    classes: tuple[str, ...]
    feature_shape: tuple[int, ...]
    tfjs: str


def training_script() -> Path:
    """The training code the page loads (``modelzoo-train.js``), for use elsewhere (Node.js)."""
    return Path(str(resources.files("modelzoo.export").joinpath(f"_web/{TRAINING_SCRIPT}")))


def export_browser_training(
    model: Any,
    out_dir: str | os.PathLike[str],
    *,
    cut: Any = None,
    classes: Sequence[str] | str = DEFAULT_CLASSES,
    hidden: Sequence[int] = (100,),
    learning_rate: float = 1e-3,
    epochs: int = 20,
    batch_size: int = 16,
    preprocessing: str | None = None,
    quantize: str | Sequence[str] | Mapping[str, Any] | None = None,
    shard_size: int = 4 * 1024 * 1024,
    tfjs_url: str | None = None,
    version: str | None = None,
    trust_remote_code: bool = False,
    force: bool = False,
) -> BrowserTrainingExport:
    """Export a frozen base and a page that trains a new head on it inside the browser.

    Args:
        model: a registry name (loaded with its preprocessing baked in, so the page feeds
            raw pixels), the path of a saved ``.keras`` / ``.h5`` model, or a tf_keras
            model with one image input.
        out_dir: folder to write (new, empty, or an earlier modelzoo export unless ``force``).
        cut: where to slice the base (a layer name, as for :func:`modelzoo.load`); None
            keeps the whole model.
        classes: class names the page starts with (2 to 100; a comma-separated string
            works too); the user can rename them on the page.
        hidden: sizes of the head's hidden Dense (relu) layers.
        learning_rate: Adam's learning rate.
        epochs: training epochs the page starts with.
        batch_size: examples per training batch.
        preprocessing: for a model object or a file without modelzoo metadata: what the
            page does to 0-255 RGB pixels (``"tf"``, ``"caffe"``, ``"torch"``, ``"none"``,
            ``"baked"``). Registry models need none.
        quantize: store the base's weights smaller (``"float16"``, ``"uint8"``, patterns;
            see :func:`modelzoo.export_tfjs`).
        shard_size: maximum bytes per weight file.
        tfjs_url: load TF.js from this URL instead of the copy shipped with modelzoo (the
            page then fetches it from there and says so).
        version: version or constraint of a registry model.
        trust_remote_code: skip the safety scan of a saved model file.
        force: write into a non-empty folder that holds no earlier export.

    Returns:
        A :class:`BrowserTrainingExport`.

    Raises:
        UsageError: an argument is invalid, or the base has no single image input.
        ExportError: the base holds layers TF.js cannot run.
        ModelNotFoundError, LayerNotFoundError, ...: loading a registry model failed.
    """
    names = _check_classes(classes)
    head = _check_head(hidden, learning_rate, epochs, batch_size)
    out = check_export_target(out_dir, force=force)  # before the (slow) model load
    page = page_files("train.html", tfjs_url or TFJS_FILE)
    base, mode, source = _load_base(
        model,
        cut=cut,
        preprocessing=preprocessing,
        version=version,
        trust_remote_code=trust_remote_code,
    )
    image_input = find_image_input(base)
    if image_input is None or None in image_input[:2]:
        raise UsageError(
            f"The training page needs a base with one image input of fixed size (batch, "
            f"height, width, 1 or 3 channels). Received input shape(s): {base.input_shape}. "
            "Load the model with a fixed input_shape, or cut a single-input model."
        )
    feature_shape = base.output_shape
    if isinstance(feature_shape, list) or None in feature_shape[1:]:
        raise UsageError(
            f"The head needs one feature tensor of fixed size; the base's output shape is "
            f"{feature_shape}. Cut the model at a single layer of a fixed-size model."
        )
    config = {
        "format": "modelzoo-browser-training",
        "format_version": 1,
        "classes": list(names),
        "head": {**head, "loss": "categoricalCrossentropy", "optimizer": "adam"},
        "base": {
            "model": source,
            "cut": cut if isinstance(cut, str) else None,
            "name": base.name,
            "input_size": [int(image_input[0]), int(image_input[1])],
            "channels": int(image_input[2]),
            "feature_shape": [int(d) for d in feature_shape[1:]],
            "preprocessing": mode,
        },
        "tfjs": {"version": TFJS_VERSION, "url": tfjs_url or TFJS_FILE, "local": not tfjs_url},
    }
    files: dict[str, bytes | Path] = {
        **page,
        TRAINING_SCRIPT: training_script(),
        CONFIG_FILE: json.dumps(config, indent=1).encode("utf-8"),
    }
    if tfjs_url is None:
        files[TFJS_FILE] = vendored_tfjs()
    result = write_export(
        base,
        out,
        shard_size=shard_size,
        quantize=quantize,
        labels=None,
        mode=mode,
        files=files,
    )
    logger.info("Wrote a browser-training page for %s to %s", source, out)
    return BrowserTrainingExport(
        out_dir=out,
        index_html=out / "index.html",
        config_json=out / CONFIG_FILE,
        base=result,
        classes=names,
        feature_shape=tuple(config["base"]["feature_shape"]),
        tfjs=tfjs_url or TFJS_FILE,
    )


def _check_classes(classes: Sequence[str] | str) -> tuple[str, ...]:
    if isinstance(classes, str):
        classes = classes.split(",")
    if not isinstance(classes, Sequence) or not all(isinstance(c, str) for c in classes):
        raise UsageError(
            f"classes must be class names (strings), e.g. up,down,left,right. "
            f"Received: {classes!r:.80}."
        )
    names = tuple(c.strip() for c in classes)
    if not 2 <= len(names) <= _MAX_CLASSES or not all(names):
        raise UsageError(
            f"Give 2 to {_MAX_CLASSES} non-empty class names, e.g. --classes up,down,left,right. "
            f"Received: {','.join(names)!r}."
        )
    repeated = sorted({c for c in names if names.count(c) > 1})
    if repeated:
        raise UsageError(f"Class names must be unique. Received {', '.join(repeated)} twice.")
    return names


def _check_head(hidden: Any, learning_rate: Any, epochs: Any, batch_size: Any) -> dict[str, Any]:
    def positive_int(value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and value > 0

    if isinstance(hidden, int):
        hidden = (hidden,)
    if not isinstance(hidden, Sequence) or not all(positive_int(h) for h in hidden):
        raise UsageError(f"hidden must be layer sizes > 0, e.g. (100,). Received: {hidden!r}.")
    if (
        isinstance(learning_rate, bool)
        or not isinstance(learning_rate, int | float)
        or not learning_rate > 0
    ):
        raise UsageError(f"learning_rate must be > 0. Received: {learning_rate!r}.")
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if not positive_int(value):
            raise UsageError(f"{name} must be a positive integer. Received: {value!r}.")
    return {
        "hidden": list(hidden),
        "activation": "relu",
        "learning_rate": float(learning_rate),
        "epochs": epochs,
        "batch_size": batch_size,
    }


def _load_base(
    model: Any,
    *,
    cut: Any,
    preprocessing: str | None,
    version: str | None,
    trust_remote_code: bool,
) -> tuple[Any, str, str]:
    """(frozen base model, page preprocessing mode, a name for the page)."""
    from ..models.slicing import freeze, slice

    mode = preprocessing_mode(preprocessing)
    if isinstance(model, str | os.PathLike):
        path = Path(os.fspath(model))
        if path.suffix in (".keras", ".h5"):
            from ..models.learner import read_sidecar
            from ..models.loading import load

            if not path.exists():
                raise UsageError(f"No such model file: {path}.")
            meta = read_sidecar(path)
            base = load(path, cut=cut, trust_remote_code=trust_remote_code)
            return base, mode or meta.get("preprocessing") or "none", path.name
        from ..models.loading import load, manifest_of

        if mode not in (None, "baked"):
            raise UsageError(
                f"{model} is a registry model: its manifest gives the preprocessing, which "
                f"is baked into the exported base. Received: preprocessing={preprocessing!r}; "
                "leave it out."
            )
        base = load(str(model), cut=cut, version=version, include_preprocessing=True)
        manifest = manifest_of(base)
        return base, "baked", manifest.spec if manifest is not None else str(model)
    base = checked_model(model)
    if cut is not None:
        base = slice(base, cut)
    freeze(base)
    if mode is None:
        logger.warning(
            "No preprocessing given: the page will feed raw 0-255 pixels to %s. Pass "
            "preprocessing='tf'|'caffe'|'torch' or 'baked'.",
            base.name,
        )
    return base, mode or "none", base.name
