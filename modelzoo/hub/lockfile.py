"""The lockfile, ``modelzoo.lock``: its values, its bytes, and the paths written in it.

Owned by :mod:`modelzoo.hub.project` (which documents the format) and used by
:mod:`modelzoo.hub.bundle`. JSON with models and artifacts sorted, keys in a fixed order and
no timestamps, so the same install always writes the same bytes. Folders and ``file://``
URLs inside the project are written ``./relative`` so a lock stays valid in another
checkout.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from urllib.request import url2pathname

from .. import files
from ..errors import ProjectError
from ..versions import is_version, matches
from .manifest import NAME_RE, Manifest

__all__ = [
    "PROJECT_FILE",
    "LOCK_FILE",
    "LOCK_VERSION",
    "LockedArtifact",
    "LockedModel",
    "Lockfile",
    "manifest_digest",
    "dumps_lock",
    "read_lock",
    "write_lock",
    "check_lock",
    "satisfies",
    "check_variant",
    "parse_location",
    "portable",
    "lock_url",
    "lock_registry",
    "lock_location",
]

PROJECT_FILE = "modelzoo.toml"
LOCK_FILE = "modelzoo.lock"
#: The lockfile format this modelzoo reads and writes.
LOCK_VERSION = 1

ANY = ("", "*", "latest")
_SHA256 = re.compile(r"\A[0-9a-f]{64}\Z")


def project_error(source: Any, message: str) -> ProjectError:
    return ProjectError(f"{source}: {message}")


def check_variant(variant: Any, source: Any, where: str) -> str | None:
    """``variant`` if it is None or a valid variant name, else ProjectError."""
    if variant is None:
        return None
    if not isinstance(variant, str) or not NAME_RE.match(variant):
        raise project_error(
            source, f"{where}: invalid variant {variant!r} (e.g. 'full', 'notop', 'all')"
        )
    return variant


@dataclass(frozen=True)
class LockedArtifact:
    """One installed artifact as pinned in the lock."""

    variant: str
    url: str
    size: int
    sha256: str
    published_hash: str | None
    file_name: str
    format: str


@dataclass(frozen=True)
class LockedModel:
    """One model as pinned in the lock.

    Attributes:
        registry_location: ``bundled``, an ``http(s)`` URL, an absolute folder, or a
            folder relative to the lock (``./registry``).
        manifest_sha256: sha256 of the manifest's canonical JSON (sorted keys, compact).
        trust: for a signed registry: ``root_version`` and ``root_sha256`` of the trusted
            TUF root, and ``targets`` (signed target path -> sha256); None when unsigned.
    """

    name: str
    version: str
    constraint: str
    variant: str | None
    registry: str
    registry_location: str
    manifest_sha256: str
    artifacts: tuple[LockedArtifact, ...]
    trust: dict | None = None

    @property
    def spec(self) -> str:
        return f"{self.name}@{self.version}"


@dataclass(frozen=True)
class Lockfile:
    """A parsed ``modelzoo.lock``: models sorted by name."""

    models: tuple[LockedModel, ...] = ()

    def get(self, name: str) -> LockedModel | None:
        """The locked entry for ``name``, or None."""
        return next((m for m in self.models if m.name == name), None)


def manifest_digest(manifest: Manifest) -> str:
    """``sha256:<hex>`` of the manifest's canonical JSON (sorted keys, no whitespace)."""
    canonical = json.dumps(manifest.raw, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _dump_trust(trust: dict | None) -> dict:
    """The lock's keys for a signed registry (none for unsigned: their locks stay as before)."""
    if trust is None:
        return {}
    return {
        "root": {"version": trust["root_version"], "sha256": trust["root_sha256"]},
        "signed_targets": dict(sorted(trust["targets"].items())),
    }


def _read_trust(m: dict, source, where: str) -> dict | None:
    if "root" not in m and "signed_targets" not in m:
        return None
    root = _typed(m, "root", dict, source, where)
    version = _typed(root, "version", int, source, f"{where}.root")
    sha = _typed(root, "sha256", str, source, f"{where}.root")
    targets = _typed(m, "signed_targets", dict, source, where)
    if version < 1 or not _SHA256.match(sha):
        raise project_error(source, f"{where}.root must have a version >= 1 and a 64-hex sha256")
    for path, digest in targets.items():
        if not isinstance(digest, str) or not _SHA256.match(digest):
            raise project_error(
                source, f"{where}.signed_targets[{path!r}] must be 64 lowercase hex"
            )
    return {"root_version": version, "root_sha256": sha, "targets": dict(targets)}


def dumps_lock(lock: Lockfile) -> bytes:
    """Serialise a lock deterministically: models and artifacts sorted, keys in a fixed
    order (most telling first), one value per line, no timestamps."""
    models = {}
    for m in sorted(lock.models, key=lambda m: m.name):
        models[m.name] = {
            "version": m.version,
            "constraint": m.constraint,
            "variant": m.variant,
            "registry": {"name": m.registry, "location": m.registry_location},
            **_dump_trust(m.trust),
            "manifest": m.manifest_sha256,
            "artifacts": {
                a.variant: {
                    "url": a.url,
                    "size": a.size,
                    "sha256": a.sha256,
                    "published_hash": a.published_hash,
                    "file_name": a.file_name,
                    "format": a.format,
                }
                for a in sorted(m.artifacts, key=lambda a: a.variant)
            },
        }
    doc = {"lockfile_version": LOCK_VERSION, "models": models}
    return (json.dumps(doc, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def _typed(data: dict, key: str, kind, source, where: str):
    value = data.get(key)
    if not isinstance(value, kind) or isinstance(value, bool) and kind is int:
        raise project_error(
            source,
            f"{where}.{key} is missing or invalid ({value!r}). Delete {LOCK_FILE} and run "
            "`modelzoo install` to recreate it.",
        )
    return value


def read_lock(path: str | os.PathLike[str]) -> Lockfile:
    """Read and validate ``modelzoo.lock``.

    Raises:
        ProjectError: unreadable or invalid, naming the file and the field.
    """
    path = Path(path)
    try:
        data = files.read(path)
    except FileNotFoundError:
        raise ProjectError(
            f"{path} does not exist. Run `modelzoo install` (without --frozen) to create it."
        ) from None
    except (OSError, ValueError) as exc:
        raise project_error(
            path,
            f"not a readable JSON lockfile ({exc}). Delete it and run `modelzoo install` to "
            "recreate it.",
        ) from None
    if not isinstance(data, dict) or data.get("lockfile_version") != LOCK_VERSION:
        raise project_error(
            path,
            f"expected lockfile_version {LOCK_VERSION}, got "
            f"{data.get('lockfile_version') if isinstance(data, dict) else data!r}; "
            "upgrade modelzoo or recreate the lock with `modelzoo install`.",
        )
    models = _typed(data, "models", dict, path, "")
    entries = []
    for name, m in sorted(models.items()):
        where = f"models.{name}"
        if not NAME_RE.match(name) or not isinstance(m, dict):
            raise project_error(path, f"{where}: invalid entry")
        version = _typed(m, "version", str, path, where)
        if not is_version(version):
            raise project_error(path, f"{where}.version {version!r} is not a semantic version")
        registry = _typed(m, "registry", dict, path, where)
        digest = _typed(m, "manifest", str, path, where)
        if not _SHA256.match(digest.removeprefix("sha256:")):
            raise project_error(path, f"{where}.manifest must be sha256:<64 hex>")
        variant = m.get("variant")
        if variant is not None:
            variant = check_variant(variant, path, where)
        arts = []
        for v, a in sorted(_typed(m, "artifacts", dict, path, where).items()):
            aw = f"{where}.artifacts.{v}"
            if not NAME_RE.match(v) or not isinstance(a, dict):
                raise project_error(path, f"{aw}: invalid entry")
            sha = _typed(a, "sha256", str, path, aw)
            if not _SHA256.match(sha):
                raise project_error(path, f"{aw}.sha256 must be 64 lowercase hex digits")
            published = a.get("published_hash")
            if published is not None and not isinstance(published, str):
                raise project_error(path, f"{aw}.published_hash must be a string or null")
            arts.append(
                LockedArtifact(
                    v,
                    _typed(a, "url", str, path, aw),
                    _typed(a, "size", int, path, aw),
                    sha,
                    published,
                    _typed(a, "file_name", str, path, aw),
                    _typed(a, "format", str, path, aw),
                )
            )
        if not arts:
            raise project_error(path, f"{where}.artifacts is empty")
        entries.append(
            LockedModel(
                name,
                version,
                _typed(m, "constraint", str, path, where),
                variant,
                _typed(registry, "name", str, path, f"{where}.registry"),
                _typed(registry, "location", str, path, f"{where}.registry"),
                digest,
                tuple(arts),
                _read_trust(m, path, where),
            )
        )
    return Lockfile(tuple(entries))


def write_lock(path: Path, lock: Lockfile) -> bool:
    """Write ``lock`` atomically unless the file already holds these bytes; True if written."""
    data = dumps_lock(lock)
    with contextlib.suppress(OSError):
        if path.read_bytes() == data:
            return False
    files.atomic_write(path, data)
    return True


def satisfies(version: str, constraint: str) -> bool:
    # "*" also accepts prereleases here: resolve() picks one when there is no release
    return constraint.strip() in ANY or matches(version, constraint)


def check_lock(project: Any, lock: Lockfile) -> list[str]:
    """Every way ``lock`` disagrees with ``project`` (empty when it is up to date)."""
    problems = []
    for req in project.models:
        locked = lock.get(req.name)
        if locked is None:
            problems.append(f"{req.name} is in {PROJECT_FILE} but not in {LOCK_FILE}")
        elif not satisfies(locked.version, req.constraint):
            problems.append(
                f"{req.name}: locked version {locked.version} does not satisfy "
                f"{req.constraint!r} from {PROJECT_FILE}"
            )
        elif locked.variant != req.variant:
            problems.append(
                f"{req.name}: {PROJECT_FILE} asks for variant {req.variant or 'default'}, "
                f"the lock has {locked.variant or 'default'}"
            )
    for locked in lock.models:
        if project.requirement(locked.name) is None:
            problems.append(f"{locked.name} is in {LOCK_FILE} but no longer in {PROJECT_FILE}")
    return problems


# --------------------------------------------------------------------------- locations


def parse_location(text: str, root: Path) -> tuple[str, str]:
    """``(kind, location)`` of a registry written in a project file or lock."""
    if "://" in text:
        parts = urlsplit(text)
        if parts.scheme in ("http", "https") and parts.hostname:
            return "http", text.rstrip("/")
        if parts.scheme != "file":
            raise ProjectError(
                f"Unsupported registry location {text!r}: use a folder, file://, http(s)://."
            )
        text = url2pathname(parts.path)
    path = Path(text).expanduser()
    return "folder", os.path.normpath(path if path.is_absolute() else root / path)


def portable(path_or_url: str, root: Path, *, prefix: str = "./") -> str:
    """A folder or file:// URL inside ``root`` as ``./relative``; anything else unchanged."""
    text = path_or_url
    if text.startswith("file://"):
        text = url2pathname(urlsplit(text).path)
    elif "://" in text:
        return text
    path = Path(os.path.normpath(text))
    if path.is_absolute() and path.is_relative_to(root):
        return prefix + path.relative_to(root).as_posix()
    return path_or_url


def lock_url(url: str, location: str, root: Path) -> str:
    """An artifact URL as written in the lock: ``./x`` inside the project, ``bundled:x``
    inside the bundled registry (its folder differs per installation), else unchanged."""
    from .registry import BUNDLED, bundled_registry_path

    if location == BUNDLED:
        return portable(url, Path(os.path.normpath(bundled_registry_path())), prefix="bundled:")
    return portable(url, root)


def lock_registry(locked: LockedModel, root: Path):
    """The :class:`~modelzoo.hub.registry.Registry` a locked model came from."""
    from .registry import BUNDLED, Registry, bundled_registry_path

    if locked.registry_location == BUNDLED:
        return Registry(BUNDLED, str(bundled_registry_path()), "bundled", "bundled")
    kind, location = parse_location(locked.registry_location, root)
    return Registry(locked.registry, location, kind, "lock", signed=locked.trust is not None)


def lock_location(resolved, root: Path) -> str:
    """A resolved model's registry location as written in the lock."""
    from .registry import BUNDLED, bundled_registry_path

    if resolved.registry == BUNDLED and resolved.location == str(bundled_registry_path()):
        return BUNDLED
    return portable(resolved.location, root)
