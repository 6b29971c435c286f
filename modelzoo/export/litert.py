"""Export tf-keras models to LiteRT (``.tflite``), checked against Keras before they are written.

TensorFlow's own converter (``tf.lite.TFLiteConverter``) turns the model into a
flatbuffer; the LiteRT interpreter (the ``ai-edge-litert`` package, ``pip install
'modelzoo[litert]'``; TensorFlow's deprecated ``tf.lite.Interpreter`` when it is missing)
then runs it on a fixed set of inputs beside the Keras model. Only an export that agrees
with Keras within the threshold of its quantization is written, unless ``force``::

    out.tflite          the model
    out.tflite.json     size, quantization, parity figures, input/output tensors (with
                        int8 scale and zero point), preprocessing, labels

Quantization modes: ``none`` (float32), ``float16`` (weights stored as float16, half
the size), ``dynamic`` (int8 weights, float activations) and ``int8`` (integer-only,
int8 input and output, calibrated on representative images: about a quarter of the
size and what integer accelerators run).

The converter is given one traced, frozen inference function (``model(x,
training=False)`` with the weights as constants), not the Keras model:
``from_keras_model`` accepts tf_keras models too, but first saves every layer's call
functions as a Keras SavedModel, 5-10x slower for the same flatbuffer.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..backend import frozen_function, native_logs_quiet
from ..errors import DataError, ExportError, ParityError, UsageError

__all__ = [
    "QUANTIZATIONS",
    "DEFAULT_MAX_DIFF",
    "DEFAULT_MIN_AGREEMENT",
    "LiteRTResult",
    "export_litert",
    "litert_interpreter",
]

logger = logging.getLogger(__name__)

#: ``quantize=`` values: float32, float16 weights, int8 weights (dynamic range), integer-only.
QUANTIZATIONS = ("none", "float16", "dynamic", "int8")
#: Largest allowed max |Δ| between LiteRT and Keras outputs, as a fraction of the largest
#: |Keras output| on the check inputs. int8 uses it only for outputs that are not class
#: scores (features of a cut model); class scores are checked by top-1 agreement.
DEFAULT_MAX_DIFF = {"none": 1e-3, "float16": 2e-2, "dynamic": 0.1, "int8": 0.25}
#: Smallest allowed fraction of check inputs whose top-1 class int8 keeps.
DEFAULT_MIN_AGREEMENT = 0.9
#: Seeded random inputs checked when no image data is given, and the seed.
CHECK_RANDOM_INPUTS = 16
CHECK_SEED = 0
#: At most this many images of ``data`` are checked, and used to calibrate int8.
CHECK_IMAGES = 64
CALIBRATION_IMAGES = 200

_IMAGE_DEFAULT_SIZE = 224


@dataclass(frozen=True)
class LiteRTResult:
    """What :func:`export_litert` wrote (``report`` is the content of ``FILE.tflite.json``).

    Attributes:
        path: the ``.tflite`` file.
        sidecar: ``FILE.tflite.json`` beside it.
        size: bytes of the ``.tflite`` file.
        quantization: one of :data:`QUANTIZATIONS`.
        parity: the check against Keras (see ``report["parity"]``).
        runtime: the interpreter that ran the check.
        report: everything written to the sidecar.
    """

    path: Path
    sidecar: Path
    size: int
    quantization: str
    parity: dict[str, Any]
    runtime: str
    report: dict[str, Any] = field(repr=False)


# ----------------------------------------------------------------------- interpreter


def litert_interpreter(content: bytes, *, num_threads: int | None = None):
    """A LiteRT interpreter for a ``.tflite`` flatbuffer, and the name of its runtime.

    Uses ``ai_edge_litert`` (``pip install 'modelzoo[litert]'``); when it is not
    installed, falls back to TensorFlow's deprecated ``tf.lite.Interpreter`` and logs so.

    Returns:
        ``(interpreter, runtime)`` where runtime is e.g. ``"ai-edge-litert 2.3.0"``.
    """
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        from ..backend import tf

        logger.warning(
            "ai-edge-litert is not installed, so TensorFlow's deprecated tf.lite.Interpreter "
            "checks the export instead; pip install 'modelzoo[litert]' for the LiteRT runtime."
        )
        Interpreter = tf().lite.Interpreter  # noqa: N806 - a class
        runtime = f"tf.lite.Interpreter (TensorFlow {tf().__version__}, fallback)"
    else:
        from importlib.metadata import PackageNotFoundError, version

        try:
            runtime = f"ai-edge-litert {version('ai-edge-litert')}"
        except PackageNotFoundError:  # pragma: no cover - a nightly or a source build
            runtime = "ai-edge-litert"
    try:
        with native_logs_quiet(), warnings.catch_warnings():  # the delegate's notice
            warnings.filterwarnings("ignore", ".*tf.lite.Interpreter is deprecated")  # said so
            interpreter = Interpreter(model_content=content, num_threads=num_threads)
            interpreter.allocate_tensors()
        return interpreter, runtime
    except ValueError as exc:
        raise ExportError(f"The LiteRT interpreter cannot read the converted model: {exc}") from exc


def _run(interpreter, x: np.ndarray) -> np.ndarray:
    """Outputs of ``interpreter`` for the float batch ``x`` (int8 tensors (de)quantized)."""
    inp = interpreter.get_input_details()[0]
    interpreter.resize_tensor_input(inp["index"], list(x.shape))
    interpreter.allocate_tensors()
    inp = interpreter.get_input_details()[0]
    scale, zero = inp["quantization"]
    if np.issubdtype(inp["dtype"], np.integer) and scale:
        info = np.iinfo(inp["dtype"])
        x = np.clip(np.round(x / scale + zero), info.min, info.max)
    interpreter.set_tensor(inp["index"], x.astype(inp["dtype"]))
    interpreter.invoke()
    out = interpreter.get_output_details()[0]
    y = interpreter.get_tensor(out["index"])
    scale, zero = out["quantization"]
    if np.issubdtype(out["dtype"], np.integer) and scale:
        y = (y.astype(np.float32) - zero) * scale
    return np.asarray(y, dtype=np.float32)


def _tensor_details(details: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for d in details:
        scale, zero = d["quantization"]
        row = {
            "name": d["name"],
            "shape": [int(v) for v in d.get("shape_signature", d["shape"])],
            "dtype": np.dtype(d["dtype"]).name,
        }
        if scale:
            row["scale"] = float(scale)
            row["zero_point"] = int(zero)
        rows.append(row)
    return rows


# ------------------------------------------------------------------------ model


@dataclass
class _Source:
    model: Any
    labels: list[str] | None
    preprocessing: str
    description: str
    cut: str | None
    data: str | None  # the image folder the model was trained on, if known


def _resolve(model: Any, *, cut, labels, preprocessing, trust_remote_code) -> _Source:
    """A Keras model and what is known about it, from a model, a learner, a file or a name."""
    from ..models.learner import TransferLearner

    if isinstance(model, str | os.PathLike):
        from ..models.inference import Predictor

        predictor = Predictor(model, trust_remote_code=trust_remote_code, cut=cut)
        data = predictor.meta.get("data")
        return _Source(
            predictor.model,
            list(labels) if labels is not None else predictor.labels,
            preprocessing or predictor.preprocessing,
            str(model),
            cut,
            data if isinstance(data, str) else None,
        )
    data = None
    if isinstance(model, TransferLearner):
        data = str(model.data_root) if model.data_root is not None else None
        if labels is None and cut is None:
            labels = model.labels
        model = model.model
    if not hasattr(model, "input_shape") or not hasattr(model, "layers"):
        raise UsageError(
            "export_litert takes a tf_keras model, a TransferLearner, a .keras file or a "
            f"registry name. Received: {type(model).__name__}."
        )
    if cut is not None:
        from ..models.slicing import slice

        model = slice(model, cut)
        labels = None
    if preprocessing is None:
        from ..models.loading import manifest_of
        from ..models.preprocessing import baked_mode

        manifest = manifest_of(model)
        if baked_mode(model) is not None:
            preprocessing = "baked"
        else:  # a model loaded without its preprocessing takes preprocessed input
            preprocessing = manifest.input.preprocessing if manifest is not None else "none"
    return _Source(model, labels and list(labels), preprocessing, model.name, cut, data)


def _input_spec(model) -> tuple[tuple[int | None, ...], str]:
    shape = model.input_shape
    if isinstance(shape, list) or isinstance(model.output_shape, list):
        raise UsageError(
            "LiteRT export supports models with one input and one output. Received: "
            f"inputs {model.input_shape}, outputs {model.output_shape}."
        )
    return tuple(shape[1:]), model.inputs[0].dtype.name


def _is_image(shape: tuple[int | None, ...]) -> bool:
    return len(shape) == 3 and shape[-1] in (1, 3)


def _concrete_shape(shape: tuple[int | None, ...]) -> tuple[int, ...]:
    if _is_image(shape):
        h, w = shape[0] or _IMAGE_DEFAULT_SIZE, shape[1] or _IMAGE_DEFAULT_SIZE
        return (h, w, shape[2])
    if any(d is None for d in shape):
        raise UsageError(
            f"The model's input shape {shape} has free dimensions; LiteRT export needs a "
            "fixed input shape (rebuild the model with one)."
        )
    return shape  # type: ignore[return-value]


# ------------------------------------------------------------------------- data


def _image_paths(data: str | os.PathLike[str]) -> list[str]:
    """Image files of ``data``: a folder with class sub-folders, or a flat folder of images."""
    from ..models.images import IMAGE_EXTENSIONS, ImageFolder

    root = Path(data)
    if not root.is_dir():
        raise DataError(
            f"{root} is not a folder; --data needs a folder of images (or one sub-folder of "
            "images per class)."
        )
    if any(p.is_dir() for p in root.iterdir()):
        return list(ImageFolder.scan(root, seed=CHECK_SEED).paths)
    paths = sorted(str(p) for p in root.iterdir() if p.name.lower().endswith(IMAGE_EXTENSIONS))
    if not paths:
        raise DataError(
            f"Found no images in {root} (looked for {', '.join(IMAGE_EXTENSIONS)} files); "
            "add images to it or pass another folder."
        )
    order = np.random.default_rng(CHECK_SEED).permutation(len(paths))
    return [paths[i] for i in order]


def _model_inputs(images: np.ndarray, preprocessing: str) -> np.ndarray:
    """0-255 RGB images as the model takes them (preprocessing applied unless baked)."""
    from ..models.preprocessing import preprocess

    if preprocessing in ("baked", "builtin", "none"):
        return images.astype(np.float32)
    return preprocess(images, preprocessing)


def _read(paths: Sequence[str], shape: tuple[int, ...], preprocessing: str) -> np.ndarray:
    from ..models.images import read_images

    x = read_images(paths, (shape[0], shape[1]))
    if shape[2] == 1:
        x = x.mean(axis=-1, keepdims=True)
    return _model_inputs(x, preprocessing)


def _random_inputs(shape: tuple[int, ...], preprocessing: str, dtype: str) -> np.ndarray:
    rng = np.random.default_rng(CHECK_SEED)
    if _is_image(shape):
        x = rng.uniform(0.0, 255.0, (CHECK_RANDOM_INPUTS, *shape)).astype(np.float32)
        return _model_inputs(x, preprocessing)
    return rng.standard_normal((CHECK_RANDOM_INPUTS, *shape)).astype(dtype)


# ---------------------------------------------------------------------- convert


def _layer_names(model) -> dict[str, str]:
    """Every layer name (nested models included) -> its class name."""
    names: dict[str, str] = {}

    def visit(container) -> None:
        for layer in getattr(container, "layers", ()):
            names.setdefault(layer.name, type(layer).__name__)
            visit(layer)

    visit(model)
    return names


def _convert_error(exc: Exception, model, quantize: str) -> ExportError:
    """The converter's failure as one line naming the ops and the layers they come from."""
    layers = _layer_names(model)
    found: dict[str, set[str]] = {}
    for err in getattr(exc, "errors", None) or []:
        op = err.operator.name.removeprefix("tf.") if err.operator.name else ""
        if not op:
            continue
        owners = found.setdefault(op, set())
        for call in err.location.call:
            path = call.name.split("@", 1)[0]
            for part in path.split("/"):
                if part in layers and part != model.name:
                    owners.add(part)
    text = str(exc)
    if not found:
        for match in re.finditer(r"'tf\.(\w+)' op is neither a custom op nor a flex op", text):
            found.setdefault(match.group(1), set())
        for match in re.finditer(r"TF Select ops: ([\w, ]+)", text):
            for op in match.group(1).split(","):
                if op.strip():
                    found.setdefault(op.strip(), set())
    if found:
        parts = []
        for op, owners in sorted(found.items()):
            where = ", ".join(f"{n!r} ({layers[n]})" for n in sorted(owners))
            parts.append(f"{op} (in layer {where})" if where else op)
        first = next((n for owners in found.values() for n in sorted(owners)), None)
        return ExportError(
            f"LiteRT has no built-in kernel for the TensorFlow op(s) {'; '.join(parts)}, so "
            f"{model.name!r} cannot be exported with --quantize {quantize}. Replace or remove "
            "that layer (or compute it outside the model), then export again.",
            layer=first,
            problems=[f"unsupported op {op}" for op in sorted(found)],
        )
    reason = " ".join(text.split())[:300]
    return ExportError(
        f"The LiteRT converter refused {model.name!r} with --quantize {quantize}: {reason}"
    )


