"""Installs: resolve a model, download its artifacts, verify them, store them atomically.

For each artifact the cache is checked first (a complete install record means no network
at all, so installed models work offline). Otherwise the artifact's inter-process lock
is taken, the cache is checked again (another process may have finished meanwhile), the
bytes are downloaded -- resuming a partial left by an interrupted run -- and verified
against the published hash, moved into the content-addressed blob store, and the
install record is written last.

An artifact whose manifest lists an OMS signature bundle gets that bundle too, through
the same download (checked against its published sha256) into the blob store, and its
record names it; :mod:`modelzoo.hub.model_signature` verifies it on request.

Artifacts without a published hash are trusted on first use: the sha256 of the first
download is recorded (``tofu.json`` and the install record) and every later download
of that URL must match it. Hash-checking mode (``require_hashes=True`` or
``MODELZOO_REQUIRE_HASHES=1``) refuses such artifacts before downloading anything.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import config
from ..errors import CacheError, HashRequiredError, IntegrityError, OfflineError, UsageError
from ..versions import is_version, matches, parse_version, split_spec
from .cache import SIGNATURE_SUFFIX, Cache, InstallRecord, blob_suffix
from .manifest import NAME_RE, Artifact, Hash, Manifest

__all__ = [
    "install",
    "ensure_installed",
    "InstallResult",
    "PlannedDownload",
    "artifact_key",
    "default_variant",
    "variants_for",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PlannedDownload:
    """What :func:`install` would do for one artifact (returned by ``dry_run=True``).

    Attributes:
        variant: the artifact variant.
        url: the primary URL.
        size: bytes to download: the manifest's size, else the server's Content-Length
            (HEAD request), None when unknown or offline.
        cached: whether the bytes are already in the cache.
        action: ``reuse`` (nothing to download) or ``download``.
        declared_hash: the published ``algo:hex``, or None (trust on first use).
        path: the local file when cached, else None.
    """

    variant: str
    url: str
    size: int | None
    cached: bool
    action: str
    declared_hash: str | None
    path: Path | None = None


@dataclass(frozen=True)
class InstallResult:
    """What :func:`install` did.

    ``result.paths["full"]`` is the local file of the ``full`` artifact (``result.path``
    when only one variant was installed).

    Attributes:
        manifest: the installed manifest.
        registry: name of the registry it came from.
        records: variant -> :class:`~modelzoo.hub.cache.InstallRecord` (empty for a dry run).
        paths: variant -> local file (for a dry run: only the variants already cached).
        planned: variant -> :class:`PlannedDownload` (dry runs only).
        fetched: the variants whose bytes were downloaded by this call.
        linked: the variants newly installed by this call from bytes already in the cache
            (the same verified file, stored for another model or version).
        dry_run: whether nothing was downloaded or written on purpose.
    """

    manifest: Manifest
    registry: str
    records: dict[str, InstallRecord] = field(default_factory=dict)
    paths: dict[str, Path] = field(default_factory=dict)
    planned: dict[str, PlannedDownload] = field(default_factory=dict)
    fetched: tuple[str, ...] = ()
    dry_run: bool = False
    linked: tuple[str, ...] = ()

    @property
    def spec(self) -> str:
        """``name@version``."""
        return self.manifest.spec

    @property
    def path(self) -> Path:
        """The local file when exactly one variant is in :attr:`paths`.

        Raises:
            UsageError: when there are several (use ``paths[variant]``) or none.
        """
        if len(self.paths) == 1:
            return next(iter(self.paths.values()))
        raise UsageError(
            f"{self.spec} has {len(self.paths)} local files ({', '.join(self.paths) or 'none'}); "
            "pick one with result.paths[variant]."
        )


# --------------------------------------------------------------------------- helpers


def artifact_key(artifact: Artifact, url: str) -> str:
    """The cache key (lock and partial-download name) of an artifact.

    Derived from the published hash when there is one, so the same file listed by two
    models or two registries is downloaded once; else from its primary URL.
    """
    basis = f"hash:{artifact.hash}" if artifact.hash else f"url:{url}"
    return _key(basis)


def _key(basis: str) -> str:
    return hashlib.sha256(basis.encode("utf-8")).hexdigest()[:40]


def default_variant(manifest: Manifest) -> str:
    """``full`` when the manifest has it, else its first artifact."""
    return "full" if "full" in manifest.artifacts else next(iter(manifest.artifacts))


def variants_for(manifest: Manifest, variant: str | None) -> list[str]:
    """The variants a request installs: the default, ``all`` (sorted), or the one named.

    The one place a variant is chosen, for ``install`` and for projects alike.

    Raises:
        VariantNotFoundError: ``variant`` is not in the manifest (lists the valid ones).
    """
    if variant is None:
        return [default_variant(manifest)]
    if variant == "all":
        return sorted(manifest.artifacts)
    return [manifest.artifact(variant).variant]


def _declared(artifact: Artifact) -> str | None:
    return str(artifact.hash) if artifact.hash else None


def _check_hashes(manifest: Manifest, variants: list[str], urls, require_hashes) -> None:
    """Hash-checking mode: refuse unhashed artifacts before anything is fetched."""
    if not config.require_hashes(require_hashes):
        return
    for v in variants:
        art = manifest.artifacts[v]
        if art.hash is None:
            raise HashRequiredError(manifest.name, v, urls(v)[0] if urls else art.url)


def _reusable(cache: Cache, manifest: Manifest, artifact: Artifact) -> InstallRecord | None:
    """A complete install of exactly this artifact, or None."""
    rec = cache.record(manifest.name, manifest.version, artifact.variant)
    if rec is None or not cache.is_complete(rec):
        return None
    if rec.declared_hash != _declared(artifact):
        logger.warning(
            "%s (%s): the installed copy was verified against %s but the manifest now says "
            "%s; reinstalling",
            manifest.spec,
            artifact.variant,
            rec.declared_hash,
            _declared(artifact),
        )
        return None
    return rec


def _shared_blob(cache: Cache, artifact: Artifact, url: str) -> tuple[Path, str] | None:
    """Verified bytes of this artifact already stored for another model: (path, sha256).

    Only equality of a real hash proves two artifacts are the same file: the published
    sha256 (or the sha256 recorded on first use for this very URL), or a published md5
    that another install was verified against. Two artifacts that both lack a hash are
    never the same file.
    """
    suffix = blob_suffix(artifact.file_name)
    if artifact.hash is None:
        sha = cache.trusted_sha256(url)
    elif artifact.hash.algorithm == "sha256":
        sha = artifact.hash.hex
    else:
        sha = None
    if sha is not None:
        path = cache.blob_path(sha, suffix)
        size_ok = artifact.size is None or (path.is_file() and path.stat().st_size == artifact.size)
        return (path, sha) if path.is_file() and size_ok else None
    if artifact.hash is None:
        return None  # no hash to compare: this URL's bytes have never been seen
    declared = str(artifact.hash)  # md5: an install that was verified against the same md5
    for rec in cache.installed():
        if rec.declared_hash == declared and rec.path.suffix == suffix:
            return rec.path, rec.sha256
    return None


def _new_record(
    manifest: Manifest,
    artifact: Artifact,
    registry: str,
    *,
    sha256: str,
    path: Path,
    url: str,
    signature: Path | None = None,
) -> InstallRecord:
    return InstallRecord(
        name=manifest.name,
        version=manifest.version,
        variant=artifact.variant,
        sha256=sha256,
        size=path.stat().st_size,
        path=path,
        file_name=artifact.file_name,
        url=url,
        declared_hash=_declared(artifact),
        trusted_on_first_use=artifact.hash is None,
        registry=registry,
        signature_sha256=artifact.signature.hash.hex if signature else None,
        signature_path=signature,
    )


def _drop_partial(cache: Cache, key: str) -> None:
    """Delete a partial download and its sidecar files."""
    if cache.tmp_dir.is_dir():
        for path in cache.tmp_dir.glob(f"{key}.*"):
            with contextlib.suppress(OSError):
                path.unlink()


def _is_local(url: str) -> bool:
    """file:// URLs work offline (a registry folder on disk)."""
    return urllib.parse.urlsplit(url).scheme.lower() == "file"


