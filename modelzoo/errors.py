"""Every exception modelzoo raises.

One root, :class:`ModelZooError`; each subclass also inherits the builtin a caller
would naturally catch (``LookupError`` for unknown names, ``ConnectionError`` for
network trouble, ...). Messages say what was received, what would be valid, and the
next step. Attributes carry the same facts for programs.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = [
    "first_line",
    "ModelZooError",
    "DataError",
    "ManifestError",
    "ModelNotFoundError",
    "VersionNotFoundError",
    "VariantNotFoundError",
    "RegistryError",
    "DownloadError",
    "OfflineError",
    "IntegrityError",
    "HashRequiredError",
    "GoldenMismatchError",
    "TrustError",
    "TamperedMetadataError",
    "RollbackError",
    "FreezeError",
    "MixAndMatchError",
    "EndlessDataError",
    "RootMismatchError",
    "UnsignedRegistryError",
    "SigningError",
    "SignatureError",
    "NotInstalledError",
    "CacheError",
    "LockTimeoutError",
    "UnsafeModelError",
    "ModelFileError",
    "LayerNotFoundError",
    "StrategyError",
    "DependencyError",
    "UsageError",
    "ProjectError",
    "ExportError",
    "ParityError",
    "VersionExistsError",
    "nearest",
]


def nearest(name: str, candidates: Iterable[str], n: int = 3) -> list[str]:
    """The up-to-``n`` candidates closest to ``name`` (substring matches first)."""
    pool = list(dict.fromkeys(candidates))
    lowered = name.lower()
    close = difflib.get_close_matches(lowered, pool, n=n, cutoff=0.6)
    if len(close) < n:
        subs = [c for c in pool if lowered and lowered in c.lower() and c not in close]
        subs.sort(key=len)
        close.extend(subs[: n - len(close)])
    return close[:n]


def first_line(exc: BaseException, limit: int = 200) -> str:
    """The first line of ``exc``'s message, whitespace collapsed, at most ``limit``
    characters (the exception's type name when it has no message): how a third-party error
    is quoted inside one of ours."""
    lines = str(exc).strip().splitlines()
    text = " ".join(lines[0].split()) if lines else ""
    if not text:
        return type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _did_you_mean(suggestions: list[str]) -> str:
    if not suggestions:
        return ""
    return " Did you mean: " + ", ".join(repr(s) for s in suggestions) + "?"


class ModelZooError(Exception):
    """Root of every error modelzoo raises on purpose."""


class UsageError(ModelZooError, ValueError):
    """An argument has a value that cannot work."""


class DataError(ModelZooError, ValueError):
    """Data that cannot be used: a bad image file, an empty image folder, wrong labels."""


class ManifestError(ModelZooError, ValueError):
    """A manifest (or registry index) is malformed.

    Attributes:
        source: the file or URL the manifest came from.
        field: dotted path of the offending field, or None for the whole document.
    """

    def __init__(self, message: str, *, source: str | None = None, field: str | None = None):
        self.source = source
        self.field = field
        where = source or "<manifest>"
        if field:
            where += f": field '{field}'"
        super().__init__(f"{where}: {message}")


class ModelNotFoundError(ModelZooError, LookupError):
    """No registry knows a model by this name."""

    def __init__(self, name: str, *, suggestions: list[str] | None = None, message: str = ""):
        self.name = name
        self.suggestions = suggestions or []
        super().__init__(
            message
            or (
                f"Unknown model {name!r}.{_did_you_mean(self.suggestions)}"
                " Run `modelzoo search` to list models."
            )
        )


class VersionNotFoundError(ModelNotFoundError):
    """The model exists but not at the requested version."""

    def __init__(self, name: str, version: str, *, available: list[str]):
        self.version = version
        self.available = available
        super().__init__(
            name,
            message=(
                f"Model {name!r} has no version {version!r}. Available: "
                f"{', '.join(available) or 'none'}. Use {name}@<version> or {name} for the latest."
            ),
        )


class VariantNotFoundError(ModelZooError, LookupError):
    """The manifest has no artifact of the requested variant (e.g. ``notop``)."""

    def __init__(self, name: str, variant: str, *, available: list[str]):
        self.name = name
        self.variant = variant
        self.available = available
        super().__init__(
            f"Model {name!r} has no {variant!r} artifact. Available: {', '.join(available)}."
        )


class RegistryError(ModelZooError, OSError):
    """A registry cannot be read (missing folder, bad index, unreachable server)."""

    def __init__(self, message: str, *, registry: str | None = None):
        self.registry = registry
        super().__init__(message)


class DownloadError(ModelZooError, ConnectionError):
    """An artifact could not be downloaded from any of its URLs."""

    def __init__(self, message: str, *, url: str | None = None, status: int | None = None):
        self.url = url
        self.status = status
        super().__init__(message)


class OfflineError(DownloadError):
    """Offline mode is on and the thing asked for is not in the cache."""

    def __init__(self, message: str, *, url: str | None = None):
        super().__init__(
            f"{message} Offline mode is on (MODELZOO_OFFLINE=1): install it while online, "
            "or unset MODELZOO_OFFLINE.",
            url=url,
        )


class IntegrityError(ModelZooError, ValueError):
    """Downloaded or cached bytes do not match the expected hash or size.

    Attributes:
        path: the file checked (already deleted when it was a download).
        expected: the expected ``algo:hex`` (or size).
        actual: what was computed.
        url: the URL the bytes came from (a mirror or redirect target), when downloaded.
    """

    def __init__(
        self, message: str, *, path: str | None = None, expected=None, actual=None, url=None
    ):
        self.path = path
        self.expected = expected
        self.actual = actual
        self.url = url
        super().__init__(message)


class HashRequiredError(IntegrityError):
    """Hash-checking mode is on and an artifact has no published hash."""

    def __init__(self, name: str, variant: str, url: str):
        self.name = name
        self.variant = variant
        super().__init__(
            f"{name} ({variant}) has no published hash and hash-checking mode is on "
            f"(--require-hashes / MODELZOO_REQUIRE_HASHES=1). Refusing {url}. "
            "Pin a hash in the manifest, or turn hash-checking mode off to trust on first use.",
            expected=None,
        )


class GoldenMismatchError(IntegrityError):
    """A model computes other outputs than the golden ones its manifest records.

    Attributes:
        name: the model (``name@version``).
        output: ``top`` or the cut layer that differs.
        runtime: where it was computed (``keras``, ``tfjs``).
        max_abs_diff: the largest difference found (``actual``).
        tolerance: the tolerance it exceeds (``expected``).
    """

    def __init__(
        self, message: str, *, name: str, output: str, runtime: str, max_abs_diff, tolerance
    ):
        self.name = name
        self.output = output
        self.runtime = runtime
        self.max_abs_diff = max_abs_diff
        self.tolerance = tolerance
        super().__init__(message, expected=tolerance, actual=max_abs_diff)


class TrustError(IntegrityError):
    """Signed registry metadata (TUF) failed verification; nothing from it is used.

    Attributes:
        registry: the registry's name.
        role: the TUF role or target that failed (``timestamp``, ``snapshot``,
            ``targets``, ``root``, or a target path such as ``index.json``).
        attack: what the failure looks like: ``tampered``, ``rollback``, ``freeze``,
            ``mix-and-match``, ``endless data``, ``root mismatch`` or ``unsigned``.
    """

    attack = "tampered"

    def __init__(self, message: str, *, registry: str | None = None, role: str | None = None):
        self.registry = registry
        self.role = role
        super().__init__(message)


class TamperedMetadataError(TrustError):
    """Metadata or a target is not signed by the trusted keys, or its bytes changed."""


class RollbackError(TrustError):
    """A registry served metadata older than what the client already trusts."""

    attack = "rollback"


class FreezeError(TrustError):
    """Signed metadata has expired: the registry may be frozen on an old state."""

    attack = "freeze"


class MixAndMatchError(TrustError):
    """Metadata versions disagree with each other (snapshot vs timestamp vs targets)."""

    attack = "mix-and-match"


class EndlessDataError(TrustError):
    """A server sent more bytes than the signed metadata allows."""

    attack = "endless data"


class RootMismatchError(TrustError):
    """A registry's root differs from the one pinned (``--root-sha256`` or the lockfile)."""

    attack = "root mismatch"


class UnsignedRegistryError(TrustError):
    """Signed registries are required (``--require-signed``) and this one is not."""

    attack = "unsigned"


class SignatureError(IntegrityError):
    """A publisher's OMS signature (OpenSSF model signing) does not verify a model file.

    Raised when the bundle was made with another key than the public key given, when it
    signs other bytes than the installed file, or when there is no bundle to check.

    Attributes:
        name: the model (``name@version``).
        variant: the artifact variant.
        path: the file checked.
    """

    def __init__(self, message: str, *, name: str, variant: str, path: str | None = None):
        self.name = name
        self.variant = variant
        super().__init__(message, path=path)


class SigningError(ModelZooError, ValueError):
    """A registry or model file cannot be signed: missing or wrong key, stale index,
    unhashed artifact."""


class NotInstalledError(ModelZooError, FileNotFoundError):
    """The model (or variant) is not in the cache."""

    def __init__(self, name: str, *, variant: str | None = None, message: str = ""):
        self.name = name
        self.variant = variant
        what = f"{name} ({variant})" if variant else name
        super().__init__(message or f"{what} is not installed. Run `modelzoo install {name}`.")


class CacheError(ModelZooError, OSError):
    """The cache cannot be written or read (disk full, permissions, corruption)."""


class LockTimeoutError(CacheError, TimeoutError):
    """Another process held an install lock for too long."""


class UnsafeModelError(ModelZooError, ValueError):
    """A model file was refused by the safety scan.

    Attributes:
        path: the file refused.
        reason: why, in a sentence.
    """

    def __init__(self, path: str, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(
            f"Refusing to load {path}: {reason}. If you trust this file's source, pass "
            "trust_remote_code=True (CLI: --trust-remote-code)."
        )


class LayerNotFoundError(ModelZooError, ValueError):
    """A layer name or path does not exist in the model."""

    def __init__(self, layer: str, *, suggestions: list[str] | None = None, model: str = ""):
        self.layer = layer
        self.suggestions = suggestions or []
        where = f" in {model}" if model else ""
        super().__init__(
            f"No layer {layer!r}{where}.{_did_you_mean(self.suggestions)}"
            " List layers with `modelzoo layers NAME` or modelzoo.layers(model)."
        )


class StrategyError(ModelZooError, RuntimeError):
    """A distribution strategy was asked for hardware or a cluster that is not there."""


class DependencyError(ModelZooError, ImportError):
    """An optional dependency needed for this call is missing."""

    def __init__(self, package: str, install: str, purpose: str = ""):
        self.package = package
        self.install = install
        why = f" for {purpose}" if purpose else ""
        super().__init__(f"{package} is needed{why} but is not installed. Run: {install}")


class ProjectError(ModelZooError, ValueError):
    """A project file (modelzoo.toml) or lockfile is invalid or out of date."""


class ExportError(ModelZooError, ValueError):
    """A model cannot be exported to the requested format (e.g. TensorFlow.js).

    Attributes:
        layer: path of the first offending layer (``outer/inner/name``), or None.
        problems: every problem found, one sentence each.
    """

    def __init__(
        self, message: str, *, layer: str | None = None, problems: list[str] | None = None
    ):
        self.layer = layer
        self.problems = problems or []
        super().__init__(message)


class ParityError(ExportError):
    """An export differs from the Keras model past the threshold, so it was not written.

    Attributes:
        quantization: the export's quantization (e.g. ``"int8"``).
        parity: the figures measured (max |Δ|, top-1 agreement, threshold, inputs).
    """

    def __init__(self, message: str, *, quantization: str, parity: dict):
        self.quantization = quantization
        self.parity = parity
        super().__init__(message)


class ModelFileError(ModelZooError, ValueError):
    """A model or weights file passed the safety scan but tf_keras cannot use it.

    Raised for weights that do not fit the architecture (layer count or shape mismatch)
    and for whole-model files tf_keras fails to rebuild.

    Attributes:
        path: the file.
        detail: what tf_keras reported (first line).
    """

    def __init__(self, path: str, detail: str, *, hint: str = ""):
        self.path = str(path)
        self.detail = detail
        super().__init__(f"Cannot load {path}: {detail}" + (f" {hint}" if hint else ""))


class VersionExistsError(ModelZooError, FileExistsError):
    """Publishing would overwrite a version that already exists (versions are immutable).

    Attributes:
        name: the model name.
        version: the version that exists.
        path: its folder in the registry.
    """

    def __init__(self, name: str, version: str, *, path: str):
        self.name = name
        self.version = version
        self.path = str(path)
        super().__init__(
            f"{name}@{version} is already published at {path}; published versions are "
            "immutable. Publish a new version (e.g. bump the patch number) instead."
        )
