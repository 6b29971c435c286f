"""Turn a manifest and its cached artifacts into a ``keras.Model``, safely.

``keras-application`` manifests are built from an allow-list of ``tf_keras.applications``
constructors (a manifest can never make us import an arbitrary name) with
``weights=None``, then the cached weights are loaded with ``load_weights`` after the
safety scan. ``keras-model`` manifests are whole saved models, scanned and then loaded
with ``safe_mode``. When a cut layer lies inside the no-top graph, only the smaller
``notop`` artifact is fetched.
"""

from __future__ import annotations

import contextlib
import logging
import operator
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .. import config
from ..errors import IntegrityError, UsageError
from ..hub.manifest import Manifest

__all__ = [
    "load",
    "layers",
    "build_application",
    "choose_variant",
    "default_cut",
    "manifest_of",
    "APPLICATIONS",
]

logger = logging.getLogger(__name__)

_REGNET_SIZES = (2, 4, 6, 8, 16, 32, 40, 64, 80, 120, 160, 320)

#: The only constructors a manifest may name (all live in ``tf_keras.applications``).
APPLICATIONS = frozenset(
    {
        "Xception",
        "VGG16",
        "VGG19",
        "ResNet50",
        "ResNet101",
        "ResNet152",
        "ResNet50V2",
        "ResNet101V2",
        "ResNet152V2",
        "InceptionV3",
        "InceptionResNetV2",
        "MobileNet",
        "MobileNetV2",
        "MobileNetV3Small",
        "MobileNetV3Large",
        "DenseNet121",
        "DenseNet169",
        "DenseNet201",
        "NASNetMobile",
        "NASNetLarge",
        "EfficientNetB0",
        "EfficientNetB1",
        "EfficientNetB2",
        "EfficientNetB3",
        "EfficientNetB4",
        "EfficientNetB5",
        "EfficientNetB6",
        "EfficientNetB7",
        "EfficientNetV2B0",
        "EfficientNetV2B1",
        "EfficientNetV2B2",
        "EfficientNetV2B3",
        "EfficientNetV2S",
        "EfficientNetV2M",
        "EfficientNetV2L",
        "ConvNeXtTiny",
        "ConvNeXtSmall",
        "ConvNeXtBase",
        "ConvNeXtLarge",
        "ConvNeXtXLarge",
        *(f"RegNet{k}{n:03d}" for k in "XY" for n in _REGNET_SIZES),
        *(f"ResNetRS{n}" for n in (50, 101, 152, 200, 270, 350, 420)),
    }
)

_MODEL_SUFFIXES = (".keras", ".h5", ".hdf5")


def _constructor(manifest: Manifest):
    from ..backend import keras

    name = manifest.build.constructor or ""
    if name not in APPLICATIONS:
        raise UsageError(
            f"{manifest.spec}: constructor {name!r} is not an allow-listed "
            "tf_keras.applications constructor; modelzoo never imports names from manifests. "
            "Publish the model as a whole saved model (build.kind 'keras-model') instead."
        )
    return getattr(keras().applications, name)


def _caller_shape(manifest: Manifest, input_shape: Sequence[int]) -> tuple[int | None, ...]:
    """A caller's ``input_shape``, checked before anything is built."""
    from ..hub.manifest import MAX_INPUT_VALUES

    try:
        if any(isinstance(d, bool) for d in input_shape):
            raise TypeError("bool")
        shape = tuple(None if d is None else operator.index(d) for d in input_shape)
    except TypeError:  # not a sequence, or a float / string / bool inside
        shape = ()
    if len(shape) != 3 or any(d is not None and d <= 0 for d in shape):
        raise UsageError(
            f"input_shape must be (height, width, channels) of positive integers. "
            f"Received: input_shape={input_shape!r}; {manifest.spec} defaults to "
            f"{list(manifest.input.shape)}."
        )
    values = 1
    for d in shape:
        values *= d or 1
    if values > MAX_INPUT_VALUES:
        raise UsageError(
            f"input_shape={shape} is too large ({values:,} values per image, at most "
            f"{MAX_INPUT_VALUES:,}); {manifest.spec} defaults to {list(manifest.input.shape)}."
        )
    return shape


def _kwargs(manifest: Manifest, input_shape: Sequence[int] | None) -> dict[str, Any]:
    """Constructor arguments: the caller's input shape, else the manifest's.

    Many constructors default to ``(None, None, 3)`` when no ``input_shape`` is given;
    building at the manifest's ``input.shape`` instead gives the cut points their listed
    static shapes, which a Dense head needs.
    """
    kwargs = dict(manifest.build.kwargs)
    if input_shape is not None:
        kwargs["input_shape"] = _caller_shape(manifest, input_shape)
    elif kwargs.get("input_shape") is not None:
        kwargs["input_shape"] = tuple(kwargs["input_shape"])
    elif all(d is not None for d in manifest.input.shape):
        kwargs["input_shape"] = tuple(manifest.input.shape)
    return kwargs


