"""Trusting a signed registry: every index and manifest through ``tuf.ngclient.Updater``.

A registry added with a trusted root (``modelzoo registry add LOC --trust ROOT.json`` or
``--root-sha256 HEX``) is read only through python-tuf's client, which refuses metadata
that is tampered with or signed by the wrong keys, rolled back, frozen (expired),
mixed-and-matched or endless. Its ``index.json`` and manifests are TUF targets checked
against signed length and sha256; each artifact's hash in a manifest must equal its
signed target ``artifacts/<name>/<version>/<variant>`` (see :mod:`modelzoo.hub.signing`), and
the download is then verified against that hash as for any registry.

State lives under ``<MODELZOO_HOME>/trust/<slug>/``::

    bootstrap.root.json     # the root trusted when the registry was added
    metadata/               # python-tuf's verified metadata (root history, timestamp, ...)
    targets/                # verified copies of index.json and manifests (http registries)
    refreshed               # touched after each successful refresh from the network

The transport is ours (:class:`_Transport`, a ``FetcherInterface``): folders are read from
disk and HTTP goes through modelzoo's one HTTP policy (:mod:`modelzoo.hub.http`: timeouts,
redirect and credential rules), never through tuf's own urllib3 pool.

Freshness: a folder registry is refreshed on every read (it is local). An HTTP registry's
metadata is refreshed when older than 10 minutes (the index TTL), on ``refresh`` /
``revalidate``, or when a needed file is not cached; in between, and with
``MODELZOO_OFFLINE=1``, the cached metadata is verified again from disk (signatures,
versions and expiry), so expired metadata is refused offline too: there is no override,
since one would undo the freeze protection. An air-gapped machine uses a bundle instead
(``modelzoo pack``/``unpack``): its metadata is checked by :func:`verify_bundle_metadata`
against the lockfile's pinned root, signatures and hashes, with expiry reported, not
enforced (a bundle is a snapshot of one moment).
Nothing here imports TensorFlow; tuf is imported only when a signed registry is read.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

from .. import config, files
from ..errors import (
    EndlessDataError,
    FreezeError,
    MixAndMatchError,
    OfflineError,
    RegistryError,
    RollbackError,
    RootMismatchError,
    TamperedMetadataError,
    TrustError,
    UsageError,
)
from .http import UrlFailed, get_bytes, redact
from .index import is_safe_relpath
from .remote import TTL_SECONDS, cache_slug

__all__ = [
    "TUF_DIR",
    "TrustedRoot",
    "trust_dir",
    "read_root",
    "fetch_root",
    "establish",
    "forget",
    "trusted_root",
    "SignedReader",
    "reader",
    "ensure_pinned",
    "pin_matches",
    "is_established",
    "bundle_metadata",
    "verify_bundle_metadata",
]

logger = logging.getLogger(__name__)

#: The metadata folder of a signed registry (same as :data:`modelzoo.hub.signing.TUF_DIR`).
TUF_DIR = "tuf"
_BOOTSTRAP = "bootstrap.root.json"
_MAX_ROOT_BYTES = 512_000
_REFRESHED_FOR = 1.0


@dataclass(frozen=True)
class TrustedRoot:
    """A root metadata file a client trusts.

    Attributes:
        version: its root version.
        sha256: sha256 of its bytes.
        data: the bytes.
    """

    version: int
    sha256: str
    data: bytes


def trust_dir(location: str) -> Path:
    """Where a signed registry's verified metadata lives."""
    return config.home() / "trust" / cache_slug(location)


def _metadata_url(kind: str, location: str) -> str:
    if kind == "http":
        return f"{location}/{TUF_DIR}/"
    return (Path(location) / TUF_DIR).absolute().as_uri() + "/"


def _base_url(kind: str, location: str) -> str:
    return f"{location}/" if kind == "http" else Path(location).absolute().as_uri() + "/"


def read_root(data: bytes, *, source: str) -> TrustedRoot:
    """Parse root metadata and check that it is signed by its own keys.

    Raises:
        TamperedMetadataError: not root metadata, or not signed by its own threshold.
    """
    from tuf.api import exceptions
    from tuf.api.metadata import Metadata, Root

    try:
        md = Metadata[Root].from_bytes(data)
        if md.signed.type != Root.type:
            raise ValueError(f"it is {md.signed.type} metadata, not root")
        md.signed.verify_delegate(Root.type, md.signed_bytes, md.signatures)
    except exceptions.UnsignedMetadataError as exc:
        raise TamperedMetadataError(
            f"{source} is not signed by its own root keys ({exc}); do not trust it.", role="root"
        ) from None
    except (ValueError, TypeError, KeyError, exceptions.RepositoryError) as exc:
        raise TamperedMetadataError(
            f"{source} is not TUF root metadata ({exc}). Pass the root.json of a registry made "
            "with `modelzoo registry init`.",
            role="root",
        ) from None
    return TrustedRoot(md.signed.version, hashlib.sha256(data).hexdigest(), data)


