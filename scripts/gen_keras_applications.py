"""Generate the bundled registry's Keras Applications manifests from the reference table.

The reference (``tests/data/keras_applications_weights.json``, read from the tf-keras
source; see ``/work/shared/reference/README.md``) has one entry per weight file: 246
entries, two per model (``include_top`` True and False). This script turns each pair into
``registry/models/<name>/1.0.0/manifest.json`` and rebuilds ``registry/index.json``.
Output is deterministic: running it twice changes nothing.

Cut-point shapes come from building each no-top model with ``weights=None`` at its
default input size (TensorFlow, in a worker subprocess; a few minutes once). By default
shapes already present in the manifests are reused and only missing ones are computed.

Usage::

    python scripts/gen_keras_applications.py                  # manifests + index.json
    python scripts/gen_keras_applications.py --shapes compute # rebuild every model (slow)
    python scripts/gen_keras_applications.py --shapes none    # never import TensorFlow
    python scripts/gen_keras_applications.py --index-only     # only rebuild index.json
    python scripts/gen_keras_applications.py --check          # exit 1 if files are stale
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # run from a checkout without installing

from modelzoo.hub.index import MANIFEST_FILE, MODELS_DIR, dumps_index  # noqa: E402
from modelzoo.hub.index import build_index as _build_index  # noqa: E402
from modelzoo.hub.manifest import parse_manifest  # noqa: E402

DEFAULT_REFERENCE = REPO / "tests" / "data" / "keras_applications_weights.json"
DEFAULT_REGISTRY = REPO / "registry"
VERSION = "1.0.0"
HOMEPAGE = "https://keras.io/api/applications/"

PAPERS = {
    "Xception": "https://arxiv.org/abs/1610.02357",
    "VGG": "https://arxiv.org/abs/1409.1556",
    "ResNet": "https://arxiv.org/abs/1512.03385",
    "ResNetV2": "https://arxiv.org/abs/1603.05027",
    "InceptionV3": "https://arxiv.org/abs/1512.00567",
    "InceptionResNetV2": "https://arxiv.org/abs/1602.07261",
    "MobileNet": "https://arxiv.org/abs/1704.04861",
    "MobileNetV2": "https://arxiv.org/abs/1801.04381",
    "MobileNetV3": "https://arxiv.org/abs/1905.02244",
    "DenseNet": "https://arxiv.org/abs/1608.06993",
    "NASNet": "https://arxiv.org/abs/1707.07012",
    "EfficientNet": "https://arxiv.org/abs/1905.11946",
    "EfficientNetV2": "https://arxiv.org/abs/2104.00298",
    "ConvNeXt": "https://arxiv.org/abs/2201.03545",
    "RegNet": "https://arxiv.org/abs/2003.13678",
    "ResNetRS": "https://arxiv.org/abs/2103.07579",
}
MOBILE_FAMILIES = {"MobileNet", "MobileNetV2", "MobileNetV3"}
PREPROCESSING = {"caffe": "caffe", "tf": "tf", "torch": "torch", "built-in rescaling": "builtin"}
IMAGENET_21K = {"ConvNeXtBase", "ConvNeXtLarge", "ConvNeXtXLarge"}
LICENSE_NOTE = (
    "Licence: the Keras Applications code is Apache-2.0; the weights come from the original "
    "authors' release and their terms apply."
)

_FIXED_NAMES = {
    "Xception": ("xception", "Xception"),
    "VGG16": ("vgg16", "VGG16"),
    "VGG19": ("vgg19", "VGG19"),
    "InceptionV3": ("inception_v3", "Inception v3"),
    "InceptionResNetV2": ("inception_resnet_v2", "Inception-ResNet v2"),
    "NASNetMobile": ("nasnet_mobile", "NASNet Mobile"),
    "NASNetLarge": ("nasnet_large", "NASNet Large"),
}
_PATTERNS = [  # constructor regex -> (name, display) from the match groups
    (r"ResNet(\d+)", lambda g: (f"resnet{g[0]}", f"ResNet-{g[0]}")),
    (r"ResNet(\d+)V2", lambda g: (f"resnet{g[0]}_v2", f"ResNet-{g[0]} v2")),
    (r"DenseNet(\d+)", lambda g: (f"densenet{g[0]}", f"DenseNet-{g[0]}")),
    (r"EfficientNetB(\d)", lambda g: (f"efficientnet_b{g[0]}", f"EfficientNet-B{g[0]}")),
    (
        r"EfficientNetV2(B\d|S|M|L)",
        lambda g: (f"efficientnet_v2_{g[0].lower()}", f"EfficientNetV2-{g[0]}"),
    ),
    (
        r"ConvNeXt(Tiny|Small|Base|Large|XLarge)",
        lambda g: (f"convnext_{g[0].lower()}", f"ConvNeXt {g[0]}"),
    ),
    (r"RegNet([XY])(\d{3})", lambda g: (f"regnet{g[0].lower()}_{g[1]}", f"RegNet{g[0]} {g[1]}")),
]


def _alpha(value: float) -> str:
    return repr(float(value))  # 0.25 -> "0.25", 1 -> "1.0": the spelling Keras file names use


def _weights_resolution(entry: dict) -> int:
    match = re.fullmatch(r"imagenet-i(\d+)", entry["kwargs"]["weights"])
    if not match:
        raise SystemExit(f"unexpected ResNetRS weights {entry['kwargs']['weights']!r}")
    return int(match.group(1))


def name_and_display(entry: dict) -> tuple[str, str]:
    """The model name and a human-readable architecture label for one reference entry."""
    ctor, kw = entry["constructor"], entry["kwargs"]
    if ctor == "MobileNet":
        rows = kw["input_shape"][0]
        return f"mobilenet_v1_{_alpha(kw['alpha'])}_{rows}", f"MobileNet v1, alpha {kw['alpha']}"
    if ctor == "MobileNetV2":
        rows = kw["input_shape"][0]
        return f"mobilenet_v2_{_alpha(kw['alpha'])}_{rows}", f"MobileNet v2, alpha {kw['alpha']}"
    if ctor in ("MobileNetV3Small", "MobileNetV3Large"):
        size = ctor[len("MobileNetV3") :].lower()
        mini = "_minimalistic" if kw["minimalistic"] else ""
        label = f"MobileNet v3 {size.title()}{' minimalistic' if mini else ''}, alpha {kw['alpha']}"
        return f"mobilenet_v3_{size}{mini}_{_alpha(kw['alpha'])}_224", label
    if entry["family"] == "ResNetRS":
        depth = ctor[len("ResNetRS") :]
        res = _weights_resolution(entry)
        return f"resnetrs_{depth}_i{res}", f"ResNet-RS-{depth} trained at {res}x{res}"
    if ctor in _FIXED_NAMES:
        return _FIXED_NAMES[ctor]
    for pattern, rule in _PATTERNS:
        match = re.fullmatch(pattern, ctor)
        if match:
            return rule(match.groups())
    raise SystemExit(f"no naming rule for constructor {ctor!r}; add one to {__file__}")


def fallback_cut_layer(entry: dict) -> tuple[str, str]:
    """For entries whose ``cut_layer`` is null: the nearest named layer and why."""
    ctor, family = entry["constructor"], entry["family"]
    if family == "MobileNetV3":
        act = "ReLU" if entry["kwargs"]["minimalistic"] else "hard-swish"
        return "Conv_1/BatchNorm", (
            f"Nearest named layer: the final {act} activation is unnamed in the source, so this "
            "is its input (batch-normalised, not yet activated). For the activated features use "
            "the whole notop model, which ends in that activation."
        )
    if family == "NASNet":
        layer = {"NASNetMobile": "normal_concat_12", "NASNetLarge": "normal_concat_18"}[ctor]
        return layer, (
            "Nearest named layer: the final ReLU is unnamed in the source, so this is its input "
            "(the last cell's output, not yet activated). For the activated features use the "
            "whole notop model, which ends in that ReLU."
        )
    if family == "ConvNeXt":
        model = "convnext_" + ctor[len("ConvNeXt") :].lower()
        return f"{model}_stage_3_block_2_identity", (
            "Nearest named layer: the last block ends in an unnamed residual addition, so this is "
            "the layer-scale output inside that block, before the residual connection is added. "
            "For complete features use the whole notop model (it ends in an unnamed "
            "LayerNormalization)."
        )
    raise SystemExit(f"{ctor}: cut_layer is null and no fallback rule exists")


def _sentences(text: str | None) -> list[str]:
    if not text:
        return []
    return [s.strip() for s in re.split(r"(?<=[.!?])\s+(?=[A-Z'(])", text) if s.strip()]


def merge_notes(*notes: str | None) -> str:
    """Union of the sentences of several notes, in first-seen order."""
    seen: list[str] = []
    for note in notes:
        for sentence in _sentences(note):
            if sentence not in seen:
                seen.append(sentence)
    return " ".join(seen)


def is_unverified_upstream(entry: dict) -> bool:
    """MobileNetV2 alpha 1.3/1.4 below 224: the source builds the URL, its table omits it."""
    kw = entry["kwargs"]
    return (
        entry["constructor"] == "MobileNetV2"
        and kw["alpha"] in (1.3, 1.4)
        and kw["input_shape"][0] != 224
    )


def _artifact(entry: dict) -> dict:
    digest = f"{entry['hash_algorithm']}:{entry['hash']}" if entry["hash"] else None
    return {
        "url": entry["url"],
        "mirrors": [],
        "hash": digest,
        "size": None,
        "format": "h5-weights",
        "file_name": entry["file_name"],
    }


def make_manifest(full: dict, notop: dict, shape: list | None) -> dict:
    """The manifest document for one model, from its two reference entries."""
    name, display = name_and_display(full)
    family, ctor = full["family"], full["constructor"]
    input_shape = list(full["input_shape"])
    rows, cols = input_shape[0], input_shape[1]
    kwargs = {k: v for k, v in full["kwargs"].items() if k not in ("include_top", "weights")}
    # Most constructors default to (None, None, 3): state the size loading builds at, so
    # the cut points have the static shapes listed below (a Dense head needs them).
    kwargs["input_shape"] = input_shape

    weights = "ImageNet-1k weights"
    if ctor in IMAGENET_21K:
        weights = "ImageNet-21k pre-trained, ImageNet-1k fine-tuned weights"
    if family == "ResNetRS":
        summary = f"{display} (input {rows}x{cols}), {weights} (Keras Applications)"
    else:
        summary = f"{display}, {rows}x{cols}, {weights} (Keras Applications)"

    tags = [family.lower(), "imagenet", "keras-applications"]
    if family == "RegNet":
        tags.append(name.split("_")[0])  # regnetx / regnety
    if family in MOBILE_FAMILIES or ctor == "NASNetMobile":
        tags.append("mobile")
    if family == "MobileNetV3" and full["kwargs"]["minimalistic"]:
        tags.append("minimalistic")
    if ctor in IMAGENET_21K:
        tags.append("imagenet-21k")
    if is_unverified_upstream(full):
        tags.append("unverified-upstream")

    layer = full["cut_layer"]
    if layer is not None:
        if family == "VGG":
            cut_note = (
                "Last convolution before the classifier (VGG has no global pooling); inside "
                "the notop graph, which continues to 'block5_pool'."
            )
        else:
            cut_note = "Last activation before global pooling; inside the notop graph."
    else:
        layer, cut_note = fallback_cut_layer(full)

    extra = []
    if family == "MobileNetV3":
        extra.append(
            "input.shape [224, 224, 3] is the size the weights were trained at; "
            "build.kwargs.input_shape makes loading build at it (the constructor alone "
            "builds with input shape (None, None, 3))."
        )
    if family == "ResNetRS":
        res = _weights_resolution(full)
        extra.append(
            f"These are the weights Keras selects with weights='imagenet-i{res}'. modelzoo "
            "builds with weights=None and loads this file, so the training resolution is "
            "carried by the model name, not by a constructor argument."
        )
    if ctor in IMAGENET_21K:
        extra.append("Pre-trained on ImageNet-21k, then fine-tuned on ImageNet-1k.")
    if is_unverified_upstream(full):
        extra.append(
            "Unverified upstream: this alpha/size pair is missing from the Keras MobileNetV2 "
            "table, so the file may not exist on the server."
        )
    extra.append(f"Preprocessing: {full['preprocessing_detail']}.")
    extra.append(LICENSE_NOTE)
    src = full["source"]
    extra.append(
        f"Facts from {src['repo']} {src['path']} at commit {src['commit']}; "
        "no weight file was downloaded to build this manifest."
    )

    return {
        "schema_version": 1,
        "name": name,
        "version": VERSION,
        "family": family,
        "summary": summary,
        "task": "image-classification",
        "license": "Apache-2.0",
        "tags": tags,
        "paper": PAPERS[family],
        "homepage": HOMEPAGE,
        "input": {
            "shape": input_shape,
            "min_size": full["min_size"],
            "dtype": "float32",
            "preprocessing": PREPROCESSING[full["preprocessing"]],
        },
        "labels": "imagenet",
        "build": {"kind": "keras-application", "constructor": ctor, "kwargs": kwargs},
        "artifacts": {"full": _artifact(full), "notop": _artifact(notop)},
        "cut_points": [{"layer": layer, "shape": shape, "variant": "notop", "note": cut_note}],
        "notes": merge_notes(full["notes"], notop["notes"], " ".join(extra)),
    }


def pair_entries(reference: list[dict]) -> list[tuple[dict, dict]]:
    """Group the reference into (include_top=True, include_top=False) pairs, in order."""
    pairs: dict[str, dict[bool, dict]] = {}
    for entry in reference:
        kw = {k: v for k, v in entry["kwargs"].items() if k != "include_top"}
        key = json.dumps([entry["constructor"], kw], sort_keys=True)
        slot = pairs.setdefault(key, {})
        if entry["include_top"] in slot:
            raise SystemExit(f"duplicate reference entry {key} include_top={entry['include_top']}")
        slot[entry["include_top"]] = entry
    out = []
    for key, slot in pairs.items():
        if set(slot) != {True, False}:
            raise SystemExit(f"reference entry {key} lacks its full/notop partner")
        out.append((slot[True], slot[False]))
    return out


def _probe_job(manifest: dict) -> dict:
    return {
        "name": manifest["name"],
        "constructor": manifest["build"]["constructor"],
        "kwargs": manifest["build"]["kwargs"],
        "input_shape": manifest["input"]["shape"],
        "layer": manifest["cut_points"][0]["layer"],
    }


def probe_worker() -> None:
    """Worker mode: read jobs (JSON lines) on stdin, build each notop model, print results."""
    import gc

    from modelzoo import backend

    keras = backend.keras()
    for line in sys.stdin:
        job = json.loads(line)
        kwargs = dict(job["kwargs"])
        kwargs["input_shape"] = tuple(job["input_shape"])
        ctor = getattr(keras.applications, job["constructor"])
        model = ctor(include_top=False, weights=None, **kwargs)
        names = [layer.name for layer in model.layers]
        result = {"name": job["name"], "found": job["layer"] in names, "last": names[-1]}
        if result["found"]:
            result["shape"] = model.get_layer(job["layer"]).output.shape.as_list()[1:]
        print("RESULT " + json.dumps(result), flush=True)
        del model
        keras.backend.clear_session()
        gc.collect()


def compute_shapes(jobs: list[dict]) -> dict[str, dict]:
    """Run the probe worker over ``jobs``; a crash (e.g. out of memory) skips that model."""
    results: dict[str, dict] = {}
    pending = list(jobs)
    while pending:
        # files, not pipes, for stdin/stderr: TF's chatter cannot fill a pipe and stall us
        with tempfile.TemporaryFile("w+") as stdin, tempfile.TemporaryFile("w+") as errors:
            stdin.write("".join(json.dumps(job) + "\n" for job in pending))
            stdin.seek(0)
            proc = subprocess.Popen(
                [sys.executable, __file__, "--probe-worker"],
                stdin=stdin,
                stdout=subprocess.PIPE,
                stderr=errors,
                text=True,
            )
            for line in proc.stdout:  # stream, so progress shows while models build
                if line.startswith("RESULT "):
                    result = json.loads(line[len("RESULT ") :])
                    results[result["name"]] = result
                    print(
                        f"  [{len(results)}/{len(jobs)}] {result['name']}: {result.get('shape')}",
                        file=sys.stderr,
                        flush=True,
                    )
            proc.wait()
            errors.seek(0)
            stderr = errors.read()
        pending = [job for job in pending if job["name"] not in results]
        if pending and proc.returncode == 0:
            raise SystemExit("probe worker exited without answering every job")
        if pending:
            failed = pending.pop(0)
            tail = stderr.strip().splitlines()[-3:]
            print(f"  {failed['name']}: worker failed, shape left null: {tail}", file=sys.stderr)
            results[failed["name"]] = {"name": failed["name"], "failed": True}
    return results


def _existing_shape(path: Path, layer: str) -> list | None:
    if not path.is_file():
        return None
    cuts = json.loads(path.read_text(encoding="utf-8")).get("cut_points") or []
    return next((c.get("shape") for c in cuts if c.get("layer") == layer), None)


def _existing_golden(path: Path, manifest: dict) -> dict | None:
    """The golden outputs (``scripts/gen_golden.py``) of the manifest on disk, kept when it
    describes the same model: same build, input, artifacts and cut layers."""
    if not path.is_file():
        return None
    old = json.loads(path.read_text(encoding="utf-8"))
    golden = old.get("golden")
    if golden is None:
        return None
    layers = [[c.get("layer") for c in d.get("cut_points") or []] for d in (old, manifest)]
    if layers[0] != layers[1] or any(old.get(k) != manifest[k] for k in _GOLDEN_BASIS):
        print(
            f"{path}: golden outputs dropped (the model changed); run gen_golden.py",
            file=sys.stderr,
        )
        return None
    return golden


#: What golden outputs depend on: a change to any of these drops them.
_GOLDEN_BASIS = ("build", "input", "artifacts")


def _dump(value, indent: str = "") -> str:
    """JSON with 2-space indents, but lists of plain values (shapes, tags) on one line."""
    inner = indent + "  "
    if isinstance(value, dict) and value:
        items = [f"{inner}{json.dumps(k)}: {_dump(v, inner)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + f"\n{indent}}}"
    if isinstance(value, list) and any(isinstance(v, (dict, list)) for v in value):
        return "[\n" + ",\n".join(inner + _dump(v, inner) for v in value) + f"\n{indent}]"
    return json.dumps(value, ensure_ascii=False)


def dumps_manifest(manifest: dict) -> str:
    return _dump(manifest) + "\n"


def generate(
    reference_path: Path, registry: Path, *, reuse: bool = True, compute: bool = True
) -> dict[Path, str]:
    """Return {path: text} for every manifest.

    Cut-point shapes are taken from the manifests on disk when ``reuse`` (and the cut
    layer is unchanged); the others are computed with TensorFlow when ``compute``.
    """
    reference = json.loads(reference_path.read_text(encoding="utf-8"))
    pairs = pair_entries(reference)
    drafts = []
    for full, notop in pairs:
        draft = make_manifest(full, notop, None)
        path = registry / MODELS_DIR / draft["name"] / VERSION / MANIFEST_FILE
        drafts.append((full, notop, path, draft))
    names = [d[3]["name"] for d in drafts]
    if len(set(names)) != len(names):
        raise SystemExit("two reference entries map to the same model name")

    known: dict[str, list | None] = {}
    if reuse:
        for _, _, path, draft in drafts:
            known[draft["name"]] = _existing_shape(path, draft["cut_points"][0]["layer"])
    jobs = [_probe_job(d) for _, _, _, d in drafts if known.get(d["name"]) is None]
    if compute and jobs:
        print(f"building {len(jobs)} notop models to check cut layers...", file=sys.stderr)
        for name, result in compute_shapes(jobs).items():
            if result.get("failed"):
                continue
            if not result["found"]:
                raise SystemExit(
                    f"{name}: cut layer is not in the notop model (its last layer is "
                    f"{result['last']!r}); fix the reference or the fallback rule"
                )
            known[name] = result["shape"]

    out = {}
    for full, notop, path, _ in drafts:
        manifest = make_manifest(full, notop, None)
        manifest["cut_points"][0]["shape"] = known.get(manifest["name"])
        golden = _existing_golden(path, manifest)
        if golden is not None:
            manifest["golden"] = golden
        parse_manifest(manifest, source=str(path))  # never write what we cannot read
        out[path] = dumps_manifest(manifest)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reference", type=Path, default=DEFAULT_REFERENCE)
    parser.add_argument("--registry", type=Path, default=DEFAULT_REGISTRY)
    parser.add_argument(
        "--shapes",
        choices=("reuse", "compute", "none"),
        default="reuse",
        help="reuse shapes in existing manifests and compute missing ones (default), "
        "recompute all, or never import TensorFlow",
    )
    parser.add_argument("--index-only", action="store_true", help="only rebuild index.json")
    parser.add_argument("--check", action="store_true", help="exit 1 if any file is stale")
    parser.add_argument("--probe-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.probe_worker:
        probe_worker()
        return 0
    files: dict[Path, str] = {}
    if not args.index_only:
        files = generate(
            args.reference,
            args.registry,
            reuse=args.shapes != "compute",
            # --check compares with what is committed and must not need TensorFlow
            compute=args.shapes != "none" and not args.check,
        )
    stale = [p for p, t in files.items() if not p.is_file() or p.read_text("utf-8") != t]
    if args.check:
        index_path = args.registry / "index.json"
        if not stale:  # the index is built from the files on disk
            fresh = dumps_index(_build_index(args.registry))
            if not index_path.is_file() or index_path.read_bytes() != fresh:
                stale.append(index_path)
        for path in stale:
            print(f"stale: {path}", file=sys.stderr)
        if stale:
            print("run: python scripts/gen_keras_applications.py", file=sys.stderr)
        return 1 if stale else 0

    for path in stale:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(files[path], encoding="utf-8")
    from modelzoo.hub.index import write_index

    index = write_index(args.registry)
    print(
        f"{len(files)} manifests ({len(stale)} written), index: {index}",
        file=sys.stderr,
    )
    missing = [p.parent.parent.name for p, t in files.items() if '"shape": null' in t]
    if missing:
        print(f"cut-point shape unknown for: {', '.join(sorted(missing))}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
