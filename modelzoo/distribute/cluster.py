"""Multi-worker clusters without TensorFlow: ``TF_CONFIG``, the chief, and who writes where.

In multi-worker training every worker runs the same program. Saving reads variables
collectively, so every worker must call ``model.save``, but only one copy is wanted: the
chief's. The chief is the ``chief`` task when the cluster has one, else ``worker`` 0. The
other workers save into a hidden per-worker folder beside the real destination, which is
removed afterwards::

    out/
    ├── model.keras                      <- the chief's copy, the only one that remains
    └── .model.keras.worker-1.tmp/       <- worker 1's copy while it saves, then deleted
        └── model.keras

Everything here reads ``TF_CONFIG`` text or a built strategy's cluster resolver and
never imports TensorFlow, so it is safe to call before a strategy exists.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import StrategyError

__all__ = [
    "ClusterConfig",
    "is_chief",
    "parse_tf_config",
    "remove_worker_temp",
    "saving_path",
    "worker_temp_dir",
]

_JOBS = ("chief", "worker")


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
    jobs = _parse_jobs(value.get("cluster"))
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
    """Whether this process should write saved models, checkpoints, caches and logs.

    Args:
        strategy_or_tf_config: a ``tf.distribute.Strategy`` or
            :class:`~modelzoo.distribute.strategies.StrategyChoice`; a :class:`ClusterConfig`,
            ``TF_CONFIG`` text or mapping; or ``None`` to read the ``TF_CONFIG``
            environment variable.

    Returns:
        True outside multi-worker training and on the chief (the ``chief`` task, else
        worker 0); False on every other worker.
    """
    value = _unwrap(strategy_or_tf_config)
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

    The chief gets ``path`` itself; every other worker gets the same file name inside a
    hidden per-worker folder beside it (created here), removed by
    :func:`remove_worker_temp` (or use :func:`saving_path`, which does both).

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


def _parse_jobs(cluster: Any) -> list[tuple[str, tuple[str, ...]]]:
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
    return jobs


def _unwrap(value: Any) -> Any:
    # A StrategyChoice carries its strategy in .strategy; tf.distribute strategies have no
    # such attribute (they have .extended), so this never unwraps a strategy itself.
    inner = getattr(value, "strategy", None)
    if inner is not None and not hasattr(value, "extended"):
        return inner
    return value


def _worker_folder(path: Path, strategy: Any) -> Path:
    task = "worker"
    value = _unwrap(strategy)
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
