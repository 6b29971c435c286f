"""The on-disk cache: verified blobs, install records, partial downloads, locks and TOFU hashes.

Layout::

    $MODELZOO_HOME/                          config.home() (platformdirs user cache dir)
      blobs/sha256/<hex><suffix>             verified artifact bytes, content-addressed, read-only
                                             (0o444); <suffix> is the artifact's extension
                                             (.h5 / .keras) because Keras picks loaders by it;
                                             an artifact's OMS signature bundle is <hex>.sig
      models/<name>/<version>/manifest.json  the manifest as installed
      models/<name>/<version>/<variant>.json install record, written LAST with an atomic
                                             rename: an install exists only when this exists
      tmp/<key>.part (+ sidecars)            partial downloads, resumable, never read as complete
      locks/<key>.lock                       per-artifact inter-process locks (filelock)
      cache.lock                             the cache-wide lock: held briefly by prune/remove
                                             and by an install while it stores a blob and
                                             writes its record, so prune never deletes a
                                             blob whose record is about to be written
      tofu.json                              sha256 first seen for artifacts without a published
                                             hash (trust on first use), keyed by URL
      config.json, registries/               owned by the registry module; kept by clear()
      features/                              bottleneck features of the transfer module
      CACHEDIR.TAG                           the marker saying modelzoo owns this folder:
                                             written when modelzoo creates the folder (or
                                             finds it empty, or finds a cache made before
                                             markers with exactly this layout); clear()
                                             refuses an unmarked folder and deletes only
                                             the entries above, never a user's files

Every name, version, variant and key is validated before a path is built from it, so
nothing read from a manifest, a record or the command line can point outside the root.
Writes go to a temporary file in the destination folder, are fsynced and then renamed
into place, so a crash leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .. import config, files
from ..errors import CacheError, ManifestError, NotInstalledError, UsageError
from ..versions import is_version, matches, parse_version, split_spec
from . import home
from .home import MARKER, claim_home
from .manifest import NAME_RE, Manifest, load_manifest

__all__ = [
    "Cache",
    "InstallRecord",
    "VerifyResult",
    "PruneResult",
    "blob_suffix",
    "version_filter",
    "SIGNATURE_SUFFIX",
    "list_installed",
    "remove",
    "verify",
    "DEFAULT_LOCK_TIMEOUT",
    "STALE_PARTIAL_DAYS",
]

logger = logging.getLogger(__name__)

#: Seconds to wait for another process's install lock. Generous because the other
#: process may be downloading a file of several hundred megabytes.
DEFAULT_LOCK_TIMEOUT = 30 * 60.0
#: Partial downloads untouched for this many days are removed by :meth:`Cache.prune`.
STALE_PARTIAL_DAYS = 7
#: Seconds to wait for the cache-wide lock; every holder keeps it for milliseconds only
#: (prune of a huge cache: seconds).
_EXCLUSIVE_TIMEOUT = 10 * 60.0

_KEY_RE = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9_-]{0,127}\Z")
_SUFFIX_RE = re.compile(r"\A(\.[a-z0-9]{1,16})?\Z")
#: The blob suffix of an OMS signature bundle.
SIGNATURE_SUFFIX = ".sig"
_KEEP_ON_CLEAR = frozenset({"config.json", "config.json.lock", "registries", "cache.lock", MARKER})


# ------------------------------------------------------------------- what the cache holds

_SHA256_RE = re.compile(r"\A[0-9a-f]{64}\Z")
_RECORD_FORMAT = 1


@dataclass(frozen=True)
class InstallRecord:
    """One installed artifact: which model variant, which verified bytes, from where.

    Attributes:
        name: model name.
        version: model version.
        variant: artifact variant (``full``, ``notop``, ...).
        sha256: hex sha256 of the bytes in the blob.
        size: size of the blob in bytes.
        path: the blob file (``blobs/sha256/<hex><suffix>``): the local model file.
        file_name: the artifact's file name in the manifest.
        url: the URL the bytes were downloaded from.
        declared_hash: the manifest's published ``algo:hex``, or None.
        trusted_on_first_use: True when there was no published hash and ``sha256`` was
            recorded on first download.
        registry: name of the registry the manifest came from.
        installed_at: ISO 8601 UTC timestamp.
        signature_sha256: hex sha256 of the artifact's OMS signature bundle (verified
            against the manifest at install), or None when the manifest lists none.
        signature_path: that bundle's blob (``blobs/sha256/<hex>.sig``), or None.
    """

    name: str
    version: str
    variant: str
    sha256: str
    size: int
    path: Path
    file_name: str
    url: str
    declared_hash: str | None = None
    trusted_on_first_use: bool = False
    registry: str = ""
    installed_at: str = field(default_factory=lambda: _now())
    signature_sha256: str | None = None
    signature_path: Path | None = None

    @property
    def spec(self) -> str:
        """``name@version``."""
        return f"{self.name}@{self.version}"

    @property
    def blobs(self) -> tuple[Path, ...]:
        """Every blob this install needs: the artifact, and its signature bundle if any."""
        return (self.path,) if self.signature_path is None else (self.path, self.signature_path)

    def holds_signature(self, sha256: str) -> bool:
        """Whether this install recorded the OMS bundle ``sha256`` (hex) and its blob is there."""
        return (
            self.signature_sha256 == sha256
            and self.signature_path is not None
            and self.signature_path.is_file()
        )

    def to_dict(self) -> dict[str, Any]:
        """The record as a JSON-ready mapping."""
        data = asdict(self)
        data["path"] = str(self.path)
        data["signature_path"] = str(self.signature_path) if self.signature_path else None
        return {"format": _RECORD_FORMAT, **data}

    @classmethod
    def from_dict(cls, data: Any, *, source: str | None = None) -> InstallRecord:
        """Rebuild a record from :meth:`to_dict` output.

        Raises:
            CacheError: when a field is missing or has the wrong type.
        """
        where = source or "<install record>"
        if not isinstance(data, dict):
            raise CacheError(f"{where}: expected a JSON object. Reinstall the model.")
        types = {
            "name": str,
            "version": str,
            "variant": str,
            "sha256": str,
            "size": int,
            "path": str,
            "file_name": str,
            "url": str,
            "declared_hash": (str, type(None)),
            "trusted_on_first_use": bool,
            "registry": str,
            "installed_at": str,
        }
        for key, kind in types.items():
            if key not in data or not isinstance(data[key], kind):
                raise CacheError(
                    f"{where}: field {key!r} is missing or invalid (got {data.get(key)!r}). "
                    "Reinstall the model with `modelzoo install NAME --force`."
                )
        if not _SHA256_RE.match(data["sha256"]):
            raise CacheError(f"{where}: field 'sha256' is not 64 lowercase hex digits.")
        values = {key: data[key] for key in types}
        values["path"] = Path(values["path"])
        # Optional: records written before signatures existed have no such field.
        signature = data.get("signature_sha256")
        if signature is not None:
            if not isinstance(signature, str) or not _SHA256_RE.match(signature):
                raise CacheError(
                    f"{where}: field 'signature_sha256' is not 64 lowercase hex digits. "
                    "Reinstall the model with `modelzoo install NAME --force`."
                )
            values["signature_sha256"] = signature
            if isinstance(data.get("signature_path"), str):
                values["signature_path"] = Path(data["signature_path"])
        return cls(**values)


@dataclass(frozen=True)
class VerifyResult:
    """The outcome of re-hashing one installed artifact.

    Attributes:
        record: the install record checked.
        status: ``ok``, ``mismatch`` (bytes differ from a recorded or published hash) or
            ``missing`` (the blob file is gone).
        expected: the ``algo:hex`` that failed (or the record's sha256 when ok/missing).
        actual: the computed ``algo:hex``, None when missing.
        message: one line for humans, with the next step when not ok.
    """

    record: InstallRecord
    status: str
    expected: str
    actual: str | None
    message: str

    @property
    def ok(self) -> bool:
        """Whether the artifact verified."""
        return self.status == "ok"


@dataclass(frozen=True)
class PruneResult:
    """What :meth:`Cache.prune` deleted."""

    blobs: tuple[Path, ...] = ()
    partials: tuple[Path, ...] = ()
    locks: tuple[Path, ...] = ()
    bytes_freed: int = 0


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


# --------------------------------------------------------------------------- helpers


def blob_suffix(file_name: str) -> str:
    """The blob suffix for an artifact ``file_name``: its lowercased extension, or ``""``."""
    suffix = Path(file_name).suffix.lower()
    return suffix if _SUFFIX_RE.match(suffix) else ""


def _check_name(name: Any, what: str = "model name") -> str:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise UsageError(
            f"Invalid {what} {name!r}: use 1-100 characters of a-z, 0-9, '.', '_', '-', "
            "starting with a letter or digit (for example mobilenet_v1_1.0_224)."
        )
    return name


def _check_version(version: Any) -> str:
    if not isinstance(version, str) or not is_version(version) or "/" in version:
        raise UsageError(f"Invalid version {version!r}: expected a semantic version such as 1.0.0.")
    return version


def version_filter(version: str | None):
    """A predicate for installed versions: exact when ``version`` is one, else a constraint.

    Raises:
        UsageError: ``version`` is neither a version nor a constraint.
    """
    if version is None:
        return lambda v: True
    if is_version(version):
        wanted = parse_version(version)
        return lambda v: parse_version(v) == wanted
    try:
        matches("0.0.0", version)
    except ValueError:
        raise UsageError(
            f"Invalid version or constraint {version!r}: use 1.2.3, 1.2, ^1.2 or >=1,<2."
        ) from None
    return lambda v: matches(v, version)


# --------------------------------------------------------------------------- the cache


class Cache:
    """The cache rooted at ``root`` (default: ``config.home()``, i.e. ``MODELZOO_HOME``).

    Creating a ``Cache`` touches nothing on disk; folders are made on first write.
    """

    def __init__(self, root: str | os.PathLike[str] | None = None):
        self.root = config.home(root)
        self._claimed = False

    def _claim(self) -> None:
        """Create the root (with modelzoo's marker when it is new) before the first write."""
        if not self._claimed:
            claim_home(self.root)
            self._claimed = True

    def __repr__(self) -> str:
        return f"Cache({str(self.root)!r})"

    # ---- paths

    @property
    def blobs_dir(self) -> Path:
        """``blobs/sha256``."""
        return self.root / "blobs" / "sha256"

    @property
    def models_dir(self) -> Path:
        """``models``."""
        return self.root / "models"

    @property
    def tmp_dir(self) -> Path:
        """``tmp`` (partial downloads)."""
        return self.root / "tmp"

    @property
    def locks_dir(self) -> Path:
        """``locks``."""
        return self.root / "locks"

    @property
    def tofu_path(self) -> Path:
        """``tofu.json``."""
        return self.root / "tofu.json"

    def blob_path(self, sha256: str, suffix: str = "") -> Path:
        """Where the verified bytes with this sha256 live."""
        if not isinstance(sha256, str) or not _SHA256_RE.match(sha256):
            raise UsageError(f"Invalid sha256 {sha256!r}: expected 64 lowercase hex digits.")
        if not isinstance(suffix, str) or not _SUFFIX_RE.match(suffix):
            raise UsageError(f"Invalid blob suffix {suffix!r}: expected '' or like '.h5'.")
        return self.blobs_dir / f"{sha256}{suffix}"

    def _key(self, key: str) -> str:
        if not isinstance(key, str) or not _KEY_RE.match(key):
            raise UsageError(
                f"Invalid cache key {key!r}: expected 1-128 characters of A-Z, a-z, 0-9, '_', '-'."
            )
        return key

    def partial_path(self, key: str, *, create_dir: bool = False) -> Path:
        """The resumable partial download for ``key`` (``tmp/<key>.part``).

        Args:
            key: the artifact key.
            create_dir: make the ``tmp`` folder (raises CacheError when that fails).
        """
        path = self.tmp_dir / f"{self._key(key)}.part"
        if create_dir:
            self._claim()
            home.mkdir(path.parent)
        return path

    def lock_path(self, key: str) -> Path:
        """The lock file for ``key`` (``locks/<key>.lock``)."""
        return self.locks_dir / f"{self._key(key)}.lock"

    def version_dir(self, name: str, version: str) -> Path:
        """``models/<name>/<version>``, after validating both parts."""
        return self.models_dir / _check_name(name) / _check_version(version)

    def record_path(self, name: str, version: str, variant: str) -> Path:
        """``models/<name>/<version>/<variant>.json``."""
        _check_name(variant, "variant")
        if variant == "manifest":
            raise UsageError("Invalid variant 'manifest': the name is reserved by the cache.")
        return self.version_dir(name, version) / f"{variant}.json"

    # ---- locks

    @contextlib.contextmanager
    def lock(self, key: str, *, timeout: float = DEFAULT_LOCK_TIMEOUT) -> Iterator[Any]:
        """Hold the inter-process lock for ``key`` for the duration of a ``with`` block.

        Args:
            key: the artifact key (also names the partial download).
            timeout: seconds to wait for another holder; a negative value waits forever.

        Raises:
            LockTimeoutError: when another process holds the lock longer than ``timeout``.
        """
        path = self.lock_path(key)
        self._claim()
        home.mkdir(path.parent)
        with home.hold_lock(path, timeout) as flock:
            yield flock

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[Any]:
        """Hold the cache-wide lock: between deciding which blobs are referenced and acting.

        :meth:`prune` and :meth:`remove` hold it while they compute the referenced blobs
        and delete the others; an install holds it from storing (or finding) its blob
        until its record is written. Each holder keeps it briefly, so neither waits long.
        """
        path = self.root / "cache.lock"
        self._claim()
        with home.hold_lock(path, _EXCLUSIVE_TIMEOUT) as flock:
            yield flock

    def _is_locked(self, key: str) -> bool:
        """Whether another holder has ``key``'s lock right now (no lock file: no)."""
        return home.lock_is_held(self.lock_path(key))

    # ---- writing

    def add_blob(
        self, src: str | os.PathLike[str], sha256: str, suffix: str = "", *, replace: bool = False
    ) -> Path:
        """Move verified bytes at ``src`` into the blob store, atomically.

        The caller must already have verified that ``src`` hashes to ``sha256``. If the
        blob exists with the same size, ``src`` is dropped (the store keeps one copy).

        Args:
            src: the complete, verified file (usually a partial download).
            sha256: its hex sha256.
            suffix: extension to keep (``.h5``/``.keras``), see :func:`blob_suffix`.
            replace: overwrite an existing blob (used by forced reinstalls).

        Returns:
            The blob path.

        Raises:
            CacheError: when the file cannot be moved (permissions, disk full).
        """
        src = Path(src)
        dest = self.blob_path(sha256, suffix)
        self._claim()
        try:
            size = src.stat().st_size
        except OSError as exc:
            raise home.cache_error(exc, src, "read") from exc
        if dest.is_file() and not replace:
            if dest.stat().st_size == size:
                with contextlib.suppress(OSError):
                    src.unlink()
                return dest
            logger.warning("replacing damaged blob %s (size differs from verified download)", dest)
        home.move_read_only(src, dest)
        return dest

    def write_record(self, manifest: Manifest, variant: str, record: InstallRecord) -> Path:
        """Write ``manifest.json`` and then the install record, each atomically.

        The record is written last: until it exists the install does not exist.

        Returns:
            The record path.
        """
        if (record.name, record.version, record.variant) != (
            manifest.name,
            manifest.version,
            variant,
        ):
            raise UsageError(
                f"Record {record.spec} ({record.variant}) does not match manifest "
                f"{manifest.spec} ({variant})."
            )
        path = self.record_path(manifest.name, manifest.version, variant)
        self._claim()
        home.write_json(path.parent / "manifest.json", manifest.to_dict())
        home.write_json(path, record.to_dict())
        return path

    # ---- reading records

    def record(self, name: str, version: str, variant: str) -> InstallRecord | None:
        """The install record of ``name@version`` ``variant``, or None.

        The record is returned even when its blob has gone missing; use
        :meth:`is_complete` (or :meth:`installed`) to check the blob is there.
        """
        return self._read_record(self.record_path(name, version, variant))

    def _read_record(self, path: Path) -> InstallRecord | None:
        try:
            data = files.read(path)
            rec = InstallRecord.from_dict(data, source=str(path))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, CacheError) as exc:
            logger.warning("ignoring unreadable install record %s: %s", path, exc)
            return None
        where = (path.parent.parent.name, path.parent.name, path.stem)
        if (rec.name, rec.version, rec.variant) != where:
            logger.warning("ignoring install record %s: it describes %s", path, rec.spec)
            return None
        # Blob paths are derived, never trusted from the file: the cache may have moved.
        blob = self.blob_path(rec.sha256, blob_suffix(rec.file_name))
        bundle = None
        if rec.signature_sha256 is not None:
            bundle = self.blob_path(rec.signature_sha256, SIGNATURE_SUFFIX)
        if (rec.path, rec.signature_path) == (blob, bundle):
            return rec
        return replace(rec, path=blob, signature_path=bundle)

    def is_complete(self, record: InstallRecord) -> bool:
        """Whether the record's blob exists with the recorded size."""
        try:
            return record.path.is_file() and record.path.stat().st_size == record.size
        except OSError:
            return False

    def manifest(self, name: str, version: str) -> Manifest | None:
        """The manifest installed for ``name@version``, or None."""
        path = self.version_dir(name, version) / "manifest.json"
        if not path.is_file():
            return None
        try:
            return load_manifest(path)
        except ManifestError as exc:
            logger.warning("ignoring unreadable installed manifest: %s", exc)
            return None

    def records(self, name: str | None = None) -> list[InstallRecord]:
        """Every readable install record (complete or broken), sorted."""
        if name is not None:
            names = [_check_name(name)]
        elif self.models_dir.is_dir():
            names = sorted(p.name for p in self.models_dir.iterdir() if NAME_RE.match(p.name))
        else:
            names = []
        found = []
        for model in names:
            base = self.models_dir / model
            if not base.is_dir():
                continue
            versions = [p for p in base.iterdir() if p.is_dir() and is_version(p.name)]
            for vdir in sorted(versions, key=lambda p: parse_version(p.name)):
                for path in sorted(vdir.glob("*.json")):
                    if path.stem == "manifest" or not NAME_RE.match(path.stem):
                        continue
                    rec = self._read_record(path)
                    if rec is not None:
                        found.append(rec)
        return found

    def installed(self, name: str | None = None) -> list[InstallRecord]:
        """Complete installs: records whose blob is present with the recorded size."""
        return [r for r in self.records(name) if self.is_complete(r)]

    def broken(self, name: str | None = None) -> list[InstallRecord]:
        """Records whose blob is missing or has the wrong size (reinstall to repair)."""
        return [r for r in self.records(name) if not self.is_complete(r)]

    # ---- removing

    def remove(
        self, name: str, *, version: str | None = None, variant: str | None = None
    ) -> list[InstallRecord]:
        """Uninstall ``name`` (all versions, or one ``version``/constraint; one ``variant``).

        Blobs still used by another install are kept.

        Returns:
            The records removed (empty when nothing matched).
        """
        keep_version = version_filter(version)
        if variant is not None:
            _check_name(variant, "variant")
        _check_name(name)
        if not self.models_dir.is_dir():
            return []  # nothing installed: no lock, no folders created
        with self.exclusive():
            return self._remove(name, keep_version, variant)

    def _remove(self, name: str, keep_version, variant: str | None) -> list[InstallRecord]:
        removed = [
            r
            for r in self.records(name)
            if keep_version(r.version) and (variant is None or r.variant == variant)
        ]
        for rec in removed:
            home.delete(self.record_path(rec.name, rec.version, rec.variant))
        for vdir in {self.version_dir(r.name, r.version) for r in removed}:
            left = [p for p in vdir.glob("*.json") if p.stem != "manifest"]
            if not left:
                home.delete(vdir)
        model_dir = self.models_dir / _check_name(name)
        with contextlib.suppress(OSError):
            model_dir.rmdir()  # only when empty
        still_used = {p for r in self.records() for p in r.blobs}
        for path in {p for rec in removed for p in rec.blobs} - still_used:
            home.delete(path)
        return removed

    # ---- verifying

    def verify(self, name: str | None = None, *, version: str | None = None) -> list[VerifyResult]:
        """Re-hash installed blobs against their records and published hashes.

        A blob is checked against the record's sha256, the record's declared hash, the
        installed manifest's hash, and (for trust-on-first-use artifacts) ``tofu.json``.
        """
        keep_version = version_filter(version)
        try:
            tofu = self._read_tofu()
        except CacheError as exc:
            # One damaged file must not hide the state of every other install: verify
            # against the records and manifests, and say which file needs attention.
            logger.warning("%s", exc)
            tofu = {}
        results = []
        for rec in self.records(name):
            if keep_version(rec.version):
                results.append(self._verify_one(rec, tofu))
        return results

    def _verify_one(self, rec: InstallRecord, tofu: dict[str, Any]) -> VerifyResult:
        what = f"{rec.spec} ({rec.variant})"
        own = f"sha256:{rec.sha256}"
        if not rec.path.is_file():
            return VerifyResult(
                rec,
                "missing",
                own,
                None,
                f"{what}: blob {rec.path} is missing. Run `modelzoo install {rec.spec} "
                f"--variant {rec.variant} --force`.",
            )
        expected = [own]
        if rec.declared_hash:
            expected.append(rec.declared_hash)
        manifest = self.manifest(rec.name, rec.version)
        if manifest is not None and rec.variant in manifest.artifacts:
            published = manifest.artifacts[rec.variant].hash
            if published is not None:
                expected.append(str(published))
        if rec.trusted_on_first_use and isinstance(tofu.get(rec.url), dict):
            first = tofu[rec.url].get("sha256")
            if isinstance(first, str):
                expected.append(f"sha256:{first}")
        expected = list(dict.fromkeys(expected))
        algos = {e.split(":", 1)[0] for e in expected}
        actual = home.digests(rec.path, algos)
        for exp in expected:
            algo, _, hexdigest = exp.partition(":")
            if actual[algo] != hexdigest:
                got = f"{algo}:{actual[algo]}"
                return VerifyResult(
                    rec,
                    "mismatch",
                    exp,
                    got,
                    f"{what}: {rec.path} hashes to {got}, expected {exp}; the file is "
                    f"corrupt or was modified. Run `modelzoo install {rec.spec} "
                    f"--variant {rec.variant} --force`.",
                )
        return VerifyResult(rec, "ok", own, own, f"{what}: ok ({own})")

    # ---- trust on first use

    def _read_tofu(self) -> dict[str, Any]:
        try:
            data = files.read(self.tofu_path)
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise CacheError(
                f"Cannot read {self.tofu_path}: {exc}. It records the hashes trusted on "
                "first use; delete it to trust the current downloads again."
            ) from exc
        if not isinstance(data, dict):
            raise CacheError(
                f"{self.tofu_path} is not a JSON object; delete it to trust the current "
                "downloads again."
            )
        return data

    def tofu_problem(self) -> str | None:
        """Why ``tofu.json`` cannot be read (one line), or None when it is fine or absent."""
        try:
            self._read_tofu()
        except CacheError as exc:
            return str(exc)
        return None

    def trusted_sha256(self, url: str) -> str | None:
        """The sha256 first seen for ``url`` (an artifact without a published hash), or None."""
        entry = self._read_tofu().get(url)
        if isinstance(entry, dict) and isinstance(entry.get("sha256"), str):
            return entry["sha256"]
        return None

    def trust(self, url: str, sha256: str, *, size: int | None = None) -> None:
        """Record ``sha256`` as the trusted hash of ``url`` unless one is already recorded."""
        if not _SHA256_RE.match(sha256):
            raise UsageError(f"Invalid sha256 {sha256!r}: expected 64 lowercase hex digits.")
        with self.lock("tofu"):
            data = self._read_tofu()
            if url in data:
                return
            data[url] = {"sha256": sha256, "size": size, "first_seen": _now()}
            home.write_json(self.tofu_path, data)

    # ---- housekeeping

    def prune(
        self, *, partials: bool = False, older_than_days: float = STALE_PARTIAL_DAYS
    ) -> PruneResult:
        """Delete what no install needs.

        Removes blobs no record references, partial downloads (and their sidecar files)
        untouched for ``older_than_days`` -- or all of them with ``partials=True`` -- and
        lock files nobody holds. Partials whose lock is held (a download in progress) are
        kept. Safe beside running installs: the blob step holds :meth:`exclusive`, and
        so does an install from storing its blob until its record is written.
        """
        freed = 0
        blobs: list[Path] = []
        if self.blobs_dir.is_dir():
            with self.exclusive():  # no install can be between its blob and its record
                referenced = {p for r in self.records() for p in r.blobs}
                for path in sorted(self.blobs_dir.iterdir()):
                    if path.is_file() and not path.name.startswith(".") and path not in referenced:
                        freed += home.delete(path)
                        blobs.append(path)
        removed_partials: list[Path] = []
        cutoff = time.time() - older_than_days * 86400
        if self.tmp_dir.is_dir():
            groups: dict[str, list[Path]] = {}
            for path in self.tmp_dir.iterdir():
                groups.setdefault(path.name.split(".", 1)[0], []).append(path)
            for key, paths in sorted(groups.items()):
                if _KEY_RE.match(key) and self._is_locked(key):
                    continue  # a download is writing it right now
                newest = max((home.mtime(p) for p in paths), default=0.0)
                if partials or newest < cutoff:
                    for path in sorted(paths):
                        freed += home.delete(path)
                        removed_partials.append(path)
        locks: list[Path] = []
        if self.locks_dir.is_dir():
            for path in sorted(self.locks_dir.glob("*.lock")):
                key = path.name[: -len(".lock")]
                size = home.tree_size(path)
                if _KEY_RE.match(key) and home.remove_lock_if_free(path):
                    freed += size
                    locks.append(path)
        return PruneResult(tuple(blobs), tuple(removed_partials), tuple(locks), freed)

    def size(self) -> dict[str, int]:
        """Bytes used per area (``blobs``, ``models``, ``tmp``, ``locks``, ``features``,
        ``registries``, ``other``) and ``total``."""
        areas = {"blobs": 0, "models": 0, "tmp": 0, "locks": 0, "features": 0, "registries": 0}
        other = 0
        if self.root.is_dir():
            for entry in self.root.iterdir():
                if entry.name in areas:
                    areas[entry.name] += home.tree_size(entry)
                else:
                    other += home.tree_size(entry)
        result = {**areas, "other": other}
        result["total"] = sum(result.values())
        return result

    def clear_plan(self) -> list[tuple[Path, int]]:
        """What :meth:`clear` would delete: ``(path, bytes)`` for each of modelzoo's own
        entries in the root, except ``config.json`` and ``registries/``.

        A cache made before modelzoo wrote its marker is recognised by its layout and
        marked now.

        Raises:
            CacheError: the root holds files modelzoo did not create and no modelzoo
                marker (it is not a cache; nothing is deleted).
        """
        root = self.root  # config.home() has refused a file
        if not root.is_dir():
            return []
        if not home.is_marked(root) and not (home.looks_like_cache(root) and claim_home(root)):
            foreign = home.foreign_entries(root)
            shown = ", ".join(e.name for e in foreign[:3]) + (", ..." if len(foreign) > 3 else "")
            raise CacheError(
                f"Refusing to clear {root}: it holds files modelzoo did not create ({shown}) "
                f"and no modelzoo marker ({MARKER}), so it is not a modelzoo cache. Nothing "
                "was deleted; check MODELZOO_HOME (`modelzoo cache path`)."
            )
        return [
            (entry, home.tree_size(entry))
            for entry in sorted(root.iterdir())
            if home.is_ours(entry) and entry.name not in _KEEP_ON_CLEAR
        ]

    def clear(self) -> int:
        """Delete modelzoo's files in the cache, keeping ``config.json`` and ``registries/``.

        Only the entries modelzoo creates are deleted (see :meth:`clear_plan`); anything
        else in the folder is left alone.

        Returns:
            Bytes freed.

        Raises:
            CacheError: as :meth:`clear_plan`.
        """
        plan = self.clear_plan()
        if not plan:
            return 0
        freed = 0
        with self.exclusive():  # not in the middle of an install's blob+record step
            for entry, _size in plan:
                freed += home.delete(entry)
        return freed


# --------------------------------------------------------------------------- public API


def list_installed(name: str | None = None) -> list[InstallRecord]:
    """Complete installs in the cache, optionally only those of model ``name``.

    Example:
        >>> [r.spec for r in modelzoo.list_installed()]  # doctest: +SKIP
        ['mobilenet_v1_1.0_224@1.0.0']
    """
    return Cache().installed(name)


def remove(spec: str, *, variant: str | None = None) -> list[InstallRecord]:
    """Uninstall ``name`` or ``name@version`` (optionally one ``variant``).

    Returns:
        The install records removed.

    Raises:
        NotInstalledError: when nothing matching ``spec`` is installed.
    """
    name, version = split_spec(spec)
    removed = Cache().remove(name, version=version, variant=variant)
    if not removed:
        shown = f"{name}@{version}" if version else name
        raise NotInstalledError(
            name,
            variant=variant,
            message=f"{shown}{f' ({variant})' if variant else ''} is not installed, so "
            "nothing was removed. List installs with `modelzoo list`.",
        )
    return removed


def verify(spec: str | None = None) -> list[VerifyResult]:
    """Re-hash installed artifacts (all, or those of ``name`` / ``name@version``).

    Returns:
        One :class:`VerifyResult` per install record; check ``result.ok``.
    """
    if spec is None:
        return Cache().verify()
    name, version = split_spec(spec)
    return Cache().verify(name, version=version)