def fetch_root(kind: str, location: str) -> bytes:
    """The newest root metadata a registry publishes (``tuf/root.json``), unverified."""
    url = _metadata_url(kind, location) + "root.json"
    try:
        return b"".join(_Transport().fetch_bounded(url, _MAX_ROOT_BYTES))
    except OfflineError:
        raise
    except Exception as exc:  # tuf DownloadError: missing file, network
        raise RegistryError(
            f"Cannot read {redact(url)}: {exc}. Is {location} a signed registry (made with "
            "`modelzoo registry init`)?"
        ) from None


def establish(
    kind: str,
    location: str,
    *,
    root: bytes | None = None,
    root_sha256: str | None = None,
    name: str = "",
) -> TrustedRoot:
    """Record the trusted root of a registry and check the registry against it.

    Args:
        kind: ``folder`` or ``http``.
        location: the registry's folder or URL.
        root: root metadata bytes given by the user (``--trust ROOT.json``).
        root_sha256: or: the sha256 the registry's current ``tuf/root.json`` must have.
        name: the registry's name, for messages.

    Raises:
        RootMismatchError: the fetched root's sha256 is not ``root_sha256``.
        TrustError: the registry's metadata does not verify from that root.
    """
    if (root is None) == (root_sha256 is None):
        raise UsageError(
            "Give the trusted root either as a file (--trust) or a hash (--root-sha256)."
        )
    if root is None:
        wanted = root_sha256.strip().lower().removeprefix("sha256:")
        root = fetch_root(kind, location)
        got = hashlib.sha256(root).hexdigest()
        if got != wanted:
            raise RootMismatchError(
                f"The root metadata of {location} has sha256 {got}, not the pinned {wanted}. "
                "Check the hash with the registry's publisher; do not add it until they match.",
                registry=name,
                role="root",
            )
    trusted = read_root(root, source="the trusted root")
    folder = trust_dir(location)
    forget(location)
    folder.mkdir(parents=True, exist_ok=True)
    files.atomic_write(folder / _BOOTSTRAP, root)
    _readers.pop(location, None)
    try:
        SignedReader(name, kind, location).refresh_now()
    except BaseException:
        forget(location)
        raise
    return trusted


def forget(location: str) -> None:
    """Delete a registry's trust state (our own folder, nothing else)."""
    _readers.pop(location, None)
    shutil.rmtree(trust_dir(location), ignore_errors=True)


def trusted_root(location: str) -> TrustedRoot | None:
    """The root a client trusts now (newest verified version), or None when unsigned."""
    folder = trust_dir(location)
    history = folder / "metadata" / "root_history"
    best = None
    with contextlib.suppress(OSError):
        for path in history.glob("*.root.json"):
            version = int(path.name.split(".", 1)[0])
            if best is None or version > best[0]:
                best = (version, path)
    path = best[1] if best else folder / _BOOTSTRAP
    try:
        data = path.read_bytes()
    except OSError:
        return None
    return TrustedRoot(
        best[0] if best else _root_version(data), hashlib.sha256(data).hexdigest(), data
    )


def _root_version(data: bytes) -> int:
    from tuf.api.metadata import Metadata

    return Metadata.from_bytes(data).signed.version


# ---------------------------------------------------------------------------------------
# transport


def _new_fetcher_class():
    from tuf.api import exceptions
    from tuf.ngclient.fetcher import FetcherInterface

    class Fetcher(FetcherInterface):
        """python-tuf's downloads through modelzoo's transport (see :class:`_Transport`)."""

        def __init__(self, transport: _Transport):
            self.transport = transport
            self.limit = 0

        def download_file(self, url, max_length):
            self.limit = max_length
            return super().download_file(url, max_length)

        def _fetch(self, url: str) -> Iterator[bytes]:
            return iter(self.transport.fetch_bounded(url, self.limit, exceptions=exceptions))

    return Fetcher


