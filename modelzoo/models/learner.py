"""``TransferLearner``: load → slice → head → compile → fit → save/predict, in one object.

Everything that creates variables (the base, the head, the optimizer) is built inside
the chosen ``tf.distribute`` strategy's scope; a base model built elsewhere is rebuilt
there (:func:`modelzoo.distribute.replicas.in_scope`). When the base is frozen and no
augmentation is asked for, the learner computes the base's features once (cached on
disk, see :mod:`modelzoo.models.features`) and trains only the head on them: the same model,
a fraction of the time.

Under a strategy (see :mod:`modelzoo.distribute.strategies`):

* ``batch_size`` is per replica; every step takes a global batch of ``batch_size ×
  replicas`` examples, logged at each ``fit`` and kept in ``last_fit``.
* Arrays and ``tf.data`` inputs become pipelines of global batches
  (:func:`~modelzoo.distribute.replicas.batch_dataset`): sharded per worker under multi-worker
  training, with static shapes (full batches only) on TPUs, where predictions pad the
  last batch instead and drop the padding.
* Pretrained weights are read in this (the client) process: ``.h5`` weights by h5py and
  ``.keras`` files by zipfile + h5py, then assigned to the variables. No ``tf.io``/
  SavedModel restore op runs on a TPU host, so the files never need to be on GCS; the
  same holds for ``save()``, which writes from the client too.
* Under multi-worker training only the chief writes the feature cache and the saved
  model; the others save into a temporary folder that is removed. Workers vote before
  using cached features (:func:`~modelzoo.distribute.replicas.all_workers_agree`), so they never
  disagree about running the base.
* A worker or TPU lost mid-``fit`` raises :class:`~modelzoo.errors.StrategyError`.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError, UsageError
from .images import ImageFolder

__all__ = ["TransferLearner", "sidecar_path", "read_sidecar", "read_labels_file"]

logger = logging.getLogger(__name__)


def sidecar_path(model_path: str | os.PathLike[str]) -> Path:
    """The labels/metadata file saved next to a trained model (``x.keras`` → ``x.labels.json``)."""
    p = Path(model_path)
    return p.with_name(p.stem + ".labels.json")


_LABELS_FORMAT = (
    'expected {"labels": ["cat", "dog"], ...} (what `modelzoo train` writes) or a plain '
    'list ["cat", "dog"]'
)


def read_labels_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a labels file: the one reader for ``train``'s sidecars and ``publish --labels``.

    The documented format is the object ``train`` writes next to a model (``x.labels.json``):
    ``{"labels": ["cat", "dog"], "preprocessing": "...", ...}`` where ``labels`` (class
    names, index = output unit) may be null and the other keys are optional metadata. A
    plain JSON list of class names is accepted too and read as ``{"labels": [...]}``.

    Raises:
        UsageError: unreadable, not JSON, or not in that format (one line naming the file).
    """
    from .. import files

    try:
        data = files.read(path)
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise UsageError(f"Cannot read labels from {path}: {reason}.") from None
    if isinstance(data, list):
        data = {"labels": data}
    if not isinstance(data, dict):
        raise UsageError(f"{path}: {_LABELS_FORMAT}; got {type(data).__name__}.")
    labels = data.get("labels")
    if labels is not None and not (
        isinstance(labels, list) and all(isinstance(x, str) for x in labels)
    ):
        raise UsageError(f"{path}: labels must be a list of class names; {_LABELS_FORMAT}.")
    if not isinstance(data.get("preprocessing", ""), str):
        raise UsageError(f'{path}: preprocessing must be a string like "tf" or "none".')
    return data


def read_sidecar(model_path: str | os.PathLike[str]) -> dict[str, Any]:
    """The metadata saved with a trained model (:func:`read_labels_file`), or ``{}``."""
    path = sidecar_path(model_path)
    if not path.exists():
        return {}
    return read_labels_file(path)


def _is_dataset(x: Any) -> bool:
    return type(x).__module__.startswith("tensorflow") and hasattr(x, "element_spec")


def _cardinality(dataset, batched: bool) -> int | None:
    """Examples in an unbatched finite dataset, else None (unknown without reading it)."""
    n = int(dataset.cardinality())
    return n if n >= 0 and not batched else None


def _materialize(dataset) -> tuple[np.ndarray, np.ndarray]:
    """Collect a (batched or unbatched) ``tf.data.Dataset`` of ``(x, y)`` into arrays."""
    xs, ys = [], []
    batched = None
    for element in dataset.as_numpy_iterator():
        if not isinstance(element, tuple) or len(element) < 2:
            raise UsageError("The dataset must yield (images, labels) pairs.")
        x, y = element[0], element[1]
        if batched is None:
            spec = dataset.element_spec[0]
            batched = len(spec.shape) == 4
        xs.append(x if batched else x[None])
        ys.append(y if batched else np.asarray(y)[None])
    if not xs:
        raise UsageError("The dataset is empty.")
    return np.concatenate(xs), np.concatenate(ys)


