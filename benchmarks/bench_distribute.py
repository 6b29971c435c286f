"""Benchmark: training throughput under the default strategy vs MirroredStrategy.

Two parts, each trained twice on the same seeded data with the same global batch, in
fresh interpreters run one after the other: once under TensorFlow's default strategy,
once under ``MirroredStrategy`` over two logical CPU devices.

* ``learner``: a :class:`~modelzoo.TransferLearner` on the bundled digits base
  (MobileNet alpha 0.25, 32x32, cut at ``conv_pw_13_relu``) with the feature cache off,
  so every step runs the frozen base as well as the head; the CPU is split with
  ``MODELZOO_CPU_DEVICES=2`` and the strategy chosen with ``strategy="mirrored"``.
* ``convnet``: a small convolutional Keras model trained directly (the original part).

The first epoch (tracing, warm-up) is timed separately from the measured epochs. On a
2-core CPU no speed-up is expected: the point is to measure what mirroring costs.

Writes ``benchmarks/results/strategies.json`` and prints a table::

    python benchmarks/bench_distribute.py [--part learner|convnet|both] [--samples 1024]
        [--epochs 3] [--per-replica 32]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

RESULTS = REPO / "benchmarks" / "results" / "strategies.json"
CHILD_TIMEOUT = 900.0
DIGITS = "mobilenet_v1_0.25_32_digits"


def child_convnet(mode: str, samples: int, epochs: int, global_batch: int) -> dict:
    """Train a small conv net in this process under ``mode`` ("default" or "mirrored")."""
    import numpy as np

    from modelzoo import backend
    from modelzoo.distribute import replicas, strategies

    tf, keras = backend.tf(), backend.keras()
    if mode == "mirrored":
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2
        )
    choice = strategies.choose_strategy("mirrored" if mode == "mirrored" else None)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(samples, 32, 32, 3)).astype("float32")
    y = rng.integers(0, 10, size=(samples,)).astype("int32")
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(global_batch).prefetch(2)
    dataset = replicas.prepare_dataset(dataset, choice.strategy)
    with choice.strategy.scope():
        keras.utils.set_random_seed(1)
        model = keras.Sequential(
            [
                keras.Input((32, 32, 3)),
                keras.layers.Conv2D(16, 3, activation="relu"),
                keras.layers.MaxPooling2D(),
                keras.layers.Conv2D(32, 3, activation="relu"),
                keras.layers.GlobalAveragePooling2D(),
                keras.layers.Dense(64, activation="relu"),
                keras.layers.Dense(10, activation="softmax"),
            ]
        )
        model.compile(
            optimizer="adam",
            loss="sparse_categorical_crossentropy",
            steps_per_execution=replicas.steps_per_execution_for(choice.strategy),
        )
    start = time.perf_counter()
    model.fit(dataset, epochs=1, verbose=0)
    warmup = time.perf_counter() - start
    start = time.perf_counter()
    history = model.fit(dataset, epochs=epochs, verbose=0)
    seconds = time.perf_counter() - start
    return _row(mode, choice, global_batch, warmup, seconds, samples * epochs, history.history)


def child_learner(mode: str, samples: int, epochs: int, global_batch: int) -> dict:
    """Train a TransferLearner (feature cache off) under ``mode``; MODELZOO_CPU_DEVICES=2
    in the environment splits the CPU for "mirrored"."""
    import numpy as np

    from modelzoo import TransferLearner, backend
    from modelzoo.models.datasets import digits_to_rgb, load_digits

    backend.keras().utils.set_random_seed(1)  # seeds only: the runtime has not started yet
    learner = TransferLearner(
        DIGITS,
        "conv_pw_13_relu",
        num_classes=10,
        strategy="mirrored" if mode == "mirrored" else None,
        feature_cache=False,
    )
    images, labels = load_digits()
    index = np.arange(samples) % len(images)
    x, y = digits_to_rgb(images[index]), labels[index]
    per_replica = global_batch // learner.replicas
    learner.fit(x, y, epochs=1, batch_size=per_replica, verbose=0, shuffle=False)
    warmup = learner.last_fit["train_seconds"]
    history = learner.fit(x, y, epochs=epochs, batch_size=per_replica, verbose=0, shuffle=False)
    seconds = learner.last_fit["train_seconds"]
    return _row(mode, learner.choice, global_batch, warmup, seconds, samples * epochs, history)


def _row(mode, choice, global_batch, warmup, seconds, examples, history) -> dict:
    return {
        "mode": mode,
        "kind": choice.kind,
        "replicas": choice.replicas,
        "devices": list(choice.devices),
        "global_batch": global_batch,
        "first_epoch_seconds": round(warmup, 3),
        "measured_seconds": round(seconds, 3),
        "examples_per_second": round(examples / seconds, 1),
        "final_loss": round(float(history["loss"][-1]), 4),
    }


def run_child(part: str, mode: str, args: argparse.Namespace, home: str) -> dict:
    command = [sys.executable, __file__, "--child", f"{part}:{mode}"]
    command += ["--samples", str(args.samples), "--epochs", str(args.epochs)]
    command += ["--per-replica", str(args.per_replica)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "MODELZOO_HOME": home}
    env.pop("MODELZOO_CPU_DEVICES", None)
    if part == "learner" and mode == "mirrored":
        env["MODELZOO_CPU_DEVICES"] = "2"
    pipe = subprocess.PIPE
    proc = subprocess.Popen(command, stdout=pipe, stderr=pipe, text=True, env=env)
    try:
        out, err = proc.communicate(timeout=CHILD_TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"{part} {mode} run failed (exit {proc.returncode}):\n{err[-3000:]}")
    return json.loads(lines[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=["learner", "convnet", "both"], default="both")
    parser.add_argument("--samples", type=int, default=1024)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--per-replica", type=int, default=32)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    # The same global batch for both runs, so both do the same number of steps.
    global_batch = 2 * args.per_replica
    if args.child:
        part, mode = args.child.split(":")
        child = child_learner if part == "learner" else child_convnet
        print(json.dumps(child(mode, args.samples, args.epochs, global_batch)))
        return 0
    parts = ["learner", "convnet"] if args.part == "both" else [args.part]
    load_before = [round(v, 2) for v in os.getloadavg()]
    home = tempfile.mkdtemp(prefix="bench-distribute-")
    try:
        results = {}
        for part in parts:
            runs = [run_child(part, mode, args, home) for mode in ("default", "mirrored")]
            ratio = runs[1]["examples_per_second"] / runs[0]["examples_per_second"]
            results[part] = {"runs": runs, "mirrored_over_default_throughput": round(ratio, 3)}
    finally:
        shutil.rmtree(home, ignore_errors=True)
    result = {
        "benchmark": "distribute",
        "machine": {
            "cpus": os.cpu_count(),
            "load_average_before": load_before,
            "load_average_after": [round(v, 2) for v in os.getloadavg()],
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "samples": args.samples,
        "epochs": args.epochs,
        "global_batch": global_batch,
        "parts": results,
    }
    if RESULTS.exists() and args.part != "both":  # keep the other part's last numbers
        previous = json.loads(RESULTS.read_text(encoding="utf-8")).get("parts", {})
        result["parts"] = {**previous, **results}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    head = f"{'part':<9}{'strategy':<22}{'replicas':>9}{'first epoch s':>15}"
    print(f"{head}{'examples/s':>12}{'loss':>8}")
    for part, data in results.items():
        for run in data["runs"]:
            name = f"{run['mode']} ({run['kind']})"
            print(
                f"{part:<9}{name:<22}{run['replicas']:>9}{run['first_epoch_seconds']:>15.2f}"
                f"{run['examples_per_second']:>12.1f}{run['final_loss']:>8.3f}"
            )
        ratio = data["mirrored_over_default_throughput"]
        print(f"{part}: mirrored / default throughput {ratio:.2f}x")
    print(f"load average before {load_before[0]:.1f}, after {os.getloadavg()[0]:.1f}")
    print(f"wrote {RESULTS.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
