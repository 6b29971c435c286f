"""The manifest schema: one JSON document per model version, parsed into frozen value objects.

A manifest (``schema_version: 1``) looks like::

    {
      "schema_version": 1,
      "name": "mobilenet_v1_1.0_224",          # [a-z0-9][a-z0-9._-]*, never a path
      "version": "1.0.0",                      # semver; published versions are immutable
      "family": "MobileNet",
      "summary": "MobileNet v1, alpha 1.0, 224x224, ImageNet",
      "task": "image-classification",
      "license": "Apache-2.0",
      "tags": ["imagenet", "mobile"],
      "paper": "https://arxiv.org/abs/1704.04861",       # optional
      "homepage": "https://keras.io/api/applications/",  # optional
      "input": {"shape": [224, 224, 3], "min_size": 32, "dtype": "float32",
                "preprocessing": "tf"},       # caffe | tf | torch | builtin | none
      "labels": "imagenet",                   # "imagenet", a list of class names, or null
      "build": {"kind": "keras-application",  # or "keras-model" (a whole saved model)
                "constructor": "MobileNet",   # allow-listed tf_keras.applications name
                "kwargs": {"alpha": 1.0}},    # never include_top / weights
      "artifacts": {
        "full":  {"url": "https://...h5", "mirrors": [], "hash": "md5:<32 hex>",
                  "size": null, "format": "h5-weights", "file_name": "....h5",
                  "signature": {"url": "....h5.sig", "hash": "sha256:<64 hex>"}},
        "notop": {...}
      },
      "cut_points": [{"layer": "conv_pw_13_relu", "shape": [7, 7, 1024],
                      "variant": "notop", "note": "last activation before pooling"}],
      "golden": {...},                        # optional, see below
      "notes": null
    }

Artifact ``format`` is ``h5-weights`` (weights for a constructor), ``keras`` (a whole
``.keras`` model) or ``h5`` (a whole legacy HDF5 model). ``hash`` is ``md5:<hex>``,
``sha256:<hex>`` or null (no published hash: trust on first use). A ``url`` may be
relative, resolved against the registry it came from. ``signature`` (optional) is the
publisher's OpenSSF model-signing (OMS) bundle for that file: where it is and its sha256
(see :mod:`modelzoo.hub.model_signature`).

``golden`` (optional) pins what the model computes, which hashes cannot: a wrong
constructor kwarg, a changed preprocessing mode or a converter bug all change it::

    "golden": {
      "input": {"generator": "uniform", "seed": 0, "shape": [2, 224, 224, 3],
                "low": 0, "high": 255},
      "rtol": 0.001,
      "outputs": [
        {"cut": null, "shape": [2, 1000], "mean": 0.001, "std": 0.01, "atol": 1e-05,
         "indices": [0, 87, ...], "values": [1.2e-05, 3.4e-04, ...]},
        {"cut": "conv_pw_13_relu", ...}
      ]
    }

The input is made by ``numpy.random.RandomState(seed).uniform(low, high, shape)`` as
float32 (a stream NumPy keeps stable across releases) in the raw 0-255 pixel domain,
*before* the manifest's ``input.preprocessing`` is applied: a changed mode changes the
outputs. ``cut: null`` is the output of ``load(name)``; a layer name is the output of
``load(name, cut=layer)`` and must be a listed cut point. Each output stores its shape,
mean and standard deviation, and the values at a few flat ``indices``; a computed
value ``a`` matches the stored ``e`` when ``|a - e| <= atol + rtol * |e|``.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from .. import files
from ..config import SCHEMA_VERSION
from ..errors import ManifestError
from ..versions import is_version

__all__ = [
    "Manifest",
    "InputSpec",
    "BuildSpec",
    "Artifact",
    "ArtifactSignature",
    "CutPoint",
    "Golden",
    "GoldenInput",
    "GoldenOutput",
    "Hash",
    "parse_manifest",
    "load_manifest",
    "parse_hash",
    "validate_name",
    "NAME_RE",
    "PREPROCESSING_MODES",
    "ARTIFACT_FORMATS",
    "BUILD_KINDS",
    "VARIANTS",
]

# \A...\Z, not ^...$: "$" also matches before a trailing newline, so "name\n" would pass
# a plain .match(); callers should still use .fullmatch().
NAME_RE = re.compile(r"\A[a-z0-9][a-z0-9._-]{0,99}\Z")
_FILE_NAME_RE = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9._+-]{0,199}\Z")
_HEX = {"md5": re.compile(r"[0-9a-fA-F]{32}"), "sha256": re.compile(r"[0-9a-fA-F]{64}")}
PREPROCESSING_MODES = ("caffe", "tf", "torch", "builtin", "none")
ARTIFACT_FORMATS = ("h5-weights", "keras", "h5")
BUILD_KINDS = ("keras-application", "keras-model")
#: Known artifact variants; ``full`` is the whole network, ``notop`` lacks the classifier.
VARIANTS = ("full", "notop")

_TOP_KEYS = {
    "schema_version",
    "name",
    "version",
    "family",
    "summary",
    "task",
    "license",
    "tags",
    "paper",
    "homepage",
    "input",
    "labels",
    "build",
    "artifacts",
    "cut_points",
    "golden",
    "notes",
}
_REQUIRED = ("schema_version", "name", "version", "summary", "input", "build", "artifacts")


@dataclass(frozen=True)
class Hash:
    """A published digest: ``algorithm`` is ``md5`` or ``sha256``, ``hex`` is lowercase."""

    algorithm: str
    hex: str

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"


@dataclass(frozen=True)
class InputSpec:
    """What the network expects: ``shape`` (H, W, C; None = any), min size, preprocessing."""

    shape: tuple[int | None, ...]
    min_size: int | None = None
    dtype: str = "float32"
    preprocessing: str = "none"


@dataclass(frozen=True)
class BuildSpec:
    """How to make a ``keras.Model`` from the artifacts."""

    kind: str
    constructor: str | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ArtifactSignature:
    """Where an artifact's OMS signature bundle is, and its sha256 (always published)."""

    url: str
    hash: Hash