class _Transport:
    """Reads ``file://`` URLs from disk and HTTP(S) through :func:`modelzoo.hub.http.get_bytes`.

    Attributes:
        cached_metadata: when set, metadata URLs under it are answered from this folder
            (timestamp, snapshot and targets: the cached copy whatever the version asked;
            a next root: missing), so ``Updater.refresh`` re-verifies the cached metadata
            without the network, expiry included.
        last: the file name last asked for (names the role in errors).
    """

    def __init__(self, *, metadata_url: str = "", cached_metadata: Path | None = None):
        self.metadata_url = metadata_url
        self.cached_metadata = cached_metadata
        self.last = ""
        self._session = None  # one connection pool for the metadata of one refresh
        self.etags: dict[str, str] = {}  # URL -> ETag of the bytes last fetched

    def get(self, url: str, limit: int, *, etag: str | None = None) -> tuple[int, bytes]:
        """``(status, body)`` of an HTTP(S) URL under modelzoo's HTTP policy (with an
        ``etag``, conditional: 304 and no body when unchanged)."""
        if config.offline():
            raise OfflineError(f"{redact(url)} is not in the cache.", url=url)
        if self._session is None:
            from .http import new_session

            self._session = new_session()
        headers = {"If-None-Match": etag} if etag else None
        status, got, body = get_bytes(url, headers=headers, max_bytes=limit, session=self._session)
        tag = {k.lower(): v for k, v in got.items()}.get("etag")
        if status == 200 and tag:
            self.etags[url] = tag
        return status, body

    def fetch_bounded(self, url: str, limit: int, *, exceptions=None) -> list[bytes]:
        if exceptions is None:
            from tuf.api import exceptions
        self.last = unquote(url.rsplit("/", 1)[-1])
        if self.cached_metadata is not None and url.startswith(self.metadata_url):
            name = url[len(self.metadata_url) :]
            role = _role(name)
            if role in ("timestamp", "snapshot", "targets"):  # N.snapshot.json: the cached one
                with contextlib.suppress(OSError):
                    return [(self.cached_metadata / f"{role}.json").read_bytes()]
            raise exceptions.DownloadHTTPError(f"{name} is not cached", 404)
        scheme = urlsplit(url).scheme.lower()
        if scheme == "file":
            from urllib.request import url2pathname

            path = Path(url2pathname(urlsplit(url).path))
            try:
                size = path.stat().st_size
                if size > limit:
                    raise exceptions.DownloadLengthMismatchError(
                        f"{path} has {size} bytes, more than the {limit} allowed"
                    )
                return [path.read_bytes()]
            except FileNotFoundError:
                raise exceptions.DownloadHTTPError(f"{path} does not exist", 404) from None
            except OSError as exc:
                raise exceptions.DownloadError(f"cannot read {path}: {exc.strerror}") from None
        try:
            status, body = self.get(url, limit)
        except UrlFailed as exc:
            if "larger than" in str(exc):
                raise exceptions.DownloadLengthMismatchError(str(exc)) from None
            raise exceptions.DownloadError(f"{redact(url)}: {exc}") from None
        if status != 200:
            raise exceptions.DownloadHTTPError(f"{redact(url)}: HTTP {status}", status)
        return [body]


# ---------------------------------------------------------------------------------------
# reading


def _role(name: str) -> str:
    """``3.snapshot.json`` -> ``snapshot``; a target path stays as it is."""
    base = name.rsplit("/", 1)[-1]
    for role in ("root", "timestamp", "snapshot", "targets"):
        if base == f"{role}.json" or (
            base.endswith(f".{role}.json") and base.split(".")[0].isdigit()
        ):
            return role
    return name


