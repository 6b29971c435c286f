"""Signing a registry with TUF (The Update Framework): the publisher's side.

A signed registry keeps TUF metadata (python-tuf, ed25519 keys from securesystemslib)
in a ``tuf/`` folder beside its ``index.json``::

    <registry>/
      index.json                         # a TUF target
      models/<name>/<version>/manifest.json   # TUF targets
      tuf/
        1.root.json, 2.root.json, ...    # every root version (clients walk the chain)
        root.json                        # copy of the newest root: what clients trust
        <N>.targets.json  <N>.snapshot.json   # consistent snapshots: never overwritten
        timestamp.json                   # the one file rewritten on every signing

Targets are ``index.json``, every ``manifest.json``, and one entry per artifact under the
path convention ``artifacts/<name>/<version>/<variant>`` (length + sha256, and a custom
``url`` field with the manifest's URL for it). An artifact hosted anywhere (the official
upstream URL, a CDN, a folder beside the manifest) is thus covered by signed hashes: the
client refuses a manifest whose artifact hash disagrees with the signed target, and the
download is checked against that hash as usual. Signing therefore needs a ``sha256`` hash
and a size for every artifact (publish writes both).

Keys: ``KEYDIR/<role>.pem`` (PKCS#8 PEM, written 0600) for the online roles ``targets``,
``snapshot`` and ``timestamp``; the ``root`` key may live in a separate folder
(``root_keys``) kept offline, needed only by :func:`init_registry` and
:func:`rotate_keys`. Expiry defaults: timestamp 1 day, snapshot 7 days, targets and root
365 days. Nothing here is a signature scheme of our own: metadata objects, signing and
verification are python-tuf's. Nothing here imports TensorFlow; tuf is imported lazily.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from .. import files
from ..errors import SigningError, UsageError
from .index import INDEX_FILE, build_index
from .manifest import load_manifest

__all__ = [
    "ROLES",
    "TUF_DIR",
    "DEFAULT_EXPIRY",
    "SignResult",
    "artifact_target",
    "init_registry",
    "sign_registry",
    "check_keys",
    "rotate_keys",
    "is_signed",
]

logger = logging.getLogger(__name__)

#: The four top-level TUF roles.
ROLES = ("root", "targets", "snapshot", "timestamp")
#: The registry's metadata folder.
TUF_DIR = "tuf"
#: Default validity of each role's metadata.
DEFAULT_EXPIRY: Mapping[str, timedelta] = {
    "root": timedelta(days=365),
    "targets": timedelta(days=365),
    "snapshot": timedelta(days=7),
    "timestamp": timedelta(days=1),
}
_ONLINE = ("targets", "snapshot", "timestamp")


@dataclass(frozen=True)
class SignResult:
    """What a signing step wrote.

    Attributes:
        root: the registry folder.
        versions: each role's metadata version after signing.
        targets: number of signed targets.
        root_sha256: sha256 of the newest root metadata file (what clients pin).
    """

    root: Path
    versions: dict[str, int]
    targets: int
    root_sha256: str


def artifact_target(name: str, version: str, variant: str) -> str:
    """The TUF target path that covers one artifact of a manifest."""
    return f"artifacts/{name}/{version}/{variant}"


def is_signed(root: str | os.PathLike[str]) -> bool:
    """Whether a registry folder has TUF metadata."""
    return (Path(root) / TUF_DIR / "1.root.json").is_file()


def _now(now: datetime | None) -> datetime:
    return (now or datetime.now(UTC)).replace(microsecond=0)


def _expiry(expires: Mapping[str, timedelta] | None) -> dict[str, timedelta]:
    merged = dict(DEFAULT_EXPIRY)
    for role, value in (expires or {}).items():
        if role not in ROLES:
            raise UsageError(f"Unknown TUF role {role!r} in expiry; use one of {', '.join(ROLES)}.")
        merged[role] = value
    return merged


def _write_key(path: Path, pem: bytes) -> None:
    """Write a private key 0600 from the start (never readable by others, not even briefly)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)


def _new_key(path: Path):
    from securesystemslib.signer import CryptoSigner

    if path.exists():
        raise UsageError(f"{path} already exists; modelzoo never overwrites a key.")
    signer = CryptoSigner.generate_ed25519()
    _write_key(path, signer.private_bytes)
    return signer


