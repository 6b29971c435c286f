"""Deciding which ``tf.distribute`` strategy a spec asks for, without building anything.

A spec (``"auto"``, ``"gpu:1"``, ``"mirrored:/cpu:0,/cpu:1"`` ...) and the devices
TensorFlow will create (read without initialising its runtime) become a plan: what to
build, on which devices, and one sentence saying why. Invalid specs and missing hardware
fail here, before anything is built. :mod:`modelzoo.distribute.strategies` builds the plan.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import backend
from ..errors import StrategyError, UsageError, nearest
from .cluster import ClusterConfig, parse_tf_config

__all__ = [
    "KINDS",
    "VALID_SPECS",
    "Plan",
    "StrategyChoice",
    "auto_plan",
    "default_plan",
    "device_inventory",
    "find_tpu_device_files",
    "kind_of",
    "plan_for",
]

#: The spec forms :func:`~modelzoo.distribute.strategies.make_strategy` understands (quoted in error
#: messages).
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


@dataclass(frozen=True)
class Plan:
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


def plan_for(spec: str | None) -> Plan:
    inventory = device_inventory()
    if spec is None:
        return default_plan(inventory, "no strategy given")
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
        return auto_plan(inventory)
    if word == "default":
        return default_plan(inventory, "'default' asked")
    if word == "cpu":
        if inventory.gpus:
            why = f"'cpu' asked with {len(inventory.gpus)} GPU(s) visible -> pinned to /cpu:0"
            return Plan("cpu", "one-device", ("/cpu:0",), why)
        return Plan("cpu", "default", ("/cpu:0",), "'cpu' asked, 0 GPUs -> default strategy")
    if word == "gpu":
        return _gpu_plan(spec, arg, inventory)
    if word == "mirrored":
        return _mirrored_plan(spec, arg, inventory)
    if word == "multi-worker":
        return _multi_worker_plan(spec)
    return _tpu_plan(spec, arg, inventory)


def default_plan(inventory: _Inventory, why: str) -> Plan:
    if inventory.gpus:
        why += f" -> TensorFlow's default strategy (runs on {inventory.gpus[0]})"
        return Plan("one-device", "default", inventory.gpus[:1], why)
    return Plan("cpu", "default", ("/cpu:0",), why + " -> TensorFlow's default strategy")


def auto_plan(inventory: _Inventory, *, tpu_note: str = "") -> Plan:
    tpu_name = os.environ.get("TPU_NAME", "").strip()
    files = find_tpu_device_files()
    if not tpu_note and tpu_name:
        return Plan("tpu", "tpu", (), f"auto: TPU_NAME={tpu_name!r} -> TPUStrategy", tpu_name)
    if not tpu_note and inventory.tpus:
        why = f"auto: {inventory.tpus} TPU devices -> TPUStrategy"
        return Plan("tpu", "tpu", (), why, "local")
    if not tpu_note and files:
        # Device files alone are a guess (other accelerators use /dev/accel and VFIO too),
        # so when no local TPU answers, "tpu-guess" goes on with the other options.
        why = f"auto: looks like a TPU VM ({', '.join(files[:3])}) -> TPUStrategy"
        return Plan("tpu", "tpu-guess", (), why, "local")
    notes = [tpu_note or "no TPU configured (TPU_NAME unset, no TPU devices)"]
    config = parse_tf_config()
    if config is not None and config.num_workers >= 2:
        why = (
            f"auto: {notes[0]}, TF_CONFIG names {config.num_workers} workers (this is "
            f"{config.task_type}:{config.task_index}) -> MultiWorkerMirroredStrategy"
        )
        return Plan("multi-worker", "multi-worker", (), why, cluster=config)
    notes.append("TF_CONFIG absent" if config is None else "TF_CONFIG names 1 worker")
    return _local_plan(inventory, notes)


def _local_plan(inventory: _Inventory, notes: list[str]) -> Plan:
    gpus = inventory.gpus
    found = ", ".join([*notes, f"{len(gpus)} GPU{'' if len(gpus) == 1 else 's'} found"])
    if len(gpus) >= 2:
        return Plan("mirrored", "mirrored", gpus, f"auto: {found} -> MirroredStrategy")
    if gpus:
        return Plan("one-device", "one-device", gpus, f"auto: {found} -> OneDeviceStrategy")
    return Plan("cpu", "default", ("/cpu:0",), f"auto: {found} -> default CPU strategy")


def _gpu_plan(spec: str, arg: str, inventory: _Inventory) -> Plan:
    if arg and not arg.isdigit():
        raise UsageError(f"'gpu:N' needs a GPU index N (0, 1, ...). Received: {spec!r}.")
    index = int(arg or 0)
    if index >= len(inventory.gpus):
        raise StrategyError(
            f"Strategy {spec!r} asks for GPU {index}, but TensorFlow sees "
            f"{inventory.summary()}. {_gpu_hint(inventory)}"
        )
    device = inventory.gpus[index]
    return Plan("one-device", "one-device", (device,), f"{spec!r} asked -> {device}")


def _mirrored_plan(spec: str, arg: str, inventory: _Inventory) -> Plan:
    if arg:
        devices = _parse_devices(spec, arg, inventory)
        return Plan("mirrored", "mirrored", devices, f"{spec!r} asked -> MirroredStrategy")
    if inventory.gpus:
        why = f"'mirrored' asked, {len(inventory.gpus)} GPU(s) -> MirroredStrategy over the GPUs"
        return Plan("mirrored", "mirrored", inventory.gpus, why)
    if len(inventory.cpus) >= 2:
        why = f"'mirrored' asked, 0 GPUs, {len(inventory.cpus)} logical CPUs -> mirror the CPUs"
        return Plan("mirrored", "mirrored", inventory.cpus, why)
    raise StrategyError(
        f"Strategy 'mirrored' needs GPUs or two or more logical CPU devices, but TensorFlow "
        f"sees {inventory.summary()}. Use 'auto' or 'cpu' here, or split the CPU with "
        "tf.config.set_logical_device_configuration(...) before TensorFlow starts."
    )


def _parse_devices(spec: str, arg: str, inventory: _Inventory) -> tuple[str, ...]:
    tf = backend.tf()
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


def _multi_worker_plan(spec: str) -> Plan:
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
    return Plan("multi-worker", "multi-worker", (), why, cluster=config)


def _tpu_plan(spec: str, target: str, inventory: _Inventory) -> Plan:
    if target:
        return Plan("tpu", "tpu", (), f"{spec!r} asked -> TPUStrategy", target)
    tpu_name = os.environ.get("TPU_NAME", "").strip()
    if tpu_name:
        why = f"'tpu' asked, TPU_NAME={tpu_name!r} -> TPUStrategy"
        return Plan("tpu", "tpu", (), why, tpu_name)
    if inventory.tpus or find_tpu_device_files():
        return Plan("tpu", "tpu", (), "'tpu' asked on a TPU VM -> TPUStrategy(local)", "local")
    raise StrategyError(
        f"Strategy {spec!r} asks for a TPU, but none is configured: TPU_NAME is unset, there "
        f"are no /dev/accel* or /dev/vfio devices and TensorFlow sees {inventory.summary()}. "
        "Set TPU_NAME, pass 'tpu:NAME' or 'tpu:grpc://HOST:8470', or use 'auto'."
    )


def device_inventory() -> _Inventory:
    tf = backend.tf()
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


def find_tpu_device_files() -> list[str]:
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


#: Every value :attr:`StrategyChoice.kind` can take ("other": a ready-made strategy of
#: another class, e.g. ``CentralStorageStrategy``).
KINDS = ("cpu", "one-device", "mirrored", "multi-worker", "tpu", "other")


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


def kind_of(strategy) -> str:
    """The :data:`KINDS` entry a built ``tf.distribute.Strategy`` belongs to."""
    tf = backend.tf()
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
        return "one-device" if device_inventory().gpus else "cpu"
    return "other"