def _convert(model, quantize: str, shape, dtype: str, calibration: np.ndarray | None) -> bytes:
    from ..backend import tf

    tf = tf()
    spec = tf.TensorSpec((None, *shape), tf.as_dtype(dtype), name="input")
    serve = tf.function(lambda x: model(x, training=False), input_signature=[spec])
    # Weights as constants: given variables, the converter would first write them to a
    # SavedModel checkpoint, 2-4x slower.
    frozen = frozen_function(serve.get_concrete_function())
    # An empty module as the "trackable object": the non-deprecated conversion path.
    converter = tf.lite.TFLiteConverter.from_concrete_functions([frozen], tf.Module())
    if quantize != "none":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == "float16":
        converter.target_spec.supported_types = [tf.float16]
    elif quantize == "int8":

        def representative() -> Iterator[list[np.ndarray]]:
            for row in calibration:
                yield [row[None].astype(np.float32)]

        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    try:
        with native_logs_quiet(), warnings.catch_warnings():
            # int8 I/O: the converter notes it got no input statistics; none are needed,
            # the representative data calibrates the input's scale and zero point.
            warnings.filterwarnings("ignore", "Statistics for quantized inputs were expected")
            return converter.convert()
    except Exception as exc:  # ConverterError, and the ValueErrors of quantization passes
        raise _convert_error(exc, model, quantize) from exc


