"""Screenshot the TF.js demo page (for the README), using real headless Chromium.

Trains a small digits classifier on the bundled data set (a few seconds on CPU), exports
it with ``modelzoo.export.tfjs.export_tfjs(with_demo=True)``, serves the export with a local
``tf.min.js`` on 127.0.0.1 and saves a PNG of the page classifying a held-out digit::

    python scripts/screenshot_demo.py --out docs/tfjs-demo.png

Needs Node.js/npm (to fetch @tensorflow/tfjs once into ~/.cache/modelzoo-tests) and
Chromium (``.ci/browser-deps`` installs it).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from _browser import (  # noqa: E402
    LocalServer,
    chromium_path,
    ensure_tfjs,
    screenshot,
    tfjs_bundle,
    write_png,
)

from modelzoo.backend import keras  # noqa: E402
from modelzoo.export.tfjs import export_tfjs  # noqa: E402
from modelzoo.models.datasets import digits_to_rgb, load_digits  # noqa: E402


def _train_digits():
    k = keras()
    k.utils.set_random_seed(0)
    images, labels = load_digits()
    x = digits_to_rgb(images).astype("float32")  # 32x32 RGB, 0..255
    model = k.Sequential(
        [
            k.Input((32, 32, 3)),
            k.layers.Rescaling(1 / 255.0),
            k.layers.Conv2D(16, 3, activation="relu"),
            k.layers.MaxPooling2D(),
            k.layers.Conv2D(32, 3, activation="relu"),
            k.layers.MaxPooling2D(),
            k.layers.Flatten(),
            k.layers.Dense(10, activation="softmax"),
        ],
        name="digits",
    )
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x[:1500], labels[:1500], epochs=8, batch_size=32, verbose=0)
    _, accuracy = model.evaluate(x[1500:], labels[1500:], verbose=0)
    return model, x[1500:], labels[1500:], accuracy


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("tfjs-demo.png"))
    parser.add_argument("--width", type=int, default=960)
    parser.add_argument("--height", type=int, default=600)
    parser.add_argument("--index", type=int, default=3, help="which held-out digit to show")
    parser.add_argument(
        "--export",
        type=Path,
        default=None,
        help="screenshot an existing export (e.g. modelzoo-demo/web from `modelzoo demo`, "
        "which classifies digits 5-9) instead of training a model here",
    )
    args = parser.parse_args(argv)

    chromium = chromium_path()
    if chromium is None:
        print("Chromium not found: run .ci/browser-deps or set CHROME_BIN", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="modelzoo-demo-") as tmp:
        if args.export is not None:
            from modelzoo.models.datasets import split_digits

            split = split_digits(range(5, 10))
            x_test = digits_to_rgb(split.x_test)
            y_test = split.digits(split.y_test)
            export_dir = args.export
        else:
            model, x_test, y_test, accuracy = _train_digits()
            print(f"digits model: held-out accuracy {accuracy:.3f}")
            export_dir = export_tfjs(
                model,
                Path(tmp) / "export",
                labels=[f"digit {d}" for d in range(10)],
                preprocessing="baked",  # the Rescaling layer is part of the model
                with_demo=True,
            ).out_dir
        sample = np.clip(x_test[args.index], 0, 255).astype(np.uint8)
        write_png(Path(tmp) / "sample.png", sample)
        routes = {
            "/tfjs.min.js": tfjs_bundle(ensure_tfjs()),
            "/sample.png": Path(tmp) / "sample.png",
            "/": export_dir,
        }
        with LocalServer(routes) as server:
            url = f"{server.url}/index.html?backend=cpu&image=/sample.png"
            out = screenshot(chromium, url, args.out, window_size=(args.width, args.height))
    print(f"true label: digit {y_test[args.index]}; screenshot: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
