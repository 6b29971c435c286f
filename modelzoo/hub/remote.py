"""Remote registry documents: index and manifest files fetched over HTTP(S) into a cache.

A fetched document is kept under the cache for :data:`TTL_SECONDS`, revalidated with
its ``ETag`` / ``Last-Modified`` validators, used as is when offline, and used stale (with
a warning) when its server is unreachable. :mod:`modelzoo.hub.registry` decides which
registries exist and which one answers; :mod:`modelzoo.hub.index` parses what this
module fetches.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

from .. import config, files
from ..errors import ManifestError, ModelZooError, OfflineError, RegistryError, first_line
from .http import UrlFailed, get_bytes, redact

__all__ = [
    "TTL_SECONDS",
    "cache_slug",
    "fetch_cached",
    "load_cached",
    "drop_cached",
    "Fetched",
    "http_get",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Seconds a cached remote index or manifest is used before it is fetched again.
TTL_SECONDS = 600.0
#: Refuse remote documents larger than this: an index of 10,000 models is ~3 MB.
_MAX_DOCUMENT_BYTES = 64 << 20


def cache_slug(url: str) -> str:
    """A folder name for a URL's cache: readable, unique, and free of '/' and '.'."""
    import hashlib  # lazily: only remote registries need it

    parts = urlsplit(url)
    readable = re.sub(r"[^a-z0-9]+", "-", f"{parts.netloc}{parts.path}".lower()).strip("-")
    digest = hashlib.sha256(url.encode("utf-8")).hexdigest()[:12]
    return f"{readable[:48].strip('-') or 'registry'}-{digest}"


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
    from .home import claim_home  # the registries/ folder lives in modelzoo's home

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
    except UrlFailed as exc:
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
