"""Choosing and building a ``tf.distribute`` strategy that fits the machine it runs on.

``make_strategy("auto")`` picks, in order: a TPU when one is configured (``TPU_NAME``) or
the machine looks like a TPU VM; multi-worker training when ``TF_CONFIG`` names two or more
workers; ``MirroredStrategy`` over all GPUs when there are two or more; the one GPU when
there is one; otherwise TensorFlow's default strategy on the CPU.

Explicit specs ask for one layout and fail fast with :class:`~modelzoo.errors.StrategyError`
when the hardware is not there (where TensorFlow itself would hang or quietly use the CPU):

==============================  =============================================================
spec                            strategy
==============================  =============================================================
``"auto"``                      see above; the reason is logged and kept on the choice
``"cpu"``                       the default strategy when no GPU is visible (same placement,
                                no distribution overhead), else ``OneDeviceStrategy("/cpu:0")``
                                so that the GPU stays unused
``"gpu"``, ``"gpu:N"``          ``OneDeviceStrategy("/gpu:N")`` (N defaults to 0)
``"mirrored"``                  ``MirroredStrategy`` over all GPUs, or over all logical CPU
                                devices when there is no GPU and two or more of them
``"mirrored:/cpu:0,/cpu:1"``    ``MirroredStrategy`` over exactly these local devices
``"multi-worker"``              ``MultiWorkerMirroredStrategy`` from ``TF_CONFIG``, with a
                                bounded wait for the other workers to join
``"tpu"``, ``"tpu:TARGET"``     ``TPUStrategy``; TARGET is a TPU name, ``grpc://host:port``
                                or ``local``; plain ``"tpu"`` uses ``TPU_NAME`` or ``local``
==============================  =============================================================

Device counts are read without initialising the TensorFlow runtime, so choosing a
strategy never blocks a later ``tf.config.set_logical_device_configuration`` by accident.
Multi-worker and TPU strategies own process-wide state (a gRPC server, an initialised TPU
system), so each is built once per process and handed out again on later requests.
Choose the strategy before any other TensorFlow work in the process: joining a cluster
and splitting the CPU both have to happen before the runtime starts.

``MODELZOO_CPU_DEVICES=N`` (a testing and simulation aid) splits the CPU into N logical
devices when the first strategy is chosen, so ``"mirrored"`` can be tried, tested and
benchmarked on a machine without GPUs.

Running under a strategy: :func:`global_batch_size`, :func:`batch_dataset` (global
batches, static shapes on TPUs, per-worker sharding), :func:`steps_per_execution_for`,
:func:`in_scope` (a model whose variables belong to the strategy) and
:func:`cluster_failures` (a lost worker or TPU becomes a :class:`StrategyError`). Who
writes files in a cluster lives in :mod:`modelzoo.cluster` (re-exported here).
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import os
import re
import socket
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from . import _tf, constants
from .cluster import (
    ClusterConfig,
    is_chief,
    parse_tf_config,
    remove_worker_temp,
    saving_path,
    worker_temp_dir,
)
from .errors import StrategyError, UsageError, nearest

__all__ = [
    "DEFAULT_REGISTER_TIMEOUT",
    "DEFAULT_TPU_TIMEOUT",
    "KINDS",
    "VALID_SPECS",
    "ClusterConfig",
    "StrategyChoice",
    "batch_dataset",
    "choose_strategy",
    "cluster_failures",
    "describe_devices",
    "global_batch_size",
    "in_scope",
    "is_chief",
    "make_strategy",
    "parse_tf_config",
    "prepare_dataset",
    "remove_worker_temp",
    "saving_path",
    "steps_per_execution_for",
    "worker_temp_dir",
]

logger = logging.getLogger("modelzoo")

#: Seconds to wait for a remote TPU's gRPC port to accept a TCP connection.
DEFAULT_TPU_TIMEOUT = 10.0
#: Seconds every worker named in ``TF_CONFIG`` gets to join before the start is abandoned;
#: generous because cluster schedulers may start workers minutes apart.
DEFAULT_REGISTER_TIMEOUT = 120.0

#: Every value :attr:`StrategyChoice.kind` can take ("other": a ready-made strategy of
#: another class, e.g. ``CentralStorageStrategy``).
KINDS = ("cpu", "one-device", "mirrored", "multi-worker", "tpu", "other")

#: The spec forms :func:`make_strategy` understands (quoted in error messages).
VALID_SPECS = (
    "auto",
    "cpu",
    "gpu",
    "gpu:N",
    "mirrored",
    "mirrored:/gpu:0,/gpu:1",
    "multi-worker",
    "tpu",
    "tpu:NAME_OR_GRPC_ADDRESS",
)

_WORDS = ("auto", "default", "cpu", "gpu", "mirrored", "multi-worker", "tpu")
_TPU_STEPS_PER_EXECUTION = 32
# Every worker must shuffle identically (see batch_dataset); any fixed number will do.
_SHARED_SHUFFLE_SEED = 20_240_531
# How TensorFlow reports a lost peer (see cluster_failures).
_PEER_ERRORS = ("UnavailableError", "DeadlineExceededError", "AbortedError", "CancelledError")
_TASK_NAME = re.compile(r"/job:\w+/replica:\d+/task:\d+")

# Strategies owning process-wide state, keyed by (kind, target); see the module docstring.
_BUILT: dict[tuple[str, str], Any] = {}
# Why building a multi-worker strategy failed: TensorFlow cannot join a cluster twice.
_CLUSTER_FAILURE: list[str] = []


@dataclass(frozen=True)
class StrategyChoice:
    """A built strategy with what was asked, what it runs on and why it was chosen.

    Attributes:
        strategy: the ``tf.distribute.Strategy``.
        spec: what was asked for (``"auto"``, ``"gpu:1"``, ``"<MirroredStrategy>"`` ...).
        kind: one of :data:`KINDS`.
        devices: the devices this process's replicas run on.
        replicas: ``strategy.num_replicas_in_sync`` (all workers together).
        reason: one sentence saying why this strategy was chosen.
    """

    strategy: Any
    spec: str
    kind: str
    devices: tuple[str, ...]
    replicas: int
    reason: str


@dataclass(frozen=True)
class _Plan:
    # What to build, decided without building anything (so describe_devices never blocks).
    # build: "default" | "one-device" | "mirrored" | "multi-worker" | "tpu" | "tpu-guess"
    kind: str
    build: str
    devices: tuple[str, ...]
    reason: str
    target: str = ""
    cluster: ClusterConfig | None = None


@dataclass(frozen=True)
class _Inventory:
    # Local devices as TensorFlow will create them, read without initialising the runtime.
    cpus: tuple[str, ...]
    gpus: tuple[str, ...]
    tpus: int
    physical_gpus: int

    def summary(self) -> str:
        def count(n: int, what: str) -> str:
            return f"{n} {what}{'' if n == 1 else 's'}"

        tpus = f", {count(self.tpus, 'TPU')}" if self.tpus else ""
        return f"{count(len(self.gpus), 'GPU')}, {count(len(self.cpus), 'CPU')}{tpus}"


def make_strategy(
    spec: Any = "auto",
    *,
    tpu_timeout: float = DEFAULT_TPU_TIMEOUT,
    register_timeout: float = DEFAULT_REGISTER_TIMEOUT,
):
    """Build the ``tf.distribute.Strategy`` that ``spec`` asks for, logging why.

    Args:
        spec: a spec string (see the module docstring); ``None`` for TensorFlow's default
            strategy; a ready-made ``tf.distribute.Strategy`` or a :class:`StrategyChoice`
            (returned as is).
        tpu_timeout: seconds to wait for a remote TPU's port to answer.
        register_timeout: seconds the workers of a multi-worker cluster get to join.

    Returns:
        The strategy: build and compile models inside ``strategy.scope()``.

    Raises:
        UsageError: ``spec`` is not a valid spec, or a timeout is not positive.
        StrategyError: the hardware or cluster asked for is not there or does not answer.
    """
    choice = choose_strategy(spec, tpu_timeout=tpu_timeout, register_timeout=register_timeout)
    logger.info(
        "Distribution strategy: %s, %d replica(s): %s", choice.kind, choice.replicas, choice.reason
    )
    return choice.strategy


def choose_strategy(
    spec: Any = "auto",
    *,
    tpu_timeout: float = DEFAULT_TPU_TIMEOUT,
    register_timeout: float = DEFAULT_REGISTER_TIMEOUT,
) -> StrategyChoice:
    """Like :func:`make_strategy`, but return the strategy with what, where and why.

    Raises:
        UsageError: ``spec`` is not a valid spec, or a timeout is not positive.
        StrategyError: the hardware or cluster asked for is not there or does not answer.
    """
    if isinstance(spec, StrategyChoice):
        return spec
    for name, value in (("tpu_timeout", tpu_timeout), ("register_timeout", register_timeout)):
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            raise UsageError(f"{name} must be a positive number of seconds. Received: {value!r}.")
    tf = _tf.tf()
    if isinstance(spec, tf.distribute.Strategy):
        return _describe_built(spec)
    if spec is not None and not isinstance(spec, str):
        raise UsageError(
            f"strategy must be a spec string, None or a tf.distribute.Strategy. Received: "
            f"{spec!r} ({type(spec).__name__}). Valid specs: {', '.join(VALID_SPECS)}."
        )
    _apply_cpu_devices()
    plan = _plan(spec)
    strategy, plan = _build(plan, tpu_timeout=tpu_timeout, register_timeout=register_timeout)
    devices = plan.devices or tuple(strategy.extended.worker_devices)
    return StrategyChoice(
        strategy=strategy,
        spec="default" if spec is None else spec,
        kind=plan.kind,
        devices=devices,
        replicas=int(strategy.num_replicas_in_sync),
        reason=plan.reason,
    )


def global_batch_size(per_replica: int, strategy: Any = None) -> int:
    """The batch size to give ``tf.data`` so that each replica sees ``per_replica`` examples.

    Args:
        per_replica: examples per replica per step.
        strategy: a strategy or :class:`StrategyChoice`; ``None`` means the current one.
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
        strategy: a strategy or :class:`StrategyChoice`; ``None`` means the current one.
    """
    tf = _tf.tf()
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
        strategy: a strategy or :class:`StrategyChoice`; ``None`` means the current one.
        shuffle: reshuffle arrays every epoch.
        seed: the shuffle seed (None: TensorFlow's global seed; fixed under multi-worker).
        batched: ``data`` is a dataset that is already batched.

    Raises:
        UsageError: bad arguments, arrays of different lengths, or (on TPUs) fewer
            examples than one global batch.
    """
    tf = _tf.tf()
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
                seed = _SHARED_SHUFFLE_SEED
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
        strategy: a strategy or :class:`StrategyChoice`; ``None`` means the current one.

    Raises:
        UsageError: the model cannot be rebuilt from its config (custom layers): build it
            inside ``strategy.scope()`` yourself.
    """
    strategy = _strategy_of(strategy)
    created_here = strategy.extended.variable_created_in_scope
    if all(created_here(v) for v in model.weights):
        return model
    keras = _tf.keras()
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
    tf = _tf.tf()
    strategy = _strategy_of(strategy)
    votes = strategy.experimental_distribute_values_from_function(
        lambda _: tf.constant(1 if flag else 0, tf.int32)
    )
    with cluster_failures(strategy, action="A vote among the workers"):
        total = strategy.reduce(tf.distribute.ReduceOp.SUM, votes, axis=None)
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
    tf = _tf.tf()
    kind = _kind(strategy)
    try:
        yield
    except tf.errors.OpError as exc:
        if kind not in ("multi-worker", "tpu") or type(exc).__name__ not in _PEER_ERRORS:
            raise
        raise _peer_error(exc, kind, action, _strategy_of(strategy)) from exc


def describe_devices() -> dict[str, Any]:
    """What TensorFlow sees on this machine and what ``"auto"`` would pick; never blocks.

    Nothing is built or contacted. Listing logical devices initialises the TensorFlow
    runtime, so call this where devices no longer need configuring (``modelzoo doctor``).

    Returns:
        A JSON-serialisable dict: ``tensorflow`` and ``tf_keras`` versions; ``physical``
        and ``logical`` (device type -> device names); ``tf_config`` (``None`` or
        ``{"task", "workers", "error"}``); ``tpu_name``; ``tpu_device_files``; ``auto``
        (``{"kind", "devices", "reason"}``, or ``{"error"}`` when it would fail).
    """
    tf = _tf.tf()
    keras = _tf.keras()
    _apply_cpu_devices()
    found: dict[str, dict[str, list[str]]] = {"physical": {}, "logical": {}}
    listers = (tf.config.list_physical_devices, tf.config.list_logical_devices)
    for key, lister in zip(("physical", "logical"), listers, strict=True):
        for device in lister():
            found[key].setdefault(device.device_type, []).append(device.name)
    try:
        config = parse_tf_config()
        tf_config = config and {
            "task": f"{config.task_type}:{config.task_index}",
            "workers": config.num_workers,
            "error": None,
        }
    except StrategyError as exc:
        tf_config = {"task": None, "workers": None, "error": str(exc)}
    try:
        plan = _plan("auto")
        auto: dict[str, Any] = {"kind": plan.kind, "devices": list(plan.devices)}
        auto["reason"] = plan.reason
    except (StrategyError, UsageError) as exc:
        auto = {"error": str(exc)}
    return {
        "tensorflow": tf.__version__,
        "tf_keras": keras.__version__,
        **found,
        "tf_config": tf_config,
        "tpu_name": os.environ.get("TPU_NAME", "").strip() or None,
        "tpu_device_files": _tpu_device_files(),
        "cpu_devices_env": constants.cpu_devices(),
        "auto": auto,
    }


# ----------------------------------------------------------------------------- planning


def _plan(spec: str | None) -> _Plan:
    inventory = _inventory()
    if spec is None:
        return _default_plan(inventory, "no strategy given")
    word, colon, arg = spec.strip().partition(":")
    word = word.lower().replace("_", "-")
    word = "multi-worker" if word == "multiworker" else word
    if word not in _WORDS:
        close = nearest(word, _WORDS, n=1)
        raise UsageError(
            f"Unknown strategy spec {spec!r}. Valid specs: {', '.join(VALID_SPECS)}."
            + (f" Did you mean {close[0]!r}?" if close else "")
        )
    arg = arg.strip()
    if colon and (not arg or word in ("auto", "default", "cpu", "multi-worker")):
        raise UsageError(
            f"Strategy spec {spec!r} has a bad ':' part; only gpu:N, mirrored:DEVICES and "
            f"tpu:TARGET take one. Valid specs: {', '.join(VALID_SPECS)}."
        )
    if word == "auto":
        return _auto_plan(inventory)
    if word == "default":
        return _default_plan(inventory, "'default' asked")
    if word == "cpu":
        if inventory.gpus:
            why = f"'cpu' asked with {len(inventory.gpus)} GPU(s) visible -> pinned to /cpu:0"
            return _Plan("cpu", "one-device", ("/cpu:0",), why)
        return _Plan("cpu", "default", ("/cpu:0",), "'cpu' asked, 0 GPUs -> default strategy")
    if word == "gpu":
        return _gpu_plan(spec, arg, inventory)
    if word == "mirrored":
        return _mirrored_plan(spec, arg, inventory)
    if word == "multi-worker":
        return _multi_worker_plan(spec)
    return _tpu_plan(spec, arg, inventory)


def _default_plan(inventory: _Inventory, why: str) -> _Plan:
    if inventory.gpus:
        why += f" -> TensorFlow's default strategy (runs on {inventory.gpus[0]})"
        return _Plan("one-device", "default", inventory.gpus[:1], why)
    return _Plan("cpu", "default", ("/cpu:0",), why + " -> TensorFlow's default strategy")


def _auto_plan(inventory: _Inventory, *, tpu_note: str = "") -> _Plan:
    tpu_name = os.environ.get("TPU_NAME", "").strip()
    files = _tpu_device_files()
    if not tpu_note and tpu_name:
        return _Plan("tpu", "tpu", (), f"auto: TPU_NAME={tpu_name!r} -> TPUStrategy", tpu_name)
    if not tpu_note and inventory.tpus:
        why = f"auto: {inventory.tpus} TPU devices -> TPUStrategy"
        return _Plan("tpu", "tpu", (), why, "local")
    if not tpu_note and files:
        # Device files alone are a guess (other accelerators use /dev/accel and VFIO too),
        # so when no local TPU answers, "tpu-guess" goes on with the other options.
        why = f"auto: looks like a TPU VM ({', '.join(files[:3])}) -> TPUStrategy"
        return _Plan("tpu", "tpu-guess", (), why, "local")
    notes = [tpu_note or "no TPU configured (TPU_NAME unset, no TPU devices)"]
    config = parse_tf_config()
    if config is not None and config.num_workers >= 2:
        why = (
            f"auto: {notes[0]}, TF_CONFIG names {config.num_workers} workers (this is "
            f"{config.task_type}:{config.task_index}) -> MultiWorkerMirroredStrategy"
        )
        return _Plan("multi-worker", "multi-worker", (), why, cluster=config)
    notes.append("TF_CONFIG absent" if config is None else "TF_CONFIG names 1 worker")
    return _local_plan(inventory, notes)


def _local_plan(inventory: _Inventory, notes: list[str]) -> _Plan:
    gpus = inventory.gpus
    found = ", ".join([*notes, f"{len(gpus)} GPU{'' if len(gpus) == 1 else 's'} found"])
    if len(gpus) >= 2:
        return _Plan("mirrored", "mirrored", gpus, f"auto: {found} -> MirroredStrategy")
    if gpus:
        return _Plan("one-device", "one-device", gpus, f"auto: {found} -> OneDeviceStrategy")
    return _Plan("cpu", "default", ("/cpu:0",), f"auto: {found} -> default CPU strategy")


def _gpu_plan(spec: str, arg: str, inventory: _Inventory) -> _Plan:
    if arg and not arg.isdigit():
        raise UsageError(f"'gpu:N' needs a GPU index N (0, 1, ...). Received: {spec!r}.")
    index = int(arg or 0)
    if index >= len(inventory.gpus):
        raise StrategyError(
            f"Strategy {spec!r} asks for GPU {index}, but TensorFlow sees "
            f"{inventory.summary()}. {_gpu_hint(inventory)}"
        )
    device = inventory.gpus[index]
    return _Plan("one-device", "one-device", (device,), f"{spec!r} asked -> {device}")


def _mirrored_plan(spec: str, arg: str, inventory: _Inventory) -> _Plan:
    if arg:
        devices = _parse_devices(spec, arg, inventory)
        return _Plan("mirrored", "mirrored", devices, f"{spec!r} asked -> MirroredStrategy")
    if inventory.gpus:
        why = f"'mirrored' asked, {len(inventory.gpus)} GPU(s) -> MirroredStrategy over the GPUs"
        return _Plan("mirrored", "mirrored", inventory.gpus, why)
    if len(inventory.cpus) >= 2:
        why = f"'mirrored' asked, 0 GPUs, {len(inventory.cpus)} logical CPUs -> mirror the CPUs"
        return _Plan("mirrored", "mirrored", inventory.cpus, why)
    raise StrategyError(
        f"Strategy 'mirrored' needs GPUs or two or more logical CPU devices, but TensorFlow "
        f"sees {inventory.summary()}. Use 'auto' or 'cpu' here, or split the CPU with "
        "tf.config.set_logical_device_configuration(...) before TensorFlow starts."
    )


def _parse_devices(spec: str, arg: str, inventory: _Inventory) -> tuple[str, ...]:
    tf = _tf.tf()
    wanted: list[str] = []
    for raw in arg.split(","):
        text = raw.strip()
        try:
            device = tf.DeviceSpec.from_string(text if text.startswith("/") else "/" + text)
        except (ValueError, TypeError) as exc:
            raise UsageError(f"{text!r} in {spec!r} is not a device; use e.g. /gpu:0.") from exc
        if device.job or device.task is not None or not device.device_type:
            raise UsageError(
                f"{text!r} in {spec!r} is not a local device such as /gpu:0 or /cpu:1 "
                "(to train on several machines use 'multi-worker')."
            )
        name = f"/{device.device_type.lower()}:{device.device_index or 0}"
        if name in wanted:
            raise UsageError(f"{spec!r} lists {name} twice; list each device once.")
        wanted.append(name)
    if len({name.split(":")[0] for name in wanted}) > 1:
        raise UsageError(f"{spec!r} mixes device types; mirror over GPUs or over CPUs.")
    missing = [name for name in wanted if name not in (*inventory.cpus, *inventory.gpus)]
    if missing:
        hint = (
            _gpu_hint(inventory)
            if missing[0].startswith("/gpu")
            else "Split the CPU with tf.config.set_logical_device_configuration(...) first."
        )
        raise StrategyError(
            f"Strategy {spec!r} asks for {', '.join(missing)}, which TensorFlow does not "
            f"have: it sees {inventory.summary()} "
            f"({', '.join((*inventory.gpus, *inventory.cpus))}). {hint}"
        )
    return tuple(wanted)


def _multi_worker_plan(spec: str) -> _Plan:
    config = parse_tf_config()
    if config is None:
        raise StrategyError(
            f"Strategy {spec!r} needs the TF_CONFIG environment variable, which is unset. Set "
            'it on every worker, e.g. {"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
            '"task": {"type": "worker", "index": 0}} with each worker\'s own index, or use '
            "'auto' to train on this machine only."
        )
    why = (
        f"{spec!r} asked, TF_CONFIG names {config.num_workers} worker(s), this is "
        f"{config.task_type}:{config.task_index} -> MultiWorkerMirroredStrategy"
    )
    return _Plan("multi-worker", "multi-worker", (), why, cluster=config)


def _tpu_plan(spec: str, target: str, inventory: _Inventory) -> _Plan:
    if target:
        return _Plan("tpu", "tpu", (), f"{spec!r} asked -> TPUStrategy", target)
    tpu_name = os.environ.get("TPU_NAME", "").strip()
    if tpu_name:
        why = f"'tpu' asked, TPU_NAME={tpu_name!r} -> TPUStrategy"
        return _Plan("tpu", "tpu", (), why, tpu_name)
    if inventory.tpus or _tpu_device_files():
        return _Plan("tpu", "tpu", (), "'tpu' asked on a TPU VM -> TPUStrategy(local)", "local")
    raise StrategyError(
        f"Strategy {spec!r} asks for a TPU, but none is configured: TPU_NAME is unset, there "
        f"are no /dev/accel* or /dev/vfio devices and TensorFlow sees {inventory.summary()}. "
        "Set TPU_NAME, pass 'tpu:NAME' or 'tpu:grpc://HOST:8470', or use 'auto'."
    )


# ----------------------------------------------------------------------------- building


def _build(plan: _Plan, *, tpu_timeout: float, register_timeout: float):
    tf = _tf.tf()
    if plan.build == "tpu-guess":
        try:
            return _build_tpu("local", tpu_timeout), plan
        except StrategyError as exc:
            logger.warning("This looked like a TPU VM, but no TPU answered: %s", exc)
            plan = _auto_plan(_inventory(), tpu_note="TPU device files but no TPU answered")
    if plan.build == "tpu":
        return _build_tpu(plan.target, tpu_timeout), plan
    if plan.build == "multi-worker":
        return _build_multi_worker(plan.cluster, register_timeout), plan
    if plan.build == "mirrored":
        return tf.distribute.MirroredStrategy(devices=list(plan.devices)), plan
    if plan.build == "one-device":
        return tf.distribute.OneDeviceStrategy(plan.devices[0]), plan
    return tf.distribute.get_strategy(), plan


def _build_tpu(target: str, timeout: float):
    if ("tpu", target) in _BUILT:
        return _BUILT["tpu", target]
    tf = _tf.tf()
    where = "the local TPU" if target == "local" else f"TPU {target!r}"
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=target)
        if target != "local":
            master = resolver.master()
            if master.startswith("grpc://"):
                # experimental_connect_to_cluster waits forever on an address nobody serves.
                _probe_tcp(master, timeout, what=where)
            tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        strategy = tf.distribute.TPUStrategy(resolver)
    except StrategyError:
        raise
    except Exception as exc:  # ValueError, OpError, URLError, ImportError ... from TF
        check = (
            "Check that this is a TPU VM with a TPU build of TensorFlow (libtpu)"
            if target == "local"
            else "Check the TPU's name or address and that it is up (gcloud compute tpus list)"
        )
        raise StrategyError(
            f"Could not start {where}: {type(exc).__name__}: {_first_line(exc)}. {check}, "
            "or use 'auto'."
        ) from exc
    _BUILT["tpu", target] = strategy
    return strategy


def _build_multi_worker(config: ClusterConfig, register_timeout: float):
    key = ("multi-worker", json.dumps([config.jobs, config.task_type, config.task_index]))
    if key in _BUILT:
        return _BUILT[key]
    joined = [k for k in _BUILT if k[0] == "multi-worker"]
    if joined:
        raise StrategyError(
            f"This process already joined a different cluster ({joined[0][1]}); TensorFlow "
            "cannot join a second one. Reuse that strategy, or restart with the new TF_CONFIG."
        )
    if _CLUSTER_FAILURE:
        raise StrategyError(
            f"An earlier multi-worker start in this process failed ({_CLUSTER_FAILURE[0]}); "
            "TensorFlow cannot join a cluster twice. Restart the process to try again."
        )
    tf = _tf.tf()
    # TF 2.21 has no public API for the coordination-service settings, and without a
    # register timeout plus barrier a worker whose peer never starts waits forever.
    # These private modules are the ones TensorFlow's own multi-worker tests use.
    context = importlib.import_module("tensorflow.python.eager.context").context()
    if context.coordination_service is None:
        protos = importlib.import_module(
            "tensorflow.compiler.xla.tsl.protobuf.coordination_config_pb2"
        )
        context.configure_coordination_service(
            service_type="standalone",
            service_leader=config.leader,
            coordinated_jobs=[
                protos.CoordinatedJob(name=job, num_tasks=len(addresses))
                for job, addresses in config.jobs
            ],
            cluster_register_timeout_in_ms=max(1, int(register_timeout * 1000)),
        )
        context.coordination_service.cluster_register_with_barrier = True
    try:
        resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
        strategy = tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=resolver)
    except Exception as exc:  # DeadlineExceededError, UnavailableError, ValueError ...
        summary = f"{type(exc).__name__}: {_first_line(exc)}"
        _CLUSTER_FAILURE.append(summary)
        everyone = ", ".join(a for _, addresses in config.jobs for a in addresses)
        if isinstance(exc, tf.errors.DeadlineExceededError | tf.errors.UnavailableError):
            problem = f"not all {config.num_workers} workers joined within {register_timeout:g}s"
            step = (
                f"Start every worker in TF_CONFIG ({everyone}) with its own task index, check "
                "the addresses and firewalls, or raise register_timeout"
            )
        elif "startup" in str(exc):
            problem = "TensorFlow was already running"
            step = "Build the strategy before any other TensorFlow work in the process"
        else:
            problem, step = "TensorFlow refused the cluster", "Check TF_CONFIG"
        raise StrategyError(
            f"Multi-worker start failed on {config.task_type}:{config.task_index} "
            f"({config.address}): {problem} ({summary}). {step}; then restart this process."
        ) from exc
    _BUILT[key] = strategy
    return strategy


def _describe_built(strategy) -> StrategyChoice:
    kind = _kind_of(strategy)
    try:
        devices = tuple(strategy.extended.worker_devices)
    except RuntimeError:  # the default strategy keeps no device list
        devices = _default_plan(_inventory(), "").devices
    return StrategyChoice(
        strategy=strategy,
        spec=f"<{type(strategy).__name__}>",
        kind=kind,
        devices=devices,
        replicas=int(strategy.num_replicas_in_sync),
        reason=f"a ready-made {type(strategy).__name__} was passed -> used as is",
    )


def _kind_of(strategy) -> str:
    tf = _tf.tf()
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return "multi-worker"
    if isinstance(strategy, tf.distribute.TPUStrategy | tf.distribute.experimental.TPUStrategy):
        return "tpu"
    if isinstance(strategy, tf.distribute.MirroredStrategy):
        return "mirrored"
    if isinstance(strategy, tf.distribute.OneDeviceStrategy):
        on_cpu = "CPU" in strategy.extended.worker_devices[0].upper()
        return "cpu" if on_cpu else "one-device"
    if type(strategy).__name__ == "_DefaultDistributionStrategy":
        return "one-device" if _inventory().gpus else "cpu"
    return "other"


def _kind(strategy: Any) -> str:
    # A StrategyChoice says what it is; a bare strategy is classified by its class.
    if isinstance(strategy, StrategyChoice):
        return strategy.kind
    return _kind_of(_strategy_of(strategy))


def _apply_cpu_devices() -> None:
    """Split the CPU into ``MODELZOO_CPU_DEVICES`` logical devices while that is possible."""
    wanted = constants.cpu_devices()
    if wanted is None:
        return
    tf = _tf.tf()
    cpu = tf.config.list_physical_devices("CPU")[0]
    have = len(tf.config.get_logical_device_configuration(cpu) or [None])
    if have == wanted:
        return
    try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * wanted
        )
    except RuntimeError:
        logger.warning(
            "MODELZOO_CPU_DEVICES=%d has no effect: TensorFlow's runtime already started in "
            "this process with %d CPU device(s). Set it before the first TensorFlow operation "
            "(choose the strategy first).",
            wanted,
            have,
        )
    else:
        logger.info("Split the CPU into %d logical devices (MODELZOO_CPU_DEVICES)", wanted)


def _as_tensors(data: Any) -> tuple:
    tf = _tf.tf()
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
    resolver = getattr(strategy, "cluster_resolver", None)
    task_type = getattr(resolver, "task_type", None)
    here = f"{task_type}:{resolver.task_id}" if task_type else "this process"
    lost = sorted(set(_TASK_NAME.findall(str(exc))))
    if kind == "tpu":
        what = "the TPU stopped responding (preempted, restarted or unreachable)"
        step = (
            "Check the TPU's state (gcloud compute tpus tpu-vm describe NAME), then restart "
            "this program"
        )
    else:
        who = ", ".join(lost) if lost else "another worker"
        what = f"{who} stopped responding (crashed, preempted or unreachable)"
        step = (
            "Check that task's log (or the scheduler: preemption, eviction, out of memory), "
            "then restart every worker with its TF_CONFIG"
        )
    return StrategyError(
        f"{action} stopped on {here}: {what} ({type(exc).__name__}). A cluster cannot go on "
        f"without a member. {step}; a tf_keras BackupAndRestore callback lets the restarted "
        "run resume from the last finished epoch."
    )


def _strategy_of(strategy: Any):
    tf = _tf.tf()
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


def _inventory() -> _Inventory:
    tf = _tf.tf()
    found: dict[str, list[str]] = {"CPU": [], "GPU": []}
    for kind, names in found.items():
        for device in tf.config.get_visible_devices(kind):
            split = len(tf.config.get_logical_device_configuration(device) or [None])
            names.extend(f"/{kind.lower()}:{len(names)}" for _ in range(split))
    return _Inventory(
        cpus=tuple(found["CPU"]),
        gpus=tuple(found["GPU"]),
        tpus=len(tf.config.list_physical_devices("TPU")),
        physical_gpus=len(tf.config.list_physical_devices("GPU")),
    )


def _tpu_device_files() -> list[str]:
    dev = Path("/dev")
    try:
        found = [str(p) for p in sorted(dev.glob("accel*"))]
        vfio = dev / "vfio"
        if vfio.is_dir():
            found.extend(str(p) for p in sorted(vfio.iterdir()) if p.name.isdigit())
    except OSError:
        return []
    return found


def _gpu_hint(inventory: _Inventory) -> str:
    if inventory.physical_gpus == 0:
        return (
            "Install a CUDA build of TensorFlow (pip install 'tensorflow[and-cuda]') and check "
            "the driver (nvidia-smi), or use 'auto' or 'cpu'."
        )
    return "Use a smaller index, check CUDA_VISIBLE_DEVICES, or use 'auto'."


def _probe_tcp(address: str, timeout: float, *, what: str) -> None:
    parts = urlsplit(address)
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        host = port = None
    if not host or not port:
        raise StrategyError(f"{what}: {address!r} is not grpc://HOST:PORT (TPUs use :8470).")
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as exc:
        raise StrategyError(
            f"{what}: nothing answers at {host}:{port} within {timeout:g}s ({exc}). Check that "
            "the TPU is running and reachable from here (firewall, VPC), or use 'auto'."
        ) from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else "(no message)"
