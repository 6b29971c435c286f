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

How a spec becomes a plan lives in :mod:`modelzoo.distribute._plan`. Running under a
strategy lives in :mod:`modelzoo.distribute.replicas`: :func:`global_batch_size`,
:func:`batch_dataset` (global batches, static shapes on TPUs, per-worker sharding),
:func:`steps_per_execution_for`, :func:`in_scope` (a model whose variables belong to the
strategy) and :func:`cluster_failures` (a lost worker or TPU becomes a
:class:`StrategyError`). Who writes files in a cluster lives in :mod:`modelzoo.distribute.cluster`.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import socket
import time
from typing import Any
from urllib.parse import urlsplit

from .. import backend, config
from ..errors import StrategyError, UsageError, first_line
from ._plan import (
    VALID_SPECS,
    Plan,
    StrategyChoice,
    auto_plan,
    default_plan,
    device_inventory,
    find_tpu_device_files,
    kind_of,
    plan_for,
)
from .cluster import ClusterConfig, parse_tf_config

__all__ = [
    "DEFAULT_REGISTER_TIMEOUT",
    "DEFAULT_TPU_TIMEOUT",
    "StrategyChoice",
    "choose_strategy",
    "describe_devices",
    "make_strategy",
]

logger = logging.getLogger(__name__)

#: Seconds a remote TPU's gRPC port gets to answer (``MODELZOO_TPU_TIMEOUT``).
DEFAULT_TPU_TIMEOUT = config.DEFAULT_TPU_TIMEOUT
#: Seconds every worker named in ``TF_CONFIG`` gets to join (``MODELZOO_REGISTER_TIMEOUT``).
DEFAULT_REGISTER_TIMEOUT = config.DEFAULT_REGISTER_TIMEOUT
# HTTP/2's client connection preface and an empty SETTINGS frame (RFC 9113 §3.4): a gRPC
# server answers with a SETTINGS frame of its own.
_HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])
_HTTP2_SETTINGS = 4


# Strategies owning process-wide state, keyed by (kind, target); see the module docstring.
_BUILT: dict[tuple[str, str], Any] = {}
# Why building a multi-worker strategy failed: TensorFlow cannot join a cluster twice.
_CLUSTER_FAILURE: list[str] = []


