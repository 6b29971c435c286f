"""Run a TensorFlow.js export in Node.js, the runtime it targets, and check its outputs.

``modelzoo export`` uses this to compare an export with the golden outputs of its
manifest (:mod:`modelzoo.models.golden`) before the export is moved into place: a converter
bug then fails the export instead of shipping a model that computes something else.

Node.js finds ``@tensorflow/tfjs`` in a ``node_modules`` folder listed in ``NODE_PATH``
or in npm's global folder (``npm install -g @tensorflow/tfjs``). The model is read from
disk by a small file loader (``@tensorflow/tfjs`` has none for Node) and run on TF.js's
plain CPU backend, the one every browser has.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ExportError, GoldenMismatchError, UsageError
from ..hub.manifest import Manifest
from ..models.golden import GoldenReport, compare, golden_input

__all__ = [
    "NodeTFJS",
    "find_node_tfjs",
    "predict_in_node",
    "check_golden_tfjs",
    "FLOAT16_TOLERANCE_SCALE",
    "INSTALL_HINT",
    "NODE_LOADER_JS",
]

logger = logging.getLogger(__name__)

#: A float16 export stores rounded weights; its golden tolerances are this much wider.
#: Measured: the digits MobileNet's float16 export moves by 0.97x the float32 tolerance
#: (4.3e-4 on its softmax), a head on its features by 0.4x.
FLOAT16_TOLERANCE_SCALE = 20.0

INSTALL_HINT = (
    "install Node.js (>= 18) and `npm install -g @tensorflow/tfjs` (or point NODE_PATH at "
    "a node_modules folder holding it)"
)


@dataclass(frozen=True)
class NodeTFJS:
    """A Node.js executable and the ``node_modules`` folder holding ``@tensorflow/tfjs``."""

    node: str
    node_modules: Path
    version: str


def _tfjs_version(node_modules: Path) -> str | None:
    try:
        meta = json.loads((node_modules / "@tensorflow" / "tfjs" / "package.json").read_text())
    except (OSError, ValueError):
        return None
    version = meta.get("version") if isinstance(meta, dict) else None
    return version if isinstance(version, str) else None


def _global_node_modules() -> Path | None:
    npm = shutil.which("npm")
    if npm is None:
        return None
    try:
        proc = subprocess.run(
            [npm, "root", "-g"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    root = proc.stdout.strip()
    return Path(root) if proc.returncode == 0 and root else None


def find_node_tfjs() -> NodeTFJS | None:
    """Node.js with ``@tensorflow/tfjs`` (``NODE_PATH`` first, then npm's global folder)."""
    node = shutil.which("node")
    if node is None:
        return None
    candidates = [Path(p) for p in os.environ.get("NODE_PATH", "").split(os.pathsep) if p]
    for folder in [*candidates, _global_node_modules()]:
        if folder is None:
            continue
        version = _tfjs_version(folder)
        if version is not None:
            return NodeTFJS(node, folder, version)
    return None


#: Node.js prelude: ``fs``, ``path``, ``tf`` and ``fromFolder(dir)``, a TF.js IOHandler that
#: reads a layers-model folder from disk (``@tensorflow/tfjs`` has none for Node).
NODE_LOADER_JS = r"""
const fs = require("fs");
const path = require("path");
const tf = require("@tensorflow/tfjs");

function fromFolder(dir) {
  return {
    load: async () => {
      const mj = JSON.parse(fs.readFileSync(path.join(dir, "model.json"), "utf8"));
      const specs = [];
      const chunks = [];
      for (const group of mj.weightsManifest) {
        specs.push(...group.weights);
        for (const p of group.paths) chunks.push(fs.readFileSync(path.join(dir, p)));
      }
      const all = Buffer.concat(chunks);
      return {
        modelTopology: mj.modelTopology,
        weightSpecs: specs,
        weightData: all.buffer.slice(all.byteOffset, all.byteOffset + all.byteLength),
        format: mj.format, generatedBy: mj.generatedBy, convertedBy: mj.convertedBy,
      };
    },
  };
}

"""

# Predicts on one input (raw float32 file) and writes the output as raw float32 + shape.
_SCRIPT = (
    NODE_LOADER_JS
    + r"""
async function main() {
  const job = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
  await tf.setBackend("cpu");
  await tf.ready();
  const model = await tf.loadLayersModel(fromFolder(job.dir));
  const raw = fs.readFileSync(job.input);
  // a copy: a Buffer's offset into its memory need not be a multiple of 4
  const data = new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength));
  const x = tf.tensor(data, job.shape, "float32");
  const y = model.predict(x);
  if (Array.isArray(y)) throw new Error("the export has several outputs; expected one");
  const out = await y.data();
  fs.writeFileSync(process.argv[3], Buffer.from(new Float32Array(out).buffer));
  fs.writeFileSync(process.argv[3] + ".json", JSON.stringify({shape: y.shape}));
}
main().catch((e) => { console.error(String((e && e.message) || e)); process.exit(1); });
"""
)


def predict_in_node(
    folder: str | os.PathLike[str],
    x: np.ndarray,
    *,
    runtime: NodeTFJS | None = None,
    timeout: float = 600.0,
) -> np.ndarray:
    """Load the TF.js export in ``folder`` with TF.js in Node.js and predict on ``x``.

    Raises:
        UsageError: Node.js or ``@tensorflow/tfjs`` is not installed.
        ExportError: TF.js cannot load or run the export (its message, one line).
    """
    runtime = runtime or find_node_tfjs()
    if runtime is None:
        raise UsageError(f"Cannot run the TF.js export: {INSTALL_HINT}.")
    x = np.ascontiguousarray(x, dtype="<f4")
    with tempfile.TemporaryDirectory(prefix="modelzoo-tfjs-") as tmp:
        work = Path(tmp)
        (work / "predict.js").write_text(_SCRIPT, "utf-8")
        (work / "x.bin").write_bytes(x.tobytes())
        job = {"dir": str(Path(folder).resolve()), "input": str(work / "x.bin"), "shape": x.shape}
        (work / "job.json").write_text(json.dumps(job), "utf-8")
        env = dict(os.environ, NODE_PATH=str(runtime.node_modules))
        try:
            proc = subprocess.run(
                [runtime.node, "predict.js", "job.json", "y.bin"],
                capture_output=True,
                text=True,
                timeout=timeout,
                env=env,
                cwd=work,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise ExportError(
                f"TF.js in Node.js did not finish predicting within {timeout:.0f} s."
            ) from None
        if proc.returncode != 0:
            # the last line is the error; TF.js prints a banner about tfjs-node before it
            lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
            detail = lines[-1] if lines else f"exit code {proc.returncode}"
            raise ExportError(f"TF.js {runtime.version} in Node.js cannot run the export: {detail}")
        shape = json.loads((work / "y.bin.json").read_text("utf-8"))["shape"]
        return np.frombuffer((work / "y.bin").read_bytes(), dtype="<f4").reshape(shape)


def check_golden_tfjs(
    folder: str | os.PathLike[str],
    manifest: Manifest,
    *,
    baked: bool,
    scale: float = 1.0,
    runtime: NodeTFJS | None = None,
) -> GoldenReport:
    """Compare the export in ``folder`` with the manifest's golden top output, in Node.js.

    Args:
        folder: a TF.js export of the manifest's whole model (cut points are not exported).
        manifest: the model's manifest, carrying ``golden``.
        baked: the export includes the manifest's preprocessing (``export`` of a registry
            model does); otherwise the golden input is preprocessed here.
        scale: widens every tolerance (:data:`FLOAT16_TOLERANCE_SCALE` for float16).

    Raises:
        GoldenMismatchError: naming the output, max |Δ| and the tolerance.
        UsageError: the manifest carries no golden top output, or Node.js/TF.js is missing.
        ExportError: TF.js cannot run the export.
    """
    golden = manifest.golden
    if golden is None or all(o.cut is not None for o in golden.outputs):
        raise UsageError(f"{manifest.spec} carries no golden top output to check the export with.")
    x = golden_input(golden.input)
    if not baked:
        from ..models.preprocessing import preprocess

        x = preprocess(x, manifest.input.preprocessing)
    y = predict_in_node(folder, x, runtime=runtime)
    report = compare(golden, {None: y}, spec=manifest.spec, runtime="tfjs", scale=scale)
    for check in report.failures:
        raise GoldenMismatchError(
            check.message,
            name=manifest.spec,
            output=check.output,
            runtime="tfjs",
            max_abs_diff=check.max_abs_diff,
            tolerance=check.tolerance,
        )
    logger.info("%s", report.checks[0].message)
    return report