# ----------------------------------------------------------------------- parity


def _parity(
    keras_out: np.ndarray,
    lite_out: np.ndarray,
    *,
    quantize: str,
    max_diff: float | None,
    min_agreement: float | None,
) -> dict[str, Any]:
    keras_out = keras_out.reshape(len(keras_out), -1).astype(np.float64)
    lite_out = lite_out.reshape(len(lite_out), -1).astype(np.float64)
    diff = float(np.max(np.abs(keras_out - lite_out))) if keras_out.size else 0.0
    peak = float(np.max(np.abs(keras_out))) if keras_out.size else 0.0
    relative = diff / peak if peak > 0 else diff
    classes = keras_out.shape[1] > 1
    agreement = (
        float(np.mean(np.argmax(keras_out, 1) == np.argmax(lite_out, 1))) if classes else None
    )
    if quantize == "int8" and agreement is not None:
        threshold = DEFAULT_MIN_AGREEMENT if min_agreement is None else float(min_agreement)
        metric, value, passed = "top1_agreement", agreement, agreement >= threshold
    else:
        threshold = DEFAULT_MAX_DIFF[quantize] if max_diff is None else float(max_diff)
        metric, value, passed = "relative_diff", relative, relative <= threshold
    return {
        "max_abs_diff": diff,
        "max_abs_keras": peak,
        "relative_diff": relative,
        "top1_agreement": agreement,
        "metric": metric,
        "value": value,
        "threshold": threshold,
        "passed": bool(passed),
    }


