"""A registry folder as its publisher keeps it: staging, the publish lock, verification.

Publishing (:mod:`modelzoo.models.publish`) stages each new version in a folder inside the
registry and renames it into place under :func:`registry_lock`. :func:`verify_registry`
re-hashes every artifact stored in a registry folder against its manifest (``modelzoo
registry verify DIR``); it needs no model and no TensorFlow.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from ..errors import ManifestError, RegistryError
from .hashes import file_digests
from .manifest import Manifest, load_manifest

__all__ = [
    "ArtifactCheck",
    "RegistryReport",
    "STAGING_PREFIX",
    "registry_lock",
    "stale_staging",
    "verify_registry",
]


@dataclass(frozen=True)
class ArtifactCheck:
    """One artifact (or unreadable manifest) checked by :func:`verify_registry`.

    Attributes:
        status: ``ok``; ``unhashed`` (no published hash: only the size could be checked)
            and ``remote`` (stored elsewhere, not checked) are warnings; ``missing``,
            ``size-mismatch``, ``hash-mismatch`` and ``invalid-manifest`` are problems.
        variant: the artifact variant ("" for an invalid manifest).
        path: the file checked (or the manifest that could not be read).
    """

    name: str
    version: str
    variant: str
    status: str
    path: Path | None
    expected: str | None
    actual: str | None
    message: str

    @property
    def ok(self) -> bool:
        return self.status in ("ok", "unhashed", "remote")


@dataclass(frozen=True)
class RegistryReport:
    """The result of :func:`verify_registry`.

    Attributes:
        checks: one per artifact, sorted by model, version and variant.
        index: ``ok``, ``missing``, ``stale`` (differs from a fresh build) or ``unbuilt``
            (the manifests are invalid, so no index can be built).
        index_message: one line about the index, with the next step when not ok.
        leftovers: staging folders of interrupted publishes (a web server serving the
            folder exposes them); the next publish removes them, or delete them.
    """

    root: Path
    checks: tuple[ArtifactCheck, ...]
    index: str
    index_message: str
    leftovers: tuple[Path, ...] = ()

    @property
    def ok(self) -> bool:
        return self.index == "ok" and all(c.ok for c in self.checks) and not self.leftovers


#: Publish builds each version in ``<registry>/.publish-<hex>/`` (same filesystem, so the
#: final rename is atomic); a killed publish leaves it, the next publish removes it.
STAGING_PREFIX = ".publish-"


def stale_staging(root: Path) -> list[Path]:
    """Staging folders of publishes into ``root`` (left behind unless one is running)."""
    try:
        return sorted(p for p in root.glob(f"{STAGING_PREFIX}*") if p.is_dir())
    except OSError:
        return []


def registry_lock(root: Path):
    """Serialise publishes into one registry folder (across processes on this machine)."""
    from .cache import Cache

    key = "publish-" + hashlib.sha256(str(root).encode("utf-8")).hexdigest()[:32]
    return Cache().lock(key, timeout=120)


# --------------------------------------------------------------------------- verifying


def _check_artifact(manifest: Manifest, variant: str, folder: Path) -> ArtifactCheck:
    art = manifest.artifacts[variant]

    def result(status, path, expected, actual, message):
        return ArtifactCheck(
            manifest.name, manifest.version, variant, status, path, expected, actual, message
        )

    what = f"{manifest.spec} ({variant})"
    if urlsplit(art.url).scheme:
        return result("remote", None, None, None, f"{what}: stored at {art.url}, not checked")
    path = folder / unquote(urlsplit(art.url).path)
    if not path.is_file():
        return result("missing", path, None, None, f"{what}: {path} is missing")
    size = path.stat().st_size
    if art.size is not None and size != art.size:
        return result(
            "size-mismatch",
            path,
            str(art.size),
            str(size),
            f"{what}: {path} has {size} bytes, the manifest says {art.size}",
        )
    if art.hash is None:
        message = f"{what}: no published hash (consumers trust it on first use)"
        return result("unhashed", path, None, None, message)
    actual = file_digests(path, (art.hash.algorithm,))[art.hash.algorithm]
    if actual != art.hash.hex:
        return result(
            "hash-mismatch",
            path,
            str(art.hash),
            f"{art.hash.algorithm}:{actual}",
            f"{what}: {path} hashes to {art.hash.algorithm}:{actual}, the manifest says "
            f"{art.hash}; the file was modified or damaged",
        )
    return result("ok", path, str(art.hash), str(art.hash), f"{what}: ok ({art.hash})")


def verify_registry(root: str | os.PathLike[str]) -> RegistryReport:
    """Check every artifact stored in a registry folder against its manifest.

    Artifacts with absolute URLs live elsewhere and are reported as ``remote``. The
    index is compared with a fresh build of the folder.

    Raises:
        RegistryError: ``root`` is not a folder.
    """
    from .index import INDEX_FILE, build_index, dumps_index

    root = Path(root)
    if not root.is_dir():
        raise RegistryError(f"Registry folder {root} does not exist.")
    checks: list[ArtifactCheck] = []
    for path in sorted((root / "models").glob("*/*/manifest.json")):
        try:
            manifest = load_manifest(path)
        except ManifestError as exc:
            name, version = path.parent.parent.name, path.parent.name
            checks.append(
                ArtifactCheck(name, version, "", "invalid-manifest", path, None, None, str(exc))
            )
            continue
        for variant in sorted(manifest.artifacts):
            checks.append(_check_artifact(manifest, variant, path.parent))
    index_path = root / INDEX_FILE
    hint = f"Rebuild it with `modelzoo registry index {root}`."
    try:
        fresh = dumps_index(build_index(root))
    except (ManifestError, RegistryError) as exc:
        status, message = "unbuilt", f"cannot build the index: {exc}"
    else:
        if not index_path.is_file():
            status, message = "missing", f"{index_path} is missing. {hint}"
        elif index_path.read_bytes() != fresh:
            status, message = "stale", f"{index_path} does not match the manifests. {hint}"
        else:
            status, message = "ok", f"{index_path}: up to date"
    return RegistryReport(root, tuple(checks), status, message, tuple(stale_staging(root)))
