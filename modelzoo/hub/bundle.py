"""Air-gapped bundles: pack installed models into one archive, unpack it into another cache.

A bundle is a plain tar (``.tar``) or gzipped tar (``.tar.gz`` / ``.tgz``)::

    blobs/<sha256><suffix>               each artifact's bytes, once (content-addressed)
    blobs/<sha256>.sig                   an artifact's OMS signature bundle, when its install
                                         has one (the manifest lists its sha256)
    bundle.json                          {"bundle_version": 1, "models": {"name@version":
                                           {"name", "version", "registry", "artifacts":
                                            {variant: {"blob", "sha256", "size", "url",
                                                       "signature" (optional)}}}}}
    models/<name>/<version>/manifest.json
    tuf/<registry-id>/<N>.root.json      signed registries only: the TUF metadata the packing
    tuf/<registry-id>/timestamp.json     machine verified (every root version, timestamp,
    tuf/<registry-id>/snapshot.json      snapshot, targets); such a model's manifest is the
    tuf/<registry-id>/targets.json       signed bytes, and its bundle.json entry says
                                         "signed": {"tuf", "manifest", "registry", "location"}
    SHA256SUMS                           "<sha256>  <member>" for every other member, last

Members are written in sorted order with mtime 0, uid/gid 0, no user names and mode
0644 (and a gzip header without time or name), so packing the same models twice gives
the same bytes.

Unpacking treats the archive like anything downloaded from the internet: only regular
files with the names above are accepted (no links, devices, fifos, absolute paths or
``..``), sizes are capped per member and in total, every byte is extracted into a temp
folder inside the cache and checked against ``SHA256SUMS`` -- which must list every
member exactly once -- and against the manifests' published hashes (an OMS signature
bundle against its manifest's ``signature.hash``). Only then are the blobs and install
records committed through the normal cache API, as if installed from a registry named
``bundle:<file name>``. A refused bundle installs nothing. Bundles packed before OMS
bundles travelled (no ``signature`` entries) unpack as before, without them.

Models from a signed registry are also checked against their TUF signatures, offline
(:func:`modelzoo.hub.trust.verify_bundle_metadata`): the metadata must chain from a trusted
root -- one pinned by ``lock`` or ``trusted_roots`` (``--root-sha256``), or one this
machine already trusts for that registry -- and the manifest and every artifact must be
the signed targets. SHA256SUMS alone proves only that the archive is intact; the
signatures prove who published its contents. Without any anchor the chain is checked
from the bundle's own oldest root (a warning says so); ``MODELZOO_REQUIRE_SIGNED=1``
refuses that, and refuses unsigned models.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import logging
import os
import re
import secrets
import shutil
import tarfile
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import config, files
from ..errors import IntegrityError, UsageError
from ..versions import is_version
from .manifest import NAME_RE, Manifest, load_manifest

__all__ = [
    "BUNDLE_VERSION",
    "DEFAULT_MAX_MEMBER_BYTES",
    "DEFAULT_MAX_TOTAL_BYTES",
    "PackResult",
    "UnpackResult",
    "pack",
    "unpack",
]

logger = logging.getLogger(__name__)

BUNDLE_VERSION = 1
#: Largest artifact a bundle may hold (the largest Keras Applications file is ~550 MB).
DEFAULT_MAX_MEMBER_BYTES = 8 << 30
#: Largest total of all members.
DEFAULT_MAX_TOTAL_BYTES = 64 << 30
_MAX_DOCUMENT_BYTES = 16 << 20  # bundle.json, SHA256SUMS, manifests
_MAX_MEMBERS = 100_000
_INDEX = "bundle.json"
_SUMS = "SHA256SUMS"
_BLOB = re.compile(r"\Ablobs/([0-9a-f]{64})((?:\.[a-z0-9]{1,16})?)\Z")
_MANIFEST = re.compile(r"\Amodels/([^/]+)/([^/]+)/manifest\.json\Z")
_TUF = re.compile(
    r"\Atuf/([a-z0-9-]{1,80})/((?:[1-9][0-9]{0,8}\.root)|timestamp|snapshot|targets)\.json\Z"
)
_SUM_LINE = re.compile(r"\A([0-9a-f]{64})  (\S[^\n]*)\Z")


@dataclass(frozen=True)
class PackResult:
    """What :func:`pack` wrote: ``models`` are ``name@version`` specs."""

    path: Path
    models: tuple[str, ...]
    artifacts: int
    size: int
    sha256: str


@dataclass(frozen=True)
class UnpackResult:
    """What :func:`unpack` did.

    Attributes:
        registry: the registry name recorded in the installs (``bundle:<file name>``).
        installed: ``name@version (variant)`` of every artifact added to the cache.
        already: those that were installed with the same bytes already.
        signed: ``name@version`` of the models whose TUF signatures verified from a
            trusted root.
    """

    bundle: Path
    registry: str
    installed: tuple[str, ...]
    already: tuple[str, ...]
    signed: tuple[str, ...] = ()


# --------------------------------------------------------------------------- packing


def _canonical_manifest(manifest: Manifest) -> bytes:
    return (json.dumps(manifest.raw, indent=2, sort_keys=True) + "\n").encode("utf-8")


class _HashingReader:
    """A file wrapper that hashes what tarfile reads from it."""

    def __init__(self, fh):
        self.fh = fh
        self.sha = hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        data = self.fh.read(n)
        self.sha.update(data)
        return data


def _tarinfo(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = 0
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.type = tarfile.REGTYPE
    return info


def _signed_source(trust: dict | None, name: str, kind: str, location: str) -> tuple | None:
    """``(registry, kind, location, manifest target)`` of a model from a signed registry."""
    if not trust:
        return None
    manifest = next((p for p in trust["targets"] if not p.startswith("artifacts/")), None)
    return (name, kind, location, manifest) if manifest else None


def _collect(
    specs: Iterable[str], lock, variant: str | None, progress, signed: dict
) -> list[tuple]:
    """``(manifest, {variant: InstallRecord})`` of everything to pack, installing first;
    ``signed`` gets ``(name, version) -> _signed_source(...)`` of signed models."""
    from .cache import Cache
    from .install import default_variant, ensure_installed
    from .lockfile import lock_registry
    from .project import install_lock, resolve_in_context

    cache = Cache()
    chosen: dict[tuple[str, str], tuple[Manifest, dict]] = {}
    if lock is not None:
        locked, _ = install_lock(lock, progress=progress)
        for m in locked.models:
            manifest = cache.manifest(m.name, m.version)
            records = {a.variant: cache.record(m.name, m.version, a.variant) for a in m.artifacts}
            chosen[(m.name, m.version)] = (manifest, records)
            if m.trust:
                reg = lock_registry(m, Path(lock).parent.absolute())
                signed[(m.name, m.version)] = _signed_source(
                    m.trust, reg.name, reg.kind, reg.location
                )
    for spec in specs:
        resolved = resolve_in_context(spec)
        manifest = resolved.manifest
        if resolved.trust:
            kind = "http" if "://" in resolved.location else "folder"
            signed[(manifest.name, manifest.version)] = _signed_source(
                resolved.trust, resolved.registry, kind, resolved.location
            )
        if variant == "all":
            variants = sorted(manifest.artifacts)
        else:
            variants = [variant or default_variant(manifest)]
        records = chosen.get((manifest.name, manifest.version), (manifest, {}))[1]
        for v in variants:
            records[v] = ensure_installed(resolved, v, progress=progress)
        chosen[(manifest.name, manifest.version)] = (manifest, records)
    if not chosen:
        raise UsageError("Nothing to pack: name models (NAME[@VERSION]...) or pass --lock FILE.")
    return [chosen[key] for key in sorted(chosen)]


def _signed_members(manifest: Manifest, source: tuple, members: dict) -> tuple[bytes, str]:
    """The signed manifest bytes, and the registry's TUF metadata added to ``members``."""
    from .lockfile import manifest_digest
    from .manifest import parse_manifest
    from .remote import cache_slug
    from .trust import bundle_metadata, reader

    registry, kind, location, target = source
    data = reader(registry, kind, location).target_bytes(target)  # verified through TUF
    signed = parse_manifest(files.loads(data), source=target)
    if manifest_digest(signed) != manifest_digest(manifest):
        raise IntegrityError(
            f"{manifest.spec}: the installed manifest differs from the one registry "
            f"{registry!r} signs now; reinstall it (`modelzoo install {manifest.spec} --force`) "
            "before packing."
        )
    tuf_id = cache_slug(location)
    for name, content in bundle_metadata(location).items():
        members[f"tuf/{tuf_id}/{name}"] = (content, 0)
    return data, tuf_id