def _offline_error(target: Manifest | str, variant: str | None) -> OfflineError:
    spec = target.spec if isinstance(target, Manifest) else target
    what = f"{spec} ({variant})" if variant else spec
    option = f" --variant {variant}" if variant else ""
    return OfflineError(f"{what} is not in the cache; run `modelzoo install {spec}{option}`.")


# --------------------------------------------------------------------------- signatures


def _signature_key(artifact: Artifact) -> str:
    # "signature:" keeps it apart from artifact keys, so no lock is ever taken twice
    return _key(f"signature:{artifact.signature.hash}")


def _signature_lock(cache: Cache, artifact: Artifact):
    """The bundle's inter-process lock (taken after the artifact's), or a no-op."""
    if artifact.signature is None:
        return contextlib.nullcontext()
    return cache.lock(_signature_key(artifact))


def _fetch_signature(cache: Cache, manifest: Manifest, artifact: Artifact, urls: list[str]):
    """Download an artifact's OMS signature bundle, verified against its published sha256
    (call holding :func:`_signature_lock`).

    Returns the download (still a partial, for :func:`_store_signature` to move into the
    blob store under the cache-wide lock), or None when the artifact has no bundle or the
    bundle is already stored.
    """
    from .download import download  # imported lazily: requests is only needed here

    signature = artifact.signature
    if signature is None or cache.blob_path(signature.hash.hex, SIGNATURE_SUFFIX).is_file():
        return None
    key = _signature_key(artifact)
    partial = cache.partial_path(key, create_dir=True)
    try:
        return download(
            urls,
            partial,
            expected=signature.hash,
            desc=f"{manifest.name} ({artifact.variant}) signature",
            progress=False,
            parallel=1,
        )
    except IntegrityError:
        _drop_partial(cache, key)
        raise