def _load_key(folder: Path, role: str):
    from cryptography.hazmat.primitives.serialization import load_pem_private_key
    from securesystemslib.signer import CryptoSigner

    path = folder / f"{role}.pem"
    try:
        pem = path.read_bytes()
    except FileNotFoundError:
        raise SigningError(
            f"No {role} key at {path}. Pass the folder holding {role}.pem "
            f"({'--root-keys' if role == 'root' else '--keys, or publish --sign'})."
        ) from None
    except OSError as exc:
        raise SigningError(f"Cannot read the {role} key {path}: {exc.strerror or exc}.") from exc
    try:
        return CryptoSigner(load_pem_private_key(pem, None))
    except (ValueError, TypeError) as exc:
        raise SigningError(f"{path} is not an unencrypted PEM private key: {exc}.") from None


def _dir(root: Path) -> Path:
    return root / TUF_DIR


def _write(path: Path, md) -> bytes:
    from tuf.api.serialization.json import JSONSerializer

    data = md.to_bytes(JSONSerializer(compact=False))
    files.atomic_write(path, data)
    return data


def _newest_root(root: Path):
    from tuf.api.metadata import Metadata

    folder = _dir(root)
    version = 1
    while (folder / f"{version + 1}.root.json").is_file():
        version += 1
    path = folder / f"{version}.root.json"
    if not path.is_file():
        raise SigningError(
            f"{root} is not a signed registry (no {path}). Run `modelzoo registry init "
            f"{root} --keys KEYDIR` first."
        )
    return Metadata.from_file(str(path))


def _check_key(root_md, role: str, signer) -> None:
    """Refuse to sign with a key the root does not list for the role (wrong KEYDIR)."""
    allowed = root_md.signed.roles[role].keyids
    if signer.public_key.keyid not in allowed:
        raise SigningError(
            f"The {role} key given (id {signer.public_key.keyid[:12]}) is not a {role} key of "
            f"this registry (root version {root_md.signed.version} lists "
            f"{', '.join(k[:12] for k in allowed)}). Pass the registry's own key folder, or "
            "rotate keys with `modelzoo registry rotate-keys`."
        )


def _sha256(path: Path) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
            size += len(block)
    return size, digest.hexdigest()


def _collect_targets(root: Path) -> dict[str, Any]:
    """Every target of a registry folder: index, manifests, and artifacts by convention."""
    from tuf.api.metadata import TargetFile

    index_path = root / INDEX_FILE
    if not index_path.is_file():
        raise SigningError(
            f"{index_path} is missing. Build it with `modelzoo registry index {root}` first."
        )
    fresh = build_index(root)
    from .index import dumps_index

    if dumps_index(fresh) != index_path.read_bytes():
        raise SigningError(
            f"{index_path} is out of date with the manifests in {root}; signing it would "
            f"publish a stale index. Run `modelzoo registry index {root}` first."
        )
    targets: dict[str, Any] = {}
    targets[INDEX_FILE] = TargetFile.from_file(INDEX_FILE, str(index_path), ["sha256"])
    for entry in fresh["models"]:
        rel = entry["manifest"]
        path = root / rel
        targets[rel] = TargetFile.from_file(rel, str(path), ["sha256"])
        manifest = load_manifest(path)
        for variant, art in manifest.artifacts.items():
            target = artifact_target(manifest.name, manifest.version, variant)
            if art.hash is None or art.hash.algorithm != "sha256":
                raise SigningError(
                    f"{manifest.spec} ({variant}) has no sha256 hash (it has "
                    f"{art.hash or 'none'}); a signed registry covers artifacts by sha256. "
                    "Publish the file with `modelzoo publish` (it records sha256 and size) or "
                    "add the sha256 to the manifest."
                )
            size = art.size
            local = path.parent / art.url
            if size is None and "://" not in art.url and local.is_file():
                size = local.stat().st_size
            if size is None:
                raise SigningError(
                    f"{manifest.spec} ({variant}) has no size; a signed target needs one. Add "
                    "`size` to the manifest's artifact."
                )
            targets[target] = TargetFile(
                size, {"sha256": art.hash.hex}, target, unrecognized_fields={"url": art.url}
            )
    return targets