def _signature_member(manifest: Manifest, variant: str, rec) -> str | None:
    """``blobs/<hex>.sig``, the member of the artifact's OMS signature bundle, or None
    when its install has none."""
    if rec.signature_sha256 is None:
        return None
    published = manifest.artifacts[variant].signature
    if published is None or not rec.holds_signature(published.hash.hex):
        raise IntegrityError(
            f"{manifest.spec} ({variant}): its OMS signature bundle {rec.signature_path} is "
            "missing or not the one its manifest lists. Run `modelzoo install "
            f"{manifest.spec} --variant {variant} --force` before packing.",
            path=str(rec.signature_path),
        )
    return f"blobs/{rec.signature_path.name}"


def _drop_stale_tmp(output: Path) -> None:
    """Delete ``.<output>.<pid>.<hex>.tmp`` files left by killed packs to the same file.

    A file whose writer (the pid in its name) is still running is another pack in
    progress and is kept.
    """
    prefix = f".{output.name}."
    with contextlib.suppress(OSError):
        for path in output.parent.iterdir():
            name = path.name
            if not (name.startswith(prefix) and name.endswith(".tmp")):
                continue
            pid = name[len(prefix) :].split(".")[0]
            if pid.isdigit() and _alive(int(pid)):
                continue
            logger.warning("removing %s, left by an interrupted pack", path)
            with contextlib.suppress(OSError):
                path.unlink()