# ---------------------------------------------------------------------- sidecar


def _preprocessing_spec(mode: str, shape: tuple[int, ...]) -> dict[str, Any]:
    """How a device turns 0-255 RGB pixels into the model's input: y = (x[order] - mean) / std."""
    from ..models.preprocessing import affine

    spec: dict[str, Any] = {"mode": mode}
    if _is_image(shape):
        spec["input_size"] = [int(shape[0]), int(shape[1])]
        spec["channels"] = int(shape[2])
    if mode in ("baked", "builtin", "none"):
        spec["note"] = (
            "the model takes 0-255 RGB pixels as they are"
            if mode != "none"
            else "the model takes its input as it is"
        )
        return spec
    w, b = affine(mode)
    order = "bgr" if w[0, 0] == 0 else "rgb"
    scale = np.abs(w).sum(axis=0)  # one non-zero per column
    spec.update(
        channel_order=order,
        mean=[float(v) for v in -b / scale],
        std=[float(v) for v in 1.0 / scale],
    )
    return spec


def _write(path: Path, content: bytes) -> None:
    from ..files import atomic_write

    try:
        atomic_write(path, content)
    except OSError as exc:
        raise ExportError(
            f"Could not write {path}: {exc.strerror or exc}. Check that the folder is writable "
            "and the disk has free space, then export again."
        ) from exc


