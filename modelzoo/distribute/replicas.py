"""Running a model across the replicas of a ``tf.distribute`` strategy.

Global batch sizes and ``tf.data`` pipelines of global batches (static shapes on TPUs,
per-worker sharding), ``steps_per_execution`` for ``compile``, a model whose variables
belong to the strategy, a vote among the workers, and a lost worker or TPU turned into
a :class:`~modelzoo.errors.StrategyError`. Strategies themselves are chosen and built in
:mod:`modelzoo.distribute.strategies`, which re-exports everything here.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator, Sequence
from typing import Any

from .. import backend
from ..errors import StrategyError, UsageError
from ._plan import StrategyChoice, kind_of
from .cluster import parse_tf_config

__all__ = [
    "all_workers_agree",
    "batch_dataset",
    "cluster_failures",
    "global_batch_size",
    "in_scope",
    "prepare_dataset",
    "steps_per_execution_for",
]

logger = logging.getLogger(__name__)

_TPU_STEPS_PER_EXECUTION = 32
# Every worker must shuffle identically (see batch_dataset); any fixed number will do.
SHARED_SHUFFLE_SEED = 20_240_531
# How TensorFlow reports a lost peer (see cluster_failures).
_PEER_ERRORS = ("UnavailableError", "DeadlineExceededError", "AbortedError", "CancelledError")
# A task, not a device: TensorFlow also names this process's own devices inside op names
# ("__wrapped__CollectiveBcastSend_device_/job:worker/replica:0/task:0/device:CPU:0").
_TASK_NAME = re.compile(r"/job:(\w+)(?:/replica:\d+)?/task:(\d+)(?![\d/])")
# The coordination service's own list of the tasks it lost, one per line.
_UNHEALTHY = re.compile(r"tasks are unhealthy[^\n]*:\n((?:[ \t]*/job:\S+[ \t]*(?:\n|$))+)")


def global_batch_size(per_replica: int, strategy: Any = None) -> int:
    """The batch size to give ``tf.data`` so that each replica sees ``per_replica`` examples.

    Args:
        per_replica: examples per replica per step.
        strategy: a strategy or :class:`~modelzoo.distribute.strategies.StrategyChoice`; ``None``
            means the current one.
    """
    if isinstance(per_replica, bool) or not isinstance(per_replica, int) or per_replica < 1:
        raise UsageError(f"per_replica must be a positive integer. Received: {per_replica!r}.")
    return per_replica * int(_strategy_of(strategy).num_replicas_in_sync)


def prepare_dataset(dataset, strategy: Any = None):
    """Ready a batched ``tf.data.Dataset`` for ``model.fit`` under ``strategy``.

    Keras splits every global batch across the replicas itself, so a dataset needs no
    ``experimental_distribute_dataset``; only the batch size (:func:`global_batch_size`)
    and, for multi-worker training, the sharding policy need care: an in-memory dataset
    has no files to shard by, so each worker keeps its share of every global batch
    (``AutoShardPolicy.DATA``) instead of TensorFlow trying files first and warning.
    Datasets for other strategies are returned unchanged.

    Args:
        dataset: a ``tf.data.Dataset`` batched with the global batch size.
        strategy: a strategy or :class:`~modelzoo.distribute.strategies.StrategyChoice`; ``None``
            means the current one.
    """
    tf = backend.tf()
    if not isinstance(dataset, tf.data.Dataset):
        raise UsageError(
            f"prepare_dataset needs a tf.data.Dataset. Received: {type(dataset).__name__}. "
            "Wrap arrays with tf.data.Dataset.from_tensor_slices((x, y)).batch(n)."
        )
    if _kind(strategy) != "multi-worker":
        return dataset
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


def steps_per_execution_for(strategy: Any = None) -> int:
    """A good ``steps_per_execution`` for ``model.compile`` under ``strategy``.

    32 on TPUs, where each host round trip is costly; 1 elsewhere, so that callbacks and
    progress bars see every step.
    """
    return _TPU_STEPS_PER_EXECUTION if _kind(strategy) == "tpu" else 1


def batch_dataset(
    data: Any,
    global_batch: int,
    strategy: Any = None,
    *,
    shuffle: bool = False,
    seed: int | None = None,
    batched: bool = False,
):
    """A ``tf.data`` pipeline of global batches, ready for ``model.fit`` under ``strategy``.

    * Arrays are batched by index (one index shuffle per epoch when ``shuffle``), so a
      large image array is never copied into a shuffle buffer.
    * On TPUs the last partial batch is dropped (``drop_remainder=True``): XLA compiles
      one program per input shape, and the Cloud TPU guide asks for static batch shapes.
      Up to ``global_batch - 1`` examples per epoch are skipped; shuffling varies which.
    * Under multi-worker training every worker must see the same global batches, of
      which it keeps its share (:func:`prepare_dataset`), so shuffling uses ``seed`` or,
      when it is None, a fixed seed shared by all workers.

    Args:
        data: a tuple of arrays with the same first axis, e.g. ``(x, y)``; or a
            ``tf.data.Dataset`` of single examples, or of batches when ``batched``
            (re-batched to ``global_batch``). Datasets are used in their own order.
        global_batch: examples per step over all replicas (:func:`global_batch_size`).
        strategy: a strategy or :class:`~modelzoo.distribute.strategies.StrategyChoice`; ``None``
            means the current one.
        shuffle: reshuffle arrays every epoch.
        seed: the shuffle seed (None: TensorFlow's global seed; fixed under multi-worker).
        batched: ``data`` is a dataset that is already batched.

    Raises:
        UsageError: bad arguments, arrays of different lengths, or (on TPUs) fewer
            examples than one global batch.
    """
    tf = backend.tf()
    if isinstance(global_batch, bool) or not isinstance(global_batch, int) or global_batch < 1:
        raise UsageError(f"global_batch must be a positive integer. Received: {global_batch!r}.")
    kind = _kind(strategy)
    static = kind == "tpu"
    if isinstance(data, tf.data.Dataset):
        if shuffle:
            raise UsageError(
                "batch_dataset shuffles arrays only; shuffle a tf.data.Dataset yourself "
                "(dataset.shuffle(buffer)) before batching. Received: shuffle=True."
            )
        if batched:
            dataset = data.rebatch(global_batch, drop_remainder=static)
        else:
            dataset = data.batch(global_batch, drop_remainder=static)
    else:
        tensors = _as_tensors(data)
        n = int(tensors[0].shape[0])
        if static and n < global_batch:
            raise UsageError(
                f"On a TPU every batch must be full, but {n} examples make no global batch "
                f"of {global_batch}. Use a smaller per-replica batch size (at most "
                f"{max(1, n // max(1, _strategy_of(strategy).num_replicas_in_sync))}) or "
                "more data."
            )
        dataset = tf.data.Dataset.range(n)
        if shuffle:
            if seed is None and kind == "multi-worker":
                seed = SHARED_SHUFFLE_SEED
            dataset = dataset.shuffle(n, seed=seed, reshuffle_each_iteration=True)
        dataset = dataset.batch(global_batch, drop_remainder=static)
        dataset = dataset.map(
            lambda index: tuple(tf.gather(t, index) for t in tensors),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )
    return prepare_dataset(dataset.prefetch(tf.data.AUTOTUNE), strategy)


def in_scope(model, strategy: Any = None):
    """``model`` itself when its variables belong to ``strategy``, else a copy built there.

    Keras refuses to compile a model whose variables were created outside the strategy's
    scope, and a TPU cannot use variables that live on the host. The copy has the same
    architecture, weights and trainable flags (built with ``clone_model`` inside
    ``strategy.scope()``); the original is left as it is.

    Args:
        model: a ``tf_keras`` model.
        strategy: a strategy or :class:`~modelzoo.distribute.strategies.StrategyChoice`; ``None``
            means the current one.

    Raises:
        UsageError: the model cannot be rebuilt from its config (custom layers): build it
            inside ``strategy.scope()`` yourself.
    """
    strategy = _strategy_of(strategy)
    created_here = strategy.extended.variable_created_in_scope
    if all(created_here(v) for v in model.weights):
        return model
    keras = backend.keras()
    logger.info(
        "Rebuilding %r inside the %s scope: its variables were created outside it",
        model.name,
        type(strategy).__name__,
    )
    with strategy.scope():
        try:
            copy = keras.models.clone_model(model)
        except (ValueError, TypeError, NotImplementedError, KeyError) as exc:
            raise UsageError(
                f"Model {model.name!r} was built outside the {type(strategy).__name__} scope "
                f"and cannot be rebuilt inside it ({type(exc).__name__}: "
                f"{' '.join(str(exc).split())[:240]}). "
                "Build it inside `with strategy.scope():`, or pass a registry name or saved "
                "file so that modelzoo builds it there."
            ) from exc
        copy.set_weights(model.get_weights())
    # Setting a model's flag sets its layers' too: outer before inner (pre-order).
    copy.trainable = model.trainable
    for old, new in zip(_all_layers(model), _all_layers(copy), strict=False):
        new.trainable = old.trainable
    return copy


def all_workers_agree(flag: bool, strategy: Any = None) -> bool:
    """Whether ``flag`` is true on every worker of a multi-worker cluster.

    Every worker must call this at the same point (it is a collective). Use it before a
    choice that changes which collectives follow, such as reading features from a
    local cache instead of computing them with the others. Outside multi-worker
    training it returns ``flag``.
    """
    if _kind(strategy) != "multi-worker":
        return bool(flag)
    tf = backend.tf()
    strategy = _strategy_of(strategy)
    votes = strategy.experimental_distribute_values_from_function(
        lambda _: tf.constant(1 if flag else 0, tf.int32)
    )
    with cluster_failures(strategy, action="A vote among the workers"):
        total = strategy.reduce(tf.distribute.ReduceOp.SUM, votes, axis=None)
        # Collectives run asynchronously: a lost peer surfaces when the value is read.
        return int(total) == int(strategy.num_replicas_in_sync)


@contextlib.contextmanager
def cluster_failures(strategy: Any = None, *, action: str = "Training") -> Iterator[None]:
    """Turn a worker or TPU lost during ``action`` into a :class:`StrategyError`.

    Under multi-worker and TPU strategies TensorFlow reports a peer that crashed, was
    preempted or became unreachable as ``UnavailableError`` (or ``DeadlineExceededError``,
    ``AbortedError``, ``CancelledError`` for the collectives it interrupted) from deep
    inside ``model.fit``, with a graph traceback. This says which task was lost and what
    to do. Other errors, and every error under a local strategy, pass through unchanged.

    Example::

        with cluster_failures(strategy, action="Training"):
            model.fit(dataset, epochs=10)
    """
    tf = backend.tf()
    kind = _kind(strategy)
    try:
        yield
    except tf.errors.OpError as exc:
        if kind not in ("multi-worker", "tpu") or type(exc).__name__ not in _PEER_ERRORS:
            raise
        raise _peer_error(exc, kind, action, _strategy_of(strategy)) from exc


# ----------------------------------------------------------------------------- helpers


def _kind(strategy: Any) -> str:
    # A StrategyChoice says what it is; a bare strategy is classified by its class.
    if isinstance(strategy, StrategyChoice):
        return strategy.kind
    return kind_of(_strategy_of(strategy))


def _strategy_of(strategy: Any):
    tf = backend.tf()
    if isinstance(strategy, StrategyChoice):
        return strategy.strategy
    if strategy is None:
        return tf.distribute.get_strategy()
    if isinstance(strategy, tf.distribute.Strategy):
        return strategy
    raise UsageError(
        f"Expected a tf.distribute.Strategy, a StrategyChoice or None. Received: "
        f"{strategy!r} ({type(strategy).__name__}). Build one with make_strategy()."
    )


def _as_tensors(data: Any) -> tuple:
    tf = backend.tf()
    if not isinstance(data, Sequence) or isinstance(data, str) or not data:
        raise UsageError(
            "batch_dataset needs a tf.data.Dataset or a tuple of arrays such as (x, y). "
            f"Received: {type(data).__name__}."
        )
    tensors = tuple(tf.convert_to_tensor(a) for a in data)
    lengths = [int(t.shape[0]) if t.shape.rank else -1 for t in tensors]
    if len(set(lengths)) != 1 or lengths[0] < 1:
        raise UsageError(
            "batch_dataset needs non-empty arrays of the same length (first axis). "
            f"Received lengths: {lengths}."
        )
    return tensors


def _all_layers(model) -> list:
    # Depth-first, so nested models' layers line up between a model and its clone.
    found = []
    for layer in model.layers:
        found.append(layer)
        if hasattr(layer, "layers"):
            found.extend(_all_layers(layer))
    return found


def _peer_error(exc: Exception, kind: str, action: str, strategy) -> StrategyError:
    here = _this_task(strategy)
    if kind == "tpu":
        what = "the TPU stopped responding (preempted, restarted or unreachable)"
        step = (
            "Check the TPU's state (gcloud compute tpus tpu-vm describe NAME), then restart "
            "this program"
        )
    else:
        lost = _lost_tasks(str(exc), here)
        who = ", ".join(f"/job:{job}/replica:0/task:{index}" for job, index in lost)
        what = f"{who or 'another worker'} stopped responding (crashed, preempted or unreachable)"
        step = (
            "Check that task's log (or the scheduler: preemption, eviction, out of memory), "
            "then restart every worker with its TF_CONFIG"
        )
    where = f"{here[0]}:{here[1]}" if here else "this process"
    return StrategyError(
        f"{action} stopped on {where}: {what} ({type(exc).__name__}). A cluster cannot go on "
        f"without a member. {step}; a tf_keras BackupAndRestore callback lets the restarted "
        "run resume from the last finished epoch."
    )


def _this_task(strategy) -> tuple[str, int] | None:
    """This process's ``(job, index)``: from the strategy's resolver, else ``TF_CONFIG``."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if getattr(resolver, "task_type", None):
        return str(resolver.task_type), int(resolver.task_id or 0)
    try:
        config = parse_tf_config()
    except StrategyError:
        return None
    return (config.task_type, config.task_index) if config else None


def _lost_tasks(text: str, here: tuple[str, int] | None) -> list[tuple[str, int]]:
    """The tasks an error names as lost: the coordination service's list of unhealthy
    tasks when there is one, else every task it names; never this process's own task."""
    listed = _UNHEALTHY.search(text)
    names = _TASK_NAME.findall(listed.group(1) if listed else text)
    found = sorted({(job, int(index)) for job, index in names})
    return [task for task in found if task != here]