def _signature_url(artifact: Artifact) -> list[str]:
    return [artifact.signature.url] if artifact.signature else []


def _store_signature(cache: Cache, artifact: Artifact, fetched) -> Path | None:
    """The stored bundle blob of ``artifact`` (call holding :meth:`Cache.exclusive`)."""
    if artifact.signature is None:
        return None
    sha = artifact.signature.hash.hex
    if fetched is not None:
        return cache.add_blob(fetched.path, sha, SIGNATURE_SUFFIX)
    path = cache.blob_path(sha, SIGNATURE_SUFFIX)
    if not path.is_file():  # pruned between the check and now
        raise CacheError(
            f"{path} was removed while {artifact.variant} was installing; install again."
        )
    return path


# --------------------------------------------------------------------------- one artifact


def _install_artifact(
    cache: Cache,
    manifest: Manifest,
    registry: str,
    artifact: Artifact,
    urls: list[str],
    *,
    force: bool,
    progress: bool | None,
    parallel: int | None = None,
    signature_urls: Sequence[str] = (),
) -> tuple[InstallRecord, str]:
    """Install one artifact; return its record and ``"fetched"``, ``"linked"`` (a new
    record for bytes already in the cache) or ``"installed"`` (nothing to do)."""
    if not force:
        rec = _reusable(cache, manifest, artifact)
        if rec is not None:
            return rec, "installed"
    if config.offline() and not any(_is_local(u) for u in urls):
        raise _offline_error(manifest, artifact.variant)
    key = artifact_key(artifact, urls[0])
    # The bundle's lock is held until its record is written: its partial is ours till then.
    with cache.lock(key), _signature_lock(cache, artifact):
        if not force:
            # Another process may have installed it while we waited for the lock.
            rec = _reusable(cache, manifest, artifact)
            if rec is not None:
                return rec, "installed"
        signature = _fetch_signature(cache, manifest, artifact, list(signature_urls))
        if not force:
            with cache.exclusive():  # prune must not delete the blob before the record exists
                shared = _shared_blob(cache, artifact, urls[0])
                if shared is not None:
                    path, sha = shared
                    rec = _new_record(
                        manifest,
                        artifact,
                        registry,
                        sha256=sha,
                        path=path,
                        url=urls[0],
                        signature=_store_signature(cache, artifact, signature),
                    )
                    cache.write_record(manifest, artifact.variant, rec)
            if shared is not None:
                logger.info("%s (%s): reusing stored %s", manifest.spec, artifact.variant, path)
                return rec, "linked"
        return _download_artifact(
            cache, manifest, registry, artifact, urls, key, force, progress, parallel, signature
        )