@dataclass(frozen=True)
class Artifact:
    """One downloadable file of a model."""

    variant: str
    url: str
    format: str
    file_name: str
    hash: Hash | None = None
    size: int | None = None
    mirrors: tuple[str, ...] = ()
    signature: ArtifactSignature | None = None

    @property
    def urls(self) -> tuple[str, ...]:
        """Primary URL first, then mirrors."""
        return (self.url, *self.mirrors)


@dataclass(frozen=True)
class CutPoint:
    """A layer worth slicing at, and which artifact variant already contains it."""

    layer: str
    shape: tuple[int | None, ...] | None = None
    variant: str | None = None
    note: str | None = None


@dataclass(frozen=True)
class GoldenInput:
    """A seeded input: ``RandomState(seed).uniform(low, high, shape)`` as float32."""

    generator: str
    seed: int
    shape: tuple[int, ...]
    low: float
    high: float


@dataclass(frozen=True)
class GoldenOutput:
    """What one output (``cut`` None: the whole model) must look like for the golden input."""

    cut: str | None
    shape: tuple[int, ...]
    mean: float
    std: float
    atol: float
    indices: tuple[int, ...]
    values: tuple[float, ...]

    @property
    def label(self) -> str:
        """``top`` for the whole model, else the cut layer."""
        return self.cut or "top"


@dataclass(frozen=True)
class Golden:
    """Expected outputs for a deterministic input, with a tolerance."""

    input: GoldenInput
    outputs: tuple[GoldenOutput, ...]
    rtol: float


@dataclass(frozen=True)
class Manifest:
    """A validated manifest. ``raw`` keeps the original mapping for round trips."""

    name: str
    version: str
    summary: str
    input: InputSpec
    build: BuildSpec
    artifacts: dict[str, Artifact]
    family: str = ""
    task: str = "image-classification"
    license: str = "unknown"
    tags: tuple[str, ...] = ()
    paper: str | None = None
    homepage: str | None = None
    labels: Any = None
    cut_points: tuple[CutPoint, ...] = ()
    notes: str | None = None
    golden: Golden | None = None
    source: str | None = field(default=None, compare=False)
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def spec(self) -> str:
        """``name@version``."""
        return f"{self.name}@{self.version}"

    def artifact(self, variant: str) -> Artifact:
        """The artifact of ``variant``.

        Raises:
            VariantNotFoundError: when the manifest has no such variant.
        """
        from ..errors import VariantNotFoundError

        try:
            return self.artifacts[variant]
        except KeyError:
            raise VariantNotFoundError(
                self.name, variant, available=sorted(self.artifacts)
            ) from None

    def to_dict(self) -> dict[str, Any]:
        """The manifest as a JSON-ready mapping (the original document)."""
        return json.loads(json.dumps(self.raw))