# ----------------------------------------------------------------------- export


def export_litert(
    model: Any,
    out: str | os.PathLike[str],
    *,
    quantize: str = "none",
    data: str | os.PathLike[str] | None = None,
    check_data: str | os.PathLike[str] | None = None,
    cut: str | None = None,
    max_diff: float | None = None,
    min_agreement: float | None = None,
    force: bool = False,
    labels: Sequence[str] | None = None,
    preprocessing: str | None = None,
    trust_remote_code: bool = False,
    calibration_images: int = CALIBRATION_IMAGES,
) -> LiteRTResult:
    """Convert ``model`` to a LiteRT ``.tflite`` file, check it against Keras, then write it.

    The check runs the converted model in the LiteRT interpreter and the Keras model on
    the same inputs: up to :data:`CHECK_IMAGES` images of ``check_data`` or ``data``, else
    :data:`CHECK_RANDOM_INPUTS` seeded random images. It reports the max |Δ| of the
    outputs (absolute, and relative to the largest Keras output) and, for class
    scores, the top-1 agreement. An export past the threshold is refused unless
    ``force``; the figures are written to ``FILE.tflite.json`` either way.

    Args:
        model: a registry name, a ``.keras`` file saved by ``modelzoo train``, a
            :class:`~modelzoo.TransferLearner`, or a tf_keras model (one input, one output).
        out: the ``.tflite`` file to write (``out + ".json"`` is written beside it).
        quantize: ``"none"`` (float32), ``"float16"``, ``"dynamic"`` or ``"int8"``.
        data: a folder of images (flat, or one sub-folder per class) read as the model's
            input (resized, preprocessed as its manifest says). ``int8`` calibrates on
            it; it is required for ``int8`` unless the model was trained by modelzoo on
            an image folder that still exists (that folder is used then).
        check_data: a folder of images to check the export on instead of ``data``'s
            (e.g. held-out images, to see how int8 calibrated on ``data`` does on them).
        cut: export the model only up to this layer (a feature extractor).
        max_diff: threshold on the relative max |Δ| (default :data:`DEFAULT_MAX_DIFF`).
        min_agreement: int8 threshold on top-1 agreement (default
            :data:`DEFAULT_MIN_AGREEMENT`).
        force: write the export even when it fails the check.
        labels: class names for the sidecar (default: from the manifest or training).
        preprocessing: what the model expects of 0-255 RGB pixels (``"tf"``, ``"caffe"``,
            ``"torch"``, ``"none"`` or ``"baked"``); default: known from the model.
        trust_remote_code: load a model file without the safety scan (trusted files only).
        calibration_images: at most this many images of ``data`` calibrate ``int8``.

    Returns:
        A :class:`LiteRTResult`.

    Raises:
        UsageError: a bad argument, or ``int8`` without representative data.
        DataError: ``data`` is not a folder of readable images.
        ExportError: the converter cannot take a layer or op (named in the message).
        ParityError: the export differs from Keras past the threshold (and not ``force``).
    """
    if quantize not in QUANTIZATIONS:
        raise UsageError(
            f"Unknown quantization. Received: quantize={quantize!r}. "
            f"Valid: {', '.join(QUANTIZATIONS)}."
        )
    if max_diff is not None and not float(max_diff) >= 0:
        raise UsageError(
            "max_diff must be >= 0 (a fraction of the largest Keras output). "
            f"Received: max_diff={max_diff!r}."
        )
    if min_agreement is not None and not 0 <= float(min_agreement) <= 1:
        raise UsageError(
            "min_agreement must be a fraction in [0, 1]. "
            f"Received: min_agreement={min_agreement!r}."
        )
    if calibration_images < 1:
        raise UsageError(f"calibration_images must be >= 1. Received: {calibration_images}.")
    path = Path(out).expanduser()
    if path.is_dir():
        raise UsageError(f"{path} is a folder; pass the .tflite file to write (e.g. model.tflite).")
    if path.suffix != ".tflite":
        raise UsageError(f"Write LiteRT models to a .tflite file. Received: {path}.")
    if quantize == "int8" and data is None and not _trained_on_folder(model):
        raise UsageError(_NEEDS_DATA)  # before the (slow) load
    paths = _image_paths(data) if data is not None else None  # a bad folder fails early
    check_paths = _image_paths(check_data) if check_data is not None else None

    source = _resolve(
        model,
        cut=cut,
        labels=labels,
        preprocessing=preprocessing,
        trust_remote_code=trust_remote_code,
    )
    keras_model = source.model
    declared, dtype = _input_spec(keras_model)
    shape = _concrete_shape(declared)
    data_source = str(data) if data is not None else None
    if paths is None and quantize == "int8":
        if source.data is None or not Path(source.data).is_dir():
            raise UsageError(
                f"{_NEEDS_DATA} (The folder the model was trained on, {source.data}, is gone.)"
            )
        data_source = source.data
        paths = _image_paths(source.data)
        logger.info("int8: calibrating on %s, the folder the model was trained on", data_source)
    if (paths is not None or check_paths is not None) and not _is_image(shape):
        raise UsageError(
            f"--data gives images, but the model's input is {declared}, not an image "
            "(height, width, 1 or 3 channels)."
        )

    if check_paths is not None:
        check = _read(check_paths[:CHECK_IMAGES], shape, source.preprocessing)
        check_desc = f"{len(check)} images from {check_data}"
    elif paths is not None:
        check = _read(paths[:CHECK_IMAGES], shape, source.preprocessing)
        check_desc = f"{len(check)} images from {data_source}"
    else:
        check = _random_inputs(shape, source.preprocessing, dtype)
        check_desc = f"{len(check)} seeded random inputs (seed {CHECK_SEED})"
    calibration = None
    if quantize == "int8":
        calibration = _read(paths[:calibration_images], shape, source.preprocessing)

    content = _convert(keras_model, quantize, shape, dtype, calibration)
    interpreter, runtime = litert_interpreter(content)
    keras_out = np.asarray(keras_model(check, training=False))
    lite_out = _run(interpreter, check)
    parity = _parity(
        keras_out, lite_out, quantize=quantize, max_diff=max_diff, min_agreement=min_agreement
    )
    parity = {"inputs": check_desc, **parity, "forced": bool(force and not parity["passed"])}
    if not parity["passed"] and not force:
        raise ParityError(_refusal(parity, quantize), quantization=quantize, parity=parity)

    from ..backend import tf
    from ..config import VERSION

    report = {
        "format": "litert",
        "file": path.name,
        "size": len(content),
        "sha256": hashlib.sha256(content).hexdigest(),
        "quantization": quantize,
        "model": {"source": source.description, "name": keras_model.name, "cut": source.cut},
        "parity": parity,
        "runtime": runtime,
        "inputs": _tensor_details(interpreter.get_input_details()),
        "outputs": _tensor_details(interpreter.get_output_details()),
        "preprocessing": _preprocessing_spec(source.preprocessing, shape),
        "labels": source.labels,
        "calibration": (
            {"images": int(len(calibration)), "source": data_source}
            if calibration is not None
            else None
        ),
        "converter": f"tf.lite.TFLiteConverter (TensorFlow {tf().__version__})",
        "generated_by": f"modelzoo {VERSION}",
    }
    sidecar = path.with_name(path.name + ".json")
    _write(path, content)
    _write(sidecar, (json.dumps(report, indent=2, allow_nan=False) + "\n").encode("utf-8"))
    logger.info(
        "Exported %s to LiteRT: %s (%d bytes, %s, %s %.4g)",
        keras_model.name,
        path,
        len(content),
        quantize,
        parity["metric"],
        parity["value"],
    )
    return LiteRTResult(
        path=path,
        sidecar=sidecar,
        size=len(content),
        quantization=quantize,
        parity=parity,
        runtime=runtime,
        report=report,
    )


