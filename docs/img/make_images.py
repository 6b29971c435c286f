"""Regenerate the README's "Look inside" pictures from the bundled offline model.

Run from the repository root (about a minute on 2 CPU cores, no network)::

    python docs/img/make_images.py

The feature maps and filters are drawn through the same ``modelzoo`` commands the README
shows; the training curves come from a short TransferLearner run on digits 5-9.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from modelzoo.models.datasets import digits_to_rgb, split_digits

HERE = Path(__file__).resolve().parent
MODEL = "mobilenet_v1_0.25_32_digits"


def modelzoo(*args: str) -> None:
    cmd = [sys.executable, "-m", "modelzoo", *args]
    print("$ modelzoo", " ".join(args), flush=True)
    subprocess.run(cmd, cwd=HERE, check=True)


def digit() -> None:
    # A held-out "3": the pretrained model (digits 0-4) never saw this image.
    split = split_digits(range(5))
    three = split.x_test[split.y_test == 3][0]
    rgb = digits_to_rgb(three[None])[0].astype(np.uint8)
    Image.fromarray(rgb).save(HERE / "digit.png")


def history() -> None:
    from modelzoo import TransferLearner
    from modelzoo.backend import keras
    from modelzoo.viz.maps import plot_history

    keras().utils.set_random_seed(0)
    split = split_digits(range(5, 10))
    few = split.few_shot(20, seed=0)
    learner = TransferLearner(MODEL, "conv_pw_11_relu", num_classes=5, hidden=(64,))
    learner.fit(
        digits_to_rgb(few.x_train),
        few.y_train,
        epochs=30,
        batch_size=16,
        validation=(digits_to_rgb(split.x_test), split.y_test),
        verbose=0,
    )
    plot_history(learner.history, HERE / "history.png")


def main() -> None:
    digit()
    for layer in ("conv_pw_1_relu", "conv_pw_13_relu"):
        modelzoo(
            "activations", MODEL, "--layer", layer, "--image", "digit.png",
            "--out", f"feature_maps_{layer}.png",
        )  # fmt: skip
    modelzoo(
        "activations", MODEL, "--image", "digit.png", "--sheet", "--out", "feature_maps_sheet.png",
        "-l", "conv1_relu", "-l", "conv_pw_3_relu", "-l", "conv_pw_5_relu", "--max-channels", "32",
    )  # fmt: skip
    modelzoo("filters", MODEL, "--out", "filters_conv1.png")
    history()
    with open(HERE / "layers_tree.txt", "w", encoding="utf-8") as tree:
        subprocess.run(
            [sys.executable, "-m", "modelzoo", "layers", MODEL, "--tree"],
            stdout=tree,
            check=True,
        )


if __name__ == "__main__":
    main()
