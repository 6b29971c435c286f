"""Registry documents: the ``index.json`` format, and reading index/manifest files.

This module owns the format of a registry: building, serialising and parsing index
files and parsing manifests read from them. Searching them is :mod:`modelzoo.hub.search`;
fetching remote ones into a cache is :mod:`modelzoo.hub.remote`;
:mod:`modelzoo.hub.registry` decides which registries exist and which one answers.

An index lists every manifest of one registry folder so that listing and searching read
one small file instead of hundreds of manifests::

    {"schema_version": 1, "models": [
      {"name": "resnet50", "version": "1.0.0", "family": "ResNet", "summary": "...",
       "task": "image-classification", "tags": ["resnet", ...],
       "manifest": "models/resnet50/1.0.0/manifest.json"},
      ...
    ]}

Entries are sorted by name, then semantic version, one per line, so the file's bytes are
deterministic: a test can compare it with a fresh build and git diffs stay small.
"""

from __future__ import annotations

import functools
import gc
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from .. import files
from ..config import SCHEMA_VERSION
from ..errors import ManifestError, RegistryError
from ..versions import best_match, is_version, parse_version
from .manifest import NAME_RE, Manifest, load_manifest, parse_manifest

__all__ = [
    "INDEX_FILE",
    "MODELS_DIR",
    "MANIFEST_FILE",
    "IndexEntry",
    "LoadedIndex",
    "build_index",
    "dumps_index",
    "write_index",
    "parse_index",
    "is_safe_relpath",
    "parse_index_file",
    "parse_manifest_bytes",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")

INDEX_FILE = "index.json"
MODELS_DIR = "models"
MANIFEST_FILE = "manifest.json"
_ENTRY_KEYS = ("name", "version", "family", "summary", "task", "tags", "manifest")


@dataclass(frozen=True)
class IndexEntry:
    """One model version as listed in a registry's index.

    Attributes:
        name: model name.
        version: semantic version.
        family: architecture family, e.g. ``MobileNet``.
        summary: one-line description.
        task: e.g. ``image-classification``.
        tags: search tags.
        manifest: path of the manifest relative to the registry root.
        registry: name of the registry the entry came from.
    """

    name: str
    version: str
    family: str
    summary: str
    task: str
    tags: tuple[str, ...]
    manifest: str
    registry: str = ""

    @property
    def spec(self) -> str:
        """``name@version``."""
        return f"{self.name}@{self.version}"

    @functools.cached_property
    def _haystack(self) -> tuple[str, tuple[str, ...], str]:
        # lowercased once per entry; entries live as long as their parsed index
        return (self.family.lower(), tuple(t.lower() for t in self.tags), self.summary.lower())

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping (the index keys plus ``registry``)."""
        return {
            "name": self.name,
            "version": self.version,
            "family": self.family,
            "summary": self.summary,
            "task": self.task,
            "tags": list(self.tags),
            "manifest": self.manifest,
            "registry": self.registry,
        }


@dataclass(frozen=True)
class LoadedIndex:
    """A parsed index with the lookups search and resolution need, computed once."""

    entries: tuple[IndexEntry, ...]
    by_name: dict[str, tuple[IndexEntry, ...]] = field(repr=False)
    #: the entry each name resolves to without a version: highest release, else highest
    latest: tuple[IndexEntry, ...] = field(repr=False)

    @classmethod
    def from_entries(cls, entries: list[IndexEntry]) -> LoadedIndex:
        groups: dict[str, list[IndexEntry]] = {}
        for entry in entries:
            groups.setdefault(entry.name, []).append(entry)
        by_name = {}
        latest = []
        for name, group in groups.items():
            if len(group) == 1:  # the common case; skip version parsing
                by_name[name] = (group[0],)
                latest.append(group[0])
                continue
            group.sort(key=lambda e: parse_version(e.version))
            by_name[name] = tuple(group)
            chosen = best_match([e.version for e in group], "latest") or group[-1].version
            latest.append(next(e for e in group if e.version == chosen))
        return cls(tuple(entries), by_name, tuple(latest))


def is_safe_relpath(path: Any) -> bool:
    """Whether ``path`` is a relative POSIX path that stays inside its root."""
    if not isinstance(path, str) or not path or "\\" in path or ":" in path:
        return False
    parts = path.split("/")
    # "" catches a leading "/" and "//"; "." is harmless but never written by build_index
    return "" not in parts and ".." not in parts


def _manifest_relpath(name: str, version: str) -> str:
    return f"{MODELS_DIR}/{name}/{version}/{MANIFEST_FILE}"


def build_index(root: str | os.PathLike[str]) -> dict[str, Any]:
    """Validate every manifest under ``root/models`` and return the index document.

    Args:
        root: the registry folder (it holds ``models/<name>/<version>/manifest.json``).

    Returns:
        ``{"schema_version": 1, "models": [...]}``, sorted by name then version.

    Raises:
        RegistryError: when ``root`` is not a folder or a version folder has no manifest.
        ManifestError: naming the file and field of the first invalid manifest, or a
            manifest whose name/version does not match its folder.
    """
    root = Path(root)
    if not root.is_dir():
        raise RegistryError(
            f"Registry folder {root} does not exist. Create it with models/<name>/<version>/"
            "manifest.json files, then build its index."
        )
    models_dir = root / MODELS_DIR
    entries = []
    name_dirs = sorted(models_dir.iterdir()) if models_dir.is_dir() else []
    for name_dir in name_dirs:
        if name_dir.name.startswith(".") or not name_dir.is_dir():
            continue  # editor and OS droppings (.DS_Store) are not models
        for version_dir in sorted(name_dir.iterdir()):
            if version_dir.name.startswith(".") or not version_dir.is_dir():
                continue
            path = version_dir / MANIFEST_FILE
            if not path.is_file():
                raise RegistryError(
                    f"{version_dir} has no {MANIFEST_FILE}. Every models/<name>/<version>/ "
                    "folder needs one; add it or delete the folder, then rebuild the index."
                )
            manifest = load_manifest(path)
            expected = _manifest_relpath(manifest.name, manifest.version)
            for key, folder in (("name", name_dir.name), ("version", version_dir.name)):
                if getattr(manifest, key) != folder:
                    raise ManifestError(
                        f"is {getattr(manifest, key)!r} but the manifest lives in folder "
                        f"{folder!r}; move it to {expected}",
                        source=str(path),
                        field=key,
                    )
            entries.append(
                {
                    "name": manifest.name,
                    "version": manifest.version,
                    "family": manifest.family,
                    "summary": manifest.summary,
                    "task": manifest.task,
                    "tags": list(manifest.tags),
                    "manifest": _manifest_relpath(manifest.name, manifest.version),
                }
            )
    entries.sort(key=lambda e: (e["name"], parse_version(e["version"])))
    return {"schema_version": SCHEMA_VERSION, "models": entries}


def dumps_index(index: dict[str, Any]) -> bytes:
    """Serialise an index document deterministically: one model entry per line."""
    lines = [
        json.dumps({k: entry[k] for k in _ENTRY_KEYS}, ensure_ascii=False)
        for entry in index["models"]
    ]
    body = ",\n    ".join(lines)
    models = f"[\n    {body}\n  ]" if lines else "[]"
    text = f'{{\n  "schema_version": {index["schema_version"]},\n  "models": {models}\n}}\n'
    return text.encode("utf-8")


def write_index(root: str | os.PathLike[str]) -> Path:
    """Build the index of registry folder ``root`` and write ``root/index.json`` atomically.

    Returns:
        The path of the written index.

    Raises:
        RegistryError, ManifestError: as :func:`build_index`; nothing is written then.
    """
    root = Path(root)
    data = dumps_index(build_index(root))
    path = root / INDEX_FILE
    files.atomic_write(path, data)
    return path


def parse_index(raw: bytes | str, *, source: str, registry: str, hint: str) -> LoadedIndex:
    """Validate the bytes of an ``index.json`` and return its entries.

    Args:
        raw: the file's contents.
        source: file path or URL, named in errors.
        registry: registry name stored in each entry.
        hint: the next step appended to every error (how to rebuild the index).

    Raises:
        RegistryError: naming ``source`` and the first problem.
    """

    # Building ~100,000 small objects triggers the cyclic GC over and over, and each full
    # pass walks every object alive; none of these objects can form cycles, so pause it.
    paused = gc.isenabled()
    gc.disable()
    try:
        return _parse_index(raw, source=source, registry=registry, hint=hint)
    finally:
        if paused:
            gc.enable()


def _parse_index(raw: bytes | str, *, source: str, registry: str, hint: str) -> LoadedIndex:
    def fail(message: str) -> RegistryError:
        return RegistryError(
            f"Invalid registry index {source}: {message}. {hint}", registry=registry
        )

    try:
        data = files.loads(raw)
    except files.InvalidJSONError as exc:
        raise fail(exc.reason) from None
    if not isinstance(data, dict) or not isinstance(data.get("models"), list):
        raise fail('expected an object {"schema_version": 1, "models": [...]}')
    version = data.get("schema_version")
    if type(version) is not int or version != SCHEMA_VERSION:
        newer = type(version) is int and version > SCHEMA_VERSION
        raise fail(
            f"schema_version is {version!r}, this modelzoo reads {SCHEMA_VERSION}"
            + ("; upgrade modelzoo (pip install -U modelzoo)" if newer else "")
        )
    models = data["models"]
    name_ok, version_ok = NAME_RE.match, is_version
    name_c, ver_c, family_c, summary_c, task_c, tags_c, manifest_c = [], [], [], [], [], [], []
    # One tight loop of type checks: this runs over every entry of every registry on each
    # cold search, and an index can list 10,000 models.
    for i, item in enumerate(models):
        if type(item) is not dict:
            raise fail(f"models[{i}] is not an object")
        name, ver, manifest = item.get("name"), item.get("version"), item.get("manifest")
        if type(name) is not str or not name_ok(name):
            raise fail(f"models[{i}].name {name!r} is not a valid model name")
        if not version_ok(ver):
            raise fail(f"models[{i}].version {ver!r} is not a semantic version")
        if not is_safe_relpath(manifest):
            raise fail(
                f"models[{i}].manifest {manifest!r} must be a relative path inside the registry"
            )
        family, summary, task = (
            item.get("family") or "",
            item.get("summary") or "",
            item.get("task") or "",
        )
        if type(family) is not str or type(summary) is not str or type(task) is not str:
            raise fail(f"models[{i}]: family, summary and task must be strings")
        tags = item.get("tags") or []
        try:
            "".join(tags)  # a C-speed "every item is a str" check
        except TypeError:
            tags = None
        if type(tags) is not list:
            raise fail(f"models[{i}].tags must be a list of strings")
        name_c.append(name)
        ver_c.append(ver)
        family_c.append(family)
        summary_c.append(summary)
        task_c.append(task)
        tags_c.append(tuple(tags))
        manifest_c.append(manifest)

    # Lowercase the searchable text in a few big C-level calls instead of 40,000 small ones.
    family_l = _lower_all(family_c)
    summary_l = _lower_all(summary_c)
    flat_tags = _lower_all([t for tags in tags_c for t in tags])
    entries = []
    pos = 0
    new, set_dict = object.__new__, object.__setattr__
    for name, ver, family, summary, task, tags, manifest, fam_l, sum_l in zip(
        name_c,
        ver_c,
        family_c,
        summary_c,
        task_c,
        tags_c,
        manifest_c,
        family_l,
        summary_l,
        strict=True,
    ):
        end = pos + len(tags)
        entry = new(IndexEntry)
        # Same state IndexEntry(...) would produce (plus the search cache), minus the
        # per-field frozen-dataclass __setattr__ calls that dominate a 10,000-entry parse.
        set_dict(
            entry,
            "__dict__",
            {
                "name": name,
                "version": ver,
                "family": family,
                "summary": summary,
                "task": task,
                "tags": tags,
                "manifest": manifest,
                "registry": registry,
                "_haystack": (fam_l, tuple(flat_tags[pos:end]), sum_l),
            },
        )
        pos = end
        entries.append(entry)
    return LoadedIndex.from_entries(entries)


def _lower_all(texts: list[str]) -> list[str]:
    """``[t.lower() for t in texts]``, computed on one joined string when that is safe."""
    sep = "\x00"
    joined = sep.join(texts)
    if joined.count(sep) != max(len(texts) - 1, 0):  # a text contains the separator
        return [t.lower() for t in texts]
    return joined.lower().split(sep) if texts else []


# ---------------------------------------------------------------------------------------
# reading index and manifest files

# parsed index per (registry name, index file), reused while the file is unchanged
_parsed: dict[tuple[str, str], tuple[tuple[int, int, int], LoadedIndex]] = {}


def parse_index_file(path: Path, *, registry: str, source: str, hint: str) -> LoadedIndex:
    """Parse an index file, reusing the previous parse while the file is unchanged."""
    try:
        st = path.stat()
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        key = (registry, str(path))
        hit = _parsed.get(key)
        if hit is not None and hit[0] == stamp:
            return hit[1]
        raw = path.read_bytes()
    except OSError as exc:
        raise RegistryError(
            f"Cannot read registry index {source}: {exc.strerror or exc}. {hint}", registry=registry
        ) from exc
    loaded = parse_index(raw, source=source, registry=registry, hint=hint)
    _parsed[key] = (stamp, loaded)
    return loaded


def parse_manifest_bytes(raw: bytes, *, source: str) -> Manifest:
    """Decode and validate a manifest fetched from ``source`` (a URL)."""
    try:
        data = files.loads(raw)
    except files.InvalidJSONError as exc:
        raise ManifestError(exc.reason, source=source) from None
    return parse_manifest(data, source=source)