def _download_artifact(
    cache, manifest, registry, artifact, urls, key, force, progress, parallel=None, signature=None
):
    from .download import download  # imported lazily: requests is only needed here

    expected = artifact.hash
    first_seen = None
    if expected is None:
        first_seen = cache.trusted_sha256(urls[0])
        if first_seen is not None:
            expected = Hash("sha256", first_seen)
    partial = cache.partial_path(key, create_dir=True)
    try:
        result = download(
            urls,
            partial,
            expected=expected,
            size=artifact.size,
            desc=f"{manifest.name} ({artifact.variant})",
            progress=progress,
            parallel=parallel,
        )
    except IntegrityError as exc:
        _drop_partial(cache, key)
        if first_seen is None:
            raise
        source = exc.url or urls[0]
        raise IntegrityError(
            f"{manifest.spec} ({artifact.variant}): the file at {source} changed since it was "
            f"first installed{f' from {urls[0]}' if source != urls[0] else ''} (trusted on "
            f"first use: sha256:{first_seen}, now "
            f"{exc.actual}). Refusing it. If the publisher really replaced the file, remove "
            f"its entry from {cache.tofu_path} and install again.",
            path=exc.path,
            expected=f"sha256:{first_seen}",
            actual=exc.actual,
            url=source,
        ) from exc
    if artifact.hash is None and first_seen is None:
        for url in dict.fromkeys([urls[0], result.url]):
            cache.trust(url, result.sha256, size=result.size)
        logger.warning(
            "%s (%s): no published hash; sha256 %s recorded on first use; "
            "`modelzoo verify` checks it from now on",
            manifest.spec,
            artifact.variant,
            result.sha256,
        )
    with cache.exclusive():  # prune must not delete the blob before the record exists
        blob = cache.add_blob(
            result.path, result.sha256, blob_suffix(artifact.file_name), replace=force
        )
        rec = _new_record(
            manifest,
            artifact,
            registry,
            sha256=result.sha256,
            path=blob,
            url=result.url,
            signature=_store_signature(cache, artifact, signature),
        )
        cache.write_record(manifest, artifact.variant, rec)
    _drop_partial(cache, key)
    logger.info("installed %s (%s) at %s", manifest.spec, artifact.variant, blob)
    return rec, "fetched"


# --------------------------------------------------------------------------- dry run