def build_application(manifest: Manifest, *, include_top: bool, input_shape=None):
    """Build the manifest's architecture with ``weights=None`` (no download, no weights)."""
    ctor = _constructor(manifest)
    kwargs = _kwargs(manifest, input_shape)
    try:
        return ctor(include_top=include_top, weights=None, **kwargs)
    except ValueError as exc:
        raise UsageError(
            f"Cannot build {manifest.spec} (include_top={include_top}, {kwargs}): {exc}. "
            f"Default input shape: {list(manifest.input.shape)}; minimum size: "
            f"{manifest.input.min_size}. A different input_shape needs the notop weights "
            "(include_top=False or a cut inside the feature extractor)."
        ) from exc


def choose_variant(
    manifest: Manifest, cut: Any = None, *, include_top: bool | None = None, input_shape=None
) -> str:
    """Which artifact a load needs: the small ``notop`` one whenever it suffices.

    Args:
        manifest: the model's manifest.
        cut: the requested cut (layer name, path, index or list), or None.
        include_top: True/False forces ``full``/``notop``; None decides from ``cut``.
        input_shape: a non-default input shape only works with the no-top graph.
    """
    variants = set(manifest.artifacts)
    if include_top is True:
        return manifest.artifact("full").variant
    if include_top is False:
        return manifest.artifact("notop").variant
    if manifest.build.kind != "keras-application" or "notop" not in variants:
        return "full" if "full" in variants else sorted(variants)[0]
    if cut is None:
        if input_shape is not None and "notop" in variants:
            return "notop"
        return "full" if "full" in variants else "notop"
    if "full" not in variants:
        return "notop"
    cuts = cut if isinstance(cut, list | tuple) else [cut]
    if any(not isinstance(c, str) for c in cuts):
        return "full"  # an index refers to the whole network's layer order
    listed = {cp.layer: cp.variant for cp in manifest.cut_points}
    if all(listed.get(c) == "notop" for c in cuts):
        return "notop"
    # Not listed: build the no-top architecture (cheap, no weights) and look.
    from .slicing import has_layer

    notop = build_application(manifest, include_top=False, input_shape=input_shape)
    try:
        return "notop" if all(has_layer(notop, c) for c in cuts) else "full"
    finally:
        del notop


def default_cut(name: str | os.PathLike[str], *, version: str | None = None) -> str | None:
    """The first cut point of a registry model's manifest: where a new head goes by default.

    Cutting there, not at the classifier's softmax, is what transfer learning needs.
    None for a model file or a manifest that lists no cut point.
    """
    path = Path(os.fspath(name))
    if path.suffix in _MODEL_SUFFIXES and path.exists():
        return None
    from ..hub.project import resolve_in_context

    manifest = resolve_in_context(str(name), version=version).manifest
    if not manifest.cut_points:
        return None
    layer = manifest.cut_points[0].layer
    logger.info(
        "%s: cut at %s (the manifest's first cut point); pass a cut to choose another",
        manifest.spec,
        layer,
    )
    return layer


def _load_file(path: Path, *, trust_remote_code: bool, fmt: str | None = None, sha256=None):
    from ..safety.scan import load_model_file

    fmt = fmt or ("keras" if path.suffix == ".keras" else "h5")
    return load_model_file(
        path, expected_format=fmt, trust_remote_code=trust_remote_code, sha256=sha256
    )


@contextlib.contextmanager
def _repair_hint(manifest: Manifest, variant: str):
    """Say how to repair a cached file that fails its sha256 check."""
    try:
        yield
    except IntegrityError as exc:
        raise IntegrityError(
            f"{exc.path}: the cached file of {manifest.spec} ({variant}) is damaged (its "
            f"{exc.actual} differs from the {exc.expected} recorded at install); it was not "
            f"loaded. Run `modelzoo install {manifest.spec} --force` to download it again.",
            path=exc.path,
            expected=exc.expected,
            actual=exc.actual,
        ) from exc


