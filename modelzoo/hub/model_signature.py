"""Publisher signatures on model files, in the OpenSSF model-signing (OMS) format.

A signed registry (:mod:`modelzoo.hub.signing`, :mod:`modelzoo.hub.trust`) proves who
published the registry's index and manifests. An OMS bundle proves who produced one model
file, and it travels with the file wherever the file is copied. ``modelzoo publish
--oms-key KEY.pem`` writes ``<file>.sig`` beside the artifact and lists it in the manifest
(``artifacts.<variant>.signature``: its URL and sha256); ``install`` fetches it with the
artifact; ``modelzoo verify NAME --signature --public-key PUB.pem`` checks it.

The bundle is a Sigstore bundle: a DSSE envelope around an in-toto statement of the file's
sha256, signed with an elliptic-curve key (P-256, P-384 or P-521, PEM) and naming the key
by the sha256 of its public half. No certificate, no transparency log, no network. All
cryptography is model_signing's (``pip install 'modelzoo[signing]'``), imported only when a
signature is made or checked, and its exceptions become ours here.

model_signing records a single file's one resource as ``"."`` (the file name appears only
as the statement's informative subject), so it is the bytes that are signed: a cache blob
named ``<sha256><suffix>`` verifies as it is, without a copy under the published name.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import (
    DependencyError,
    NotInstalledError,
    SignatureError,
    SigningError,
    UsageError,
    first_line,
)
from ..versions import split_spec
from .cache import Cache, InstallRecord, version_filter

__all__ = ["INSTALL_HINT", "OmsSigner", "SignatureCheck", "verify_signature"]

logger = logging.getLogger(__name__)

#: How to get the optional dependency.
INSTALL_HINT = "pip install 'modelzoo[signing]'"

_KEY_HELP = (
    "an unencrypted elliptic-curve key in PEM (P-256, P-384 or P-521), e.g. from "
    "`openssl ecparam -name prime256v1 -genkey -noout | openssl pkcs8 -topk8 -nocrypt`"
)


def _model_signing():
    """The ``model_signing`` package, or the one-line install hint."""
    try:
        import model_signing.signing
        import model_signing.verifying
    except ImportError as exc:
        raise DependencyError("model-signing", INSTALL_HINT, "OMS model signatures") from exc
    return model_signing


def _key_file(path: str | os.PathLike[str], what: str) -> Path:
    path = Path(path).expanduser()
    if not path.is_file():
        raise UsageError(f"{what} {path} does not exist or is not a file.")
    return path


class OmsSigner:
    """Signs model files with an elliptic-curve private key, one OMS bundle per file.

    The key is read when the signer is made, so a wrong key fails before anything is
    written.

    Raises:
        DependencyError: model_signing is not installed.
        UsageError: the key file is missing or not a usable EC private key.
    """

    def __init__(self, private_key: str | os.PathLike[str]):
        self.private_key = _key_file(private_key, "OMS private key")
        signing = _model_signing().signing
        try:
            self._config = signing.Config().use_elliptic_key_signer(private_key=self.private_key)
        except Exception as exc:  # cryptography's parse errors: ValueError, TypeError, ...
            raise UsageError(
                f"{self.private_key} cannot sign ({first_line(exc)}). An OMS key is {_KEY_HELP}."
            ) from exc

    def sign(self, path: str | os.PathLike[str], bundle: str | os.PathLike[str]) -> Path:
        """Write the OMS bundle of the file at ``path`` to ``bundle``; return ``bundle``.

        Raises:
            SigningError: model_signing could not sign or write.
        """
        try:
            self._config.sign(Path(path), Path(bundle))
        except Exception as exc:
            raise SigningError(f"Cannot sign {path} with model_signing: {first_line(exc)}") from exc
        return Path(bundle)


@dataclass(frozen=True)
class SignatureCheck:
    """One installed artifact whose OMS signature verified.

    Attributes:
        record: its install record (``record.path`` is the file checked).
        bundle: the OMS bundle it was checked against.
        public_key: the public key that verified it.
        seconds: how long model_signing took (it re-hashes the file).
    """

    record: InstallRecord
    bundle: Path
    public_key: Path
    seconds: float


def _reason(exc: Exception) -> str:
    """model_signing's failure, said as what it means for the user."""
    from cryptography.exceptions import InvalidSignature  # model_signing's own dependency

    text = first_line(exc)
    if text.startswith("Key mismatch"):
        return "the bundle was signed with another key"
    if isinstance(exc, InvalidSignature):
        return "the bundle's signature is not valid for this key (forged or damaged)"
    if text.startswith("Signature mismatch"):
        return "the bundle signs other bytes than this file"
    return f"model_signing refused it: {text}"


