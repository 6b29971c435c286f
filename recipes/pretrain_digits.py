"""Train the bundled demo model: MobileNet v1 (alpha 0.25, 32x32) on UCI digits 0-4.

This recipe produces ``registry/models/mobilenet_v1_0.25_32_digits/1.0.0/``:
``full.h5`` (the 5-class network's weights), ``notop.h5`` (the same weights without the
classifier) and ``manifest.json`` (sha256 and size of both, cut points, held-out
accuracy). Regenerate them with::

    python recipes/pretrain_digits.py --out registry/models/mobilenet_v1_0.25_32_digits/1.0.0
    python scripts/gen_golden.py --only mobilenet_v1_0.25_32_digits --force   # golden outputs

The data is the UCI 8x8 handwritten digits shipped in ``modelzoo/_data`` (CC BY 4.0),
split by ``modelzoo.models.datasets.split_digits(range(5))``; the held-out test images are never
used for training. Images are enlarged to 32x32 RGB in 0..255 by
``modelzoo.models.datasets.digits_to_rgb`` and fed through MobileNet's own preprocessing (mode
"tf": ``x / 127.5 - 1``), exactly as for the ImageNet MobileNets.

Everything random is seeded (``tf_keras.utils.set_random_seed``, op determinism, numpy
generators for augmentation), so two runs on the same machine train the same weights (on
the machine that made 1.0.0, repeated runs wrote byte-identical files).
Bit-exact reproduction across machines is not promised: it depends on the TensorFlow build
and the CPU's instruction set, and HDF5 files may differ in metadata bytes. The manifest
pins whatever bytes are committed, so a re-run means committing new hashes (and a new
version number if the old files were ever published).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
import time
from pathlib import Path

import numpy as np

from modelzoo import backend
from modelzoo.hub.manifest import parse_manifest
from modelzoo.models.datasets import digits_to_rgb, split_digits

NAME = "mobilenet_v1_0.25_32_digits"
VERSION = "1.0.0"
CLASSES = (0, 1, 2, 3, 4)
ALPHA = 0.25
SIZE = 32
RECIPE = "recipes/pretrain_digits.py"
DEFAULT_OUT = Path(__file__).resolve().parent.parent / "registry/models" / NAME / VERSION
# Cut points listed in the manifest, from deepest to shallowest.
CUTS = {
    "conv_pw_13_relu": "last activation before global pooling; the demo cuts here",
    "conv_pw_11_relu": "2x2 grid, 128 channels: more spatial detail",
    "conv_pw_5_relu": "4x4 grid, 64 channels: earlier, more generic features",
}


def _build(keras, *, include_top: bool):
    kwargs = {"alpha": ALPHA, "input_shape": (SIZE, SIZE, 3), "weights": None}
    if include_top:
        return keras.applications.MobileNet(include_top=True, classes=len(CLASSES), **kwargs)
    return keras.applications.MobileNet(include_top=False, **kwargs)


def _shift(images: np.ndarray, rng: np.random.Generator, max_shift: int) -> np.ndarray:
    """Move each image by up to ``max_shift`` pixels in x and y, filling with background."""
    n, h, w, _ = images.shape
    pad = max_shift
    padded = np.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    dy = rng.integers(0, 2 * pad + 1, size=n)
    dx = rng.integers(0, 2 * pad + 1, size=n)
    out = np.empty_like(images)
    for i in range(n):
        out[i] = padded[i, dy[i] : dy[i] + h, dx[i] : dx[i] + w]
    return out


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _accuracy(model, x: np.ndarray, y: np.ndarray) -> float:
    """Share of ``x`` classified as ``y``, inference mode (calling the model directly
    skips the tf.data machinery ``evaluate`` builds for a few hundred images)."""
    predicted = np.concatenate(
        [np.argmax(model(x[i : i + 256], training=False), axis=-1) for i in range(0, len(x), 256)]
    )
    return float(np.mean(predicted == y))


def train(*, epochs: int, batch_size: int, lr: float, seed: int, max_shift: int):
    """Train the 5-class network.

    Returns:
        (model, held-out accuracy, training accuracy, seconds, n_train, n_test)
    """
    tf, keras = backend.tf(), backend.keras()
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()

    split = split_digits(CLASSES)
    preprocess = keras.applications.mobilenet.preprocess_input
    x_train = digits_to_rgb(split.x_train, SIZE)
    x_test = preprocess(digits_to_rgb(split.x_test, SIZE))
    y_train, y_test = split.y_train, split.y_test

    model = _build(keras, include_top=True)
    steps = epochs * int(np.ceil(len(x_train) / batch_size))
    schedule = keras.optimizers.schedules.CosineDecay(lr, decay_steps=steps, alpha=0.02)
    model.compile(
        optimizer=keras.optimizers.Adam(schedule),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    for epoch in range(epochs):
        x_aug = preprocess(_shift(x_train, rng, max_shift))
        # An explicit dataset with a seeded shuffle: the order is fixed by ``seed``.
        data = (
            tf.data.Dataset.from_tensor_slices((x_aug, y_train))
            .shuffle(len(x_aug), seed=seed + epoch)
            .batch(batch_size)
        )
        hist = model.fit(data, epochs=epoch + 1, initial_epoch=epoch, verbose=0)
        if (epoch + 1) % 10 == 0 or epoch + 1 == epochs:
            acc = _accuracy(model, x_test, y_test)
            print(
                f"epoch {epoch + 1:3d}/{epochs}: loss {hist.history['loss'][-1]:.4f} "
                f"train acc {hist.history['accuracy'][-1]:.4f}  held-out acc {acc:.4f}",
                flush=True,
            )
    seconds = time.perf_counter() - start
    test_acc = _accuracy(model, x_test, y_test)
    train_acc = _accuracy(model, preprocess(x_train), y_train)
    return model, test_acc, train_acc, seconds, len(x_train), len(x_test)


def _notop_copy(keras, full):
    """A no-top MobileNet holding the full network's weights, copied layer by layer."""
    notop = _build(keras, include_top=False)
    copied = 0
    for layer in notop.layers:
        if layer.weights:
            layer.set_weights(full.get_layer(layer.name).get_weights())
            copied += 1
    if copied == 0:  # pragma: no cover - a tf_keras change would break the copy
        raise RuntimeError("no layer weights were copied into the notop model")
    return notop