def make_strategy(
    spec: Any = "auto",
    *,
    tpu_timeout: float | None = None,
    register_timeout: float | None = None,
):
    """Build the ``tf.distribute.Strategy`` that ``spec`` asks for, logging why.

    Args:
        spec: a spec string (see the module docstring); ``None`` for TensorFlow's default
            strategy; a ready-made ``tf.distribute.Strategy`` or a :class:`StrategyChoice`
            (returned as is).
        tpu_timeout: seconds a remote TPU's port gets to answer; None reads
            ``MODELZOO_TPU_TIMEOUT`` (default 10).
        register_timeout: seconds the workers of a multi-worker cluster get to join; None
            reads ``MODELZOO_REGISTER_TIMEOUT`` (default 120).

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
    tpu_timeout: float | None = None,
    register_timeout: float | None = None,
) -> StrategyChoice:
    """Like :func:`make_strategy`, but return the strategy with what, where and why.

    Raises:
        UsageError: ``spec`` is not a valid spec, or a timeout is not positive.
        StrategyError: the hardware or cluster asked for is not there or does not answer.
    """
    if isinstance(spec, StrategyChoice):
        return spec
    tpu_timeout = config.tpu_timeout(tpu_timeout)
    register_timeout = config.register_timeout(register_timeout)
    tf = backend.tf()
    if isinstance(spec, tf.distribute.Strategy):
        return _describe_built(spec)
    if spec is not None and not isinstance(spec, str):
        raise UsageError(
            f"strategy must be a spec string, None or a tf.distribute.Strategy. Received: "
            f"{spec!r} ({type(spec).__name__}). Valid specs: {', '.join(VALID_SPECS)}."
        )
    _apply_cpu_devices()
    plan = plan_for(spec)
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
    tf = backend.tf()
    keras = backend.keras()
    _apply_cpu_devices()
    found: dict[str, dict[str, list[str]]] = {"physical": {}, "logical": {}}
    listers = (tf.config.list_physical_devices, tf.config.list_logical_devices)
    for key, lister in zip(("physical", "logical"), listers, strict=True):
        for device in lister():
            found[key].setdefault(device.device_type, []).append(device.name)
    try:
        cluster = parse_tf_config()
        tf_config = cluster and {
            "task": f"{cluster.task_type}:{cluster.task_index}",
            "workers": cluster.num_workers,
            "error": None,
        }
    except StrategyError as exc:
        tf_config = {"task": None, "workers": None, "error": str(exc)}
    try:
        plan = plan_for("auto")
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
        "tpu_device_files": find_tpu_device_files(),
        "cpu_devices_env": config.cpu_devices(),
        "auto": auto,
    }


# ----------------------------------------------------------------------------- building


def _build(plan: Plan, *, tpu_timeout: float, register_timeout: float):
    tf = backend.tf()
    if plan.build == "tpu-guess":
        try:
            return _build_tpu("local", tpu_timeout), plan
        except StrategyError as exc:
            logger.warning("This looked like a TPU VM, but no TPU answered: %s", exc)
            plan = auto_plan(device_inventory(), tpu_note="TPU device files but no TPU answered")
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
    tf = backend.tf()
    where = "the local TPU" if target == "local" else f"TPU {target!r}"
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=target)
        if target != "local":
            master = resolver.master()
            if master.startswith("grpc://"):
                # experimental_connect_to_cluster waits forever on an address that does
                # not answer in gRPC, whether nobody listens or something else does.
                _probe_grpc(master, timeout, what=where)
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
            f"Could not start {where}: {type(exc).__name__}: {first_line(exc)}. {check}, "
            "or use 'auto'."
        ) from exc
    _BUILT["tpu", target] = strategy
    return strategy


def _build_multi_worker(cluster: ClusterConfig, register_timeout: float):
    key = ("multi-worker", json.dumps([cluster.jobs, cluster.task_type, cluster.task_index]))
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
    tf = backend.tf()
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
            service_leader=cluster.leader,
            coordinated_jobs=[
                protos.CoordinatedJob(name=job, num_tasks=len(addresses))
                for job, addresses in cluster.jobs
            ],
            cluster_register_timeout_in_ms=max(1, int(register_timeout * 1000)),
        )
        context.coordination_service.cluster_register_with_barrier = True
    try:
        resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
        strategy = tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=resolver)
    except Exception as exc:  # DeadlineExceededError, UnavailableError, ValueError ...
        summary = f"{type(exc).__name__}: {first_line(exc)}"
        _CLUSTER_FAILURE.append(summary)
        everyone = ", ".join(a for _, addresses in cluster.jobs for a in addresses)
        if isinstance(exc, tf.errors.DeadlineExceededError | tf.errors.UnavailableError):
            problem = f"not all {cluster.num_workers} workers joined within {register_timeout:g}s"
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
            f"Multi-worker start failed on {cluster.task_type}:{cluster.task_index} "
            f"({cluster.address}): {problem} ({summary}). {step}; then restart this process."
        ) from exc
    _BUILT[key] = strategy
    return strategy


def _describe_built(strategy) -> StrategyChoice:
    kind = kind_of(strategy)
    try:
        devices = tuple(strategy.extended.worker_devices)
    except RuntimeError:  # the default strategy keeps no device list
        devices = default_plan(device_inventory(), "").devices
    return StrategyChoice(
        strategy=strategy,
        spec=f"<{type(strategy).__name__}>",
        kind=kind,
        devices=devices,
        replicas=int(strategy.num_replicas_in_sync),
        reason=f"a ready-made {type(strategy).__name__} was passed -> used as is",
    )


def _apply_cpu_devices() -> None:
    """Split the CPU into ``MODELZOO_CPU_DEVICES`` logical devices while that is possible."""
    wanted = config.cpu_devices()
    if wanted is None:
        return
    tf = backend.tf()
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


def _probe_grpc(address: str, timeout: float, *, what: str) -> None:
    """Fail unless ``address`` accepts a connection and answers HTTP/2 within ``timeout``."""
    parts = urlsplit(address)
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        host = port = None
    if not host or not port:
        raise StrategyError(f"{what}: {address!r} is not grpc://HOST:PORT (TPUs use :8470).")
    deadline = time.monotonic() + timeout
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except OSError as exc:
        raise StrategyError(
            f"{what}: nothing answers at {host}:{port} within {timeout:g}s ({exc}). Check that "
            "the TPU is running and reachable from here (firewall, VPC), or use 'auto'."
        ) from exc
    answer = b""
    with sock:
        try:
            sock.sendall(_HTTP2_PREFACE)
            while len(answer) < 9:  # one frame header: length(3) type(1) flags(1) stream(4)
                sock.settimeout(max(0.001, deadline - time.monotonic()))
                chunk = sock.recv(9 - len(answer))
                if not chunk:
                    break
                answer += chunk
        except OSError as exc:  # socket.timeout included
            if not isinstance(exc, TimeoutError):
                answer = answer or b"(connection reset)"
    if len(answer) == 9 and answer[3] == _HTTP2_SETTINGS:
        return
    said = f"answered {answer[:24]!r}" if answer else f"said nothing within {timeout:g}s"
    raise StrategyError(
        f"{what}: {host}:{port} accepts connections but is not a gRPC server (it {said}). "
        "Check the address and port (a TPU's is usually 8470), raise MODELZOO_TPU_TIMEOUT "
        "(train --tpu-timeout) if the TPU is just slow, or use 'auto'."
    )