def verify_signature(spec: str, *, public_key: str | os.PathLike[str]) -> list[SignatureCheck]:
    """Verify each installed artifact of ``spec`` against its publisher's OMS bundle.

    Every installed artifact must have a bundle (the manifest lists it and ``install``
    fetched it) that was signed with the private half of ``public_key`` over exactly the
    installed bytes.

    Args:
        spec: ``name`` (every installed version) or ``name@version`` / a constraint.
        public_key: the publisher's elliptic-curve public key, PEM.

    Returns:
        One :class:`SignatureCheck` per artifact, all verified.

    Raises:
        NotInstalledError: nothing matching ``spec`` is installed.
        SignatureError: an artifact has no bundle, or its bundle does not verify with
            ``public_key`` (another key, other bytes, a forged bundle).
        UsageError: ``public_key`` is missing or not an EC public key.
        DependencyError: model_signing is not installed (``modelzoo[signing]``).

    Example:
        >>> modelzoo.verify_signature("pacman-net", public_key="publisher.pub")  # doctest: +SKIP
    """
    name, version = split_spec(spec)
    keep = version_filter(version)
    cache = Cache()
    records = [r for r in cache.installed(name) if keep(r.version)]
    if not records:
        raise NotInstalledError(
            name,
            message=f"{spec} is not installed, so there is no signature to verify. Run "
            f"`modelzoo install {spec}`.",
        )
    key = _key_file(public_key, "Public key")
    verifying = _model_signing().verifying
    try:
        config = verifying.Config().use_elliptic_key_verifier(public_key=key)
    except Exception as exc:
        raise UsageError(
            f"{key} cannot verify ({first_line(exc)}). Pass the publisher's elliptic-curve "
            "public key in PEM (P-256, P-384 or P-521)."
        ) from exc
    return [_verify_one(cache, rec, config, key) for rec in records]


def _verify_one(cache: Cache, rec: InstallRecord, config, key: Path) -> SignatureCheck:
    what = f"{rec.spec} ({rec.variant})"

    def refuse(message: str) -> SignatureError:
        return SignatureError(message, name=rec.spec, variant=rec.variant, path=str(rec.path))

    manifest = cache.manifest(rec.name, rec.version)
    artifact = manifest.artifacts.get(rec.variant) if manifest else None
    if artifact is None or artifact.signature is None:
        raise refuse(
            f"No OMS bundle for {rec.spec}'s {rec.variant}: its manifest lists no signature, "
            "so there is nothing to verify. Ask the publisher to publish it with --oms-key."
        )
    if rec.signature_path is None or rec.signature_sha256 != artifact.signature.hash.hex:
        raise refuse(
            f"{what}: its OMS bundle is not in the cache (installed from a bundle packed "
            f"without it, or by an older modelzoo). Run `modelzoo install {rec.spec} --variant "
            f"{rec.variant} --force` to fetch it, or unpack a bundle that carries it."
        )
    if not rec.signature_path.is_file():
        raise refuse(
            f"{what}: its OMS bundle {rec.signature_path} is missing. Run `modelzoo install "
            f"{rec.spec} --variant {rec.variant} --force`."
        )
    start = time.perf_counter()
    # model_signing prints a warning for old-format bundles; keep stdout for our output.
    with contextlib.redirect_stdout(io.StringIO()) as said:
        try:
            config.verify(rec.path, rec.signature_path)
        except Exception as exc:
            raise refuse(
                f"{what}: the OMS signature does not verify with {key}: {_reason(exc)}. "
                "The file is not what that key's owner signed; do not use it."
            ) from exc
    if said.getvalue().strip():
        logger.warning("%s: model_signing says: %s", what, " ".join(said.getvalue().split()))
    return SignatureCheck(rec, rec.signature_path, key, time.perf_counter() - start)
