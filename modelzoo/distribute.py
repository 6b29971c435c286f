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
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import os
import shutil
import socket
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from . import _tf
from .errors import StrategyError, UsageError, nearest

__all__ = [
    "DEFAULT_REGISTER_TIMEOUT",
    "DEFAULT_TPU_TIMEOUT",
    "KINDS",
    "VALID_SPECS",
    "ClusterConfig",
    "StrategyChoice",
    "choose_strategy",
    "describe_devices",
    "global_batch_size",
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

_JOBS = ("chief", "worker")
_WORDS = ("auto", "default", "cpu", "gpu", "mirrored", "multi-worker", "tpu")
_TPU_STEPS_PER_EXECUTION = 32

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
class ClusterConfig:
    """A validated ``TF_CONFIG``: the cluster's workers and this process's place in it.

    Attributes:
        jobs: ``(job, (host:port, ...))`` pairs, ``chief`` before ``worker``.
        task_type: this process's job, ``"chief"`` or ``"worker"``.
        task_index: this process's index within its job.
    """

    jobs: tuple[tuple[str, tuple[str, ...]], ...]
    task_type: str
    task_index: int

    @property
    def num_workers(self) -> int:
        """Workers taking part in training (the chief counts as one)."""
        return sum(len(addresses) for _, addresses in self.jobs)

    @property
    def is_chief(self) -> bool:
        """Whether this task saves models and checkpoints: the chief, else worker 0."""
        if "chief" in dict(self.jobs):
            return self.task_type == "chief"
        return self.task_type == "worker" and self.task_index == 0

    @property
    def address(self) -> str:
        """This task's ``host:port``."""
        return dict(self.jobs)[self.task_type][self.task_index]

    @property
    def leader(self) -> str:
        """The task running the coordination service: the chief, else worker 0."""
        return f"/job:{'chief' if 'chief' in dict(self.jobs) else 'worker'}/replica:0/task:0"


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
    if _kind_of(_strategy_of(strategy)) != "multi-worker":
        return dataset
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


def steps_per_execution_for(strategy: Any = None) -> int:
    """A good ``steps_per_execution`` for ``model.compile`` under ``strategy``.

    32 on TPUs, where each host round trip is costly; 1 elsewhere, so that callbacks and
    progress bars see every step.
    """
    return _TPU_STEPS_PER_EXECUTION if _kind_of(_strategy_of(strategy)) == "tpu" else 1


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
        "auto": auto,
    }


# ----------------------------------------------------------------------------- clusters


def parse_tf_config(value: str | Mapping[str, Any] | None = None) -> ClusterConfig | None:
    """Parse and validate a ``TF_CONFIG`` for multi-worker training.

    Args:
        value: the JSON text or the decoded mapping; ``None`` reads the ``TF_CONFIG``
            environment variable.

    Returns:
        The cluster, or ``None`` when ``value`` is ``None`` and ``TF_CONFIG`` is unset or empty.

    Raises:
        StrategyError: the config is not JSON or its cluster or task is invalid.
    """
    if value is None:
        value = os.environ.get("TF_CONFIG", "").strip()
        if not value:
            return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise _tf_config_error(f"is not valid JSON ({exc.msg} at char {exc.pos})") from exc
    if not isinstance(value, Mapping):
        raise _tf_config_error(f"must be a JSON object. Received: {type(value).__name__}")
    unknown = sorted(set(value) - {"cluster", "task", "rpc_layer", "environment"})
    if unknown:
        raise _tf_config_error(f"has unknown keys {unknown}; valid: cluster, task, rpc_layer")
    if value.get("rpc_layer", "grpc") != "grpc":
        raise _tf_config_error(f'rpc_layer must be "grpc". Received: {value["rpc_layer"]!r}')
    cluster = value.get("cluster")
    if not isinstance(cluster, Mapping) or not cluster:
        raise _tf_config_error(f'needs a "cluster" object of jobs. Received: {cluster!r}')
    if set(cluster) - set(_JOBS):
        raise _tf_config_error(
            f"cluster has jobs {sorted(set(cluster) - set(_JOBS))}; multi-worker training "
            'uses only "chief" and "worker" (parameter-server clusters are not supported)'
        )
    jobs, seen = [], set()
    for job in (j for j in _JOBS if j in cluster):
        addresses = cluster[job]
        too_many = job == "chief" and isinstance(addresses, list) and len(addresses) > 1
        if not isinstance(addresses, list) or not addresses or too_many:
            raise _tf_config_error(
                f'cluster["{job}"] must be a list of {"one" if job == "chief" else "some"} '
                f'"host:port". Received: {addresses!r}'
            )
        for address in addresses:
            host, _, port = address.rpartition(":") if isinstance(address, str) else ("", "", "")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise _tf_config_error(
                    f'cluster["{job}"] entries must be "host:port" with a port from 1 to '
                    f"65535. Received: {address!r}"
                )
            if address in seen:
                raise _tf_config_error(f"lists {address!r} twice; each task needs its own port")
            seen.add(address)
        jobs.append((job, tuple(addresses)))
    task = value.get("task")
    if not isinstance(task, Mapping) or task.get("type") not in dict(jobs):
        raise _tf_config_error(
            f'needs a "task" whose type is one of the cluster\'s jobs {[j for j, _ in jobs]}. '
            f"Received: {task!r}"
        )
    size, index = len(dict(jobs)[task["type"]]), task.get("index")
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < size:
        raise _tf_config_error(
            f"task.index must be an integer from 0 to {size - 1} (the {task['type']} job has "
            f"{size} task{'' if size == 1 else 's'}). Received: {index!r}"
        )
    return ClusterConfig(jobs=tuple(jobs), task_type=task["type"], task_index=index)


