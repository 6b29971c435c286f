"""Training a new head from a folder of images in one call: what ``modelzoo train`` runs.

:func:`train_from_folder` does the whole job in the order that matters on every kind of
hardware: checks optional extras and arguments first (a missing one must not cost a
training run), chooses the ``tf.distribute`` strategy before any other TensorFlow work
(joining a cluster and splitting the CPU must precede the runtime's start), seeds,
lists the image folder (the pixels are streamed while training), trains, saves and
writes the curves and TensorBoard logs on the chief only.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import DataError, UsageError

__all__ = ["TrainResult", "train_from_folder"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainResult:
    """What :func:`train_from_folder` did.

    Attributes:
        model: where the trained model was saved (the labels sidecar sits beside it).
        cut: the layer the base was cut at (None: the top).
        cut_is_default: the cut came from the manifest (none was given).
        base: the base model's name.
        labels: the class names, in output order.
        strategy: kind, replicas, devices, reason, global batch and whether this
            process is the chief.
        history: per-epoch metrics, as Keras reports them.
        fit: the last fit's facts (steps, batch sizes, feature cache use).
        plot: the curves PNG (chief only), or None.
        tensorboard: the TensorBoard log folder, or None.
    """

    model: Path
    cut: Any
    cut_is_default: bool
    base: str
    labels: list[str]
    strategy: dict[str, Any]
    history: dict[str, list[float]] = field(default_factory=dict)
    fit: dict[str, Any] = field(default_factory=dict)
    plot: Path | None = None
    tensorboard: Path | None = None

    @property
    def chief(self) -> bool:
        """Whether this process wrote the model (always True outside multi-worker runs)."""
        return bool(self.strategy.get("chief", True))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (what ``modelzoo train --json`` prints)."""
        result = {
            "model": str(self.model),
            "cut": self.cut,
            "labels": self.labels,
            "strategy": self.strategy,
            "history": self.history,
            "fit": self.fit,
        }
        if self.plot is not None:
            result["plot"] = str(self.plot)
        return result


def train_from_folder(
    base: str,
    data: str | os.PathLike[str],
    *,
    cut: str | None = None,
    out: str | os.PathLike[str] = "model.keras",
    epochs: int = 10,
    batch_size: int = 32,
    learning_rate: float = 1e-3,
    val_split: float = 0.2,
    hidden: Sequence[int] = (100,),
    strategy: Any = "auto",
    register_timeout: float | None = None,
    tpu_timeout: float | None = None,
    seed: int = 0,
    plot: str | os.PathLike[str] | None = None,
    tensorboard: str | os.PathLike[str] | None = None,
    verbose: int = 0,
    report: Callable[[str], None] | None = None,
) -> TrainResult:
    """Train a new head on a pretrained base from a folder of class sub-folders.

    Under ``strategy="multi-worker"`` every machine calls this (each with its own
    ``TF_CONFIG``); only the chief writes ``out``, ``plot`` and the TensorBoard logs.

    Args:
        base: registry name (``name[@version]``) of the pretrained base.
        data: a folder with one sub-folder of images per class (at least two).
        cut: layer to cut the base at; None = the manifest's first cut point.
        out: where to save the trained model (``.keras``).
        epochs, batch_size, learning_rate: training settings; ``batch_size`` is per
            replica.
        val_split: fraction of each class held out for validation (0 = none).
        hidden: sizes of the head's hidden Dense layers.
        strategy: a spec for :func:`modelzoo.make_strategy` (``"auto"``, ``"cpu"``,
            ``"mirrored"``, ``"multi-worker"``, ``"tpu"``...).
        register_timeout, tpu_timeout: seconds for workers to join / a TPU to answer.
        seed: seeds the head's initial weights, the split and the shuffle order.
        plot: write loss/accuracy curves to this PNG (needs matplotlib).
        tensorboard: write TensorBoard logs into this folder (needs tensorboard).
        verbose: Keras' ``fit`` verbosity (0 silent, 2 one line per epoch).
        report: called with one line at each stage (strategy, batch, base), for a CLI
            or a notebook to show; the same lines are logged at INFO.

    Returns:
        A :class:`TrainResult`.

    Raises:
        UsageError: bad arguments or a missing optional extra, before any training.
        DataError: the folder has fewer than two classes or unreadable images.
        StrategyError: the strategy cannot be built or a worker was lost.
    """
    from ..backend import keras
    from ..distribute.cluster import is_chief, saving_path
    from ..distribute.strategies import choose_strategy
    from ..hub.registry import resolve
    from ..viz.maps import require_tensorboard, tensorboard_callback
    from ..viz.plots import require_matplotlib
    from .images import ImageFolder
    from .learner import TransferLearner

    def say(line: str) -> None:
        logger.info("%s", line)
        if report is not None:
            report(line)

    if plot is not None:
        require_matplotlib()
    if tensorboard is not None:
        require_tensorboard()
    data = Path(data)
    if not data.is_dir():
        raise UsageError(f"--data must be a folder with one sub-folder per class. Received: {data}")
    if batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1 (per replica). Received: {batch_size}.")
    resolve(base)
    choice = choose_strategy(strategy, register_timeout=register_timeout, tpu_timeout=tpu_timeout)
    chief = is_chief(choice)
    global_batch = batch_size * choice.replicas
    folder = ImageFolder.scan(data, seed=seed)
    labels = list(folder.class_names)
    if len(labels) < 2:
        raise DataError(f"Need at least 2 class sub-folders in {data}; found {labels}.")
    train, validation = folder.split(val_split) if 0.0 < val_split < 1.0 else (folder, None)
    say(
        f"strategy {choice.kind}: {choice.replicas} replica(s) on "
        f"{', '.join(choice.devices)} ({choice.reason})"
    )
    say(f"global batch {global_batch} = {batch_size} per replica x {choice.replicas} replica(s)")
    keras().utils.set_random_seed(seed)
    learner = TransferLearner(
        base,
        cut,
        num_classes=len(labels),
        labels=labels,
        hidden=tuple(hidden),
        learning_rate=learning_rate,
        strategy=choice,
    )
    default_cut = cut is None and learner.cut is not None
    note = " (the manifest's first cut point; --cut to choose another)" if default_cut else ""
    say(f"base {learner.base_name} cut at {learner.cut or '(top)'}{note}; {len(labels)} classes")
    with contextlib.ExitStack() as stack:
        callbacks = []
        if tensorboard is not None:  # workers log to a temporary folder, then drop it
            log_dir = stack.enter_context(saving_path(Path(tensorboard), choice))
            callbacks.append(tensorboard_callback(log_dir))
        learner.fit(
            train,
            epochs=epochs,
            batch_size=batch_size,
            validation=validation,
            verbose=verbose,
            callbacks=callbacks or None,
            seed=seed,
        )
    saved = learner.save(out)
    curves = learner.plot_history(plot) if plot is not None and chief else None
    return TrainResult(
        model=Path(saved),
        cut=learner.cut,
        cut_is_default=default_cut,
        base=learner.base_name,
        labels=labels,
        strategy={
            "kind": choice.kind,
            "replicas": choice.replicas,
            "devices": list(choice.devices),
            "reason": choice.reason,
            "global_batch": global_batch,
            "chief": chief,
        },
        history=dict(learner.history),
        fit=dict(learner.last_fit) if learner.last_fit else {},
        plot=Path(curves) if curves is not None else None,
        tensorboard=Path(tensorboard) if tensorboard is not None else None,
    )
