"""The offline demo: transfer learning from a bundled pretrained model, measured honestly.

The bundled ``mobilenet_v1_0.25_32_digits`` was pretrained on handwritten digits 0–4
(see ``recipes/pretrain_digits.py``). The demo installs it from the bundled registry (no
network), cuts it at ``conv_pw_13_relu``, attaches a fresh head and learns digits 5–9
from a handful of examples per class; then it trains the same architecture from scratch
on the very same examples, for several seeds, and reports both held-out accuracies.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["DEMO_MODEL", "DEMO_CUT", "DemoResult", "SeedResult", "run_demo"]

logger = logging.getLogger(__name__)

DEMO_MODEL = "mobilenet_v1_0.25_32_digits"
DEMO_CUT = "conv_pw_13_relu"
_NEW_CLASSES = (5, 6, 7, 8, 9)


@dataclass(frozen=True)
class SeedResult:
    """Held-out accuracy of transfer learning vs training from scratch, for one seed."""

    seed: int
    transfer_accuracy: float
    scratch_accuracy: float
    transfer_seconds: float
    scratch_seconds: float


@dataclass(frozen=True)
class DemoResult:
    """Everything the demo measured and wrote."""

    model: str
    cut: str
    shots: int
    test_examples: int
    seeds: tuple[SeedResult, ...]
    saved_model: str | None = None
    predictions: tuple[tuple[int, str, float], ...] = ()
    extras: dict = field(default_factory=dict)

    @property
    def transfer_mean(self) -> float:
        return float(np.mean([s.transfer_accuracy for s in self.seeds]))

    @property
    def scratch_mean(self) -> float:
        return float(np.mean([s.scratch_accuracy for s in self.seeds]))


def _scratch_model(manifest, cut: str, num_classes: int, hidden: Sequence[int]):
    """The same architecture as the transfer model, randomly initialised and all trainable.

    Unlike the transfer head, the base here is called in training mode so its
    BatchNormalization layers learn statistics: the fair way to train from scratch.
    """
    from .backend import keras
    from .models.loading import build_application
    from .models.preprocessing import preprocessing_layer
    from .models.slicing import slice

    k = keras()
    base = slice(build_application(manifest, include_top=False), cut)
    inputs = k.Input(shape=base.input_shape[1:], name="image")
    x = base(preprocessing_layer(manifest.input.preprocessing)(inputs))
    x = k.layers.Flatten()(x)
    for units in hidden:
        x = k.layers.Dense(units, activation="relu")(x)
    outputs = k.layers.Dense(num_classes, activation="softmax")(x)
    model = k.Model(inputs, outputs, name="scratch")
    model.compile(
        optimizer=k.optimizers.Adam(1e-3),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def run_demo(
    *,
    seeds: Sequence[int] = (0, 1, 2),
    shots: int = 10,
    epochs: int = 60,
    hidden: Sequence[int] = (100,),
    out_dir: str | Path | None = "modelzoo-demo",
    cut: str = DEMO_CUT,
    on_event: Callable[[str], None] | None = None,
) -> DemoResult:
    """Run the transfer-learning demo on the bundled digits model.

    Args:
        seeds: one few-shot draw and initialisation per seed.
        shots: training examples per new class (digits 5–9).
        epochs: epochs for both the transfer head and the from-scratch model.
        hidden: hidden layer sizes of the head.
        out_dir: where the trained transfer model and its browser export are written
            (None: write nothing).
        cut: the layer to cut the pretrained base at.
        on_event: called with a short message at each step (the CLI prints them).

    Returns:
        A :class:`DemoResult` with per-seed accuracies on the held-out digits.
    """
    from .backend import keras
    from .hub.install import install
    from .hub.registry import resolve
    from .models.datasets import digits_to_rgb, split_digits
    from .models.learner import TransferLearner

    say = on_event or (lambda msg: logger.info("%s", msg))
    k = keras()
    result = install(DEMO_MODEL, variant="all")
    manifest = resolve(DEMO_MODEL).manifest
    say(f"installed {manifest.spec} from the {result.registry} registry (offline-capable)")
    split = split_digits(_NEW_CLASSES)
    labels = [str(d) for d in split.classes]
    x_test = digits_to_rgb(split.x_test)
    y_test = split.y_test
    say(
        f"task: learn digits {labels[0]}-{labels[-1]} from {shots} examples each; "
        f"held-out test set: {len(y_test)} images"
    )
    rows = []
    keep = None
    for seed in seeds:
        few = split.few_shot(shots, seed=seed)
        x, y = digits_to_rgb(few.x_train), few.y_train
        k.utils.set_random_seed(seed)
        t0 = time.perf_counter()
        learner = TransferLearner(
            DEMO_MODEL, cut, num_classes=len(labels), labels=labels, hidden=hidden
        )
        learner.fit(x, y, epochs=epochs, batch_size=16, verbose=0)
        transfer_acc = learner.evaluate(x_test, y_test)["accuracy"]
        t1 = time.perf_counter()
        k.utils.set_random_seed(seed)
        scratch = _scratch_model(manifest, cut, len(labels), hidden)
        scratch.fit(x, y, epochs=epochs, batch_size=16, verbose=0, shuffle=True)
        scratch_acc = float(
            scratch.evaluate(x_test, y_test, verbose=0, return_dict=True)["accuracy"]
        )
        t2 = time.perf_counter()
        rows.append(SeedResult(seed, float(transfer_acc), scratch_acc, t1 - t0, t2 - t1))
        say(
            f"seed {seed}: transfer {transfer_acc:.1%} vs from scratch {scratch_acc:.1%} "
            f"({t1 - t0:.1f} s / {t2 - t1:.1f} s)"
        )
        if keep is None:
            keep = learner
    saved = None
    extras: dict = {}
    predictions: list[tuple[int, str, float]] = []
    if keep is not None:
        probs = keep.predict(x_test[:: max(1, len(x_test) // 5)][:5])
        truth = y_test[:: max(1, len(x_test) // 5)][:5]
        for t, p in zip(truth, probs, strict=True):
            predictions.append(
                (int(split.classes[int(t)]), labels[int(np.argmax(p))], float(p.max()))
            )
        if out_dir is not None:
            saved = str(keep.save(Path(out_dir) / "digits_5_9.keras"))
            say(f"saved the transfer model to {saved}")
            from .export.tfjs import export_tfjs

            web = export_tfjs(
                keep.model,
                Path(out_dir) / "web",
                labels=labels,
                preprocessing="baked",
                with_demo=True,
            )
            extras["web"] = str(web.out_dir)
            extras["web_bytes"] = web.total_bytes
            say(f"exported it for the browser (TensorFlow.js) to {web.out_dir}")
    return DemoResult(
        model=manifest.spec,
        cut=cut,
        shots=shots,
        test_examples=int(len(y_test)),
        seeds=tuple(rows),
        saved_model=saved,
        predictions=tuple(predictions),
        extras=extras,
    )