def _sign_online(
    root: Path,
    keys: Path,
    *,
    root_md,
    expires: Mapping[str, timedelta] | None,
    now: datetime | None,
    first: bool = False,
) -> SignResult:
    """Write new targets, snapshot and timestamp versions for the folder's current files."""
    from tuf.api.metadata import Metadata, MetaFile, Snapshot, Targets, Timestamp

    folder = _dir(root)
    when = _now(now)
    expiry = _expiry(expires)
    signers = {role: _load_key(keys, role) for role in _ONLINE}
    for role, signer in signers.items():
        _check_key(root_md, role, signer)
    targets_files = _collect_targets(root)

    if first:
        versions = {"targets": 0, "snapshot": 0, "timestamp": 0}
    else:
        snap_old = Metadata.from_file(str(folder / "timestamp.json")).signed.snapshot_meta.version
        snap_md = Metadata.from_file(str(folder / f"{snap_old}.snapshot.json"))
        versions = {
            "targets": snap_md.signed.meta["targets.json"].version,
            "snapshot": snap_old,
            "timestamp": Metadata.from_file(str(folder / "timestamp.json")).signed.version,
        }

    targets = Metadata(
        Targets(
            version=versions["targets"] + 1,
            expires=when + expiry["targets"],
            targets=targets_files,
        )
    )
    targets.sign(signers["targets"])
    data = _write(folder / f"{targets.signed.version}.targets.json", targets)
    snapshot = Metadata(
        Snapshot(
            version=versions["snapshot"] + 1,
            expires=when + expiry["snapshot"],
            meta={
                "targets.json": MetaFile(
                    targets.signed.version, len(data), {"sha256": hashlib.sha256(data).hexdigest()}
                )
            },
        )
    )
    snapshot.sign(signers["snapshot"])
    data = _write(folder / f"{snapshot.signed.version}.snapshot.json", snapshot)
    timestamp = Metadata(
        Timestamp(
            version=versions["timestamp"] + 1,
            expires=when + expiry["timestamp"],
            snapshot_meta=MetaFile(
                snapshot.signed.version, len(data), {"sha256": hashlib.sha256(data).hexdigest()}
            ),
        )
    )
    timestamp.sign(signers["timestamp"])
    _write(folder / "timestamp.json", timestamp)  # last: it makes the new versions current
    root_bytes = (folder / f"{root_md.signed.version}.root.json").read_bytes()
    result = SignResult(
        root,
        {
            "root": root_md.signed.version,
            "targets": targets.signed.version,
            "snapshot": snapshot.signed.version,
            "timestamp": timestamp.signed.version,
        },
        len(targets_files),
        hashlib.sha256(root_bytes).hexdigest(),
    )
    logger.info("signed %s: %s", root, result.versions)
    return result


def check_keys(root: str | os.PathLike[str], keys: str | os.PathLike[str]) -> None:
    """Check that ``keys`` holds this signed registry's online keys (before publishing).

    Raises:
        SigningError: not a signed registry, or a key that is missing or not the role's.
    """
    root_md = _newest_root(Path(root).absolute())
    for role in _ONLINE:
        _check_key(root_md, role, _load_key(Path(keys).absolute(), role))


def init_registry(
    root: str | os.PathLike[str],
    keys: str | os.PathLike[str],
    *,
    root_keys: str | os.PathLike[str] | None = None,
    expires: Mapping[str, timedelta] | None = None,
    now: datetime | None = None,
) -> SignResult:
    """Create keys (when missing) and the first TUF metadata for a registry folder.

    Args:
        root: the registry folder (its ``index.json`` must be current).
        keys: folder of the online keys (``targets.pem``, ``snapshot.pem``,
            ``timestamp.pem``); missing keys are generated there (0600).
        root_keys: folder of the root key (default: ``keys``); keep it offline.
        expires: per-role validity overriding :data:`DEFAULT_EXPIRY`.
        now: the signing time (default: now, UTC).

    Raises:
        SigningError: already signed, or the index is stale or an artifact lacks a sha256.
    """
    from tuf.api.metadata import Metadata, Root

    root = Path(root).absolute()
    keys = Path(keys).absolute()
    root_keys = Path(root_keys).absolute() if root_keys is not None else keys
    if not root.is_dir():
        raise UsageError(f"Registry folder {root} does not exist.")
    if is_signed(root):
        raise SigningError(
            f"{root} is already signed. Re-sign with `modelzoo registry sign {root} --keys "
            "KEYDIR`, or rotate keys with `modelzoo registry rotate-keys`."
        )
    _collect_targets(root)  # fail before any key is made
    signers = {}
    for role in ROLES:
        folder = root_keys if role == "root" else keys
        path = folder / f"{role}.pem"
        signers[role] = _load_key(folder, role) if path.exists() else _new_key(path)
    when = _now(now)
    meta = Root(expires=when + _expiry(expires)["root"], consistent_snapshot=True)
    for role, signer in signers.items():
        meta.add_key(signer.public_key, role)
    root_md = Metadata(meta)
    root_md.sign(signers["root"])
    data = _write(_dir(root) / "1.root.json", root_md)
    files.atomic_write(_dir(root) / "root.json", data)
    return _sign_online(root, keys, root_md=root_md, expires=expires, now=now, first=True)