@contextlib.contextmanager
def _translated(registry: str, transport: _Transport, what: str = "") -> Iterator[None]:
    """python-tuf's errors as ours: one line naming the registry, the role and the attack."""
    from tuf.api import exceptions

    def fail(cls, attack_text: str, exc: BaseException, hint: str):
        role = what or _role(transport.last)
        kind = "metadata" if role in ("root", "timestamp", "snapshot", "targets") else "(target)"
        return cls(
            f"Registry {registry!r}: {role} {kind} failed verification ({attack_text}): "
            f"{exc or type(exc).__name__}. {hint}",
            registry=registry,
            role=role,
        )

    hint = (
        "Nothing from it was used. The server, a mirror or the folder may serve altered or old "
        "files; tell the registry's publisher. If they rotated keys, re-add it with "
        "`modelzoo registry add LOCATION --trust ROOT.json`."
    )
    try:
        yield
    except exceptions.ExpiredMetadataError as exc:
        raise fail(
            FreezeError,
            "expired: the registry may be frozen on an old state",
            exc,
            "The publisher must re-sign it (`modelzoo registry sign`); offline, go online "
            "once to refresh it.",
        ) from None
    except exceptions.EqualVersionNumberError as exc:
        raise fail(RollbackError, "rollback", exc, hint) from None
    except exceptions.BadVersionNumberError as exc:
        text = str(exc)
        cls, attack = (
            (RollbackError, "rollback")
            if "must be >=" in text
            else (MixAndMatchError, "mix-and-match")
        )
        raise fail(cls, attack, exc, hint) from None
    except exceptions.UnsignedMetadataError as exc:
        raise fail(
            TamperedMetadataError, "tampered, or signed by a key the root does not trust", exc, hint
        ) from None
    except exceptions.LengthOrHashMismatchError as exc:
        raise fail(
            MixAndMatchError
            if _role(transport.last) in ("snapshot", "targets") and not what
            else TamperedMetadataError,
            "length or hash differs from the signed one",
            exc,
            hint,
        ) from None
    except exceptions.DownloadLengthMismatchError as exc:
        raise fail(EndlessDataError, "endless data", exc, hint) from None
    except exceptions.RepositoryError as exc:
        raise fail(TamperedMetadataError, "invalid", exc, hint) from None
    except exceptions.DownloadError as exc:
        cause = exc.__cause__ if isinstance(exc.__cause__, OfflineError) else None
        if cause is not None:
            raise cause from None
        raise RegistryError(
            f"Registry {registry!r}: cannot read its signed metadata: {exc}. Check the "
            "registry's location (`modelzoo registry list`) and your network.",
            registry=registry,
        ) from None


