"""Publishing a saved Keras model into a registry folder.

:func:`publish` takes a saved ``.keras`` / ``.h5`` model and writes it into
``<registry>/models/<name>/<version>/`` beside a generated manifest, then rebuilds the
registry's ``index.json``. The folder can be served by any static web server (``python
-m http.server`` is enough) and added with ``modelzoo registry add URL``; the artifact
URL in the manifest is relative, so the same folder works on disk and over HTTP.

Publishing is all-or-nothing: the model is copied into a staging folder inside the
registry, loaded through the same safety scan as any download, hashed, described, and
only then renamed into place in one step; if rebuilding the index fails the version
folder is removed again. Published versions are immutable. Checking a registry folder
(``modelzoo registry verify``) needs no model and lives in :mod:`modelzoo.hub.folder`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import SCHEMA_VERSION
from ..errors import UsageError, VersionExistsError
from ..hub.folder import STAGING_PREFIX, registry_lock, stale_staging
from ..hub.hashes import file_digests
from ..hub.manifest import NAME_RE, PREPROCESSING_MODES, Manifest, parse_manifest
from ..versions import is_version

__all__ = ["PublishResult", "publish", "read_labels"]

logger = logging.getLogger(__name__)

_FORMATS = {".keras": ("keras", ".keras"), ".h5": ("h5", ".h5"), ".hdf5": ("h5", ".h5")}


@dataclass(frozen=True)
class PublishResult:
    """What :func:`publish` wrote.

    Attributes:
        manifest: the validated manifest.
        manifest_path: ``<registry>/models/<name>/<version>/manifest.json``.
        artifact_path: the model file beside it.
        sha256: hex sha256 of the artifact.
        size: its size in bytes.
        index_path: the rebuilt ``index.json``.
        signed: the new TUF metadata versions when published with ``sign``.
        signature_path: the artifact's OMS bundle (``<file>.sig``) when published with
            ``oms_key``, else None.
    """

    manifest: Manifest
    manifest_path: Path
    artifact_path: Path
    sha256: str
    size: int
    index_path: Path
    signed: Any = None
    signature_path: Path | None = None


# --------------------------------------------------------------------------- publishing


def read_labels(path: str | os.PathLike[str]) -> list[str]:
    """The class names in a labels file (:func:`modelzoo.models.learner.read_labels_file`).

    Accepts what ``modelzoo train`` writes (``{"labels": [...], ...}``) and a plain list.

    Raises:
        UsageError: unreadable, not in that format, or without labels.
    """
    from .learner import read_labels_file

    labels = read_labels_file(path).get("labels")
    if not labels:
        raise UsageError(f'{path}: no class names in it; expected e.g. ["cat", "dog"].')
    return labels


def _check_args(name: str, version: str, model_file: Path, preprocessing: str):
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise UsageError(
            f"Invalid model name {name!r}: use 1-100 characters of a-z, 0-9, '.', '_', '-', "
            "starting with a letter or digit (e.g. pacman_detector)."
        )
    if not isinstance(version, str) or not is_version(version):
        raise UsageError(f"Invalid version {version!r}: use a semantic version such as 1.0.0.")
    if preprocessing not in PREPROCESSING_MODES:
        raise UsageError(
            f"Invalid preprocessing {preprocessing!r}; valid: {', '.join(PREPROCESSING_MODES)}."
        )
    fmt = _FORMATS.get(model_file.suffix.lower())
    if fmt is None:
        raise UsageError(
            f"{model_file}: publish takes a whole saved model ending in .keras (preferred) or "
            f".h5; received {model_file.suffix or 'no suffix'}. Save it with model.save(...)."
        )
    if not model_file.is_file():
        raise UsageError(f"{model_file} does not exist or is not a file.")
    return fmt


def _shape(shape) -> list[int | None] | None:
    dims = list(shape)[1:]  # drop the batch dimension
    ok = dims and all(d is None or (isinstance(d, int) and d > 0) for d in dims)
    return dims if ok else None


def _describe(model, cut_points: Sequence[str], labels) -> dict[str, Any]:
    """Input shape, dtype, cut point shapes and a summary, read from the loaded model."""
    from .slicing import find_layer, layers

    if len(model.inputs) != 1:
        raise UsageError(
            f"publish needs a single-input model; {model.name!r} has {len(model.inputs)} inputs."
        )
    tensor = model.inputs[0]
    shape = _shape(tensor.shape.as_list())
    if shape is None:
        raise UsageError(f"Cannot describe the input shape {tensor.shape} of {model.name!r}.")
    if isinstance(labels, list) and len(model.outputs) == 1:
        classes = model.outputs[0].shape.as_list()[-1]
        if isinstance(classes, int) and classes != len(labels):
            raise UsageError(
                f"{len(labels)} labels given but the model's output has {classes} classes; "
                "give one label per output unit."
            )
    by_name = {info.name: info for info in layers(model)}
    cuts = []
    for layer in dict.fromkeys(cut_points):
        find_layer(model, layer)  # LayerNotFoundError with the nearest names
        out = by_name[layer].output_shape if layer in by_name else None
        cut: dict[str, Any] = {"layer": layer}
        if isinstance(out, tuple) and _shape(out) is not None:
            cut["shape"] = _shape(out)
        cut["variant"] = "full"
        cuts.append(cut)
    return {
        "shape": shape,
        "dtype": tensor.dtype.name,
        "cut_points": cuts,
        "summary": f"{model.name}: {len(model.layers)} layers, {model.count_params():,} parameters",
    }


def publish(
    model_file: str | os.PathLike[str],
    *,
    name: str,
    version: str,
    registry: str | os.PathLike[str],
    summary: str | None = None,
    license: str = "unknown",
    family: str = "",
    task: str = "image-classification",
    tags: Iterable[str] = (),
    cut_points: Sequence[str] = (),
    labels: list[str] | str | None = None,
    preprocessing: str = "none",
    homepage: str | None = None,
    paper: str | None = None,
    notes: str | None = None,
    golden: bool = True,
    sign: str | os.PathLike[str] | None = None,
    oms_key: str | os.PathLike[str] | None = None,
) -> PublishResult:
    """Publish a saved model as ``name@version`` into the registry folder ``registry``.

    Args:
        model_file: a whole saved model, ``.keras`` (preferred) or legacy ``.h5``.
        name: the model name (a-z, 0-9, ``.``, ``_``, ``-``).
        version: a semantic version; an existing version is never overwritten.
        registry: the registry folder (created if missing).
        summary: one line for search results (default: derived from the model).
        license, family, task, tags, homepage, paper, notes: manifest metadata.
        cut_points: layer names worth slicing at; each must exist, its output shape is
            recorded.
        labels: class names (one per output unit), ``"imagenet"`` or None.
        preprocessing: ``none``, ``tf``, ``caffe``, ``torch`` or ``builtin``.
        golden: record golden outputs (:mod:`modelzoo.models.golden`) for a seeded input, at the
            top and at each cut point, so consumers can check with ``modelzoo verify
            --outputs`` that they compute what you published. Skipped for models whose
            input is not floating point or has no fixed shape.
        sign: the folder of the registry's online TUF keys: the manifest and artifact
            become signed targets and targets, snapshot and timestamp get new versions
            (see :mod:`modelzoo.hub.signing`). Checked before anything is written.
        oms_key: an elliptic-curve private key (PEM) to sign the model file with in the
            OpenSSF model-signing format: ``<file>.sig`` is written beside it and listed
            in the manifest, and consumers check it with ``modelzoo verify NAME
            --signature --public-key PUB.pem`` (:mod:`modelzoo.hub.model_signature`;
            needs ``modelzoo[signing]``). Read before anything is written.

    Returns:
        A :class:`PublishResult`.

    Raises:
        UsageError: bad name, version, file, labels or preprocessing, or an ``oms_key``
            that is not an elliptic-curve private key.
        VersionExistsError: ``name@version`` is already in the registry.
        UnsafeModelError, ModelFileError: the model fails the safety scan or cannot load.
        LayerNotFoundError: a cut point is not a layer of the model.
        ManifestError, RegistryError: another manifest in the registry is invalid (the
            index cannot be rebuilt); nothing is published then.
        SigningError: ``sign`` is given but the registry is not signed or a key is not its
            own; nothing is published then.
        DependencyError: ``oms_key`` is given but model_signing is not installed.
    """
    from ..hub.index import write_index
    from ..safety.scan import load_model_file

    model_file = Path(model_file)
    fmt, suffix = _check_args(name, version, model_file, preprocessing)
    root = Path(registry).expanduser().absolute()
    created_root = not root.exists()
    if not created_root and not root.is_dir():
        raise UsageError(f"Registry {root} is not a folder.")
    if sign is not None:
        from ..hub.signing import check_keys

        check_keys(root, sign)  # a wrong key fails here, before anything is published
    signer = None
    if oms_key is not None:
        from ..hub.model_signature import OmsSigner

        signer = OmsSigner(oms_key)  # likewise: an unusable key fails before any write
    target = root / "models" / name / version
    file_name = f"{name}{suffix}"
    root.mkdir(parents=True, exist_ok=True)
    staging = root / f"{STAGING_PREFIX}{secrets.token_hex(8)}"
    made: list[Path] = []
    try:
        with registry_lock(root):
            # Holding the lock, any staging folder left is from a publish that was killed.
            for stale in stale_staging(root):
                logger.warning("removing %s, left by an interrupted publish", stale)
                shutil.rmtree(stale, ignore_errors=True)
            if target.exists():
                raise VersionExistsError(name, version, path=str(target))
            staging.mkdir()
            artifact = staging / file_name
            shutil.copyfile(model_file, artifact)
            # load the staged copy: the bytes scanned are the bytes published
            model = load_model_file(artifact, expected_format=fmt)
            facts = _describe(model, cut_points, labels)
            digests = file_digests(artifact, ("sha256",))
            size = artifact.stat().st_size
            entry: dict[str, Any] = {
                "url": file_name,
                "hash": f"sha256:{digests['sha256']}",
                "size": size,
                "format": fmt,
                "file_name": file_name,
            }
            if signer is not None:
                bundle = signer.sign(artifact, staging / f"{file_name}.sig")
                entry["signature"] = {
                    "url": bundle.name,
                    "hash": f"sha256:{file_digests(bundle, ('sha256',))['sha256']}",
                }
            doc: dict[str, Any] = {
                "schema_version": SCHEMA_VERSION,
                "name": name,
                "version": version,
                "family": family,
                "summary": summary or facts["summary"],
                "task": task,
                "license": license,
                "tags": list(tags),
                "input": {
                    "shape": facts["shape"],
                    "dtype": facts["dtype"],
                    "preprocessing": preprocessing,
                },
                "labels": labels,
                "build": {"kind": "keras-model"},
                "artifacts": {"full": entry},
                "cut_points": facts["cut_points"],
            }
            for key, value in (("homepage", homepage), ("paper", paper), ("notes", notes)):
                if value:
                    doc[key] = value
            # a seeded input needs a fixed shape and a floating-point input
            fixed = None not in facts["shape"]
            if golden and fixed and facts["dtype"].startswith(("float", "bfloat")):
                from .golden import record

                doc["golden"] = record(
                    model,
                    preprocessing=preprocessing,
                    cuts=[c["layer"] for c in facts["cut_points"]],
                )
            manifest = parse_manifest(doc, source=f"{name}@{version}")
            text = json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
            (staging / "manifest.json").write_text(text, encoding="utf-8")
            for folder in (root / "models", root / "models" / name):
                if not folder.exists():
                    folder.mkdir()
                    made.append(folder)
            os.rename(staging, target)  # one step: readers never see half a version
            signed = None
            try:
                index = write_index(root)
                if sign is not None:
                    from ..hub.signing import sign_registry

                    signed = sign_registry(root, sign)
            except BaseException:
                shutil.rmtree(target, ignore_errors=True)
                with contextlib.suppress(Exception):
                    write_index(root)  # the index may already list the removed version
                raise
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        for folder in reversed(made):
            with contextlib.suppress(OSError):
                folder.rmdir()
        if created_root:
            shutil.rmtree(root, ignore_errors=True)
        raise
    logger.info("published %s to %s", manifest.spec, target)
    return PublishResult(
        manifest,
        target / "manifest.json",
        target / file_name,
        digests["sha256"],
        size,
        index,
        signed,
        target / f"{file_name}.sig" if signer is not None else None,
    )