def _remote_size(url: str) -> int | None:
    """Content-Length from a HEAD request (or the file size for file:// URLs)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "file":
        from urllib.request import url2pathname  # lazily: only file:// dry runs need it

        try:
            return os.stat(url2pathname(parts.path)).st_size
        except OSError:
            return None
    if parts.scheme not in ("http", "https"):
        return None
    from .http import head_size  # lazily: requests is only needed here

    return head_size(url)


def _plan(cache: Cache, manifest: Manifest, artifact: Artifact, urls, *, force) -> PlannedDownload:
    rec = _reusable(cache, manifest, artifact)
    path = rec.path if rec is not None else None
    if path is None:
        shared = _shared_blob(cache, artifact, urls[0])
        path = shared[0] if shared else None
    cached = path is not None
    size = artifact.size
    if size is None and cached:
        size = path.stat().st_size
    if size is None and not cached and (_is_local(urls[0]) or not config.offline()):
        size = _remote_size(urls[0])
    return PlannedDownload(
        variant=artifact.variant,
        url=rec.url if rec is not None else urls[0],
        size=size,
        cached=cached,
        action="download" if force or not cached else "reuse",
        declared_hash=_declared(artifact),
        path=path,
    )


# --------------------------------------------------------------------------- public API


def _install_resolved(
    cache: Cache,
    manifest: Manifest,
    registry: str,
    urls,
    *,
    variant: str | None,
    force: bool,
    dry_run: bool,
    require_hashes: bool | None,
    progress: bool | None,
    parallel: int | None = None,
    signature_urls=lambda variant: [],
) -> InstallResult:
    variants = variants_for(manifest, variant)
    _check_hashes(manifest, variants, urls, require_hashes)
    if dry_run:
        planned = {
            v: _plan(cache, manifest, manifest.artifacts[v], urls(v), force=force) for v in variants
        }
        paths = {v: p.path for v, p in planned.items() if p.path is not None}
        return InstallResult(manifest, registry, paths=paths, planned=planned, dry_run=True)
    records: dict[str, InstallRecord] = {}
    done: dict[str, list[str]] = {"fetched": [], "linked": [], "installed": []}
    for v in variants:
        art = manifest.artifacts[v]
        rec, how = _install_artifact(
            cache,
            manifest,
            registry,
            art,
            urls(v),
            force=force,
            progress=progress,
            parallel=parallel,
            signature_urls=signature_urls(v),
        )
        records[v] = rec
        done[how].append(v)
    paths = {v: r.path for v, r in records.items()}
    return InstallResult(
        manifest,
        registry,
        records,
        paths,
        fetched=tuple(done["fetched"]),
        linked=tuple(done["linked"]),
    )


def _from_cache(
    cache: Cache, name: str, constraint: str | None, variant: str | None
) -> tuple[Manifest, str] | None:
    """The best installed version of ``name`` matching ``constraint`` whose requested
    variants are all complete: (installed manifest, registry name)."""
    if not NAME_RE.match(name):
        return None
    by_version: dict[str, list[InstallRecord]] = {}
    for rec in cache.installed(name):
        by_version.setdefault(rec.version, []).append(rec)
    candidates = []
    for version in by_version:
        try:
            ok = (
                parse_version(version) == parse_version(constraint)
                if constraint and is_version(constraint)
                else matches(version, constraint or "latest")
            )
        except ValueError:
            return None
        if ok:
            candidates.append(version)
    for version in sorted(candidates, key=parse_version, reverse=True):
        manifest = cache.manifest(name, version)
        if manifest is None:
            continue
        try:
            variants = variants_for(manifest, variant)
        except LookupError:
            continue
        if all(_reusable(cache, manifest, manifest.artifacts[v]) for v in variants):
            return manifest, by_version[version][0].registry
    return None


def install(
    spec: str,
    *,
    version: str | None = None,
    variant: str | None = None,
    force: bool = False,
    dry_run: bool = False,
    require_hashes: bool | None = None,
    progress: bool | None = None,
    refresh: bool = False,
    parallel: int | None = None,
    require_signed: bool | None = None,
) -> InstallResult:
    """Install a model into the cache (or reuse what is already there).

    Args:
        spec: ``name`` or ``name@version`` (a version or a constraint such as ``^1.2``).
        version: the version or constraint, instead of writing it in ``spec``.
        variant: the artifact to install: ``full`` (the default when the manifest has
            it, else its first artifact), ``notop``, ... or ``all``.
        force: download again even when installed (the bytes must still verify).
        dry_run: download and write nothing; ``result.planned`` says what would happen.
        require_hashes: refuse artifacts without a published hash (default:
            ``MODELZOO_REQUIRE_HASHES``).
        progress: draw a progress bar (default: on unless
            ``MODELZOO_DISABLE_PROGRESS_BARS=1``).
        refresh: fetch remote registry indexes and manifests again, ignoring cached
            copies (without it, a spec without a version still revalidates the index).
        parallel: connections per large artifact (default ``MODELZOO_PARALLEL``, 8;
            1 = one stream); see :func:`modelzoo.hub.download.download`.
        require_signed: refuse models from unsigned registries (default:
            ``MODELZOO_REQUIRE_SIGNED``; the bundled registry is always accepted).

    Returns:
        An :class:`InstallResult`; ``result.paths["full"]`` is the local model file.

    Raises:
        ModelNotFoundError: no registry knows ``spec``.
        VariantNotFoundError: the manifest has no such artifact.
        HashRequiredError: hash-checking mode and an artifact has no published hash.
        IntegrityError: the downloaded bytes do not match (nothing is installed).
        OfflineError: offline mode and the model is not in the cache.
        DownloadError, CacheError, LockTimeoutError: see ``modelzoo.errors``.

    Example:
        >>> result = modelzoo.install("mobilenet_v1_1.0_224")  # doctest: +SKIP
        >>> result.paths["full"]  # doctest: +SKIP
        PosixPath('~/.cache/modelzoo/blobs/sha256/....h5')
    """
    name, in_spec = split_spec(spec)
    if in_spec is not None and version is not None and in_spec != version:
        raise UsageError(f"Two versions given: {spec!r} and version={version!r}. Use one of them.")
    wanted = version if version is not None else in_spec
    cache = Cache()
    offline = config.offline()
    if (offline or (wanted is not None and is_version(wanted))) and not force:
        # A pinned version that is installed needs no registry and no network.
        hit = _from_cache(cache, name, wanted, variant)
        if hit is not None:
            manifest, registry = hit
            return _install_resolved(
                cache,
                manifest,
                registry,
                lambda v: list(manifest.artifacts[v].urls),
                variant=variant,
                force=False,
                dry_run=dry_run,
                require_hashes=require_hashes,
                progress=progress,
                parallel=parallel,
                signature_urls=lambda v: _signature_url(manifest.artifacts[v]),
            )
    from .registry import resolve  # imported lazily: keeps `import modelzoo.hub.cache` light

    try:
        # Without a version "latest" must be the registry's latest: ask the server
        # (a conditional GET) rather than trust a cached index that may be minutes old.
        resolved = resolve(
            name,
            version=wanted,
            refresh=refresh,
            revalidate=wanted is None,
            require_signed=require_signed,
        )
    except OfflineError as exc:
        # The registry could not be read offline: name the model, not the index file.
        shown = f"{name}@{wanted}" if wanted else name
        raise _offline_error(shown, variant if variant != "all" else None) from exc
    return _install_resolved(
        cache,
        resolved.manifest,
        resolved.registry,
        resolved.artifact_urls,
        variant=variant,
        force=force,
        dry_run=dry_run,
        require_hashes=require_hashes,
        progress=progress,
        parallel=parallel,
        signature_urls=resolved.signature_urls,
    )


def ensure_installed(
    target: Any,
    variant: str | None = None,
    *,
    force: bool = False,
    require_hashes: bool | None = None,
    progress: bool | None = None,
) -> InstallRecord:
    """Return the install record of one artifact, installing it first when needed.

    Used by :func:`modelzoo.load`. Honours offline mode: a cached artifact is returned
    without touching the network; a missing one raises :class:`OfflineError`.

    Args:
        target: a spec (``name`` / ``name@version``), a resolved registry entry (with
            ``.manifest``, ``.registry`` and ``.artifact_urls``), or a
            :class:`~modelzoo.hub.manifest.Manifest`.
        variant: which artifact (default: ``full`` when present, else the first).
        force: download again even when installed.
        require_hashes: see :func:`install`.
        progress: see :func:`install`.
    """
    if variant == "all":
        raise UsageError("ensure_installed() returns one artifact; pass a single variant.")
    if isinstance(target, str):
        result = install(
            target, variant=variant, force=force, require_hashes=require_hashes, progress=progress
        )
        return next(iter(result.records.values()))
    manifest = target if isinstance(target, Manifest) else getattr(target, "manifest", None)
    if not isinstance(manifest, Manifest):
        raise UsageError(
            f"ensure_installed() takes a spec string, a resolved model or a Manifest; "
            f"received {type(target).__name__}."
        )
    chosen = variants_for(manifest, variant)[0]
    cache = Cache()
    _check_hashes(manifest, [chosen], None, require_hashes)
    if not force:
        rec = _reusable(cache, manifest, manifest.artifacts[chosen])
        if rec is not None:
            return rec
    if isinstance(target, Manifest):
        from .registry import resolve

        try:
            target = resolve(manifest.name, version=manifest.version)
        except OfflineError as exc:
            raise _offline_error(manifest, chosen) from exc
    result = _install_resolved(
        cache,
        manifest,
        target.registry,
        target.artifact_urls,
        variant=chosen,
        force=force,
        dry_run=False,
        require_hashes=require_hashes,
        progress=progress,
        signature_urls=target.signature_urls,
    )
    return result.records[chosen]