class SignedReader:
    """One signed registry, read through python-tuf.

    Every refresh goes through ``Updater.refresh`` (the full TUF client workflow). Its
    outcome -- the signed targets' lengths and sha256, the earliest expiry of the four
    roles, and the sha256 of the timestamp it verified -- is written to ``verified.json``
    in the registry's trust folder, which is as trusted as the metadata cache beside it.
    Reads within the freshness window use that listing without importing python-tuf
    (``search`` stays fast): for a folder only while the folder's ``tuf/timestamp.json``
    has the bytes that were verified, for HTTP while the cache is fresh or offline; in
    both cases only before the earliest expiry (a frozen registry is refused offline too).

    Args:
        name: the registry's name (for messages).
        kind: ``folder`` or ``http``.
        location: its folder or URL.
    """

    def __init__(self, name: str, kind: str, location: str):
        self.name = name
        self.kind = kind
        self.location = location
        self.dir = trust_dir(location)
        self._updater = None
        self._transport: _Transport | None = None
        self._listing: dict | None = None
        self._refreshed = -1e9  # time.monotonic() of the last refresh in this process

    @property
    def metadata_dir(self) -> Path:
        return self.dir / "metadata"

    def _make(self, *, from_cache: bool):
        from tuf.ngclient import Updater, UpdaterConfig

        metadata_url = _metadata_url(self.kind, self.location)
        transport = _Transport(
            metadata_url=metadata_url, cached_metadata=self.metadata_dir if from_cache else None
        )
        bootstrap = None
        if not (self.metadata_dir / "root.json").exists():
            try:
                bootstrap = (self.dir / _BOOTSTRAP).read_bytes()
            except OSError:
                raise TrustError(
                    f"Registry {self.name!r} is marked signed but its trusted root is gone from "
                    f"{self.dir}. Add it again with `modelzoo registry add {self.location} "
                    "--trust ROOT.json`.",
                    registry=self.name,
                    role="root",
                ) from None
        self.metadata_dir.mkdir(parents=True, exist_ok=True)
        with _translated(self.name, transport, "root"):
            updater = Updater(
                str(self.metadata_dir),
                metadata_url,
                str(self.dir / "targets"),
                _base_url(self.kind, self.location),
                fetcher=_new_fetcher_class()(transport),
                config=UpdaterConfig(prefix_targets_with_hash=False),
                bootstrap=bootstrap,
            )
        with _translated(self.name, transport):
            updater.refresh()
        self._updater, self._transport = updater, transport
        self._listing = self._record()
        self._refreshed = time.monotonic()

    def _record(self) -> dict:
        """Write ``verified.json`` from the metadata ``Updater.refresh`` just verified."""
        docs = {}
        for role in ("root", "timestamp", "snapshot", "targets"):
            docs[role] = files.loads((self.metadata_dir / f"{role}.json").read_bytes())
        listing = {
            "source": self._source_stamp(),
            "timestamp_sha256": hashlib.sha256(
                (self.metadata_dir / "timestamp.json").read_bytes()
            ).hexdigest(),
            "root_version": docs["root"]["signed"]["version"],
            "timestamp_etag": self._transport.etags.get(
                _metadata_url(self.kind, self.location) + "timestamp.json"
            ),
            "expires": min(docs[r]["signed"]["expires"] for r in docs),
            "targets": {
                path: [info["length"], info["hashes"]["sha256"]]
                for path, info in docs["targets"]["signed"]["targets"].items()
                if "sha256" in info.get("hashes", {})
            },
        }
        with contextlib.suppress(OSError):
            files.atomic_write(self.dir / "verified.json", json.dumps(listing).encode("utf-8"))
        return listing

    def _source_stamp(self) -> str | None:
        """sha256 of the folder's ``tuf/timestamp.json`` (None for HTTP or when unreadable)."""
        if self.kind == "http":
            return None
        try:
            return hashlib.sha256(
                (Path(self.location) / TUF_DIR / "timestamp.json").read_bytes()
            ).hexdigest()
        except OSError:
            return None

    def _cached_listing(self) -> dict | None:
        """The verified listing, when it may be used now without a refresh."""
        try:
            listing = files.loads((self.dir / "verified.json").read_bytes())
            expires = datetime.fromisoformat(listing["expires"].replace("Z", "+00:00"))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None
        if expires <= datetime.now(UTC):
            return None  # let the TUF workflow say it is expired (FreezeError)
        if self.kind != "http" and listing.get("source") != self._source_stamp():
            return None  # the folder was signed again (or changed): verify it afresh
        return listing

    def _expired_for(self) -> str:
        """``on <date> (<n> hours ago)`` from the verified listing, for messages."""
        try:
            listing = files.loads((self.dir / "verified.json").read_bytes())
            expires = datetime.fromisoformat(listing["expires"].replace("Z", "+00:00"))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return "(date unknown)"
        hours = (datetime.now(UTC) - expires).total_seconds() / 3600
        return f"on {expires:%Y-%m-%d %H:%M} UTC ({hours:.0f} hour(s) ago)"

    def _stamp(self) -> Path:
        return self.dir / "refreshed"

    def refresh_now(self) -> None:
        """Refresh from the network (or folder) now."""
        self._make(from_cache=False)
        with contextlib.suppress(OSError):
            self._stamp().touch()

    def _ensure(self, *, refresh: bool) -> dict:
        """The verified targets listing, refreshing through TUF when it is due."""
        # One refresh serves a whole command (index, then manifest): TUF refreshes once
        # per Updater, and ``resolve(refresh=True)`` reads several documents in a row.
        recent = time.monotonic() - self._refreshed < _REFRESHED_FOR
        if (
            self._listing is not None
            and (recent or not refresh)
            and (self.kind == "http" or self._listing.get("source") == self._source_stamp())
        ):
            return self._listing
        if self.kind != "http":
            listing = None if refresh and not recent else self._cached_listing()
            if listing is None:
                self.refresh_now()
            else:
                self._listing = listing
            return self._listing
        offline = config.offline()
        try:
            age = time.time() - self._stamp().stat().st_mtime
        except OSError:
            age = None
        if offline or (age is not None and 0 <= age < TTL_SECONDS and not refresh):
            if age is None:
                raise OfflineError(f"The signed metadata of registry {self.name!r} is not cached.")
            listing = self._cached_listing()
            if listing is None:
                try:
                    self._make(from_cache=True)  # verifies the cache again
                except FreezeError as exc:
                    if not offline:
                        raise
                    raise FreezeError(
                        f"Registry {self.name!r}: its cached signed metadata expired "
                        f"{self._expired_for()} and offline mode (MODELZOO_OFFLINE=1) cannot "
                        "refresh it; go online once (or unpack a bundle with --lock).",
                        registry=self.name,
                        role=exc.role,
                    ) from None
            else:
                self._listing = listing
            return self._listing
        if self._unchanged():
            return self._listing
        try:
            self.refresh_now()
        except RegistryError as exc:  # the network, not verification: fall back to the cache
            if age is None:
                raise
            logger.warning(
                "Could not refresh the signed metadata of %r (%s); using the copy verified %.0f "
                "minute(s) ago.",
                self.name,
                exc,
                age / 60,
            )
            self._make(from_cache=True)
        return self._listing

    def _unchanged(self) -> bool:
        """Whether an HTTP registry still serves exactly the metadata verified last time.

        One small request, no python-tuf: ``timestamp.json`` must have the bytes that were
        verified (asked conditionally with their ETag: a 304 says so without a body). Then
        snapshot and targets, bound to it by hashes, are unchanged too, and any rollback,
        edit or key rotation (which always comes with a new timestamp) would show as other
        bytes. The listing must not have expired. Anything else -- or any error -- goes
        through the full ``Updater.refresh``.
        """
        listing = self._cached_listing()
        if listing is None or "timestamp_sha256" not in listing:
            return False
        transport = self._transport or _Transport()
        url = _metadata_url(self.kind, self.location) + "timestamp.json"
        try:
            status, body = transport.get(url, 16384, etag=listing.get("timestamp_etag"))
        except (UrlFailed, OfflineError):
            return False
        if status == 200 and hashlib.sha256(body).hexdigest() == listing["timestamp_sha256"]:
            if transport.etags.get(url) != listing.get("timestamp_etag"):
                listing = {**listing, "timestamp_etag": transport.etags.get(url)}
                with contextlib.suppress(OSError):
                    data = json.dumps(listing).encode("utf-8")
                    files.atomic_write(self.dir / "verified.json", data)
        elif status != 304 or not listing.get("timestamp_etag"):
            return False
        self._listing, self._transport = listing, transport
        self._refreshed = time.monotonic()
        with contextlib.suppress(OSError):
            self._stamp().touch()
        return True

    def target(self, path: str, *, refresh: bool = False) -> tuple[int, str] | None:
        """``(length, sha256)`` of a signed target, or None when ``path`` is not one."""
        hit = self._ensure(refresh=refresh)["targets"].get(path)
        return (hit[0], hit[1]) if hit else None

    def target_bytes(self, path: str, *, refresh: bool = False) -> bytes:
        """The verified bytes of a target (``index.json``, a manifest).

        Raises:
            TrustError: not a signed target, or bytes that do not match.
        """
        signed = self.target(path, refresh=refresh)
        if signed is None:
            raise TamperedMetadataError(
                f"Registry {self.name!r}: {path} is not in its signed targets; refusing it. "
                "The publisher must sign it (`modelzoo registry sign`).",
                registry=self.name,
                role=path,
            )
        length, sha = signed
        cached = self.dir / "targets" / quote(path, "")
        if self.kind == "http":
            with contextlib.suppress(OSError):
                data = cached.read_bytes()
                if len(data) == length and hashlib.sha256(data).hexdigest() == sha:
                    return data
        if self.kind == "http":
            transport = _Transport()
            url = _base_url(self.kind, self.location) + path
            with _translated(self.name, transport, path):
                data = b"".join(transport.fetch_bounded(url, length))
        else:  # a folder: read at most one byte more than signed (no python-tuf needed)
            if not is_safe_relpath(path):
                raise TamperedMetadataError(
                    f"Registry {self.name!r}: refusing the signed target path {path!r} (it "
                    "leaves the registry folder).",
                    registry=self.name,
                    role=path,
                )
            try:
                with open(Path(self.location) / path, "rb") as fh:
                    data = fh.read(length + 1)
            except OSError as exc:
                raise RegistryError(
                    f"Registry {self.name!r}: cannot read its signed target {path}: "
                    f"{exc.strerror or exc}. Its publisher must restore it or sign again.",
                    registry=self.name,
                ) from None
        if len(data) != length or hashlib.sha256(data).hexdigest() != sha:
            raise TamperedMetadataError(
                f"Registry {self.name!r}: {path} (target) failed verification (length or hash "
                f"differs from the signed one: {len(data)} bytes, sha256:"
                f"{hashlib.sha256(data).hexdigest()}; signed: {length} bytes, sha256:{sha}). "
                "Nothing from it was used. The server, a mirror or the folder may serve altered "
                "or old files; tell the registry's publisher.",
                registry=self.name,
                role=path,
            )
        if self.kind == "http":
            with contextlib.suppress(OSError):
                files.atomic_write(cached, data)
        return data

    def check_artifact(self, target: str, algorithm: str, hexdigest: str, size: int | None) -> None:
        """Refuse an artifact whose manifest hash or size differs from its signed target."""
        signed = self.target(target)
        if (
            signed is None
            or algorithm != "sha256"
            or signed[1] != hexdigest
            or (size is not None and size != signed[0])
        ):
            raise TamperedMetadataError(
                f"Registry {self.name!r}: the manifest's {target.rsplit('/', 1)[-1]} artifact "
                f"({algorithm}:{hexdigest}, {size} bytes) is not the signed target {target} "
                f"({'missing' if signed is None else f'sha256:{signed[1]}, {signed[0]} bytes'}); "
                "refusing it. Tell the registry's publisher.",
                registry=self.name,
                role=target,
            )