def _manifest(out: Path, notop, *, stats: dict) -> dict:
    artifacts = {}
    for variant in ("full", "notop"):
        path = out / f"{variant}.h5"
        artifacts[variant] = {
            "url": path.name,
            "mirrors": [],
            "hash": f"sha256:{_sha256(path)}",
            "size": path.stat().st_size,
            "format": "h5-weights",
        }
    cut_points = []
    for layer, note in CUTS.items():
        shape = [int(d) for d in notop.get_layer(layer).output.shape[1:]]
        cut_points.append({"layer": layer, "shape": shape, "variant": "notop", "note": note})
    notes = (
        f"Weights trained by the modelzoo authors with {RECIPE} on the UCI Optical "
        "Recognition of Handwritten Digits data (Alpaydin & Kaynak, 1998, CC BY 4.0; "
        "https://doi.org/10.24432/C50P49), digits 0-4 only, 8x8 images enlarged to 32x32 "
        f"RGB. Trained from scratch on {stats['n_train']} images for {stats['epochs']} epochs "
        f"(batch {stats['batch_size']}, Adam with cosine decay, random shifts up to "
        f"{stats['max_shift']} px, seed {stats['seed']}) in {stats['seconds']:.0f} s wall-clock "
        f"on {stats['cpus']} CPU cores with TensorFlow {stats['tf_version']}. "
        f"Accuracy on the {stats['n_test']} held-out test images of "
        "modelzoo.models.datasets.split_digits(range(5)): "
        f"{stats['test_acc'] * 100:.1f}% (training images: {stats['train_acc'] * 100:.1f}%). "
        "A small demo model for offline use, not a general digit recogniser."
    )
    return {
        "schema_version": 1,
        "name": NAME,
        "version": VERSION,
        "family": "MobileNet",
        "summary": "MobileNet v1, alpha 0.25, 32x32, trained on UCI handwritten digits 0-4 "
        "(offline demo model)",
        "task": "image-classification",
        "license": "CC-BY-4.0",
        "tags": ["digits", "demo", "offline", "mobilenet"],
        "paper": "https://arxiv.org/abs/1704.04861",
        "homepage": "https://archive.ics.uci.edu/dataset/80",
        "input": {
            "shape": [SIZE, SIZE, 3],
            "min_size": SIZE,
            "dtype": "float32",
            "preprocessing": "tf",
        },
        "labels": [str(c) for c in CLASSES],
        "build": {
            "kind": "keras-application",
            "constructor": "MobileNet",
            "kwargs": {"alpha": ALPHA, "input_shape": [SIZE, SIZE, 3], "classes": len(CLASSES)},
        },
        "artifacts": artifacts,
        "cut_points": cut_points,
        "notes": notes,
    }


def _dumps(document: dict) -> str:
    """JSON with two-space indents, short lists of numbers or strings kept on one line."""
    text = json.dumps(document, indent=2)

    def join(match: re.Match) -> str:
        return "[" + re.sub(r",\s+", ", ", match.group(1)) + "]"

    scalar = r'(?:[0-9.]+|"[^"\[\]]*")'
    flat_list = rf"\[\s+({scalar}(?:,\s+{scalar})*)\s+\]"
    return re.sub(flat_list, join, text) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder")
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=5e-3, help="peak learning rate")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-shift", type=int, default=3, help="augmentation, in pixels")
    parser.add_argument(
        "--min-accuracy",
        type=float,
        default=0.95,
        help="refuse to write artifacts below this held-out accuracy",
    )
    args = parser.parse_args(argv)

    tf, keras = backend.tf(), backend.keras()
    model, test_acc, train_acc, seconds, n_train, n_test = train(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        max_shift=args.max_shift,
    )
    print(f"held-out accuracy {test_acc:.4f}, training accuracy {train_acc:.4f}, {seconds:.1f} s")
    if test_acc < args.min_accuracy:
        print(
            f"held-out accuracy {test_acc:.4f} is below --min-accuracy {args.min_accuracy}; "
            "nothing written.",
            file=sys.stderr,
        )
        return 1

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    model.save_weights(str(out / "full.h5"))
    notop = _notop_copy(keras, model)
    notop.save_weights(str(out / "notop.h5"))
    stats = {
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "seed": args.seed,
        "max_shift": args.max_shift,
        "seconds": seconds,
        "tf_version": tf.__version__,
        "cpus": os.cpu_count(),
        "test_acc": test_acc,
        "train_acc": train_acc,
        "n_train": n_train,
        "n_test": n_test,
    }
    manifest = _manifest(out, notop, stats=stats)
    parse_manifest(manifest, source=str(out / "manifest.json"))  # fail before writing
    (out / "manifest.json").write_text(_dumps(manifest), encoding="utf-8")
    for variant, art in manifest["artifacts"].items():
        print(f"{variant}: {art['size']} bytes, {art['hash']}")
    print(f"wrote {out / 'manifest.json'}")
    print(f"record its golden outputs: python scripts/gen_golden.py --only {NAME} --force")
    return 0


if __name__ == "__main__":
    sys.exit(main())