def load(
    name: str | os.PathLike[str],
    cut: Any = None,
    *,
    version: str | None = None,
    include_top: bool | None = None,
    input_shape: Sequence[int] | None = None,
    trainable: bool = False,
    include_preprocessing: bool = False,
    trust_remote_code: bool = False,
):
    """Install (if needed) and load a pretrained model, optionally sliced at ``cut``.

    Args:
        name: a registry name (``"mobilenet_v1_1.0_224"``, ``"vgg16@1.0.0"``) or the path
            of a saved ``.keras`` / ``.h5`` model.
        cut: where to slice: a layer name, an ``outer/inner`` path, a negative index, or a
            list of those (multi-output). None keeps the whole network.
        version: version or constraint (alternative to ``name@version``).
        include_top: force the ``full`` (True) or ``notop`` (False) weights; by default the
            smaller ``notop`` file is used whenever ``cut`` lies inside it.
        input_shape: a non-default input shape (H, W, C) where the architecture allows it.
        trainable: leave the layers trainable (default: frozen, ready for a new head).
        include_preprocessing: bake the manifest's preprocessing into the model so it
            takes raw 0–255 RGB images.
        trust_remote_code: skip the safety scan of saved models (only for trusted files).

    Returns:
        A ``tf_keras.Model``.

    Raises:
        ModelNotFoundError, OfflineError, IntegrityError, UnsafeModelError,
        LayerNotFoundError, UsageError: see ``modelzoo.errors``.
    """
    from .slicing import freeze, slice

    path = Path(os.fspath(name))
    manifest = None
    if path.suffix in _MODEL_SUFFIXES and path.exists():
        model = _load_file(path, trust_remote_code=trust_remote_code)
    else:
        from ..hub.install import ensure_installed
        from ..hub.project import resolve_in_context

        # inside a project: the locked version and the project's registries; a model no
        # registry provides (unpacked from a bundle, or offline) loads from the cache
        resolved = resolve_in_context(str(name), version=version)
        manifest = resolved.manifest
        if input_shape is not None and manifest.build.kind == "keras-application":
            input_shape = _caller_shape(manifest, input_shape)  # before any download
        variant = choose_variant(manifest, cut, include_top=include_top, input_shape=input_shape)
        record = ensure_installed(resolved, variant)
        logger.info("loading %s (%s) from %s", manifest.spec, variant, record.path)
        # Re-check the bytes against the install record, in the same read as the scan.
        sha256 = None if config.trust_cache() else record.sha256
        if manifest.build.kind == "keras-application":
            from ..safety.scan import load_weights_file

            model = build_application(
                manifest, include_top=(variant == "full"), input_shape=input_shape
            )
            with _repair_hint(manifest, variant):
                load_weights_file(
                    model, Path(record.path), trust_remote_code=trust_remote_code, sha256=sha256
                )
        else:
            if input_shape is not None:
                raise UsageError(
                    f"{manifest.spec} is a whole saved model; its input shape is fixed. "
                    f"Received: input_shape={tuple(input_shape)}."
                )
            with _repair_hint(manifest, variant):
                model = _load_file(
                    Path(record.path),
                    trust_remote_code=trust_remote_code,
                    fmt=manifest.artifact(variant).format,
                    sha256=sha256,
                )
    if cut is not None:
        model = slice(model, cut)
    if not trainable:
        freeze(model)
    if include_preprocessing:
        if manifest is None:
            raise UsageError(
                "include_preprocessing needs a registry model (its manifest names the mode); "
                "for a file, wrap it with "
                "modelzoo.models.preprocessing.with_preprocessing(model, mode)."
            )
        from .preprocessing import with_preprocessing

        model = with_preprocessing(model, manifest.input.preprocessing)
    if manifest is not None:
        _tag(model, manifest)
    return model


def _tag(model, manifest: Manifest) -> None:
    """Remember where a model came from (used by the learner and the CLI; not saved)."""
    with contextlib.suppress(AttributeError, TypeError):  # exotic model classes
        model._modelzoo_manifest = manifest


def manifest_of(model) -> Manifest | None:
    """The manifest a model was loaded from, if it came from :func:`load`."""
    return getattr(model, "_modelzoo_manifest", None)


def layers(model_or_name, *, filter: str | None = None, expand_nested: bool = True):
    """List a model's layers: :func:`modelzoo.models.slicing.layers`, also given a name.

    Args:
        model_or_name: a tf_keras model, or a model name / file path given to :func:`load`.
        filter: a glob matched against each layer's name and full path.
        expand_nested: also list the layers inside nested models.

    Returns:
        A list of :class:`~modelzoo.models.slicing.LayerInfo`, in walk order.
    """
    from .slicing import layers as model_layers

    model = load(model_or_name) if isinstance(model_or_name, str) else model_or_name
    return model_layers(model, filter=filter, expand_nested=expand_nested)