def validate_name(name: str, *, what: str = "model name", source: str | None = None) -> str:
    """Return ``name`` if it is a safe model name, else raise :class:`ManifestError`."""
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise ManifestError(
            f"invalid {what} {name!r}: use 1-100 characters of a-z, 0-9, '.', '_', '-', "
            "starting with a letter or digit",
            source=source,
            field="name",
        )
    return name


def parse_hash(value: Any, *, source: str | None = None, field: str = "hash") -> Hash | None:
    """Parse ``md5:<hex>`` / ``sha256:<hex>`` (or None)."""
    if value is None:
        return None
    if not isinstance(value, str) or ":" not in value:
        raise ManifestError(
            f"expected 'md5:<32 hex>' or 'sha256:<64 hex>' or null, got {value!r}",
            source=source,
            field=field,
        )
    algo, _, hexdigest = value.partition(":")
    algo = algo.lower()
    if algo not in _HEX or not _HEX[algo].fullmatch(hexdigest):
        raise ManifestError(
            f"expected 'md5:<32 hex>' or 'sha256:<64 hex>', got {value!r}",
            source=source,
            field=field,
        )
    return Hash(algo, hexdigest.lower())


class _Reader:
    """Typed field access that raises ManifestError naming the source and field."""

    def __init__(self, source: str | None):
        self.source = source

    def fail(self, field: str, message: str) -> ManifestError:
        return ManifestError(message, source=self.source, field=field)

    def get(self, data: dict, key: str, types, path: str, *, required=False, default=None):
        if key not in data or data[key] is None:
            if required:
                raise self.fail(path, "is required")
            return default
        value = data[key]
        # bool is an int subclass: reject it where a number is expected
        allowed = types if isinstance(types, tuple) else (types,)
        if isinstance(value, bool) and bool not in allowed:
            raise self.fail(path, f"expected {_type_names(types)}, got {value!r}")
        if not isinstance(value, types):
            raise self.fail(path, f"expected {_type_names(types)}, got {type(value).__name__}")
        return value


def _type_names(types) -> str:
    types = types if isinstance(types, tuple) else (types,)
    names = {
        str: "a string",
        int: "an integer",
        float: "a number",
        list: "a list",
        dict: "an object",
        bool: "true/false",
    }
    return " or ".join(names.get(t, t.__name__) for t in types)


def _shape(r: _Reader, value: Any, path: str) -> tuple[int | None, ...]:
    if not isinstance(value, list) or not value:
        raise r.fail(path, f"expected a non-empty list of positive integers or null, got {value!r}")
    for dim in value:
        if dim is not None and (isinstance(dim, bool) or not isinstance(dim, int) or dim <= 0):
            raise r.fail(path, f"expected positive integers or null, got {value!r}")
    return tuple(value)


#: At most this many values per example (256 MiB as float32): a larger input is a typo.
MAX_INPUT_VALUES = 2**26


def _input_shape(r: _Reader, value: Any, kind: str, min_size: int | None) -> tuple[int | None, ...]:
    """``input.shape``: buildable (rank, size) before anything is built or read."""
    shape = _shape(r, value, "input.shape")
    if kind == "keras-application" and len(shape) != 3:
        raise r.fail(
            "input.shape",
            f"expected 3 dimensions (height, width, channels) for a keras-application, "
            f"got {value!r}",
        )
    values = 1
    for dim in shape:
        values *= dim or 1
    if values > MAX_INPUT_VALUES:
        raise r.fail(
            "input.shape",
            f"{value!r} is too large: {values:,} values per example (at most "
            f"{MAX_INPUT_VALUES:,}); check the manifest for a typo",
        )
    if kind == "keras-application" and min_size is not None:
        small = [d for d in shape[:2] if d is not None and d < min_size]
        if small:
            raise r.fail("input.shape", f"{value!r} is below the model's min_size {min_size}")
    return shape


