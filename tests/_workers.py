"""Subprocess entry points for the distribute tests (and the distribute benchmark).

Logical CPU devices must be configured before the TensorFlow runtime starts and a
multi-worker cluster can be joined once per process, so these run in fresh interpreters::

    python tests/_workers.py mirrored          # 2 logical CPUs: mirrored vs default
    python tests/_workers.py worker OUT [SEC]  # one multi-worker task; TF_CONFIG from env
    python tests/_workers.py spec SPEC [SEC]   # choose_strategy(SPEC) twice: kind or error
    python tests/_workers.py late SPEC [SEC]   # the same after TensorFlow ran an op
    python tests/_workers.py specs SPEC...     # the same for each SPEC, with seconds taken

Each prints one JSON object on the last line of stdout.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time

_STARTED = time.perf_counter()

PER_REPLICA = 8
EPOCHS = 4
SAMPLES = 64
FEATURES = 4


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports that were free on 127.0.0.1 a moment ago."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def tf_config(ports: list[int], index: int) -> str:
    """The TF_CONFIG of worker ``index`` in a cluster of workers on ``ports``."""
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    return json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})


def _data():
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.normal(size=(SAMPLES, FEATURES)).astype("float32")
    w = rng.normal(size=(FEATURES, 1)).astype("float32")
    y = (x @ w + 0.1 * rng.normal(size=(SAMPLES, 1))).astype("float32")
    return x, y


def _train(strategy, global_batch: int, *, initial=None):
    """Build, compile and fit a tiny regression model inside ``strategy.scope()``."""
    from modelzoo import _tf, distribute

    tf, keras = _tf.tf(), _tf.keras()
    x, y = _data()
    with strategy.scope():
        keras.utils.set_random_seed(1)
        inputs = keras.Input((FEATURES,))
        hidden = keras.layers.Dense(8, activation="tanh", name="hidden")(inputs)
        model = keras.Model(inputs, keras.layers.Dense(1, name="out")(hidden))
        if initial is not None:
            model.set_weights(initial)
        model.compile(
            optimizer=keras.optimizers.SGD(0.05),
            loss="mse",
            steps_per_execution=distribute.steps_per_execution_for(strategy),
        )
    start = [w.copy() for w in model.get_weights()]
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(global_batch)
    dataset = distribute.prepare_dataset(dataset, strategy)
    history = model.fit(dataset, epochs=EPOCHS, verbose=0, shuffle=False)
    return model, start, [float(v) for v in history.history["loss"]]


def run_mirrored() -> dict:
    """Split the CPU in two, then train the same model under mirrored and default."""
    from modelzoo import _tf, distribute

    tf = _tf.tf()
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    choice = distribute.choose_strategy("mirrored")
    explicit = distribute.choose_strategy("mirrored:/cpu:0,/cpu:1")
    batch = distribute.global_batch_size(PER_REPLICA, choice.strategy)
    mirrored, start, mirrored_loss = _train(choice.strategy, batch)
    default, _, default_loss = _train(distribute.make_strategy(None), batch, initial=start)
    gap = max(
        float(abs(a - b).max())
        for a, b in zip(mirrored.get_weights(), default.get_weights(), strict=True)
    )
    return {
        "kind": choice.kind,
        "replicas": choice.replicas,
        "devices": list(choice.devices),
        "explicit_replicas": explicit.replicas,
        "global_batch": batch,
        "mirrored_loss": mirrored_loss,
        "default_loss": default_loss,
        "max_weight_gap": gap,
        "describe_logical_cpus": len(distribute.describe_devices()["logical"]["CPU"]),
    }


def run_worker(out: str, register_timeout: float) -> dict:
    """One task of a multi-worker cluster (TF_CONFIG from the environment)."""
    from pathlib import Path

    from modelzoo import _tf, distribute

    _tf.tf()
    seconds = {"import": time.perf_counter() - _STARTED}
    choice = distribute.choose_strategy("multi-worker", register_timeout=register_timeout)
    strategy = choice.strategy
    seconds["strategy"] = time.perf_counter() - _STARTED
    batch = distribute.global_batch_size(PER_REPLICA, strategy)
    model, _, losses = _train(strategy, batch)
    seconds["fit"] = time.perf_counter() - _STARTED
    with distribute.saving_path(out, strategy) as target:
        model.save(target)
        wrote = str(target)
        wrote_exists = Path(target).exists()
    seconds["save"] = time.perf_counter() - _STARTED
    reloaded = None
    if distribute.is_chief(strategy):
        reloaded = len(_tf.keras().models.load_model(out).layers)
    return {
        "kind": choice.kind,
        "replicas": choice.replicas,
        "chief": distribute.is_chief(strategy),
        "chief_from_env": distribute.is_chief(),
        "global_batch": batch,
        "loss": losses,
        "wrote": wrote,
        "wrote_existed": wrote_exists,
        "temp_left": Path(wrote).exists() and wrote != out,
        "reloaded_layers": reloaded,
        "same_again": distribute.make_strategy("multi-worker") is strategy,
        "seconds": {key: round(value, 2) for key, value in seconds.items()},
    }


def run_spec(spec: str, register_timeout: float, *, late: bool = False) -> dict:
    """``choose_strategy(spec)``: the kind it built or the error it raised, then the
    error a second attempt raised (None when it succeeded). ``late``: run an op first."""
    from modelzoo import _tf, distribute, errors

    if late:
        _tf.tf().constant(1.0) + 1.0  # starts the TensorFlow runtime
    try:
        choice = distribute.choose_strategy(spec, register_timeout=register_timeout)
    except errors.ModelZooError as exc:
        result = {"error": type(exc).__name__, "message": str(exc)}
    else:
        result = {"kind": choice.kind, "replicas": choice.replicas, "reason": choice.reason}
    try:
        distribute.choose_strategy(spec, register_timeout=register_timeout)
        result["again"] = None
    except errors.ModelZooError as exc:
        result["again"] = str(exc)
    return result


def run_specs(specs: list[str]) -> dict:
    """:func:`run_spec` for each spec in turn, with the seconds each took."""
    from modelzoo import _tf

    _tf.tf()  # keep the import out of the first spec's time
    results = {}
    for spec in specs:
        start = time.perf_counter()
        results[spec] = run_spec(spec, 60.0)
        results[spec]["seconds"] = round(time.perf_counter() - start, 3)
    return results


def main(argv: list[str]) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    mode = argv[0]
    if mode == "mirrored":
        result = run_mirrored()
    elif mode == "worker":
        result = run_worker(argv[1], float(argv[2]) if len(argv) > 2 else 60.0)
    elif mode == "specs":
        result = run_specs(argv[1:])
    elif mode in ("spec", "late"):
        timeout = float(argv[2]) if len(argv) > 2 else 60.0
        result = run_spec(argv[1], timeout, late=mode == "late")
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
