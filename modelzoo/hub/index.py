"""Registry documents: the ``index.json`` format, and reading index/manifest files.

This module owns the bytes of a registry: building, serialising and parsing index
files, ranking search hits, and fetching remote index and manifest files into a cache
(with a TTL, offline mode and stale-copy fallback). :mod:`modelzoo.hub.registry` decides
which registries exist and which one answers.

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

import contextlib
import functools
import gc
import json
import logging
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from .. import config, files
from ..config import SCHEMA_VERSION
from ..errors import ManifestError, ModelZooError, OfflineError, RegistryError, first_line
from ..versions import best_match, is_version, parse_version
from .http import _UrlFailed, get_bytes, redact
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
    "rank_entries",
    "is_safe_relpath",
    "TTL_SECONDS",
    "cache_slug",
    "parse_index_file",
    "parse_manifest_bytes",
    "fetch_cached",
    "load_cached",
    "drop_cached",
    "Fetched",
    "http_get",
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


def _term_score(term: str, entry: IndexEntry) -> int | None:
    """How well one lowercase search term matches (lower is better), None for no match."""
    name = entry.name
    if name == term:
        return 0
    if name.startswith(term):
        return 1
    if term in name:
        return 2
    family, tags, summary = entry._haystack
    if term == family or term in tags:
        return 3
    if term in family or any(term in t for t in tags):
        return 4
    if term in summary:
        return 5
    return None


def rank_entries(
    entries: list[IndexEntry],
    query: str | None = None,
    *,
    task: str | None = None,
    tag: str | None = None,
    family: str | None = None,
) -> list[IndexEntry]:
    """Filter and order ``entries`` for a search.

    A query with ``*``, ``?`` or ``[`` is a glob on the name. Otherwise every
    whitespace-separated term must match the name, family, tags or summary
    (case-insensitive); hits rank exact name > name prefix > name substring >
    family/tag > summary, then by name.
    """
    q = (query or "").strip().lower()
    is_glob = any(c in q for c in "*?[")
    terms = q.split()
    task_l = task.lower() if task else None
    tag_l = tag.lower() if tag else None
    family_l = family.lower() if family else None
    hits = []
    for entry in entries:
        if task_l is not None and entry.task.lower() != task_l:
            continue
        if tag_l is not None and tag_l not in entry._haystack[1]:
            continue
        if family_l is not None and entry._haystack[0] != family_l:
            continue
        if is_glob:
            if fnmatchcase(entry.name, q):
                hits.append((0, entry.name, entry))
            continue
        scores = [_term_score(term, entry) for term in terms]
        if None not in scores:
            hits.append((sum(scores), entry.name, entry))
    hits.sort(key=lambda h: (h[0], h[1]))
    return [h[2] for h in hits]


# ---------------------------------------------------------------------------------------
# reading index and manifest files, local or fetched over HTTP(S) into a cache

#: Seconds a cached remote index or manifest is used before it is fetched again.
TTL_SECONDS = 600.0
#: Refuse remote documents larger than this: an index of 10,000 models is ~3 MB.
_MAX_DOCUMENT_BYTES = 64 << 20

# parsed index per (registry name, index file), reused while the file is unchanged
_parsed: dict[tuple[str, str], tuple[tuple[int, int, int], LoadedIndex]] = {}


def cache_slug(url: str) -> str:
    """A folder name for a URL's cache: readable, unique, and free of '/' and '.'."""
    import hashlib  # lazily: only remote registries need it

    parts = urlsplit(url)
    readable = re.sub(r"[^a-z0-9]+", "-", f"{parts.netloc}{parts.path}".lower()).strip("-")
    digest = hashlib.sha256(url.encode("utf-8")).hexdigest()[:12]
    return f"{readable[:48].strip('-') or 'registry'}-{digest}"


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


def _age(path: Path) -> float | None:
    try:
        return time.time() - path.stat().st_mtime
    except OSError:
        return None


#: A revalidation answered in this process less than this many seconds ago counts as
#: fresh: ``outdated`` resolves every model against the same index, one request is enough.
_REVALIDATED_FOR = 1.0
_revalidated: dict[str, float] = {}


def _validators_path(cached: Path) -> Path:
    return cached.with_name(cached.name + ".http.json")


def _read_validators(cached: Path) -> dict[str, str]:
    """The ETag / Last-Modified the server sent with the cached copy ({} when unknown)."""
    try:
        data = files.read(_validators_path(cached))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: v for k, v in data.items() if k in ("etag", "last_modified") and isinstance(v, str)}


def drop_cached(cached: Path) -> None:
    """Forget a cached remote document (and its validators)."""
    for path in (cached, _validators_path(cached)):
        with contextlib.suppress(OSError):
            path.unlink()