def _url(r: _Reader, value: Any, path: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise r.fail(path, "expected a non-empty URL or relative path")
    parts = urlsplit(value)
    scheme = parts.scheme.lower()
    # a drive letter ("C:/x") parses as a one-letter scheme; treat it as an absolute path
    if scheme and len(scheme) > 1:
        if scheme not in ("https", "http", "file"):
            raise r.fail(path, f"unsupported URL scheme {scheme!r}: use https, http or file")
        if not value.lower().startswith(f"{scheme}://"):
            raise r.fail(path, f"expected {scheme}://..., got {value!r}")
        if scheme != "file" and not parts.hostname:
            raise r.fail(path, f"URL has no host: {value!r}")
        if "@" in parts.netloc:
            # Never echo the URL: it holds a password.
            raise r.fail(
                path,
                "URL carries credentials (user:password@host); manifests may not. "
                "Remove them: private servers are authenticated from ~/.netrc",
            )
        return value
    # Relative: resolved against the manifest's folder, so it must not climb out of it.
    # Decode %2e%2e and backslashes first: servers and file:// paths would undo them later.
    plain = unquote(parts.path).replace("\\", "/")
    if scheme or plain.startswith("/") or parts.netloc or ".." in plain.split("/"):
        raise r.fail(path, f"relative paths must stay inside the registry, got {value!r}")
    return value


def _artifact(r: _Reader, variant: str, data: Any, kind: str) -> Artifact:
    path = f"artifacts.{variant}"
    if not isinstance(data, dict):
        raise r.fail(path, "expected an object")
    unknown = set(data) - {"url", "mirrors", "hash", "size", "format", "file_name", "signature"}
    if unknown:
        raise r.fail(path, f"unknown keys {sorted(unknown)}")
    url = _url(r, data.get("url"), f"{path}.url")
    mirrors = r.get(data, "mirrors", list, f"{path}.mirrors", default=[])
    mirrors = tuple(_url(r, m, f"{path}.mirrors[{i}]") for i, m in enumerate(mirrors))
    fmt = r.get(data, "format", str, f"{path}.format", required=True)
    if fmt not in ARTIFACT_FORMATS:
        raise r.fail(f"{path}.format", f"expected one of {list(ARTIFACT_FORMATS)}, got {fmt!r}")
    if kind == "keras-application" and fmt != "h5-weights":
        raise r.fail(f"{path}.format", "keras-application artifacts must be 'h5-weights'")
    if kind == "keras-model" and fmt == "h5-weights":
        raise r.fail(f"{path}.format", "keras-model artifacts must be 'keras' or 'h5'")
    default_name = url.rstrip("/").rsplit("/", 1)[-1].split("?", 1)[0]
    file_name = r.get(data, "file_name", str, f"{path}.file_name", default=default_name)
    if not _FILE_NAME_RE.fullmatch(file_name) or ".." in file_name:
        raise r.fail(f"{path}.file_name", f"unsafe file name {file_name!r}")
    size = r.get(data, "size", int, f"{path}.size")
    if size is not None and size < 0:
        raise r.fail(f"{path}.size", f"must be >= 0, got {size}")
    digest = parse_hash(data.get("hash"), source=r.source, field=f"{path}.hash")
    signature = _signature(r, data.get("signature"), f"{path}.signature")
    return Artifact(variant, url, fmt, file_name, digest, size, mirrors, signature)


def _signature(r: _Reader, data: Any, path: str) -> ArtifactSignature | None:
    """``artifacts.<variant>.signature``: ``{"url": ..., "hash": "sha256:..."}`` or absent."""
    if data is None:
        return None
    if not isinstance(data, dict):
        raise r.fail(path, 'expected an object {"url": ..., "hash": "sha256:<64 hex>"}')
    unknown = set(data) - {"url", "hash"}
    if unknown:
        raise r.fail(path, f"unknown keys {sorted(unknown)} (known: url, hash)")
    url = _url(r, data.get("url"), f"{path}.url")
    # sha256, never md5 or none: the bundle is stored content-addressed by its sha256
    digest = parse_hash(data.get("hash"), source=r.source, field=f"{path}.hash")
    if digest is None or digest.algorithm != "sha256":
        raise r.fail(f"{path}.hash", f"expected 'sha256:<64 hex>', got {data.get('hash')!r}")
    return ArtifactSignature(url, digest)


#: Generators a golden input may name.
GOLDEN_GENERATORS = ("uniform",)
#: At most this many stored values per golden output (keeps manifests small).
MAX_GOLDEN_VALUES = 256


def _number(r: _Reader, data: dict, key: str, path: str, *, minimum: float | None = None):
    value = r.get(data, key, (int, float), f"{path}.{key}", required=True)
    if not math.isfinite(value) or (minimum is not None and value < minimum):
        bound = f" >= {minimum}" if minimum is not None else ""
        raise r.fail(f"{path}.{key}", f"expected a finite number{bound}, got {value!r}")
    return float(value)


def _golden_output(r: _Reader, data: Any, path: str, cut_layers: set[str]) -> GoldenOutput:
    if not isinstance(data, dict):
        raise r.fail(path, "expected an object")
    known = {"cut", "shape", "mean", "std", "atol", "indices", "values"}
    unknown = set(data) - known
    if unknown:
        raise r.fail(path, f"unknown keys {sorted(unknown)} (known: {', '.join(sorted(known))})")
    cut = r.get(data, "cut", str, f"{path}.cut")
    if cut is not None and cut not in cut_layers:
        raise r.fail(f"{path}.cut", f"{cut!r} is not one of the manifest's cut_points")
    shape = _shape(r, data.get("shape"), f"{path}.shape")
    if None in shape:
        raise r.fail(f"{path}.shape", f"expected positive integers, got {list(shape)!r}")
    size = math.prod(shape)
    indices = r.get(data, "indices", list, f"{path}.indices", required=True)
    values = r.get(data, "values", list, f"{path}.values", required=True)
    if len(indices) != len(values) or len(values) > MAX_GOLDEN_VALUES:
        raise r.fail(
            f"{path}.values",
            f"expected as many values as indices (at most {MAX_GOLDEN_VALUES}), got "
            f"{len(values)} values for {len(indices)} indices",
        )
    for i in indices:
        if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < size:
            raise r.fail(f"{path}.indices", f"expected flat indices in [0, {size}), got {i!r}")
    if any(b <= a for a, b in zip(indices, indices[1:], strict=False)):
        raise r.fail(f"{path}.indices", "expected strictly increasing indices")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise r.fail(f"{path}.values", f"expected finite numbers, got {v!r}")
    return GoldenOutput(
        cut,
        shape,
        _number(r, data, "mean", path),
        _number(r, data, "std", path, minimum=0.0),
        _number(r, data, "atol", path, minimum=0.0),
        tuple(indices),
        tuple(float(v) for v in values),
    )


def _golden(r: _Reader, data: Any, input_shape, cut_layers: set[str]) -> Golden | None:
    """``golden``: a seeded input and the outputs it must produce."""
    if data is None:
        return None
    if not isinstance(data, dict):
        raise r.fail("golden", "expected an object")
    unknown = set(data) - {"input", "outputs", "rtol"}
    if unknown:
        raise r.fail("golden", f"unknown keys {sorted(unknown)} (known: input, outputs, rtol)")
    spec = r.get(data, "input", dict, "golden.input", required=True)
    unknown = set(spec) - {"generator", "seed", "shape", "low", "high"}
    if unknown:
        raise r.fail("golden.input", f"unknown keys {sorted(unknown)}")
    generator = r.get(spec, "generator", str, "golden.input.generator", required=True)
    if generator not in GOLDEN_GENERATORS:
        raise r.fail(
            "golden.input.generator",
            f"expected one of {list(GOLDEN_GENERATORS)}, got {generator!r}",
        )
    seed = r.get(spec, "seed", int, "golden.input.seed", required=True)
    if not 0 <= seed < 2**32:
        raise r.fail("golden.input.seed", f"expected 0 <= seed < 2**32, got {seed}")
    shape = _shape(r, spec.get("shape"), "golden.input.shape")
    batch, dims = shape[0], shape[1:]
    fits = len(dims) == len(input_shape) and all(
        d is not None and (want is None or d == want)
        for d, want in zip(dims, input_shape, strict=False)
    )
    if batch is None or not fits:
        raise r.fail(
            "golden.input.shape",
            f"expected [batch, {', '.join(str(d) for d in input_shape)}] (input.shape with a "
            f"batch size in front), got {list(shape)!r}",
        )
    if math.prod(shape) > MAX_INPUT_VALUES:
        raise r.fail("golden.input.shape", f"{list(shape)!r} is too large; use a batch of 1 or 2")
    low = _number(r, spec, "low", "golden.input")
    high = _number(r, spec, "high", "golden.input")
    if not low < high:
        raise r.fail("golden.input", f"expected low < high, got low={low:g}, high={high:g}")
    raw_outputs = r.get(data, "outputs", list, "golden.outputs", required=True)
    if not raw_outputs:
        raise r.fail("golden.outputs", "must list at least one output")
    outputs = tuple(
        _golden_output(r, o, f"golden.outputs[{i}]", cut_layers) for i, o in enumerate(raw_outputs)
    )
    labels = [o.label for o in outputs]
    if len(set(labels)) != len(labels):
        raise r.fail("golden.outputs", f"lists an output twice: {labels}")
    rtol = _number(r, data, "rtol", "golden", minimum=0.0)
    return Golden(GoldenInput(generator, seed, tuple(shape), low, high), outputs, rtol)


def parse_manifest(data: Any, *, source: str | None = None) -> Manifest:
    """Validate a decoded manifest document and return a :class:`Manifest`.

    Args:
        data: the decoded JSON document.
        source: file or URL it came from, used in error messages.

    Raises:
        ManifestError: naming the source and the first invalid field.
    """
    r = _Reader(source)
    if not isinstance(data, dict):
        raise ManifestError("expected a JSON object at the top level", source=source)
    for key in _REQUIRED:
        if key not in data:
            raise r.fail(key, "is required")
    unknown = set(data) - _TOP_KEYS
    if unknown:
        raise r.fail(sorted(unknown)[0], f"unknown field (known: {', '.join(sorted(_TOP_KEYS))})")
    sv = data["schema_version"]
    # compare the type too: True == 1 and 1.0 == 1 in Python
    if type(sv) is not int or sv != SCHEMA_VERSION:
        raise r.fail(
            "schema_version",
            f"this modelzoo reads schema_version {SCHEMA_VERSION}, got {sv!r}; "
            "upgrade modelzoo (pip install -U modelzoo)"
            if isinstance(sv, int) and sv > 1
            else f"this modelzoo reads schema_version {SCHEMA_VERSION}, got {sv!r}",
        )
    name = validate_name(data["name"], source=source)
    version = r.get(data, "version", str, "version", required=True)
    if not is_version(version):
        raise r.fail("version", f"expected a semantic version like 1.0.0, got {version!r}")

    inp = r.get(data, "input", dict, "input", required=True)
    min_size = r.get(inp, "min_size", int, "input.min_size")
    if min_size is not None and min_size <= 0:
        raise r.fail("input.min_size", f"must be a positive integer, got {min_size}")
    dtype = r.get(inp, "dtype", str, "input.dtype", default="float32")
    pre = r.get(inp, "preprocessing", str, "input.preprocessing", default="none")
    if pre not in PREPROCESSING_MODES:
        raise r.fail(
            "input.preprocessing", f"expected one of {list(PREPROCESSING_MODES)}, got {pre!r}"
        )
    unknown = set(inp) - {"shape", "min_size", "dtype", "preprocessing"}
    if unknown:
        raise r.fail("input", f"unknown keys {sorted(unknown)}")

    b = r.get(data, "build", dict, "build", required=True)
    kind = r.get(b, "kind", str, "build.kind", required=True)
    if kind not in BUILD_KINDS:
        raise r.fail("build.kind", f"expected one of {list(BUILD_KINDS)}, got {kind!r}")
    constructor = r.get(b, "constructor", str, "build.constructor")
    if kind == "keras-application" and not constructor:
        raise r.fail("build.constructor", "is required for keras-application")
    if constructor is not None and not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", constructor):
        raise r.fail("build.constructor", f"expected a bare constructor name, got {constructor!r}")
    kwargs = r.get(b, "kwargs", dict, "build.kwargs", default={})
    for banned in ("include_top", "weights", "input_tensor"):
        if banned in kwargs:
            raise r.fail(f"build.kwargs.{banned}", "is chosen by modelzoo; remove it")
    shape = _input_shape(r, inp.get("shape"), kind, min_size)
    given = kwargs.get("input_shape")
    if given is not None and (not isinstance(given, list) or given != list(shape)):
        raise r.fail(
            "build.kwargs.input_shape",
            f"must equal input.shape {list(shape)} (the shape loading builds), got {given!r}",
        )
    unknown = set(b) - {"kind", "constructor", "kwargs"}
    if unknown:
        raise r.fail("build", f"unknown keys {sorted(unknown)}")

    arts = r.get(data, "artifacts", dict, "artifacts", required=True)
    if not arts:
        raise r.fail("artifacts", "must name at least one artifact")
    artifacts = {}
    for variant, art in arts.items():
        if not NAME_RE.fullmatch(variant):
            raise r.fail(f"artifacts.{variant}", "invalid variant name")
        artifacts[variant] = _artifact(r, variant, art, kind)

    cuts = []
    for i, cp in enumerate(r.get(data, "cut_points", list, "cut_points", default=[])):
        path = f"cut_points[{i}]"
        if not isinstance(cp, dict):
            raise r.fail(path, "expected an object")
        unknown = set(cp) - {"layer", "shape", "variant", "note"}
        if unknown:
            raise r.fail(
                path, f"unknown keys {sorted(unknown)} (known: layer, shape, variant, note)"
            )
        layer = r.get(cp, "layer", str, f"{path}.layer", required=True)
        cshape = cp.get("shape")
        cshape = _shape(r, cshape, f"{path}.shape") if cshape is not None else None
        cvariant = r.get(cp, "variant", str, f"{path}.variant")
        if cvariant is not None and cvariant not in artifacts:
            raise r.fail(f"{path}.variant", f"no artifact {cvariant!r} in this manifest")
        note = r.get(cp, "note", str, f"{path}.note")
        cuts.append(CutPoint(layer, cshape, cvariant, note))

    tags = r.get(data, "tags", list, "tags", default=[])
    if not all(isinstance(t, str) for t in tags):
        raise r.fail("tags", "expected a list of strings")
    labels = data.get("labels")
    names_ok = isinstance(labels, list) and all(isinstance(x, str) for x in labels)
    if labels is not None and labels != "imagenet" and not names_ok:
        raise r.fail("labels", "expected 'imagenet', a list of class names, or null")

    return Manifest(
        name=name,
        version=version,
        summary=r.get(data, "summary", str, "summary", required=True),
        input=InputSpec(shape, min_size, dtype, pre),
        build=BuildSpec(kind, constructor, dict(kwargs)),
        artifacts=artifacts,
        family=r.get(data, "family", str, "family", default=""),
        task=r.get(data, "task", str, "task", default="image-classification"),
        license=r.get(data, "license", str, "license", default="unknown"),
        tags=tuple(tags),
        paper=r.get(data, "paper", str, "paper"),
        homepage=r.get(data, "homepage", str, "homepage"),
        labels=labels,
        cut_points=tuple(cuts),
        notes=r.get(data, "notes", str, "notes"),
        golden=_golden(r, data.get("golden"), shape, {c.layer for c in cuts}),
        source=source,
        raw=data,
    )


def load_manifest(path: str | Path) -> Manifest:
    """Read and validate the manifest file at ``path``.

    Raises:
        ManifestError: when the file is unreadable, not JSON, or invalid.
    """
    path = Path(path)
    try:
        data = files.read(path)
    except OSError as exc:
        raise ManifestError(f"cannot read: {exc.strerror or exc}", source=str(path)) from exc
    except files.InvalidJSONError as exc:
        raise ManifestError(f"{exc.reason}; a manifest is a JSON file", source=str(path)) from None
    return parse_manifest(data, source=str(path))