_readers: dict[str, SignedReader] = {}


def reader(name: str, kind: str, location: str) -> SignedReader:
    """The process's reader of a signed registry (refreshed once per process, like TUF asks)."""
    hit = _readers.get(location)
    if hit is None or hit.name != name:
        hit = _readers[location] = SignedReader(name, kind, location)
    return hit


def ensure_pinned(kind: str, location: str, version: int, sha256: str, *, name: str = "") -> None:
    """Make sure the root a lockfile pins is the one trusted for this registry.

    On a machine that already trusts the registry, the pinned root must be in its verified
    root history. On one that never saw it (a fresh checkout, CI), the registry's
    ``tuf/<version>.root.json`` is fetched and must have the pinned sha256; it then becomes
    the trusted root, and the normal TUF update follows any later rotation from it.

    Raises:
        RootMismatchError: the trusted or fetched root is not the pinned one.
    """
    if is_established(location):
        if not pin_matches(location, sha256):
            current = trusted_root(location)
            raise RootMismatchError(
                f"Registry {name or location!r}: modelzoo.lock pins TUF root v{version} "
                f"sha256:{sha256}, but this machine trusts v{current.version if current else '?'} "
                f"sha256:{current.sha256 if current else '?'}, a different root history; "
                "refusing to install. If the registry was re-keyed on purpose, run "
                "`modelzoo install` without --frozen to lock the new root.",
                registry=name,
                role="root",
            )
        return
    url = _metadata_url(kind, location) + f"{version}.root.json"
    try:
        data = b"".join(_Transport().fetch_bounded(url, _MAX_ROOT_BYTES))
    except OfflineError:
        raise
    except Exception as exc:  # tuf DownloadError: missing file, network
        raise RegistryError(
            f"Registry {name or location!r}: cannot read {redact(url)} to check the root "
            f"modelzoo.lock pins: {exc}.",
            registry=name,
        ) from None
    got = hashlib.sha256(data).hexdigest()
    if got != sha256:
        raise RootMismatchError(
            f"Registry {name or location!r}: its TUF root v{version} has sha256:{got}, but "
            f"modelzoo.lock pins sha256:{sha256}; refusing to install. The registry may have "
            "been replaced; check with its publisher.",
            registry=name,
            role="root",
        )
    establish(kind, location, root=data, name=name)


