"""Safe by default: every model file is scanned before tf_keras touches it.

tf_keras runs code from model files in ways its ``safe_mode`` does not stop: a Lambda
layer in a legacy ``.h5`` model runs even with ``safe_mode=True``; HDF5 bytes named
``.keras`` take that same legacy path; a ``.keras`` config may name any module for a
class or function (at the top level, or as a loss in the compile config) and tf_keras
imports it; HDF5 external storage, external links and virtual datasets make h5py read
other files of this machine into the weights; and a ``.keras`` zip is extracted to
TMPDIR in full, padding and all.

:func:`scan` reads the file with h5py, zipfile and json only, never through Keras, and
raises :class:`~modelzoo.errors.UnsafeModelError` for any of that. :func:`load_model_file`
and :func:`load_weights_file` scan, then load. ``trust_remote_code=True`` is the one
explicit way past the scan.

Given the sha256 an install recorded, :func:`scan` also re-checks the file's integrity in
the same read: the file is mapped once, a worker thread hashes the mapping while the
scanner reads its structure from it, so a cache corrupted after install is refused with
:class:`~modelzoo.errors.IntegrityError` for the cost of one overlapped pass.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import mmap
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .. import backend
from ..errors import (
    IntegrityError,
    ModelFileError,
    NotInstalledError,
    UnsafeModelError,
    UsageError,
    first_line,
)
from ..hub.hashes import Hasher
from ._config import check_config, count_layers, parse_config
from ._hdf5 import scan_hdf5
from ._window import Window
from ._zip import scan_keras_zip

__all__ = [
    "ScanReport",
    "detect_format",
    "scan",
    "load_model_file",
    "load_weights_file",
    "DEFAULT_MAX_BYTES",
    "EXPECTED_FORMATS",
]

logger = logging.getLogger(__name__)

#: Default cap on the bytes a file may expand to (zip members, declared HDF5 datasets).
#: The largest Keras Applications weights (VGG16 with top) are ~550 MB.
DEFAULT_MAX_BYTES = 8 << 30

#: Manifest artifact format -> the container its bytes must be.
EXPECTED_FORMATS = {"h5-weights": "hdf5", "h5": "hdf5", "keras": "zip"}

_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_ZIP_SIGNATURES = (b"PK\x03\x04", b"PK\x05\x06")
_SUFFIX_CONTAINER = {".h5": "hdf5", ".hdf5": "hdf5", ".he5": "hdf5", ".keras": "zip", ".zip": "zip"}
_DESCRIBE = {"hdf5": "HDF5", "zip": "a zip archive", "unknown": "neither HDF5 nor zip"}


@dataclass(frozen=True)
class ScanReport:
    """The result of a successful :func:`scan`.

    Attributes:
        path: the file scanned.
        format: its container, from magic bytes: ``"hdf5"`` or ``"zip"``.
        expected_format: the manifest format it was checked as.
        n_layers: layers in the model config (or ``layer_names`` of a weights file).
        class_names: every Keras class the config names, sorted.
        warnings: things worth knowing that are not reasons to refuse.
        weights_layout: for HDF5, ``"legacy"``, ``"v3"`` or ``"unknown"``.
        sha256: the file's sha256 when the scan was asked to check one, else None.
    """

    path: str
    format: str
    expected_format: str
    n_layers: int | None = None
    class_names: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    weights_layout: str | None = None
    sha256: str | None = None


def detect_format(path: str | os.PathLike[str]) -> str:
    """The container of a file from its magic bytes, never from its name.

    HDF5 is recognised at offset 0 or after a user block (offsets 512, 1024, 2048, ...),
    where HDF5 itself looks for it. A file that starts with a zip header is a zip even if
    an HDF5 signature appears at a user-block offset: a stored member of a genuine
    ``.keras`` can land there, and tf_keras reads such a file as a zip.

    Returns:
        ``"hdf5"``, ``"zip"`` or ``"unknown"``.

    Raises:
        NotInstalledError: when the file does not exist (a ``FileNotFoundError``).
    """
    p = _require_file(path)
    with open(p, "rb") as fh:
        head = fh.read(8)
        if head == _HDF5_SIGNATURE:
            return "hdf5"
        if head[:4] in _ZIP_SIGNATURES:
            return "zip"
        size = os.fstat(fh.fileno()).st_size
        offset = 512
        while offset + len(_HDF5_SIGNATURE) <= size:
            fh.seek(offset)
            if fh.read(len(_HDF5_SIGNATURE)) == _HDF5_SIGNATURE:
                return "hdf5"
            offset *= 2
    return "unknown"


def scan(
    path: str | os.PathLike[str],
    *,
    expected_format: str,
    max_bytes: int | None = None,
    check_compile_config: bool = True,
    sha256: str | None = None,
) -> ScanReport:
    """Check a model file without running anything from it.

    Args:
        path: the file.
        expected_format: the manifest artifact format: ``"h5-weights"`` (weights for a
            constructor), ``"h5"`` (a whole legacy HDF5 model) or ``"keras"``.
        max_bytes: cap on what the file may expand to (default :data:`DEFAULT_MAX_BYTES`).
        check_compile_config: also check the training/compile config. tf_keras only reads
            it when loading with ``compile=True``; a custom loss there is refused.

    Returns:
        A :class:`ScanReport`.

    Raises:
        UnsafeModelError: naming the file and the reason.
        NotInstalledError: when the file does not exist.
        UsageError: for an unknown ``expected_format`` or a bad ``max_bytes``.
    """
    container = _container_for(expected_format)
    cap = DEFAULT_MAX_BYTES if max_bytes is None else max_bytes
    if isinstance(cap, bool) or not isinstance(cap, int) or cap <= 0:
        raise UsageError(f"max_bytes must be a positive integer. Received: max_bytes={cap!r}.")
    p = _require_file(path)
    shown = str(p)
    found = detect_format(p)
    if found != container:
        raise UnsafeModelError(
            shown,
            f"its content is {_DESCRIBE[found]}, but format {expected_format!r} must be "
            f"{_DESCRIBE[container]}",
        )
    by_name = _SUFFIX_CONTAINER.get(p.suffix.lower())
    if by_name is not None and by_name != found:
        raise UnsafeModelError(
            shown,
            f"its name ends in {p.suffix!r} but its content is {_DESCRIBE[found]}; tf_keras "
            "picks its loader from the name, so the two must agree",
        )
    with _mapped(p) as source, _hash_in_background(source, p, sha256) as digest:
        if found == "hdf5":
            report = _scan_hdf5_file(p, source, expected_format, cap, check_compile_config)
        else:
            report = _scan_keras_file(p, source, cap, check_compile_config)
    if sha256 is not None:
        report = dataclasses.replace(report, sha256=digest.hex)
    logger.debug("safety scan passed: %s", report)
    return report


def load_model_file(
    path: str | os.PathLike[str],
    *,
    expected_format: str,
    trust_remote_code: bool = False,
    compile: bool = False,
    sha256: str | None = None,
):
    """Scan a whole saved model, then load it with tf_keras.

    Args:
        path: a ``.keras`` or legacy ``.h5`` model (any file name: a cached blob works).
        expected_format: ``"keras"`` or ``"h5"`` (the manifest artifact format).
        trust_remote_code: skip the scan and load with ``safe_mode=False``. Code in the
            file (Lambda layers, custom modules) then runs. Only for files you trust.
        compile: restore the training configuration too.
        sha256: the hex sha256 the file must have (checked even with
            ``trust_remote_code``).

    Returns:
        A ``tf_keras.Model``.

    Raises:
        IntegrityError: the file does not have the ``sha256`` given.
        UnsafeModelError: the scan refused the file.
        ModelFileError: the file passed the scan but tf_keras could not rebuild it.
    """
    if expected_format not in ("keras", "h5"):
        raise UsageError(
            f"load_model_file loads whole models. Received: expected_format="
            f"{expected_format!r}. Valid: 'keras', 'h5'. For 'h5-weights' build the "
            "architecture and call load_weights_file(model, path)."
        )
    p = _require_file(path)
    if trust_remote_code:
        _warn_skipped(p)
        _check_sha256(p, sha256)
    else:
        scan(p, expected_format=expected_format, check_compile_config=compile, sha256=sha256)
    keras = backend.keras()
    suffix = ".keras" if expected_format == "keras" else ".h5"
    with _named(p, suffix) as load_path:
        try:
            return keras.models.load_model(
                str(load_path), compile=compile, safe_mode=not trust_remote_code
            )
        except (ValueError, TypeError, KeyError, OSError) as exc:
            raise ModelFileError(
                p,
                first_line(exc, 300),
                hint="It may be damaged or saved by an incompatible Keras version; remove "
                "and reinstall it, or re-save it with tf_keras 2.x.",
            ) from exc


def load_weights_file(
    model,
    path: str | os.PathLike[str],
    *,
    trust_remote_code: bool = False,
    sha256: str | None = None,
):
    """Scan an HDF5 weights file, then load it into ``model`` (``model.load_weights``).

    Args:
        model: the ``tf_keras.Model`` the weights were saved from (same architecture).
        path: the weights file (any file name: a cached blob works).
        trust_remote_code: skip the scan (the file is still only read as weights).
        sha256: the hex sha256 the file must have (checked even with
            ``trust_remote_code``).

    Raises:
        IntegrityError: the file does not have the ``sha256`` given.
        UnsafeModelError: the scan refused the file.
        ModelFileError: the weights do not fit ``model`` (layer count, weight count or
            shape mismatch): the file belongs to another architecture.
    """
    p = _require_file(path)
    if trust_remote_code:
        _warn_skipped(p)
        _check_sha256(p, sha256)
        layout = _quick_layout(p)
    else:
        layout = scan(p, expected_format="h5-weights", sha256=sha256).weights_layout
    # tf_keras picks the weights reader from the name: "x.weights.h5" is the v3 layout,
    # any other ".h5" the legacy one. Give it the name that matches the content.
    suffix, avoid = (".weights.h5", None) if layout == "v3" else (".h5", ".weights.h5")
    with _named(p, suffix, avoid=avoid) as load_path:
        try:
            model.load_weights(str(load_path))
        except (ValueError, KeyError, OSError, TypeError) as exc:
            raise ModelFileError(
                p,
                f"the weights do not fit model {getattr(model, 'name', '?')!r} "
                f"({first_line(exc, 300)})",
                hint="The file was saved from another architecture: check that the "
                "manifest's build constructor and kwargs (e.g. alpha, include_top) match "
                "these weights, or use the artifact variant that fits.",
            ) from exc


# --- scanning --------------------------------------------------------------------------


def _scan_hdf5_file(
    p: Path, source, expected_format: str, cap: int, check_compile: bool
) -> ScanReport:
    shown = str(p)
    source = shown if source is None else source
    facts = scan_hdf5(source, path=shown, size=p.stat().st_size, max_bytes=cap)
    warnings: list[str] = []
    n_layers = None
    classes: set[str] = set()
    if expected_format == "h5":
        if facts.model_config is None:
            raise UnsafeModelError(
                shown,
                "it holds no model (no 'model_config' attribute); it looks like a weights "
                "file, which a manifest declares as format 'h5-weights'",
            )
        doc = parse_config(facts.model_config, shown, "the 'model_config' attribute")
        classes |= check_config(doc, path=shown)
        n_layers = count_layers(doc)
        if check_compile and facts.training_config:
            training = parse_config(facts.training_config, shown, "the 'training_config'")
            classes |= check_config(training, path=shown, owner="the training config")
    else:
        if facts.layer_names is not None:
            n_layers = len(facts.layer_names)
        if facts.model_config is not None:
            warnings.append(
                "the file also holds a model config; load_weights never reads it, so it "
                "was not checked"
            )
        if facts.layout == "unknown":
            warnings.append("no Keras weights layout found (no layer_names, no layers group)")
    return ScanReport(
        path=shown,
        format="hdf5",
        expected_format=expected_format,
        n_layers=n_layers,
        class_names=tuple(sorted(classes)),
        warnings=tuple(warnings),
        weights_layout=facts.layout,
    )


def _scan_keras_file(p: Path, source, cap: int, check_compile: bool) -> ScanReport:
    shown = str(p)
    facts = scan_keras_zip(shown, max_bytes=cap, source=source)
    doc = parse_config(facts.config_text, shown, "config.json")
    if not check_compile:
        # tf_keras drops it too when compile=False, so it cannot run anything.
        doc.pop("compile_config", None)
    classes = check_config(doc, path=shown)
    layout = facts.weights.layout if facts.weights is not None else None
    return ScanReport(
        path=shown,
        format="zip",
        expected_format="keras",
        n_layers=count_layers(doc),
        class_names=tuple(sorted(classes)),
        weights_layout=layout,
    )


# --- integrity -------------------------------------------------------------------------


@contextlib.contextmanager
def _mapped(p: Path) -> Iterator[Window | None]:
    """The file mapped read-only (None when empty): hash and scan read the same pages."""
    with open(p, "rb") as fh:
        if os.fstat(fh.fileno()).st_size == 0:
            yield None
            return
        mapping = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        try:
            yield Window(mapping)
        finally:
            mapping.close()


class _Digest:
    hex: str | None = None


@contextlib.contextmanager
def _hash_in_background(source: Window | None, p: Path, sha256: str | None):
    """Hash ``source`` on a thread while the body runs; then compare with ``sha256``.

    hashlib releases the GIL for the whole mapping, so the hash runs in parallel with
    the scanner. A mismatch wins over an error of the scan: a corrupted file must be
    reported as corrupted.
    """
    digest = _Digest()
    if sha256 is None:
        yield digest
        return
    hasher = Hasher()
    thread = threading.Thread(
        target=hasher.update,
        args=(source.buffer if source is not None else b"",),
        name="modelzoo-verify",
        daemon=True,
    )
    thread.start()
    try:
        yield digest
    except UnsafeModelError:
        thread.join()
        _compare(p, sha256, hasher.hexdigests()["sha256"])
        raise
    finally:
        thread.join()
    digest.hex = hasher.hexdigests()["sha256"]
    _compare(p, sha256, digest.hex)


def _check_sha256(p: Path, sha256: str | None) -> None:
    """The sha256 check alone (for loads that skip the scan)."""
    if sha256 is not None:
        with _mapped(p) as source, _hash_in_background(source, p, sha256):
            pass


def _compare(p: Path, expected: str, actual: str) -> None:
    if actual != expected.lower():
        raise IntegrityError(
            f"{p} does not match the sha256 recorded when it was installed "
            f"(expected sha256:{expected.lower()}, got sha256:{actual}): the cached file was "
            "changed or damaged after it was installed",
            path=str(p),
            expected=f"sha256:{expected.lower()}",
            actual=f"sha256:{actual}",
        )


# --- helpers ---------------------------------------------------------------------------


def _container_for(expected_format: str) -> str:
    try:
        return EXPECTED_FORMATS[expected_format]
    except (KeyError, TypeError):
        raise UsageError(
            f"Unknown model file format. Received: expected_format={expected_format!r}. "
            f"Valid: {', '.join(repr(f) for f in EXPECTED_FORMATS)} (the manifest artifact "
            "format)."
        ) from None


def _require_file(path: str | os.PathLike[str]) -> Path:
    p = Path(os.fspath(path))
    if not p.exists():
        raise NotInstalledError(
            str(p), message=f"Model file {p} does not exist. Check the path, or reinstall it."
        )
    if not p.is_file():
        raise UnsafeModelError(str(p), "it is not a regular file (expected one model file)")
    return p


def _warn_skipped(p: Path) -> None:
    logger.warning(
        "Skipping the safety scan of %s because trust_remote_code=True: code stored in "
        "this file (Lambda layers, custom modules) can run.",
        p,
    )


def _quick_layout(p: Path) -> str:
    h5py = backend.h5py()
    try:
        with h5py.File(p, "r") as f:
            if "layer_names" in f.attrs or "model_weights" in f:
                return "legacy"
            if "layers" in f or "vars" in f:
                return "v3"
    except (OSError, ValueError):
        pass
    return "legacy"


@contextlib.contextmanager
def _named(p: Path, suffix: str, *, avoid: str | None = None) -> Iterator[Path]:
    """``p`` itself if its name ends in ``suffix``, else a temporary alias that does."""
    if p.name.endswith(suffix) and not (avoid and p.name.endswith(avoid)):
        yield p
        return
    folder = Path(tempfile.mkdtemp(prefix="modelzoo-load-"))
    alias = folder / ("model" + suffix)
    try:
        try:
            os.symlink(p.resolve(), alias)
        except OSError:  # no symlinks (e.g. Windows without privilege): copy instead
            shutil.copyfile(p, alias)
        yield alias
    finally:
        shutil.rmtree(folder, ignore_errors=True)