class TransferLearner:
    """A pretrained base, cut at a layer, with a new trainable head.

    Args:
        base: a registry name (``"mobilenet_v1_1.0_224"``) or a ``keras.Model``.
        cut: where to slice the base (layer name, ``outer/inner`` path, index). None: the
            manifest's first cut point for a registry name (logged), else the whole
            network; ``-1`` keeps the whole network.
        num_classes: outputs of the head (classes for classification).
        head: any Keras layer/callable to use instead of the default head.
        hidden: sizes of the hidden Dense layers of the default head.
        pooling: ``"flatten"``, ``"avg"``, ``"max"`` or None.
        dropout: dropout rate after each hidden layer.
        task: ``"classification"``, ``"multilabel"`` or ``"regression"``.
        labels: class names, saved with the model for ``predict``.
        version: registry version or constraint.
        input_shape: a non-default input shape, where the architecture allows it.
        include_preprocessing: bake the manifest's preprocessing into the model, so it takes
            raw 0–255 RGB images (default True; registry bases only).
        learning_rate: Adam's learning rate.
        strategy: a spec for :func:`modelzoo.make_strategy` (``"auto"``, ``"cpu"``,
            ``"mirrored"``, ``"multi-worker"``, ``"tpu"``...), a ``tf.distribute.Strategy``
            or a :class:`~modelzoo.distribute.strategies.StrategyChoice`; None = TensorFlow's
            default.
            A base model whose variables were created outside this strategy's scope is
            rebuilt inside it (same weights).
        feature_cache: compute the frozen base's features once and train the head on them.
        augment: a Keras layer (e.g. ``RandomFlip``) applied to images before the base;
            turns the feature cache off (augmented images differ every epoch).
        trust_remote_code: skip the safety scan of saved-model bases.
        steps_per_execution: training steps per call into TensorFlow; None =
            :func:`~modelzoo.distribute.replicas.steps_per_execution_for` the strategy (32
            on TPUs, 1 elsewhere). A fit on data of unknown length runs one step per call.
    """

    def __init__(
        self,
        base: Any,
        cut: Any = None,
        *,
        num_classes: int | None = None,
        head: Any = None,
        hidden: Sequence[int] = (100,),
        pooling: str | None = "flatten",
        dropout: float = 0.0,
        task: str = "classification",
        labels: Sequence[str] | None = None,
        version: str | None = None,
        input_shape: Sequence[int] | None = None,
        include_preprocessing: bool = True,
        learning_rate: float = 1e-3,
        strategy: Any = None,
        feature_cache: bool = True,
        augment: Any = None,
        trust_remote_code: bool = False,
        steps_per_execution: int | None = None,
    ):
        from ..distribute.replicas import cluster_failures, in_scope, steps_per_execution_for
        from ..distribute.strategies import choose_strategy
        from .heads import attach_head
        from .loading import default_cut, load, manifest_of
        from .slicing import freeze, slice

        if labels is not None:
            labels = [str(x) for x in labels]
            if num_classes is None:
                num_classes = len(labels)
            elif num_classes != len(labels):
                raise UsageError(
                    f"num_classes and labels disagree. Received: num_classes={num_classes}, "
                    f"{len(labels)} labels."
                )
        self.labels = labels
        self.task = task
        self.learning_rate = float(learning_rate)
        self.cut = cut
        self._use_feature_cache = bool(feature_cache) and augment is None
        # id(model) -> (label format, steps per execution, (trainable variables,
        # learning rate)) it was last compiled with.
        self._compiled: dict[int, tuple] = {}
        self.history: dict[str, list[float]] = {}
        self.last_fit: dict[str, Any] = {}
        #: The image folder the last fit read (saved with the model: ``export --format
        #: litert --quantize int8`` calibrates on it when no other data is given).
        self.data_root: Path | None = None

        # First, before any TensorFlow work: joining a cluster or splitting the CPU
        # (MODELZOO_CPU_DEVICES) must happen before the runtime starts.
        self.choice = choose_strategy(strategy)
        self.strategy = self.choice.strategy
        if steps_per_execution is None:
            steps_per_execution = steps_per_execution_for(self.choice)
        elif (
            isinstance(steps_per_execution, bool)
            or not isinstance(steps_per_execution, int)
            or steps_per_execution < 1
        ):
            raise UsageError(
                "steps_per_execution must be a positive integer or None. Received: "
                f"{steps_per_execution!r}."
            )
        self._steps_per_execution = steps_per_execution
        logger.info(
            "strategy: %s, %d replica(s) on %s (%s)",
            self.choice.kind,
            self.choice.replicas,
            ", ".join(self.choice.devices),
            self.choice.reason,
        )
        from ..backend import keras

        k = keras()
        # Creating variables is collective under multi-worker training (the chief's
        # initial values are broadcast), so a peer lost now is reported like one lost
        # mid-fit.
        with self.strategy.scope(), cluster_failures(self.choice, action="Building the model"):
            if isinstance(base, str | os.PathLike):
                if cut is None:  # not the classifier's softmax: the manifest's cut point
                    cut = self.cut = default_cut(base, version=version)
                features = load(
                    base,
                    cut,
                    version=version,
                    input_shape=input_shape,
                    include_preprocessing=include_preprocessing,
                    trust_remote_code=trust_remote_code,
                )
                self.manifest = manifest_of(features)
                self.base_name = self.manifest.spec if self.manifest else str(base)
            else:
                self.manifest = manifest_of(base)
                self.base_name = getattr(base, "name", "model")
                base = in_scope(base, self.choice)
                features = slice(base, cut) if cut is not None else base
                freeze(features)
            self.base = features
            self.model = attach_head(
                features,
                num_classes,
                hidden=tuple(hidden),
                pooling=pooling,
                dropout=dropout,
                task=task,
                head=head,
            )
            if augment is not None:
                # In front of the base, called without `training`: Keras runs it in
                # training mode in fit and as the identity in evaluate/predict, while
                # attach_head keeps the base itself at training=False.
                inputs = k.Input(shape=features.input_shape[1:], name="image")
                outputs = self.model(augment(inputs))
                self.model = k.Model(inputs, outputs, name=f"{self.model.name}_augmented")
            self.head_model = self._head_model() if self._use_feature_cache else None

    # -- construction helpers -------------------------------------------------------------

    def _head_model(self):
        """A model from base features to outputs that *shares* the head's layers.

        Re-applies the layers that follow the base in ``self.model`` to a new input; this
        needs them to form a chain. Otherwise the feature cache is turned off.
        """
        from ..backend import keras

        k = keras()
        layers = self.model.layers
        try:
            start = next(i for i, layer in enumerate(layers) if layer is self.base) + 1
        except StopIteration:
            self._use_feature_cache = False
            return None
        chain = layers[start:]
        for prev, layer in zip([self.base, *chain[:-1]], chain, strict=True):
            inbound = layer._inbound_nodes
            if len(inbound) != 1 or [n.layer for n in inbound[0].parent_nodes] != [prev]:
                logger.info("head is not a simple chain; feature cache off")
                self._use_feature_cache = False
                return None
        shape = self.base.output_shape
        if isinstance(shape, list):
            self._use_feature_cache = False
            return None
        inputs = k.Input(shape=shape[1:], name="features")
        x = inputs
        for layer in chain:
            x = layer(x)
        return k.Model(inputs, x, name="head")

    def _compile(self, label_format: str, *, model=None, steps: int | None = None) -> None:
        """Compile both models for ``label_format``; ``model`` with ``steps`` per execution.

        Keras builds its train function at the first fit after a compile and reads the
        steps per call only then, so a new ``steps_per_execution`` takes a compile: set
        behind Keras's back, it left a one-step train function running while Keras
        counted 32 steps per call (1 optimizer step per epoch instead of 16). A compile
        for the same label format keeps the model's optimizer, and so its state.

        Keras also fixes a compiled model's trainable variables in its train function,
        so a base unfrozen (or frozen again) after a ``fit`` would train as before: a
        change of trainability or learning rate recompiles with a new optimizer.
        """
        from .heads import compile_defaults

        with self.strategy.scope():
            for each in filter(None, (self.model, self.head_model)):
                before = self._compiled.get(id(each))
                want = before[1] if before else self._steps_per_execution
                if each is model and steps is not None:
                    want = steps
                trainable = (tuple(id(v) for v in each.trainable_weights), self.learning_rate)
                now = (label_format, want, trainable)
                if before == now:
                    continue
                keep = before is not None and before[0] == label_format and before[2] == trainable
                if before is not None and before[2] != trainable:
                    logger.info(
                        "recompiling %s: trainable weights or learning rate changed (%d "
                        "trainable variables now; the optimizer starts afresh)",
                        each.name,
                        len(trainable[0]),
                    )
                compile_defaults(
                    each,
                    task=self.task,
                    labels=label_format,
                    learning_rate=self.learning_rate,
                    # Otherwise each model gets its own new optimizer, inside the scope.
                    optimizer=each.optimizer if keep else None,
                    steps_per_execution=want,
                )
                self._compiled[id(each)] = now

    def _steps_for(self, train) -> int:
        """Several steps per call when asked (TPUs), unless the data's length is unknown.

        Keras needs to know how many steps an epoch has to run several per call, and
        ``rebatch``/``filter`` pipelines do not say. Rather than read the data twice, such
        a fit runs one step per call; ``dataset.apply(tf.data.experimental.
        assert_cardinality(n))`` restores the fast path.
        """
        steps = self._steps_per_execution
        if steps > 1 and int(train.cardinality()) < 0:
            logger.info(
                "the training data does not know its length: 1 step per execution instead "
                "of %d (assert_cardinality on the dataset restores it)",
                steps,
            )
            steps = 1
        return steps

    # -- data helpers -----------------------------------------------------------------------

    def _batched(self, dataset) -> bool:
        """Whether a dataset yields batches: its images have the model input's rank."""
        spec = dataset.element_spec
        images = spec[0] if isinstance(spec, tuple | list) else spec
        return len(images.shape) == len(self.model.input_shape)

    def _xy(self, x, y) -> tuple[Any, Any]:
        if _is_dataset(x):
            if y is not None:
                raise UsageError("Pass labels inside the dataset, not as y, for a tf.data input.")
            return _materialize(x)
        if y is None:
            raise UsageError("fit/evaluate need labels: fit(x, y) or a dataset of (x, y).")
        return np.asarray(x), np.asarray(y)

    def _feature_key(self, weights: str, data: str) -> str:
        from .features import feature_key

        return feature_key(
            base=self.base_name,
            weights=weights,
            cut=str(self.cut),
            input=list(self.base.input_shape[1:]),
            data=data,
        )

    def _features(self, x: np.ndarray, batch_size: int, weights: str) -> tuple[np.ndarray, str]:
        """The base's outputs for ``x``: from the on-disk cache when possible."""
        from ..distribute.cluster import is_chief
        from ..distribute.replicas import all_workers_agree
        from .features import FeatureCache, fingerprint_arrays

        key = self._feature_key(weights, fingerprint_arrays(x))
        cache = FeatureCache()
        feats = cache.get(key)
        hit = feats is not None and len(feats) == len(x)
        # Computing features is collective under multi-worker training: one worker
        # reading its cache while the others run the base would hang them all.
        if all_workers_agree(hit, self.choice):
            return feats, "hit"
        feats = self._predict(self.base, x, batch_size)
        if is_chief(self.choice):  # other workers keep theirs in memory only
            cache.put(key, feats)
        return feats, "miss"

    def _folder_features(
        self, folder: ImageFolder, global_batch: int, weights: str, private: list[Path]
    ) -> tuple[Path, str]:
        """The base's outputs for every image of ``folder``, in a cached ``.npy`` file.

        Images are read, pushed through the base and written a chunk at a time, so
        neither the images nor the features are ever all in memory. A worker other than
        the chief writes a private file, listed in ``private`` for removal after ``fit``.
        """
        from ..distribute.cluster import is_chief
        from ..distribute.replicas import all_workers_agree
        from .features import BLOCK_BYTES, FeatureCache

        key = self._feature_key(weights, "folder:" + folder.fingerprint())
        cache = FeatureCache()
        cached = cache.get(key, mmap=True)
        hit = cached is not None and len(cached) == len(folder)
        del cached
        if all_workers_agree(hit, self.choice):
            return cache.path(key), "hit"
        shape = tuple(self.base.output_shape[1:])
        row_bytes = 4 * int(np.prod(shape))
        chunk = max(1, BLOCK_BYTES // row_bytes // global_batch) * global_batch
        size = self._image_size()
        chief = is_chief(self.choice)
        with cache.writer(key if chief else None, len(folder), shape) as writer:
            for start in range(0, len(folder), chunk):
                stop = min(start + chunk, len(folder))
                images = folder.dataset(size, start=start, stop=stop).map(lambda x, y: x)
                writer.write(self._predict(self.base, images, global_batch, count=stop - start))
        if not chief:
            private.append(writer.path)
        return writer.path, "miss"

    def _feature_dataset(
        self, path: Path, labels: np.ndarray, *, shuffle: bool, seed: int | None = None
    ):
        """Unbatched ``(features, label)`` read block by block from a cached ``.npy`` file."""
        from ..backend import tf
        from .features import feature_blocks

        t = tf()
        shape = tuple(self.base.output_shape[1:])
        blocks = feature_blocks(path, labels, shuffle=shuffle, seed=0 if seed is None else seed)
        signature = (
            t.TensorSpec((None, *shape), t.float32),
            t.TensorSpec((None,), t.as_dtype(labels.dtype)),
        )
        ds = t.data.Dataset.from_generator(blocks, output_signature=signature).unbatch()
        return ds.apply(t.data.experimental.assert_cardinality(len(labels)))

    def _predict(self, model, x: Any, global_batch: int, *, count: int | None = None):
        """``model.predict`` in global batches; on TPUs every batch is full (static shapes).

        ``x`` is an array, or an unbatched dataset of ``count`` images.
        """
        from ..backend import tf
        from ..distribute.replicas import cluster_failures

        n = len(x) if count is None else count
        pad = (-n) % global_batch if self.choice.kind == "tpu" else 0
        # Copies of the last example fill the last batch, then are dropped.
        if count is not None:
            if pad:
                x = x.concatenate(x.skip(n - 1).take(1).repeat(pad))
            x = x.batch(global_batch).prefetch(tf().data.AUTOTUNE)
            kwargs = {}
        else:
            if pad:
                x = np.concatenate([x, np.repeat(x[-1:], pad, axis=0)])
            kwargs = {"batch_size": global_batch}
        with cluster_failures(self.choice, action="Prediction"):
            out = model.predict(x, verbose=0, **kwargs)
        return out[:n] if pad else out

    def _image_size(self) -> tuple[int, int]:
        shape = self.model.input_shape
        if isinstance(shape, list) or len(shape) != 4 or None in shape[1:3]:
            raise UsageError(
                f"Reading an image folder needs a model with a fixed image input size; this "
                f"one takes {shape}. Pass input_shape=(H, W, 3) to TransferLearner."
            )
        return int(shape[1]), int(shape[2])

    def _shuffle_seed(self, seed: int | None) -> int | None:
        """Every worker must shuffle a folder alike: a shared seed under multi-worker."""
        from ..distribute.replicas import SHARED_SHUFFLE_SEED

        if seed is None and self.choice.kind == "multi-worker":
            return SHARED_SHUFFLE_SEED
        return seed

    def _as_folder(self, x: Any) -> ImageFolder | None:
        if isinstance(x, ImageFolder):
            folder = x
        elif isinstance(x, str | os.PathLike) and Path(x).is_dir():
            folder = ImageFolder.scan(x)
        else:
            return None
        if self.task != "classification":
            raise UsageError(
                f"An image folder gives class labels; this learner's task is {self.task!r}."
            )
        outputs = self.model.output_shape[-1]
        if len(folder.class_names) != outputs:
            raise DataError(
                f"{folder.root} has {len(folder.class_names)} class sub-folders "
                f"({', '.join(folder.class_names)}), but the model has {outputs} classes; "
                "make num_classes match the folder."
            )
        if self.labels is None:
            self.labels = list(folder.class_names)
        elif list(folder.class_names) != self.labels:
            raise DataError(
                f"{folder.root}'s class sub-folders {list(folder.class_names)} differ from the "
                f"learner's labels {self.labels}; rename the folders or pass matching labels."
            )
        return folder

    def _check_labels(self, x: np.ndarray, y: np.ndarray, fmt: str) -> None:
        """Labels the model can learn from, or a one-line :class:`DataError`."""
        if len(x) != len(y):
            raise DataError(f"{len(x)} images but {len(y)} labels; pass one label per image.")
        if self.task != "classification":
            return
        outputs = int(self.model.output_shape[-1])
        if fmt == "categorical":
            if y.shape[-1] != outputs:
                raise DataError(
                    f"One-hot labels have {y.shape[-1]} columns, but the model has {outputs} "
                    f"classes; pass rows of width {outputs} or class ids 0..{outputs - 1}."
                )
            return
        ids = y.reshape(-1)
        if ids.size and (ids.min() < 0 or ids.max() >= outputs):
            raise DataError(
                f"Labels must be class ids 0..{outputs - 1} for this {outputs}-class model. "
                f"Received ids from {ids.min()} to {ids.max()}; map them to 0..{outputs - 1} "
                "or set num_classes."
            )

    def _data_error(self, exc: Exception, *folders: Any) -> Exception:
        """The one-line error for a TensorFlow failure caused by the data, else ``exc``."""
        import re

        text = " ".join(str(getattr(exc, "message", exc)).split())
        found = re.search(r"label value of (-?\d+) .*? valid range of \[0, (\d+)\)", text)
        if found:
            value, k = found.groups()
            return DataError(
                f"A label is {value}, but this model's classes are 0..{int(k) - 1}; map the "
                f"labels to 0..{int(k) - 1} or set num_classes."
            )
        for folder in folders:
            if isinstance(folder, ImageFolder):
                bad = folder.find_unreadable(self._image_size())
                if bad is not None:
                    return bad
        return exc

    def _validation(self, val: Any, global_batch: int, use_cache: bool, weights: str, private):
        """A pipeline of validation batches in which every example counts exactly once.

        On TPUs batches are full (static shapes): the last one is filled with copies of
        an example that carry weight 0, and the real examples weigh ``padded / n``, so
        Keras's mean over padded batches equals the mean over the real examples (the
        default metrics are weighted, see :func:`modelzoo.models.heads.compile_defaults`).
        """
        from ..backend import tf
        from ..distribute.replicas import batch_dataset

        if val is None:
            return None
        t = tf()
        static = self.choice.kind == "tpu"
        if isinstance(val, ImageFolder):
            if use_cache:
                path, _ = self._folder_features(val, global_batch, weights, private)
                ds = self._feature_dataset(path, val.labels, shuffle=False)
            else:
                ds = val.dataset(self._image_size())
            n = len(val)
        elif _is_dataset(val):
            ds = val.unbatch() if self._batched(val) else val
            if not static:
                return batch_dataset(ds, global_batch, self.choice)
            n = int(ds.cardinality())
            if n < 0:  # unknown length: count once
                n = int(ds.reduce(np.int64(0), lambda c, _: c + 1))
        else:
            vx, vy = val
            if use_cache:
                vx = self._features(vx, global_batch, weights)[0]
            n = len(vx)
            pad = (-n) % global_batch if static else 0
            if not pad:
                return batch_dataset((vx, vy), global_batch, self.choice)
            w = np.full(n + pad, (n + pad) / n, dtype=np.float32)
            w[n:] = 0.0
            vx = np.concatenate([vx, np.repeat(vx[-1:], pad, axis=0)])
            vy = np.concatenate([vy, np.repeat(vy[-1:], pad, axis=0)])
            return batch_dataset((vx, vy, w), global_batch, self.choice)
        pad = (-n) % global_batch if static else 0
        if pad:
            scale = t.constant((n + pad) / n, t.float32)
            ds = ds.map(lambda x, y: (x, y, scale))
            ds = ds.concatenate(ds.take(1).map(lambda x, y, w: (x, y, 0.0 * w)).repeat(pad))
        return batch_dataset(ds, global_batch, self.choice)

    def _split_validation(self, x, y, validation):
        if validation is None:
            return x, y, None
        if isinstance(validation, float):
            if not 0.0 < validation < 1.0:
                raise UsageError(f"validation fraction must be in (0, 1). Received: {validation}.")
            n_val = max(1, int(round(len(x) * validation)))
            return x[:-n_val], y[:-n_val], (x[-n_val:], y[-n_val:])
        if _is_dataset(validation):
            return x, y, _materialize(validation)
        if isinstance(validation, ImageFolder):
            raise UsageError("Validate array inputs with arrays or a dataset, not an image folder.")
        vx, vy = validation
        return x, y, (np.asarray(vx), np.asarray(vy))

    # -- public API -------------------------------------------------------------------------

    @property
    def replicas(self) -> int:
        """Replicas in sync under the strategy (1 on a plain CPU)."""
        return int(self.strategy.num_replicas_in_sync)

    def fit(
        self,
        x: Any,
        y: Any = None,
        *,
        epochs: int = 10,
        batch_size: int = 32,
        validation: Any = None,
        verbose: Any = "auto",
        callbacks: list | None = None,
        shuffle: bool = True,
        seed: int | None = None,
    ) -> dict[str, list[float]]:
        """Train the head (and any unfrozen base layers).

        Args:
            x: images (N, H, W, C) — raw 0–255 when preprocessing is baked in — or a
                ``tf.data.Dataset`` of ``(images, labels)``, batched or not, or an image
                folder (a path with one sub-folder per class, or an
                :class:`~modelzoo.models.images.ImageFolder`), streamed from disk. Datasets are
                used in their own order: shuffle them yourself.
            y: integer labels or one-hot rows (not with a dataset or a folder).
            epochs: passes over the data.
            batch_size: examples per replica; the global batch is this × replicas.
            validation: ``(x_val, y_val)``, a dataset, an image folder (with a folder
                ``x``), or a fraction held out from ``x``.
            verbose: Keras verbosity; ``"auto"`` = a bar on a terminal, a line per epoch
                otherwise.
            callbacks: extra Keras callbacks.
            shuffle: reshuffle array and folder inputs every epoch.
            seed: the shuffle order's seed (None: TensorFlow's global seed; under
                multi-worker training a fixed seed that every worker shares).

        Returns:
            The history of this call (also merged into ``self.history``).

        Raises:
            UsageError: bad arguments.
            DataError: bad data: labels outside the classes, a file that is not an image.
            StrategyError: a worker or TPU was lost during training.
        """
        from ..backend import tf
        from ..distribute.replicas import batch_dataset, cluster_failures
        from .features import fingerprint_weights
        from .heads import label_format

        if epochs < 1 or batch_size < 1:
            raise UsageError(
                f"Received: epochs={epochs}, batch_size={batch_size}; both must be >= 1."
            )
        global_batch = batch_size * self.replicas
        frozen = not self.base.trainable_weights
        use_cache = self._use_feature_cache and self.head_model is not None and frozen
        folder = self._as_folder(x)
        val: Any = validation
        if isinstance(validation, str | os.PathLike):  # a folder of validation images
            val = validation = self._as_folder(validation) or validation
        # A dataset streams through the base unless features must be computed from it
        # or a validation fraction must be cut from it: then it is read into memory.
        stream = (
            folder is None
            and _is_dataset(x)
            and not use_cache
            and not isinstance(validation, float)
        )
        if folder is not None:
            if y is not None:
                raise UsageError("An image folder holds its labels (one sub-folder per class).")
            self.data_root = Path(folder.root).resolve()
            if isinstance(validation, float):
                folder, val = folder.split(validation)
            elif _is_dataset(validation):  # its features come from arrays
                val = _materialize(validation) if use_cache else validation
            elif validation is not None:
                val = self._as_folder(validation) or tuple(np.asarray(v) for v in validation)
            fmt, n = "sparse", len(folder)
        elif stream:
            if y is not None:
                raise UsageError("Pass labels inside the dataset, not as y, for a tf.data input.")
            fmt = label_format(x) if self.task == "classification" else "categorical"
            n = _cardinality(x, self._batched(x))
            train = batch_dataset(x, global_batch, self.choice, batched=self._batched(x))
        else:
            x, y = self._xy(x, y)
            x, y, val = self._split_validation(x, y, validation)
            fmt = label_format(y) if self.task == "classification" else "categorical"
            self._check_labels(x, y, fmt)
            if isinstance(val, tuple):
                self._check_labels(val[0], val[1], fmt)
            n = int(len(x))
        if verbose == "auto":
            verbose = 1 if sys.stderr.isatty() else 2
        logger.info(
            "training on %s examples, global batch %d (%d per replica x %d replicas, %s)",
            "?" if n is None else n,
            global_batch,
            batch_size,
            self.replicas,
            self.choice.kind,
        )
        t0 = time.perf_counter()
        cache_state = "off"
        model = self.model
        private: list[Path] = []  # feature files of non-chief workers, removed below
        # Fingerprinted at every fit: fine-tuning changes the base, hence the features.
        weights = ""
        if use_cache:  # reading mirrored weights is collective under multi-worker training
            with cluster_failures(self.choice, action="Training"):
                weights = fingerprint_weights(self.base)
        val_source = val
        try:
            if folder is not None and use_cache:
                path, cache_state = self._folder_features(folder, global_batch, weights, private)
                features = self._feature_dataset(
                    path, folder.labels, shuffle=shuffle, seed=self._shuffle_seed(seed)
                )
                train = batch_dataset(features, global_batch, self.choice)
                model = self.head_model
            elif folder is not None:
                images = folder.dataset(
                    self._image_size(), shuffle=shuffle, seed=self._shuffle_seed(seed)
                )
                train = batch_dataset(images, global_batch, self.choice)
            elif use_cache:
                feats, cache_state = self._features(x, global_batch, weights)
                train = batch_dataset(
                    (feats, y), global_batch, self.choice, shuffle=shuffle, seed=seed
                )
                model = self.head_model
            elif not stream:
                train = batch_dataset((x, y), global_batch, self.choice, shuffle=shuffle, seed=seed)
            val = self._validation(val, global_batch, use_cache, weights, private)
            self._compile(fmt, model=model, steps=self._steps_for(train))
            t1 = time.perf_counter()
            with cluster_failures(self.choice, action="Training"):
                hist = model.fit(
                    train, epochs=epochs, validation_data=val, verbose=verbose, callbacks=callbacks
                )
        except tf().errors.InvalidArgumentError as exc:  # bad labels or an undecodable file
            error = self._data_error(exc, folder, val_source)
            if error is exc:
                raise
            raise error from exc
        finally:
            for p in private:
                p.unlink(missing_ok=True)
        t2 = time.perf_counter()
        self.last_fit = {
            "feature_cache": cache_state,
            "features_seconds": round(t1 - t0, 4),
            "train_seconds": round(t2 - t1, 4),
            "global_batch_size": global_batch,
            "replicas": self.replicas,
            "strategy": self.choice.kind,
            "static_batches": self.choice.kind == "tpu",
            "examples": n,
            "shuffle_seed": seed,
        }
        this = {k: [float(v) for v in vals] for k, vals in hist.history.items()}
        for k, vals in this.items():
            self.history.setdefault(k, []).extend(vals)
        return this

    def evaluate(self, x: Any, y: Any = None, *, batch_size: int = 32) -> dict[str, float]:
        """Loss and metrics of the whole model on ``(x, y)`` (``batch_size`` per replica).

        ``x`` may also be a dataset of ``(images, labels)`` or an image folder (streamed).
        """
        from ..backend import tf
        from ..distribute.replicas import cluster_failures
        from .heads import label_format

        global_batch = batch_size * self.replicas
        folder = self._as_folder(x)
        if folder is not None:
            fmt = "sparse"
            data = folder.dataset(self._image_size()).batch(global_batch)
            kwargs: dict[str, Any] = {}
        else:
            x, y = self._xy(x, y)
            fmt = label_format(y) if self.task == "classification" else "categorical"
            self._check_labels(x, y, fmt)
            data, kwargs = x, {"y": y, "batch_size": global_batch}
        self._compile(fmt)
        # Arrays or a padded-by-Keras dataset, not static batches: every example counts,
        # also on a TPU.
        with cluster_failures(self.choice, action="Evaluation"):
            try:
                out = self.model.evaluate(data, verbose=0, return_dict=True, **kwargs)
            except tf().errors.InvalidArgumentError as exc:
                error = self._data_error(exc, folder)
                if error is exc:
                    raise
                raise error from exc
        return {k: float(v) for k, v in out.items()}

    def unfreeze(
        self,
        *,
        top: int | None = None,
        from_layer: str | int | None = None,
        keep_batchnorm_frozen: bool = True,
        learning_rate: float | None = None,
    ) -> TransferLearner:
        """Fine-tune: make the last base layers trainable (see :func:`modelzoo.unfreeze`).

        The next ``fit`` recompiles (it does so whenever trainability changed, also after
        ``modelzoo.unfreeze(learner.base, ...)``) and trains through the base; the feature
        cache is skipped while any base layer is trainable.

        Args:
            top: unfreeze the last ``top`` layers of the base.
            from_layer: unfreeze from this layer of the base on.
            keep_batchnorm_frozen: leave BatchNormalization layers frozen.
            learning_rate: a new (usually smaller) learning rate for the next fits.

        Returns:
            The learner, for chaining.
        """
        from .slicing import unfreeze

        unfreeze(
            self.base, top=top, from_layer=from_layer, keep_batchnorm_frozen=keep_batchnorm_frozen
        )
        if learning_rate is not None:
            self.learning_rate = float(learning_rate)
        return self

    def freeze(self) -> TransferLearner:
        """Freeze the whole base again; the next ``fit`` recompiles and may use the cache."""
        from .slicing import freeze

        freeze(self.base)
        return self

    def predict(self, x: Any, *, batch_size: int = 32) -> np.ndarray:
        """Model outputs for images ``x`` (class probabilities for classification)."""
        from ..distribute.replicas import cluster_failures

        if _is_dataset(x):
            with cluster_failures(self.choice, action="Prediction"):
                return self.model.predict(x, verbose=0)
        return self._predict(self.model, np.asarray(x), batch_size * self.replicas)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Save a standalone ``.keras`` model (plain ``tf_keras.models.load_model`` loads it,
        on any machine, with no strategy) and its labels/metadata next to it
        (``<name>.labels.json``).

        Under multi-worker training every worker must call this (saving reads the
        variables collectively); only the chief writes to ``path``, the others write to a
        hidden temporary folder beside it that is removed
        (:func:`modelzoo.distribute.cluster.saving_path`).

        Returns:
            ``path``, on every worker.
        """
        from ..distribute.cluster import saving_path
        from ..distribute.replicas import cluster_failures
        from ..files import atomic_output, atomic_write

        path = Path(path)
        if path.suffix != ".keras":
            raise UsageError(f"Save as a .keras file. Received: {path}.")
        meta = {
            "labels": self.labels,
            "task": self.task,
            "base": self.base_name,
            "cut": self.cut if isinstance(self.cut, str | int | list | None) else str(self.cut),
            "input_shape": list(self.model.input_shape[1:]),
            "preprocessing": "baked"
            if self._baked()
            else (self.manifest.input.preprocessing if self.manifest else "none"),
        }
        if self.data_root is not None:
            meta["data"] = str(self.data_root)
        with saving_path(path, self.choice) as target:
            with (
                atomic_output(target, suffix=".keras") as tmp,
                cluster_failures(self.choice, action="Saving"),
            ):
                self._optimizer_state_that_trained()
                self.model.save(tmp)
            atomic_write(sidecar_path(target), json.dumps(meta, indent=2) + "\n")
        return path

    def _optimizer_state_that_trained(self) -> None:
        """Make ``model``'s optimizer hold the state that trained the head, before saving.

        With the feature cache the head trains through ``head_model`` (same layers, own
        optimizer), so ``model``'s optimizer never steps and has no slot variables; a
        compiled load (plain ``load_model``) then warns "Skipping variable loading for
        optimizer". Build the slots and copy the head optimizer's values into them.
        """
        optimizer = getattr(self.model, "optimizer", None)
        if optimizer is None or int(optimizer.iterations.numpy()) > 0:
            return  # not compiled, or it trained this model itself
        with self.strategy.scope():
            optimizer.build(self.model.trainable_variables)
        trained = getattr(self.head_model, "optimizer", None)
        if trained is None or int(trained.iterations.numpy()) == 0:
            return
        src, dst = trained.variables, optimizer.variables
        if len(src) == len(dst) and all(a.shape == b.shape for a, b in zip(src, dst, strict=False)):
            for a, b in zip(src, dst, strict=True):
                b.assign(a)

    def _baked(self) -> bool:
        return any(layer.name.startswith("preprocess_") for layer in self.base.layers)

    def plot_history(self, path: str | os.PathLike[str]) -> Path:
        """Plot loss/accuracy curves of everything trained so far to a PNG."""
        from ..viz.maps import plot_history

        return plot_history(self.history, path)