def is_established(location: str) -> bool:
    """Whether this machine has a trusted root for the registry at ``location``."""
    return (trust_dir(location) / _BOOTSTRAP).is_file()


def pin_matches(location: str, sha256: str) -> bool:
    """Whether a registry's trusted root history contains a root with this sha256."""
    folder = trust_dir(location)
    paths = [folder / _BOOTSTRAP, *(folder / "metadata" / "root_history").glob("*.root.json")]
    for path in paths:
        with contextlib.suppress(OSError):
            if hashlib.sha256(path.read_bytes()).hexdigest() == sha256:
                return True
    return False


# ---------------------------------------------------------------------------------------
# bundles


def bundle_metadata(location: str) -> dict[str, bytes]:
    """The verified metadata this machine holds for a signed registry, to carry in a bundle:
    every root version (``<N>.root.json``) and the current timestamp, snapshot, targets."""
    folder = trust_dir(location) / "metadata"
    documents = {}
    for path in sorted((folder / "root_history").glob("*.root.json")):
        documents[path.name] = path.read_bytes()
    for role in ("timestamp", "snapshot", "targets"):
        documents[f"{role}.json"] = (folder / f"{role}.json").read_bytes()
    return documents


def verify_bundle_metadata(
    documents: dict[str, bytes], *, anchors: set[str], registry: str
) -> tuple[dict, TrustedRoot, bool]:
    """Verify a signed registry's metadata carried in a bundle, without any network.

    The walk is the TUF client workflow done with python-tuf's own verification calls
    (``Metadata.verify_delegate``, ``verify_length_and_hashes``): from the anchored root
    through each newer root (signed by the previous and by itself), then timestamp,
    snapshot and targets, each signed by the keys the final root names and each matching
    the version and hashes its parent records. Unlike ``Updater.refresh`` it does not
    refuse expired metadata: a bundle is a snapshot of one moment and may be unpacked
    weeks later; the age is logged instead.

    Args:
        documents: ``<N>.root.json``, ``timestamp.json``, ``snapshot.json``, ``targets.json``.
        anchors: sha256 of roots the user trusts (lockfile pins, ``--root-sha256``, roots
            this machine already trusts); empty: the bundle's oldest root, unanchored.
        registry: the registry's name, for messages.

    Returns:
        ``(targets, anchor, anchored)``: the signed ``TargetFile`` objects by path, the
        root the walk started from, and whether it matched an anchor.

    Raises:
        RootMismatchError: anchors were given and no root in the bundle matches one.
        TrustError: a signature, version or hash does not verify.
    """
    from tuf.api import exceptions
    from tuf.api.metadata import Metadata

    roots = sorted(
        (int(name.split(".", 1)[0]), data)
        for name, data in documents.items()
        if name.endswith(".root.json")
    )
    start = None
    for i, (_, data) in enumerate(roots):
        if not anchors or hashlib.sha256(data).hexdigest() in anchors:
            start = i
            break
    if start is None:
        raise RootMismatchError(
            f"Registry {registry!r}: none of the {len(roots)} TUF root(s) in the bundle is "
            "the trusted one (lockfile, --root-sha256 or this machine's); refusing it.",
            registry=registry,
            role="root",
        )
    role = "root"
    try:
        anchor = read_root(roots[start][1], source=f"the bundle's root of {registry!r}")
        trusted = Metadata.from_bytes(roots[start][1])
        for version, data in roots[start + 1 :]:
            new = Metadata.from_bytes(data)
            if new.signed.version != trusted.signed.version + 1 or version != new.signed.version:
                raise exceptions.BadVersionNumberError(
                    f"root version {new.signed.version} follows {trusted.signed.version}"
                )
            trusted.verify_delegate("root", new)
            new.verify_delegate("root", new)
            trusted = new
        root = trusted
        role = "timestamp"
        timestamp = Metadata.from_bytes(documents["timestamp.json"])
        root.verify_delegate("timestamp", timestamp)
        role = "snapshot"
        snapshot_bytes = documents["snapshot.json"]
        snapshot = Metadata.from_bytes(snapshot_bytes)
        root.verify_delegate("snapshot", snapshot)
        meta = timestamp.signed.snapshot_meta
        meta.verify_length_and_hashes(snapshot_bytes)
        if meta.version != snapshot.signed.version:
            raise exceptions.BadVersionNumberError(
                f"timestamp names snapshot v{meta.version}, got v{snapshot.signed.version}"
            )
        role = "targets"
        targets_bytes = documents["targets.json"]
        targets = Metadata.from_bytes(targets_bytes)
        root.verify_delegate("targets", targets)
        meta = snapshot.signed.meta["targets.json"]
        meta.verify_length_and_hashes(targets_bytes)
        if meta.version != targets.signed.version:
            raise exceptions.BadVersionNumberError(
                f"snapshot names targets v{meta.version}, got v{targets.signed.version}"
            )
    except TrustError:
        raise
    except KeyError as exc:
        raise TamperedMetadataError(
            f"Registry {registry!r}: the bundle lacks {exc} of its TUF metadata; refusing it.",
            registry=registry,
            role=role,
        ) from None
    except (exceptions.RepositoryError, ValueError, TypeError) as exc:
        transport = _Transport()
        transport.last = f"{role}.json"
        with _translated(f"{registry} (bundle)", transport, role):
            if isinstance(exc, exceptions.RepositoryError):
                raise exc
            raise exceptions.RepositoryError(str(exc)) from None
    if timestamp.signed.is_expired():
        logger.warning(
            "The signed metadata of %r in this bundle expired on %s; it is verified as of "
            "its signing (a bundle is a snapshot).",
            registry,
            timestamp.signed.expires.isoformat(),
        )
    return dict(targets.signed.targets), anchor, bool(anchors)
