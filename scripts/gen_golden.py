"""Add golden outputs to a registry's manifests (run by a maintainer with internet access).

For each selected manifest this installs the model's artifacts through modelzoo's own
installer (the URLs in the manifest, hashes checked, into the usual cache), computes
its golden outputs with :func:`modelzoo.models.golden.compute` (a seeded 0-255 input, the
manifest's preprocessing, the top output and every listed cut point, each computed with
the artifact ``modelzoo.load`` picks for it) and writes them into the manifest's
``golden`` field. The index is not touched (it does not list golden outputs).
``scripts/gen_keras_applications.py`` keeps the field when it regenerates a manifest
whose build, input, artifacts and cut layers are unchanged.

Usage::

    python scripts/gen_golden.py                          # Keras Applications manifests
                                                          # that have no golden outputs
    python scripts/gen_golden.py --only 'mobilenet_v1_*'  # a subset (globs)
    python scripts/gen_golden.py --only mobilenet_v1_0.25_32_digits --force
    python scripts/gen_golden.py --registry DIR --all     # every manifest of DIR

Downloads are large (the whole Keras Applications set is ~20 GB); run it in pieces with
``--only`` if the disk is small, and remove the cache afterwards (``modelzoo cache prune``
or ``MODELZOO_HOME=/tmp/...``).
"""

from __future__ import annotations

import argparse
import fnmatch
import gc
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # run from a checkout without installing
sys.path.insert(0, str(Path(__file__).resolve().parent))

from gen_keras_applications import dumps_manifest  # noqa: E402

from modelzoo.hub.manifest import parse_manifest  # noqa: E402

DEFAULT_REGISTRY = REPO / "registry"


def select(registry: Path, only: list[str], *, all_models: bool, force: bool) -> list[Path]:
    """Manifest files to work on, sorted by name."""
    chosen = []
    for path in sorted((registry / "models").glob("*/*/manifest.json")):
        doc = json.loads(path.read_text(encoding="utf-8"))
        if only and not any(fnmatch.fnmatchcase(doc["name"], pattern) for pattern in only):
            continue
        if not (only or all_models) and "keras-applications" not in doc.get("tags", []):
            continue
        if "golden" in doc and not force:
            continue
        chosen.append(path)
    return chosen


def add_golden(path: Path, *, seed: int = 0, batch: int = 2) -> dict:
    """Compute golden outputs for the manifest at ``path`` and write them into it."""
    from modelzoo.models import golden

    doc = json.loads(path.read_text(encoding="utf-8"))
    doc.pop("golden", None)
    doc["golden"] = golden.compute(f"{doc['name']}@{doc['version']}", seed=seed, batch=batch)
    parse_manifest(doc, source=str(path))  # never write what we cannot read
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(dumps_manifest(doc), encoding="utf-8")
    os.replace(tmp, path)
    return doc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--registry", type=Path, default=DEFAULT_REGISTRY)
    parser.add_argument("--only", action="append", default=[], metavar="GLOB")
    parser.add_argument(
        "--all",
        dest="all_models",
        action="store_true",
        help="every manifest, not only the keras-applications ones",
    )
    parser.add_argument("--force", action="store_true", help="recompute existing golden outputs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch", type=int, default=2)
    args = parser.parse_args(argv)

    registry = args.registry.resolve()
    # This registry answers first, so names resolve to the manifests being edited.
    os.environ["MODELZOO_REGISTRY"] = str(registry)
    paths = select(registry, args.only, all_models=args.all_models, force=args.force)
    if not paths:
        print("nothing to do (use --force to recompute existing golden outputs)", file=sys.stderr)
        return 0
    from modelzoo import backend
    from modelzoo.errors import ModelZooError

    failed = []
    for i, path in enumerate(paths, 1):
        name = path.parent.parent.name
        start = time.perf_counter()
        try:
            doc = add_golden(path, seed=args.seed, batch=args.batch)
        except ModelZooError as exc:
            failed.append(name)
            print(f"[{i}/{len(paths)}] {name}: FAILED: {exc}", file=sys.stderr, flush=True)
            continue
        finally:
            backend.keras().backend.clear_session()
            gc.collect()
        outputs = ", ".join(o["cut"] or "top" for o in doc["golden"]["outputs"])
        seconds = time.perf_counter() - start
        print(
            f"[{i}/{len(paths)}] {name}: {outputs} ({seconds:.1f} s)", file=sys.stderr, flush=True
        )
    if failed:
        print(f"failed: {' '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