def _alive(pid: int) -> bool:
    if os.name == "nt":  # os.kill(pid, 0) would signal it there; keep the file
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists but belongs to someone else
        return True
    return True


def pack(
    specs: Iterable[str] = (),
    *,
    output: str | os.PathLike[str],
    lock: str | os.PathLike[str] | None = None,
    variant: str | None = None,
    progress: bool | None = None,
) -> PackResult:
    """Write installed models (installing them first if needed) into one bundle file.

    Args:
        specs: ``name`` / ``name@version`` to pack (resolved as :func:`modelzoo.load` does).
        output: the bundle to write; ``.tar.gz`` / ``.tgz`` are gzipped, anything else is
            a plain tar. Written atomically.
        lock: a ``modelzoo.lock``: pack exactly what it pins.
        variant: which artifact of each spec: default, a variant name, or ``all``.
        progress: progress bars for installs.

    Returns:
        A :class:`PackResult`.

    Raises:
        UsageError: nothing to pack.
        IntegrityError: a cached blob no longer matches its recorded sha256.
        ModelNotFoundError, OfflineError, ProjectError, ...: from installing.
    """
    signed: dict[tuple[str, str], tuple | None] = {}
    items = _collect(specs, lock, variant, progress, signed)
    members: dict[str, tuple[Any, int]] = {}  # name -> (bytes or blob path, size)
    index: dict[str, Any] = {}
    for manifest, records in items:
        source = signed.get((manifest.name, manifest.version))
        content = _canonical_manifest(manifest)
        if source is not None:
            content, tuf_id = _signed_members(manifest, source, members)
        members[f"models/{manifest.name}/{manifest.version}/manifest.json"] = (content, 0)
        arts = {}
        for v, rec in sorted(records.items()):
            blob = f"blobs/{rec.path.name}"
            members[blob] = (rec.path, rec.size)
            arts[v] = {"blob": blob, "sha256": rec.sha256, "size": rec.size, "url": rec.url}
            signature = _signature_member(manifest, v, rec)
            if signature is not None:
                members[signature] = (rec.signature_path, rec.signature_path.stat().st_size)
                arts[v]["signature"] = signature
        registry = next(iter(records.values())).registry
        index[manifest.spec] = {
            "name": manifest.name,
            "version": manifest.version,
            "registry": registry,
            "artifacts": arts,
        }
        if source is not None:
            index[manifest.spec]["signed"] = {
                "tuf": tuf_id,
                "manifest": source[3],
                "registry": source[0],
                "location": source[2],
            }
    doc = {"bundle_version": BUNDLE_VERSION, "models": index}
    members[_INDEX] = ((json.dumps(doc, indent=2, sort_keys=True) + "\n").encode("utf-8"), 0)

    output = Path(output)
    _drop_stale_tmp(output)
    tmp = output.with_name(f".{output.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    sums = []
    try:
        with open(tmp, "wb") as raw:
            zipped = output.name.endswith((".tar.gz", ".tgz"))
            # GzipFile with mtime=0 and no file name: tarfile's "w:gz" would stamp both
            gz = (
                gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=6, mtime=0)
                if zipped
                else None
            )
            with tarfile.open(fileobj=gz or raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
                for name in sorted(members):
                    content, size = members[name]
                    if isinstance(content, bytes):
                        tar.addfile(_tarinfo(name, len(content)), io.BytesIO(content))
                        sums.append((hashlib.sha256(content).hexdigest(), name))
                        continue
                    with open(content, "rb") as fh:
                        reader = _HashingReader(fh)
                        tar.addfile(_tarinfo(name, size), reader)
                    digest = reader.sha.hexdigest()
                    if name != f"blobs/{digest}{Path(name).suffix}":
                        raise IntegrityError(
                            f"Cached file {content} no longer matches its sha256 (now "
                            f"{digest}). Run `modelzoo verify` and reinstall what it reports.",
                            path=str(content),
                            actual=f"sha256:{digest}",
                        )
                    sums.append((digest, name))
                text = "".join(f"{h}  {n}\n" for h, n in sums).encode("utf-8")
                tar.addfile(_tarinfo(_SUMS, len(text)), io.BytesIO(text))
            if gz is not None:
                gz.close()
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(tmp, output)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    from .hashes import file_digests

    specs_out = tuple(m.spec for m, _ in items)
    count = sum(len(r) for _, r in items)
    sha = file_digests(output)["sha256"]
    return PackResult(output, specs_out, count, output.stat().st_size, sha)


# --------------------------------------------------------------------------- unpacking


def _refuse(bundle: Path, message: str) -> IntegrityError:
    return IntegrityError(
        f"Refusing bundle {bundle}: {message}. Nothing was installed.", path=str(bundle)
    )


def _check_member(bundle: Path, member: tarfile.TarInfo) -> str | None:
    """The member's kind (``index``, ``sums``, ``manifest``, ``blob``), None for a folder
    to skip; IntegrityError for anything else."""
    name = member.name
    if member.isdir():
        name = name.rstrip("/")
    parts = name.split("/")
    if not name or name.startswith("/") or "\\" in name or any(p in ("", ".", "..") for p in parts):
        raise _refuse(bundle, f"member {member.name!r} has an unsafe path")
    if member.isdir():
        ok = (
            name in ("models", "blobs", "tuf")
            or (parts[0] == "models" and len(parts) in (2, 3))
            or (parts[0] == "tuf" and len(parts) == 2)
        )
        if not ok:
            raise _refuse(bundle, f"unexpected folder {member.name!r}")
        return None
    if member.type not in (tarfile.REGTYPE, tarfile.AREGTYPE) or member.issparse():
        kind = "link" if member.issym() or member.islnk() else "special file"
        raise _refuse(bundle, f"member {name!r} is a {kind}; bundles hold regular files only")
    if name == _INDEX:
        return "index"
    if name == _SUMS:
        return "sums"
    if _BLOB.match(name):
        return "blob"
    if _TUF.match(name):
        return "tuf"
    m = _MANIFEST.match(name)
    if m and NAME_RE.match(m.group(1)) and is_version(m.group(2)):
        return "manifest"
    raise _refuse(bundle, f"unexpected member {name!r}")


def _extract(bundle: Path, staging: Path, max_member: int, max_total: int) -> dict[str, str]:
    """Extract every member into ``staging``; return member name -> sha256."""
    digests: dict[str, str] = {}
    total = 0
    try:
        with open(bundle, "rb") as fh, tarfile.open(fileobj=fh, mode="r|*") as tar:
            for member in tar:
                kind = _check_member(bundle, member)
                if kind is None:
                    continue
                if member.name in digests:
                    raise _refuse(bundle, f"member {member.name!r} appears twice")
                if len(digests) >= _MAX_MEMBERS:
                    raise _refuse(bundle, f"more than {_MAX_MEMBERS} members")
                cap = max_member if kind == "blob" else _MAX_DOCUMENT_BYTES
                if member.size > cap:
                    raise _refuse(
                        bundle, f"member {member.name!r} is {member.size} bytes (limit {cap})"
                    )
                total += member.size
                if total > max_total:
                    raise _refuse(bundle, f"members add up to more than {max_total} bytes")
                dest = staging / member.name
                dest.parent.mkdir(parents=True, exist_ok=True)
                sha = hashlib.sha256()
                src = tar.extractfile(member)
                with open(dest, "xb") as out:
                    while chunk := src.read(config.CHUNK_SIZE):
                        sha.update(chunk)
                        out.write(chunk)
                if dest.stat().st_size != member.size:
                    raise _refuse(bundle, f"member {member.name!r} is truncated")
                digests[member.name] = sha.hexdigest()
    except (tarfile.TarError, EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise _refuse(bundle, f"it is not a readable tar archive ({exc})") from exc
    return digests


def _check_sums(bundle: Path, staging: Path, digests: dict[str, str]) -> None:
    if _SUMS not in digests:
        raise _refuse(bundle, f"it has no {_SUMS} member")
    listed: dict[str, str] = {}
    for i, line in enumerate((staging / _SUMS).read_text("utf-8", "replace").splitlines(), 1):
        m = _SUM_LINE.match(line)
        if not m:
            raise _refuse(bundle, f"{_SUMS} line {i} is not '<sha256>  <member>'")
        if m.group(2) in listed:
            raise _refuse(bundle, f"{_SUMS} lists {m.group(2)!r} twice")
        listed[m.group(2)] = m.group(1)
    members = set(digests) - {_SUMS}
    unlisted = sorted(members - set(listed))
    if unlisted:
        raise _refuse(bundle, f"member {unlisted[0]!r} is not listed in {_SUMS}")
    absent = sorted(set(listed) - members)
    if absent:
        raise _refuse(bundle, f"{_SUMS} lists {absent[0]!r} but the bundle has no such member")
    for name in sorted(members):
        if listed[name] != digests[name]:
            raise _refuse(
                bundle,
                f"member {name!r} hashes to sha256:{digests[name]} but {_SUMS} says "
                f"sha256:{listed[name]}; the bundle was modified or damaged",
            )
    for name, digest in digests.items():
        m = _BLOB.match(name)
        if m and m.group(1) != digest:
            raise _refuse(bundle, f"blob {name!r} does not hash to its name (sha256:{digest})")


def _plan(bundle: Path, staging: Path, digests: dict[str, str]) -> list[tuple]:
    """Validate ``bundle.json`` against the members: ``(manifest, variant, entry)`` rows."""
    from .cache import SIGNATURE_SUFFIX, blob_suffix
    from .hashes import file_digests

    try:
        doc = files.read(staging / _INDEX)
    except (OSError, ValueError) as exc:
        raise _refuse(bundle, f"{_INDEX} is missing or not JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("bundle_version") != BUNDLE_VERSION:
        raise _refuse(bundle, f"{_INDEX}: expected bundle_version {BUNDLE_VERSION}")
    models = doc.get("models")
    if not isinstance(models, dict) or not models:
        raise _refuse(bundle, f"{_INDEX}: 'models' must be a non-empty object")
    rows, used = [], {_INDEX, _SUMS}
    for spec, entry in sorted(models.items()):
        if not isinstance(entry, dict) or not isinstance(entry.get("artifacts"), dict):
            raise _refuse(bundle, f"{_INDEX}: invalid entry {spec!r}")
        name, version = entry.get("name"), entry.get("version")
        if not isinstance(name, str) or not NAME_RE.match(name) or not is_version(version):
            raise _refuse(bundle, f"{_INDEX}: invalid name/version in {spec!r}")
        member = f"models/{name}/{version}/manifest.json"
        if member not in digests:
            raise _refuse(bundle, f"{spec}: {member} is missing")
        used.add(member)
        manifest = load_manifest(staging / member)
        if (manifest.name, manifest.version) != (name, version):
            raise _refuse(bundle, f"{member} describes {manifest.spec}, not {name}@{version}")
        for variant, art in sorted(entry["artifacts"].items()):
            where = f"{spec} ({variant})"
            if not isinstance(art, dict) or variant not in manifest.artifacts:
                raise _refuse(bundle, f"{where}: not an artifact of its manifest")
            blob, sha, size = art.get("blob"), art.get("sha256"), art.get("size")
            published = manifest.artifacts[variant]
            if blob not in digests or not _BLOB.match(blob) or digests[blob] != sha:
                raise _refuse(bundle, f"{where}: blob {blob!r} is missing or does not match")
            if _BLOB.match(blob).group(2) != blob_suffix(published.file_name):
                raise _refuse(bundle, f"{where}: blob {blob!r} has the wrong file extension")
            actual_size = (staging / blob).stat().st_size
            if size != actual_size or published.size not in (None, actual_size):
                raise _refuse(bundle, f"{where}: size {actual_size} differs from {_INDEX}")
            if published.hash is not None:
                algo = published.hash.algorithm
                got = file_digests(staging / blob, (algo,))[algo]
                if got != published.hash.hex:
                    raise _refuse(
                        bundle,
                        f"{where}: {algo}:{got} differs from the manifest's {published.hash}",
                    )
            if not isinstance(art.get("url"), str):
                raise _refuse(bundle, f"{where}: 'url' must be a string")
            used.add(blob)
            signature = art.get("signature")
            if signature is not None:
                m = _BLOB.match(signature) if isinstance(signature, str) else None
                if m is None or m.group(2) != SIGNATURE_SUFFIX or signature not in digests:
                    raise _refuse(
                        bundle, f"{where}: OMS bundle {signature!r} is missing or not a .sig blob"
                    )
                listed = published.signature.hash if published.signature else "none"
                if str(listed) != f"sha256:{digests[signature]}":
                    raise _refuse(
                        bundle,
                        f"{where}: OMS bundle {signature!r} hashes to sha256:"
                        f"{digests[signature]} but the manifest's signature hash is {listed}",
                    )
                used.add(signature)
            rows.append((manifest, variant, art))
        signed = entry.get("signed")
        if signed is not None:
            ok = isinstance(signed, dict) and all(
                isinstance(signed.get(k), str) for k in ("tuf", "manifest", "registry", "location")
            )
            if not ok or not re.fullmatch(r"[a-z0-9-]{1,80}", signed["tuf"]):
                raise _refuse(bundle, f"{_INDEX}: invalid 'signed' in {spec!r}")
            used.update(n for n in digests if n.startswith(f"tuf/{signed['tuf']}/"))
    extra = sorted(set(digests) - used)
    if extra:
        raise _refuse(bundle, f"member {extra[0]!r} is not described by {_INDEX}")
    return rows


def _verify_signed(
    bundle: Path, staging: Path, rows: list[tuple], anchors: set[str]
) -> tuple[str, ...]:
    """Check every signed model against its TUF metadata; the specs verified from a root
    the user or this machine trusts."""
    from ..errors import TrustError
    from .signing import artifact_target
    from .trust import trust_dir, verify_bundle_metadata

    doc = files.read(staging / _INDEX)  # _plan validated it
    entries = {(e["name"], e["version"]): e for e in doc["models"].values()}
    strict = config.require_signed()
    verified, checked = [], {}
    for manifest, variant, art in rows:
        signed = entries[(manifest.name, manifest.version)].get("signed")
        if signed is None:
            if strict:
                raise _refuse(
                    bundle,
                    f"{manifest.spec} is not from a signed registry and signed registries are "
                    "required (MODELZOO_REQUIRE_SIGNED=1)",
                )
            continue
        tuf_id = signed["tuf"]
        if tuf_id not in checked:
            folder = staging / "tuf" / tuf_id
            metadata = {p.name: p.read_bytes() for p in folder.iterdir()} if folder.is_dir() else {}
            known = set(anchors)
            history = trust_dir(signed["location"]) / "metadata" / "root_history"
            for path in history.glob("*.root.json") if history.is_dir() else ():
                known.add(hashlib.sha256(path.read_bytes()).hexdigest())
            try:
                checked[tuf_id] = verify_bundle_metadata(
                    metadata, anchors=known, registry=signed["registry"]
                )
            except TrustError as exc:
                raise _refuse(bundle, str(exc).rstrip(".")) from None
            if not checked[tuf_id][2]:
                if strict:
                    raise _refuse(
                        bundle,
                        f"the TUF metadata of {signed['registry']!r} chains to no trusted root; "
                        "pass --lock or --root-sha256",
                    )
                logger.warning(
                    "Bundle %s: the signatures of registry %r verify, but from the bundle's own "
                    "root; pass --lock or --root-sha256 to check who signed it.",
                    bundle,
                    signed["registry"],
                )
        targets = checked[tuf_id][0]
        member = f"models/{manifest.name}/{manifest.version}/manifest.json"
        info = targets.get(signed["manifest"])
        data = (staging / member).read_bytes()
        try:
            if info is None:
                raise ValueError("not a signed target")
            info.verify_length_and_hashes(data)
        except Exception as exc:  # tuf LengthOrHashMismatchError
            raise _refuse(
                bundle, f"{member} is not the signed target {signed['manifest']} ({exc})"
            ) from None
        target = artifact_target(manifest.name, manifest.version, variant)
        info = targets.get(target)
        if info is None or (info.hashes.get("sha256"), info.length) != (art["sha256"], art["size"]):
            raise _refuse(bundle, f"{manifest.spec} ({variant}) is not the signed target {target}")
        if checked[tuf_id][2] and manifest.spec not in verified:
            verified.append(manifest.spec)
    return tuple(verified)


def unpack(
    bundle: str | os.PathLike[str],
    *,
    max_member_bytes: int | None = None,
    max_total_bytes: int | None = None,
    trusted_roots: Iterable[str] = (),
    lock: str | os.PathLike[str] | None = None,
) -> UnpackResult:
    """Verify a bundle completely, then install its models into the cache.

    Needs no network. After it, ``modelzoo.load(name)`` works with ``MODELZOO_OFFLINE=1``.

    Args:
        bundle: the ``.tar`` / ``.tar.gz`` written by :func:`pack`.
        max_member_bytes: refuse an artifact larger than this
            (default :data:`DEFAULT_MAX_MEMBER_BYTES`).
        max_total_bytes: refuse a bundle whose members add up to more
            (default :data:`DEFAULT_MAX_TOTAL_BYTES`).
        trusted_roots: sha256 of TUF roots to verify signed models from
            (``--root-sha256``); roots this machine trusts count too.
        lock: a ``modelzoo.lock`` whose pinned roots are trusted (``--lock``).

    Returns:
        An :class:`UnpackResult`.

    Raises:
        IntegrityError: the bundle is malformed, unsafe or tampered with, or the cache
            holds different bytes for one of its models; nothing is installed.
        ManifestError: a manifest in it is invalid; nothing is installed.
    """
    from .cache import SIGNATURE_SUFFIX, Cache, InstallRecord, blob_suffix

    bundle = Path(bundle)
    if not bundle.is_file():
        raise UsageError(f"Bundle {bundle} does not exist. Create one with `modelzoo pack`.")
    max_member = DEFAULT_MAX_MEMBER_BYTES if max_member_bytes is None else max_member_bytes
    max_total = DEFAULT_MAX_TOTAL_BYTES if max_total_bytes is None else max_total_bytes
    cache = Cache()
    label = f"bundle:{bundle.name}"
    staging = cache.tmp_dir / f"unpack-{secrets.token_hex(8)}"
    hold = contextlib.ExitStack()
    hold.enter_context(cache.lock(staging.name))  # `cache prune` keeps what is locked
    try:
        cache.tmp_dir.mkdir(parents=True, exist_ok=True)
        staging.mkdir()
        digests = _extract(bundle, staging, max_member, max_total)
        _check_sums(bundle, staging, digests)
        rows = _plan(bundle, staging, digests)
        anchors = {h.strip().lower().removeprefix("sha256:") for h in trusted_roots}
        if lock is not None:
            from .lockfile import read_lock

            anchors |= {m.trust["root_sha256"] for m in read_lock(lock).models if m.trust}
        signed = _verify_signed(bundle, staging, rows, anchors)
        todo, already = [], []
        for manifest, variant, art in rows:
            rec = cache.record(manifest.name, manifest.version, variant)
            what = f"{manifest.spec} ({variant})"
            if rec is not None and cache.is_complete(rec):
                if rec.sha256 != art["sha256"]:
                    raise _refuse(
                        bundle,
                        f"the cache already has {what} with other bytes (sha256:{rec.sha256}, "
                        f"the bundle has sha256:{art['sha256']}); remove it first with "
                        f"`modelzoo remove {manifest.spec}`",
                    )
                signature = manifest.artifacts[variant].signature
                if art.get("signature") and not rec.holds_signature(signature.hash.hex):
                    # installed without its OMS bundle: add it
                    todo.append((manifest, variant, art))
                    continue
                already.append(what)
            else:
                todo.append((manifest, variant, art))
        stored: dict[str, Path] = {}
        installed = []
        # prune must not delete a stored blob before its record exists
        with cache.exclusive():
            for manifest, variant, art in todo:
                published = manifest.artifacts[variant]
                blob = stored.get(art["blob"])
                if blob is None:
                    suffix = blob_suffix(published.file_name)
                    blob = cache.add_blob(staging / art["blob"], art["sha256"], suffix)
                    stored[art["blob"]] = blob
                signature = art.get("signature")
                if signature is not None and signature not in stored:
                    sha = published.signature.hash.hex  # _plan checked the bytes against it
                    stored[signature] = cache.add_blob(staging / signature, sha, SIGNATURE_SUFFIX)
                record = InstallRecord(
                    name=manifest.name,
                    version=manifest.version,
                    variant=variant,
                    sha256=art["sha256"],
                    size=art["size"],
                    path=blob,
                    file_name=published.file_name,
                    url=art["url"],
                    declared_hash=str(published.hash) if published.hash else None,
                    trusted_on_first_use=published.hash is None,
                    registry=label,
                    signature_sha256=published.signature.hash.hex if signature else None,
                    signature_path=stored[signature] if signature else None,
                )
                if published.hash is None and art["url"]:
                    cache.trust(art["url"], art["sha256"], size=art["size"])
                cache.write_record(manifest, variant, record)
                installed.append(f"{manifest.spec} ({variant})")
    finally:
        with contextlib.suppress(OSError):
            shutil.rmtree(staging)
        hold.close()
    logger.info("unpacked %s: %d artifact(s) installed", bundle, len(installed))
    return UnpackResult(bundle, label, tuple(installed), tuple(already), signed)