def _trained_on_folder(model: Any) -> bool:
    """Whether ``model`` (a learner, or a saved model's sidecar) names a training folder."""
    if isinstance(model, str | os.PathLike):
        if Path(model).suffix not in (".keras", ".h5"):
            return False  # a registry name
        from ..models.learner import read_sidecar

        return isinstance(read_sidecar(model).get("data"), str)
    return getattr(model, "data_root", None) is not None


_NEEDS_DATA = (
    "int8 quantization needs representative images to calibrate on: pass --data DIR "
    "(data=...), a folder of images like the ones the model will see."
)


def _refusal(parity: dict[str, Any], quantize: str) -> str:
    if parity["metric"] == "top1_agreement":
        got = (
            f"top-1 agreement with Keras is {parity['value']:.1%} on {parity['inputs']}, "
            f"below the threshold {parity['threshold']:.1%}"
        )
        flag = "--min-agreement (min_agreement=)"
    else:
        got = (
            f"max |Δ| from Keras is {parity['max_abs_diff']:.3g} "
            f"({parity['relative_diff']:.3g} of the largest output) on {parity['inputs']}, "
            f"above the threshold {parity['threshold']:.3g}"
        )
        flag = "--max-diff (max_diff=)"
    return (
        f"Refusing to write the --quantize {quantize} export: its {got}. Try another "
        f"quantization or more representative --data, relax {flag}, or pass --force "
        "(force=True) to write it anyway."
    )
