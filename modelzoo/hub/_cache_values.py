"""Value objects of the on-disk cache: install records, and what verify and prune report."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..errors import CacheError

__all__ = ["InstallRecord", "VerifyResult", "PruneResult"]

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

    @property
    def spec(self) -> str:
        """``name@version``."""
        return f"{self.name}@{self.version}"

    def to_dict(self) -> dict[str, Any]:
        """The record as a JSON-ready mapping."""
        data = asdict(self)
        data["path"] = str(self.path)
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