def _store(url: str, cached: Path, fetched: Fetched) -> None:
    """Cache a fetched document; a cache that cannot be written costs speed, not the answer."""
    from ._cachefs import claim_home  # the registries/ folder lives in modelzoo's home

    validators = {
        k: v for k, v in (("etag", fetched.etag), ("last_modified", fetched.last_modified)) if v
    }
    try:
        claim_home(config.home())
        _validators_path(cached).unlink(missing_ok=True)  # never pair new bytes with old tags
        files.atomic_write(cached, fetched.body or b"")
        if validators:
            files.atomic_write(_validators_path(cached), json.dumps(validators).encode("utf-8"))
    except (OSError, ModelZooError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        logger.warning(
            "Cannot cache %s under %s (%s); using it uncached. Make MODELZOO_HOME writable.",
            url,
            config.home(),
            reason,
        )


def fetch_cached(
    url: str,
    cached: Path,
    *,
    refresh: bool,
    parse: Callable[[bytes], T],
    revalidate: bool = False,
) -> T | None:
    """Bring the cached copy of ``url`` up to date; return the parsed document when it
    was just fetched, None when the cached copy is the one to read.

    Args:
        url: the remote document.
        cached: where its copy lives.
        refresh: fetch it unconditionally.
        parse: validate (and parse) the bytes; nothing that fails it is cached.
        revalidate: ask the server whether the copy changed (``If-None-Match`` /
            ``If-Modified-Since``; a 304 keeps it) even when it is younger than the TTL.

    Raises:
        OfflineError: offline mode and no cached copy.
        RegistryError, ManifestError: the fetch failed and there is no cached copy.
    """
    age = _age(cached)
    if config.offline():
        if age is None:
            raise OfflineError(f"{url} is not in the cache.", url=url)
        return None
    if age is not None and not refresh:
        if revalidate:
            recent = _revalidated.get(url)
            if recent is not None and time.monotonic() - recent < _REVALIDATED_FOR:
                return None
        elif 0 <= age < TTL_SECONDS:
            return None
    validators = _read_validators(cached) if age is not None and not refresh else {}
    try:
        fetched = http_get(
            url, etag=validators.get("etag"), last_modified=validators.get("last_modified")
        )
        if fetched.body is None:  # 304 Not Modified: the copy is current again
            with contextlib.suppress(OSError):
                os.utime(cached)
            _revalidated[url] = time.monotonic()
            return None
        value = parse(fetched.body)  # never cache what cannot be read back
    except (RegistryError, ManifestError) as exc:
        if age is None:
            raise
        logger.warning(
            "Could not refresh %s (%s); using the copy cached %.0f minute(s) ago.",
            url,
            _reason(exc),
            age / 60,
        )
        return None
    _revalidated[url] = time.monotonic()
    _store(url, cached, fetched)
    return value


def load_cached(
    url: str,
    cached: Path,
    *,
    refresh: bool,
    parse: Callable[[bytes], T],
    parse_cached: Callable[[], T],
    revalidate: bool = False,
) -> T:
    """The parsed document at ``url``, through its cached copy (see :func:`fetch_cached`).

    A cached copy that no longer parses (damaged on disk) is dropped and fetched once
    more, so a corrupt cache never sticks and is never blamed on the server.

    Args:
        parse_cached: parse the cached copy (may reuse an earlier parse of the same file).
    """
    value = fetch_cached(url, cached, refresh=refresh, parse=parse, revalidate=revalidate)
    if value is not None:
        return value
    try:
        return parse_cached()
    except (RegistryError, ManifestError) as exc:
        drop_cached(cached)
        if config.offline():
            raise OfflineError(
                f"The cached copy of {url} was damaged ({first_line(exc)}) and has been "
                "deleted; go online to fetch it again.",
                url=url,
            ) from None
        logger.warning("The cached copy of %s was damaged; fetching it again.", url)
    value = fetch_cached(url, cached, refresh=True, parse=parse)
    return value if value is not None else parse_cached()


def _reason(exc: BaseException) -> str:
    """Why a fetch failed, without the advice of the full message (a warning is one line)."""
    cause = exc.__cause__
    if cause is not None and not isinstance(cause, ModelZooError):
        return first_line(cause)
    return first_line(exc).split(". ", 1)[0]


@dataclass(frozen=True)
class Fetched:
    """A document fetched by :func:`http_get`.

    Attributes:
        body: the bytes, or None when the server answered 304 Not Modified.
        etag: the ``ETag`` header, if any.
        last_modified: the ``Last-Modified`` header, if any.
    """

    body: bytes | None
    etag: str | None = None
    last_modified: str | None = None


def http_get(url: str, *, etag: str | None = None, last_modified: str | None = None) -> Fetched:
    """GET ``url`` under modelzoo's one HTTP policy; errors become RegistryError.

    With ``etag`` / ``last_modified`` the request is conditional (``If-None-Match`` /
    ``If-Modified-Since``); a 304 answer returns ``Fetched(body=None)``.
    """
    shown = redact(url)  # get_bytes refuses credentials in URLs; messages never show them
    headers = {"Accept": "application/json"}
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    try:
        status, got, body = get_bytes(url, headers=headers, max_bytes=_MAX_DOCUMENT_BYTES)
    except _UrlFailed as exc:
        raise RegistryError(
            f"Cannot read registry document {shown}: {exc}. Check the URL (`modelzoo registry "
            "list`) and your network, or set MODELZOO_OFFLINE=1 to use cached copies."
        ) from exc
    if status == 304 and (etag or last_modified):
        return Fetched(None, etag, last_modified)
    if status != 200:
        what = "not found" if status == 404 else "failed"
        raise RegistryError(
            f"GET {shown} {what} (HTTP {status}). Check the registry URL (`modelzoo registry "
            "list`); a registry serves index.json and models/<name>/<version>/manifest.json."
        )
    lower = {k.lower(): v for k, v in got.items()}
    return Fetched(body, lower.get("etag"), lower.get("last-modified"))