def sign_registry(
    root: str | os.PathLike[str],
    keys: str | os.PathLike[str],
    *,
    expires: Mapping[str, timedelta] | None = None,
    now: datetime | None = None,
) -> SignResult:
    """Sign the folder's current index, manifests and artifacts as new metadata versions.

    Run after :func:`modelzoo.models.publish.publish` (``--sign`` does it) or hand edits (after
    ``modelzoo registry index``). Also renews the expiry of targets, snapshot and
    timestamp; a registry served over HTTP must be re-signed at least daily (the
    timestamp's default expiry) or clients refuse it as frozen.

    Raises:
        SigningError: not a signed registry, a key that is not the role's, a stale index,
            or an artifact without sha256.
    """
    root = Path(root).absolute()
    return _sign_online(
        root, Path(keys).absolute(), root_md=_newest_root(root), expires=expires, now=now
    )


def rotate_keys(
    root: str | os.PathLike[str],
    *,
    role: str,
    keys: str | os.PathLike[str],
    root_keys: str | os.PathLike[str] | None = None,
    expires: Mapping[str, timedelta] | None = None,
    now: datetime | None = None,
) -> SignResult:
    """Replace ``role``'s key with a new one, in a new root version.

    The new root is signed by the current root key and, when the root key itself is
    rotated, by the new one too (TUF clients require both to accept the new root). The
    old key file is renamed ``<role>.pem.retired-<keyid>``, never deleted; the new key
    takes its place. Then targets, snapshot and timestamp are signed again.

    Raises:
        SigningError: not a signed registry, or a key that is not the role's.
    """
    from tuf.api.metadata import Metadata

    if role not in ROLES:
        raise UsageError(f"Unknown role {role!r}; rotate one of {', '.join(ROLES)}.")
    root = Path(root).absolute()
    keys = Path(keys).absolute()
    root_keys = Path(root_keys).absolute() if root_keys is not None else keys
    current = _newest_root(root)
    old_root_signer = _load_key(root_keys, "root")
    _check_key(current, "root", old_root_signer)
    folder = root_keys if role == "root" else keys
    old = _load_key(folder, role)
    _check_key(current, role, old)
    for other in _ONLINE:  # every online key is needed to re-sign after the rotation
        if other != role:
            _check_key(current, other, _load_key(keys, other))

    from securesystemslib.signer import CryptoSigner

    new = CryptoSigner.generate_ed25519()
    meta = current.signed
    meta.revoke_key(old.public_key.keyid, role)
    meta.add_key(new.public_key, role)
    meta.version += 1
    meta.expires = _now(now) + _expiry(expires)["root"]
    new_md = Metadata(meta)
    new_md.sign(old_root_signer, append=True)
    if role == "root":
        new_md.sign(new, append=True)
    # The new key is on disk before the root that names it, and the old one is renamed,
    # never deleted: a crash at any point leaves every key that metadata may still need.
    pending = folder / f"{role}.pem.new"
    pending.unlink(missing_ok=True)  # ours: a rotation interrupted before its root was written
    _write_key(pending, new.private_bytes)
    data = _write(_dir(root) / f"{meta.version}.root.json", new_md)
    files.atomic_write(_dir(root) / "root.json", data)
    os.replace(folder / f"{role}.pem", folder / f"{role}.pem.retired-{old.public_key.keyid[:12]}")
    os.replace(pending, folder / f"{role}.pem")
    return _sign_online(root, keys, root_md=Metadata.from_bytes(data), expires=expires, now=now)
