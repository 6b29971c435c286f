"""Subprocess entry points for the distribute tests (and the distribute benchmark).

Logical CPU devices must be configured before the TensorFlow runtime starts and a
multi-worker cluster can be joined once per process, so these run in fresh interpreters::

    python tests/_workers.py mirrored          # 2 logical CPUs: mirrored vs default
    python tests/_workers.py spec SPEC [SEC]   # choose_strategy(SPEC) twice: kind or error
    python tests/_workers.py late SPEC [SEC]   # the same after TensorFlow ran an op
    python tests/_workers.py specs SPEC...     # the same for each SPEC, with seconds taken
    python tests/_workers.py learner-mirrored  # TransferLearner: mirrored vs default
    python tests/_workers.py learner-worker OUT [SEC]   # one multi-worker learner task
    python tests/_workers.py learner-dies OUT [SEC]     # the same; worker 1 dies mid-fit
    python tests/_workers.py peer-dies WHEN [SEC]       # worker 1 dies at WHEN: "setup"
                                                        # (after joining) or "fit-start"
    python tests/_workers.py load-and-predict MODEL     # plain tf_keras, no strategy

The learner modes use the bundled offline digits model or a tiny MobileNet (alpha 0.25,
32x32). ``learner-mirrored`` expects ``MODELZOO_CPU_DEVICES=2`` in its environment.
Each prints one JSON object on the last line of stdout.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
import traceback

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
    jobs = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    return json.dumps({"cluster": jobs, "task": {"type": "worker", "index": index}})


def _data():
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.normal(size=(SAMPLES, FEATURES)).astype("float32")
    w = rng.normal(size=(FEATURES, 1)).astype("float32")
    y = (x @ w + 0.1 * rng.normal(size=(SAMPLES, 1))).astype("float32")
    return x, y


def _train(strategy, global_batch: int, *, initial=None):
    """Build, compile and fit a tiny regression model inside ``strategy.scope()``."""
    from modelzoo import backend
    from modelzoo.distribute import replicas

    tf, keras = backend.tf(), backend.keras()
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
            steps_per_execution=replicas.steps_per_execution_for(strategy),
        )
    start = [w.copy() for w in model.get_weights()]
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(global_batch)
    dataset = replicas.prepare_dataset(dataset, strategy)
    history = model.fit(dataset, epochs=EPOCHS, verbose=0, shuffle=False)
    return model, start, [float(v) for v in history.history["loss"]]


def run_mirrored() -> dict:
    """Split the CPU in two, then train the same model under mirrored and default."""
    from modelzoo import backend
    from modelzoo.distribute import replicas, strategies

    tf = backend.tf()
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    choice = strategies.choose_strategy("mirrored")
    explicit = strategies.choose_strategy("mirrored:/cpu:0,/cpu:1")
    batch = replicas.global_batch_size(PER_REPLICA, choice.strategy)
    mirrored, start, mirrored_loss = _train(choice.strategy, batch)
    default, _, default_loss = _train(strategies.make_strategy(None), batch, initial=start)
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
        "describe_logical_cpus": len(strategies.describe_devices()["logical"]["CPU"]),
    }


DIGITS = "mobilenet_v1_0.25_32_digits"
CUT = "conv_pw_13_relu"
LEARNER_PER_REPLICA = 8
LEARNER_EPOCHS = 3


def _digits():
    """Ten images per class of the digits 5-9 (raw 0..255 RGB) and held-out test images."""
    from modelzoo.models.datasets import digits_to_rgb, split_digits

    split = split_digits(range(5, 10))
    few = split.few_shot(10, seed=0)
    return digits_to_rgb(few.x_train), few.y_train, digits_to_rgb(split.x_test[:20])


def run_learner_mirrored() -> dict:
    """The same TransferLearner under MirroredStrategy (2 logical CPUs) and the default
    strategy, with the feature cache and without, from the same initial weights.

    The base is a model object built outside any strategy scope (the bundled digits
    model, cut and with its preprocessing baked in), so the mirrored learner must
    rebuild it inside its scope.
    """
    import numpy as np

    import modelzoo
    from modelzoo import TransferLearner, backend
    from modelzoo.distribute import strategies

    mirrored = strategies.choose_strategy("mirrored")  # first: MODELZOO_CPU_DEVICES splits
    keras = backend.keras()
    base = modelzoo.load(DIGITS, CUT, include_preprocessing=True)
    x, y, x_test = _digits()
    result: dict = {
        "kind": mirrored.kind,
        "replicas": mirrored.replicas,
        "devices": list(mirrored.devices),
    }
    for cache in (True, False):
        runs = {}
        initial = None
        # Mirrored first, so that it computes the cached features and the default reads them.
        for name, strategy in (("mirrored", mirrored), ("default", None)):
            keras.utils.set_random_seed(3)
            learner = TransferLearner(
                base, num_classes=5, strategy=strategy, feature_cache=cache, learning_rate=3e-3
            )
            if initial is None:
                initial = learner.model.get_weights()
            else:
                learner.model.set_weights(initial)
            # The same global batch: 16 = 16 x 1 replica = 8 x 2 replicas.
            per_replica = 2 * LEARNER_PER_REPLICA // learner.replicas
            history = learner.fit(
                x, y, epochs=LEARNER_EPOCHS, batch_size=per_replica, shuffle=False, verbose=0
            )
            runs[name] = {
                "loss": history["loss"],
                "fit": learner.last_fit,
                "predictions": learner.predict(x_test),
                "all_in_scope": all(
                    learner.strategy.extended.variable_created_in_scope(v)
                    for v in learner.model.weights
                ),
            }
            if cache and name == "mirrored":  # a second fit reads the features it cached
                learner.fit(x, y, epochs=1, batch_size=per_replica, verbose=0)
                runs[name]["second_cache"] = learner.last_fit["feature_cache"]
        gap = float(np.abs(runs["default"]["predictions"] - runs["mirrored"]["predictions"]).max())
        for run in runs.values():
            del run["predictions"]
        result["cache" if cache else "no_cache"] = {**runs, "max_prediction_gap": gap}
    result["base_rebuilt"] = not all(
        mirrored.strategy.extended.variable_created_in_scope(v) for v in base.weights
    )
    return result


def run_learner_worker(out: str, register_timeout: float | None, *, die: bool = False) -> dict:
    """One task of a multi-worker cluster training a TransferLearner (TF_CONFIG from env).

    ``die``: worker 1 exits abruptly when its second epoch begins; the others report
    the error that their ``fit`` raised.
    """
    from pathlib import Path

    from modelzoo import TransferLearner, backend, errors
    from modelzoo.distribute import cluster, replicas, strategies
    from modelzoo.models.datasets import DIGIT_CLASSES

    seconds = {"import": time.perf_counter() - _STARTED}
    learner = TransferLearner(
        DIGITS,
        CUT,
        labels=[str(d) for d in DIGIT_CLASSES[5:]],
        strategy=strategies.make_strategy("multi-worker", register_timeout=register_timeout),
    )
    seconds["build"] = time.perf_counter() - _STARTED
    choice, strategy = learner.choice, learner.strategy
    chief = cluster.is_chief(strategy)
    x, y, x_test = _digits()
    keras = backend.keras()
    callbacks = []
    if die and not chief:

        class _Die(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                if epoch == 1:
                    os._exit(3)  # no cleanup, no goodbye: like a crash or a preemption

        callbacks.append(_Die())
    try:
        first = learner.fit(
            x,
            y,
            epochs=4 if die else 2,
            batch_size=LEARNER_PER_REPLICA,
            verbose=0,
            callbacks=callbacks,
        )
    except errors.ModelZooError as exc:
        return {
            "chief": chief,
            "error": type(exc).__name__,
            "message": str(exc),
            "cause": str(exc.__cause__),  # TensorFlow's own text (tests/data/tf_errors)
            "seconds": round(time.perf_counter() - _STARTED, 2),
        }
    first_cache = learner.last_fit["feature_cache"]
    learner.fit(x, y, epochs=1, batch_size=LEARNER_PER_REPLICA, verbose=0)
    seconds["fit"] = time.perf_counter() - _STARTED
    saved = learner.save(out)
    seconds["save"] = time.perf_counter() - _STARTED
    home = Path(os.environ["MODELZOO_HOME"])
    return {
        "kind": choice.kind,
        "replicas": choice.replicas,
        "chief": chief,
        "chief_from_env": cluster.is_chief(),
        "global_batch": learner.last_fit["global_batch_size"],
        "loss": first["loss"] + learner.history["loss"][len(first["loss"]) :],
        "first_cache": first_cache,
        "second_cache": learner.last_fit["feature_cache"],
        "features_written": len(list((home / "features").glob("*.npy"))),
        "agree_true": replicas.all_workers_agree(True, choice),
        "agree_chief_only": replicas.all_workers_agree(chief, choice),
        "saved": str(saved),
        "temp_left": sorted(p.name for p in Path(out).parent.glob(".*.tmp")),
        "predictions": learner.predict(x_test).tolist(),
        "same_again": strategies.make_strategy("multi-worker") is strategy,
        "seconds": {key: round(value, 2) for key, value in seconds.items()},
    }


def run_peer_dies(when: str, register_timeout: float | None) -> dict:
    """Worker 1 joins the cluster, then exits abruptly at ``when``: ``"setup"`` (before
    the learner is built) or ``"fit-start"`` (before the first fit, whose first collective
    reads the mirrored base weights for the feature-cache key). Worker 0 reports what
    reached it: our one-line error, or the raw exception when one escaped."""
    from modelzoo import TransferLearner, errors
    from modelzoo.distribute import cluster, strategies

    strategy = strategies.make_strategy("multi-worker", register_timeout=register_timeout)
    chief = cluster.is_chief(strategy)
    if not chief and when == "setup":
        os._exit(3)
    stage = "setup"
    try:
        learner = TransferLearner(DIGITS, CUT, num_classes=5, strategy=strategy)
        if not chief:
            os._exit(3)
        stage = "fit"
        x, y, _ = _digits()
        learner.fit(x, y, epochs=1, batch_size=LEARNER_PER_REPLICA, verbose=0)
    except Exception as exc:  # what a user would see, ours or not
        ours = isinstance(exc, errors.ModelZooError)
        return {
            "stage": stage,
            "error": type(exc).__name__,
            "ours": ours,
            "message": str(exc),
            "cause": str(exc.__cause__ if ours else exc),
            "cause_type": type(exc.__cause__ if ours else exc).__name__,
            "where": [f for f in traceback.format_tb(exc.__traceback__) if "modelzoo/" in f],
            "seconds": round(time.perf_counter() - _STARTED, 2),
        }
    return {"stage": stage, "error": None}


def run_load_and_predict(path: str) -> dict:
    """Load a saved model with plain tf_keras (no modelzoo, no strategy) and predict."""
    import tf_keras

    model = tf_keras.models.load_model(path)
    _, _, x_test = _digits()
    import tensorflow as tf

    return {
        "strategy": type(tf.distribute.get_strategy()).__name__,
        "predictions": model.predict(x_test, verbose=0).tolist(),
    }


def run_spec(spec: str, register_timeout: float | None, *, late: bool = False) -> dict:
    """``choose_strategy(spec)``: the kind it built or the error it raised, then the
    error a second attempt raised (None when it succeeded). ``late``: run an op first."""
    from modelzoo import backend, errors
    from modelzoo.distribute import strategies

    if late:
        backend.tf().constant(1.0) + 1.0  # starts the TensorFlow runtime
    try:
        choice = strategies.choose_strategy(spec, register_timeout=register_timeout)
    except errors.ModelZooError as exc:
        result = {"error": type(exc).__name__, "message": str(exc)}
    else:
        result = {"kind": choice.kind, "replicas": choice.replicas, "reason": choice.reason}
    try:
        strategies.choose_strategy(spec, register_timeout=register_timeout)
        result["again"] = None
    except errors.ModelZooError as exc:
        result["again"] = str(exc)
    return result


def run_specs(specs: list[str]) -> dict:
    """:func:`run_spec` for each spec in turn, with the seconds each took."""
    from modelzoo import backend

    backend.tf()  # keep the import out of the first spec's time
    results = {}
    for spec in specs:
        start = time.perf_counter()
        results[spec] = run_spec(spec, 60.0)
        results[spec]["seconds"] = round(time.perf_counter() - start, 3)
    return results


def main(argv: list[str]) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    mode = argv[0]
    if mode == "specs":
        print(json.dumps(run_specs(argv[1:])), flush=True)
        return 0
    # Without SEC, the register timeout comes from MODELZOO_REGISTER_TIMEOUT (or 120s).
    timeout = float(argv[2]) if len(argv) > 2 else None
    if mode == "mirrored":
        result = run_mirrored()
    elif mode == "learner-mirrored":
        result = run_learner_mirrored()
    elif mode in ("learner-worker", "learner-dies"):
        result = run_learner_worker(argv[1], timeout, die=mode == "learner-dies")
    elif mode == "peer-dies":
        result = run_peer_dies(argv[1], timeout)
    elif mode == "load-and-predict":
        result = run_load_and_predict(argv[1])
    elif mode in ("spec", "late"):
        result = run_spec(argv[1], timeout, late=mode == "late")
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