def is_chief(strategy_or_tf_config: Any = None) -> bool:
    """Whether this process should write saved models, checkpoints and logs.

    Args:
        strategy_or_tf_config: a ``tf.distribute.Strategy`` or :class:`StrategyChoice`; a
            :class:`ClusterConfig`, ``TF_CONFIG`` text or mapping; or ``None`` to read
            the ``TF_CONFIG`` environment variable.

    Returns:
        True outside multi-worker training and on the chief (the ``chief`` task, else
        worker 0); False on every other worker.
    """
    value = strategy_or_tf_config
    if isinstance(value, StrategyChoice):
        value = value.strategy
    if value is None or isinstance(value, str | Mapping):
        value = parse_tf_config(value)
        return True if value is None else value.is_chief
    if isinstance(value, ClusterConfig):
        return value.is_chief
    resolver = getattr(value, "cluster_resolver", None)
    task_type = getattr(resolver, "task_type", None)
    if task_type is None:
        return True
    if "chief" in resolver.cluster_spec().as_dict():
        return task_type == "chief"
    return task_type == "worker" and int(resolver.task_id or 0) == 0


def worker_temp_dir(path: str | os.PathLike[str], strategy: Any = None) -> Path:
    """Where this worker should save something whose real destination is ``path``.

    In multi-worker training every worker must call ``model.save`` (saving reads the
    variables collectively), but only the chief's copy is wanted. The chief gets ``path``
    itself; every other worker gets the same file name inside a hidden per-worker folder
    beside it (created here), removed by :func:`remove_worker_temp` (or use :func:`saving_path`).

    Args:
        path: the real destination (a ``.keras``/``.h5`` file or a SavedModel folder).
        strategy: anything :func:`is_chief` accepts; ``None`` reads ``TF_CONFIG``.
    """
    path = Path(path)
    if is_chief(strategy):
        return path
    folder = _worker_folder(path, strategy)
    folder.mkdir(parents=True, exist_ok=True)
    return folder / path.name


def remove_worker_temp(path: str | os.PathLike[str], strategy: Any = None) -> None:
    """Delete what this non-chief worker saved for ``path``; does nothing on the chief."""
    path = Path(path)
    if not is_chief(strategy):
        shutil.rmtree(_worker_folder(path, strategy), ignore_errors=True)


@contextlib.contextmanager
def saving_path(path: str | os.PathLike[str], strategy: Any = None) -> Iterator[Path]:
    """Yield :func:`worker_temp_dir` for ``path`` and remove a worker's copy afterwards.

    Example::

        with saving_path("out/model.keras", strategy) as target:
            model.save(target)  # every worker saves; only the chief's file remains
    """
    target = worker_temp_dir(path, strategy)
    try:
        yield target
    finally:
        remove_worker_temp(path, strategy)


def _worker_folder(path: Path, strategy: Any) -> Path:
    task = "worker"
    value = strategy.strategy if isinstance(strategy, StrategyChoice) else strategy
    if value is None or isinstance(value, str | Mapping | ClusterConfig):
        config = value if isinstance(value, ClusterConfig) else parse_tf_config(value)
        if config is not None:
            task = f"{config.task_type}-{config.task_index}"
    else:
        resolver = value.cluster_resolver
        task = f"{resolver.task_type}-{resolver.task_id}"
    return path.parent / f".{path.name}.{task}.tmp"


def _tf_config_error(problem: str) -> StrategyError:
    return StrategyError(
        f"TF_CONFIG {problem}. Expected e.g. "
        '{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
        '"task": {"type": "worker", "index": 0}}.'
    )


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
