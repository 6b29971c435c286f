"""Golden outputs: what a published model must compute for a seeded input.

A hash proves the weight bytes are the published ones; it cannot tell whether the model
built around them is. A wrong constructor kwarg, a changed preprocessing mode or a
converter bug all load without complaint and then compute something else. A manifest's
``golden`` field (schema in :mod:`modelzoo.hub.manifest`) records a seeded input and a few
numbers per output (shape, mean, standard deviation, values at fixed positions), at the
top and at each listed cut point; :func:`verify_outputs` computes them again and
compares.

The input is generated in the raw 0-255 pixel domain and the manifest's preprocessing is
applied to it, exactly as :func:`modelzoo.models.preprocessing.preprocess` does for a caller's
images, so a flipped mode (``tf`` vs ``torch``) changes every output. Tolerances are
``|actual - expected| <= atol + rtol * |expected|``, with ``atol`` a thousandth of the
output's standard deviation and ``rtol`` 1e-3: float32 results on different CPUs (other
summation orders, SIMD widths) stay well inside; any change to the computation does not.

Outputs are computed the way users get them: ``top`` with :func:`modelzoo.load` on the
default artifact, a cut with the artifact ``load(name, cut=layer)`` picks (the smaller
``notop`` file for cuts inside it), one load per artifact.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import UsageError
from ..hub.manifest import Golden, GoldenInput, GoldenOutput, Manifest

__all__ = [
    "OutputCheck",
    "GoldenReport",
    "golden_input",
    "input_spec",
    "summarize",
    "record",
    "compute",
    "run",
    "compare",
    "verify_outputs",
    "RTOL",
    "ATOL_PER_STD",
    "SAMPLES",
]

logger = logging.getLogger(__name__)

#: Relative tolerance recorded with new golden outputs.
RTOL = 1e-3
#: Each output's absolute tolerance is this fraction of its standard deviation.
ATOL_PER_STD = 1e-3
#: Values stored per output, at evenly spaced flat positions.
SAMPLES = 32
#: Examples in a new golden input (two: a batch, still cheap for the largest models).
BATCH = 2


@dataclass(frozen=True)
class OutputCheck:
    """One golden output compared.

    Attributes:
        output: ``top`` or the cut layer.
        ok: within tolerance everywhere.
        max_abs_diff: the largest ``|actual - expected|`` (among the numbers outside
            their tolerance, when any are), at ``where``; ``inf`` for a shape mismatch
            or a NaN.
        tolerance: the tolerance at ``where``.
        where: ``values[i]``, ``mean``, ``std`` or ``shape``.
        message: one line for people.
    """

    output: str
    ok: bool
    max_abs_diff: float
    tolerance: float
    where: str
    message: str

    def to_dict(self) -> dict[str, Any]:
        diff = self.max_abs_diff
        return {
            "output": self.output,
            "ok": self.ok,
            "max_abs_diff": diff if math.isfinite(diff) else None,
            "tolerance": self.tolerance,
            "where": self.where,
            "message": self.message,
        }


@dataclass(frozen=True)
class GoldenReport:
    """Every golden output of one model, compared in one runtime (``keras``, ``tfjs``)."""

    spec: str
    runtime: str
    checks: tuple[OutputCheck, ...]

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def failures(self) -> tuple[OutputCheck, ...]:
        return tuple(c for c in self.checks if not c.ok)


# ------------------------------------------------------------------------- recording


def golden_input(spec: GoldenInput) -> np.ndarray:
    """The golden input: ``RandomState(seed).uniform(low, high, shape)`` as float32.

    ``RandomState`` streams are frozen by NumPy's compatibility policy, so every machine
    and NumPy release makes the same array.
    """
    if spec.generator != "uniform":
        raise UsageError(f"Unknown golden input generator {spec.generator!r}; valid: uniform.")
    rng = np.random.RandomState(spec.seed)
    return rng.uniform(spec.low, spec.high, spec.shape).astype(np.float32)


def input_spec(
    input_shape: Sequence[int | None],
    *,
    seed: int = 0,
    batch: int = BATCH,
    low: float = 0.0,
    high: float = 255.0,
) -> dict[str, Any]:
    """A golden ``input`` document: raw 0-255 pixels (before preprocessing) by default."""
    dims = list(input_shape)
    if not dims or any(d is None for d in dims):
        raise UsageError(
            f"Golden outputs need a fixed input shape. Received: input_shape={dims!r}."
        )
    return {
        "generator": "uniform",
        "seed": seed,
        "shape": [batch, *dims],
        "low": low,
        "high": high,
    }


def _short(value: float, digits: int = 7) -> float:
    return float(f"{value:.{digits}g}")


def summarize(array: Any, cut: str | None, *, samples: int = SAMPLES) -> dict[str, Any]:
    """A golden ``outputs`` entry for one computed output.

    Raises:
        UsageError: the output holds NaN or infinity (nothing stable to record).
    """
    a = np.asarray(array)
    flat = a.astype(np.float64).ravel()
    if flat.size == 0 or not np.all(np.isfinite(flat)):
        raise UsageError(
            f"Output {cut or 'top'} of the golden input is empty or not finite; "
            "cannot record golden outputs for it. Publish without them (--no-golden, "
            "golden=False)."
        )
    indices = np.unique(np.linspace(0, flat.size - 1, min(flat.size, samples)).round())
    indices = indices.astype(np.int64)
    std = float(flat.std())
    return {
        "cut": cut,
        "shape": [int(d) for d in a.shape],
        "mean": _short(float(flat.mean())),
        "std": _short(std),
        # rounded up: a tolerance must never shrink in the writing
        "atol": _short(max(std * ATOL_PER_STD, 1e-7) * 1.05, 2),
        "indices": [int(i) for i in indices],
        "values": [_short(float(flat[i])) for i in indices],
    }


def _forward(model, x: np.ndarray, cuts: Sequence[str], *, top: bool) -> dict[str | None, Any]:
    """Outputs of ``model`` (``None`` key) and of its layers ``cuts`` for input ``x``."""
    from .slicing import slice

    out: dict[str | None, Any] = {}
    if top:
        out[None] = np.asarray(model(x, training=False))
    if cuts:
        sliced = slice(model, list(cuts))
        values = sliced(x, training=False)
        values = values if isinstance(values, list | tuple) else [values]
        for cut, value in zip(cuts, values, strict=True):
            out[cut] = np.asarray(value)
    return out


def _preprocessed(x: np.ndarray, mode: str) -> np.ndarray:
    from .preprocessing import preprocess

    return preprocess(x, mode)


def record(
    model,
    *,
    preprocessing: str,
    cuts: Sequence[str] = (),
    seed: int = 0,
    batch: int = BATCH,
) -> dict[str, Any]:
    """A manifest's ``golden`` document, computed with one loaded model (``publish``).

    Args:
        model: a single-input model with a fixed input shape.
        preprocessing: the manifest's ``input.preprocessing`` mode.
        cuts: cut-point layers to record besides the top output.
        seed, batch: the golden input's seed and batch size.
    """
    spec = input_spec(model.input_shape[1:], seed=seed, batch=batch)
    x = _preprocessed(golden_input(_as_input(spec)), preprocessing)
    top = not isinstance(model.output, list | tuple)
    if not top:
        logger.info("%s has several outputs; golden outputs cover its cut points only", model.name)
    outputs = _forward(model, x, list(dict.fromkeys(cuts)), top=top)
    if not outputs:
        raise UsageError(
            f"{model.name!r} has several outputs and no cut points: nothing to record."
        )
    return _document(spec, outputs)


def _as_input(spec: Mapping[str, Any]) -> GoldenInput:
    return GoldenInput(
        spec["generator"],
        spec["seed"],
        tuple(spec["shape"]),
        float(spec["low"]),
        float(spec["high"]),
    )


def _document(spec: dict[str, Any], outputs: Mapping[str | None, Any]) -> dict[str, Any]:
    entries = [summarize(outputs[None], None)] if None in outputs else []
    entries += [summarize(value, cut) for cut, value in outputs.items() if cut is not None]
    return {"input": spec, "rtol": RTOL, "outputs": entries}


def _variant_groups(manifest: Manifest, cuts: Sequence[str | None]) -> dict[str, list]:
    """Which artifact each output is computed with: the one ``load`` would pick."""
    from .loading import choose_variant

    groups: dict[str, list] = {}
    for cut in cuts:
        groups.setdefault(choose_variant(manifest, cut), []).append(cut)
    return groups


def _measure(
    manifest: Manifest,
    x_raw: np.ndarray,
    cuts: Sequence[str | None],
    *,
    trust_remote_code: bool = False,
) -> dict[str | None, np.ndarray]:
    from .loading import load

    x = _preprocessed(x_raw, manifest.input.preprocessing)
    out: dict[str | None, np.ndarray] = {}
    for variant, group in _variant_groups(manifest, cuts).items():
        kwargs: dict[str, Any] = {}
        if manifest.build.kind == "keras-application":
            kwargs["include_top"] = variant == "full"
        model = load(manifest.spec, trust_remote_code=trust_remote_code, **kwargs)
        layers = [c for c in group if c is not None]
        out.update(_forward(model, x, layers, top=None in group))
        del model
    return out


def compute(
    name: str,
    *,
    version: str | None = None,
    seed: int = 0,
    batch: int = BATCH,
    trust_remote_code: bool = False,
) -> dict[str, Any]:
    """A ``golden`` document for a registry model, computed through :func:`modelzoo.load`.

    Records the top output and every listed cut point (``scripts/gen_golden.py``).
    """
    from ..hub.project import resolve_in_context

    manifest = resolve_in_context(name, version=version).manifest
    spec = input_spec(manifest.input.shape, seed=seed, batch=batch)
    cuts: list[str | None] = [None, *dict.fromkeys(c.layer for c in manifest.cut_points)]
    outputs = _measure(
        manifest, golden_input(_as_input(spec)), cuts, trust_remote_code=trust_remote_code
    )
    return _document(spec, {c: outputs[c] for c in cuts})


def _require_golden(manifest: Manifest) -> Golden:
    if manifest.golden is None:
        raise UsageError(
            f"{manifest.spec} carries no golden outputs, so there is nothing to compare. "
            "Publishing with `modelzoo publish` records them; registry maintainers add them "
            "with scripts/gen_golden.py."
        )
    return manifest.golden


def run(manifest: Manifest, *, trust_remote_code: bool = False) -> dict[str | None, np.ndarray]:
    """Compute every golden output of ``manifest`` (installing its artifacts if needed)."""
    golden = _require_golden(manifest)
    return _measure(
        manifest,
        golden_input(golden.input),
        [o.cut for o in golden.outputs],
        trust_remote_code=trust_remote_code,
    )


# ------------------------------------------------------------------------- comparing


_HINTS = {
    "keras": "the model built from this manifest (build.kwargs, input.preprocessing, "
    "weights) is not the one the golden outputs were recorded with",
    "tfjs": "the TF.js export computes differently from Keras (a converter bug: please report it)",
}


def _check_one(
    expected: GoldenOutput, actual: Any, rtol: float, *, spec: str, runtime: str, scale: float
) -> OutputCheck:
    label = expected.label
    a = np.asarray(actual, dtype=np.float64)
    if tuple(a.shape) != expected.shape:
        return OutputCheck(
            label,
            False,
            math.inf,
            0.0,
            "shape",
            f"{spec} {label}: output shape {list(a.shape)} in {runtime} differs from the "
            f"golden {list(expected.shape)}; check the manifest's build.kwargs and input.shape.",
        )
    flat = a.ravel()
    names = ["mean", "std", *(f"values[{i}]" for i in expected.indices)]
    got = np.array([flat.mean(), flat.std(), *flat[list(expected.indices)]])
    want = np.array([expected.mean, expected.std, *expected.values])
    diff = np.abs(got - want)
    tol = scale * (expected.atol + rtol * np.abs(want))
    diff = np.where(np.isnan(diff), np.inf, diff)
    outside = ~(diff <= tol)
    ok = not outside.any()
    # the largest difference: among the values outside their tolerance when any are
    worst = int(np.argmax(np.where(outside, diff, -1.0) if not ok else diff))
    d, t = float(diff[worst]), float(tol[worst])
    rule = f"atol {expected.atol:.2g} + rtol {rtol:.2g} x |expected|"
    if scale != 1:
        rule = f"({rule}) x {scale:g}"
    if ok:
        message = (
            f"{spec} {label}: ok in {runtime} (max |Δ| {d:.3g} at {names[worst]}, "
            f"tolerance {t:.3g})"
        )
    else:
        message = (
            f"{spec} {label}: max |Δ| {d:.3g} at {names[worst]} exceeds the tolerance "
            f"{t:.3g} ({rule}) in {runtime}; {_HINTS.get(runtime, _HINTS['keras'])}"
        )
    return OutputCheck(label, ok, d, t, names[worst], message)


def compare(
    golden: Golden,
    actual: Mapping[str | None, Any],
    *,
    spec: str,
    runtime: str = "keras",
    scale: float = 1.0,
) -> GoldenReport:
    """Compare computed outputs (keyed by cut, ``None`` for the top) with ``golden``.

    Outputs missing from ``actual`` are not checked (an export checks only its top).

    Args:
        scale: multiplies every tolerance (float16 exports store rounded weights).
    """
    checks = tuple(
        _check_one(o, actual[o.cut], golden.rtol, spec=spec, runtime=runtime, scale=scale)
        for o in golden.outputs
        if o.cut in actual
    )
    return GoldenReport(spec, runtime, checks)


def verify_outputs(
    name: str, *, version: str | None = None, trust_remote_code: bool = False
) -> GoldenReport:
    """Run a registry model on its golden input and compare every golden output.

    Installs the artifacts it needs, like :func:`modelzoo.load`.

    Raises:
        UsageError: the manifest carries no golden outputs.
        ModelFileError: the weights do not fit the architecture the manifest builds
            (e.g. a changed ``alpha``), so nothing could be computed.
    """
    from ..hub.project import resolve_in_context

    manifest = resolve_in_context(name, version=version).manifest
    golden = _require_golden(manifest)
    actual = run(manifest, trust_remote_code=trust_remote_code)
    return compare(golden, actual, spec=manifest.spec)
