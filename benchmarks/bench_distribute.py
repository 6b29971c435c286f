"""Benchmark: training throughput under the default strategy vs MirroredStrategy.

Trains the same small convolutional Keras model on the same seeded in-memory data
(32x32x3 images, 10 classes, the same global batch) twice, each in a fresh interpreter
run one after the other: once under TensorFlow's default strategy, once under
``MirroredStrategy`` over two logical CPU devices (``make_strategy("mirrored")`` after
splitting the CPU). The first epoch (tracing, warm-up) is timed separately from the
measured epochs. On a 2-core CPU no speed-up is expected: the point is to measure what
mirroring costs.

Writes ``benchmarks/results/distribute.json`` and prints a table::

    python benchmarks/bench_distribute.py [--samples 2048] [--epochs 3] [--per-replica 32]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

RESULTS = REPO / "benchmarks" / "results" / "distribute.json"
CHILD_TIMEOUT = 900.0


def child(mode: str, samples: int, epochs: int, global_batch: int) -> dict:
    """Train in this process under ``mode`` ("default" or "mirrored"); return timings."""
    import numpy as np

    from modelzoo import _tf, distribute

    tf, keras = _tf.tf(), _tf.keras()
    if mode == "mirrored":
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2
        )
    choice = distribute.choose_strategy("mirrored" if mode == "mirrored" else None)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(samples, 32, 32, 3)).astype("float32")
    y = rng.integers(0, 10, size=(samples,)).astype("int32")
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(global_batch).prefetch(2)
    dataset = distribute.prepare_dataset(dataset, choice.strategy)
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
            steps_per_execution=distribute.steps_per_execution_for(choice.strategy),
        )
    start = time.perf_counter()
    model.fit(dataset, epochs=1, verbose=0)
    warmup = time.perf_counter() - start
    start = time.perf_counter()
    history = model.fit(dataset, epochs=epochs, verbose=0)
    seconds = time.perf_counter() - start
    return {
        "mode": mode,
        "kind": choice.kind,
        "replicas": choice.replicas,
        "devices": list(choice.devices),
        "global_batch": global_batch,
        "first_epoch_seconds": round(warmup, 3),
        "measured_seconds": round(seconds, 3),
        "examples_per_second": round(samples * epochs / seconds, 1),
        "final_loss": round(float(history.history["loss"][-1]), 4),
    }


def run_child(mode: str, args: argparse.Namespace) -> dict:
    command = [
        sys.executable,
        __file__,
        "--child",
        mode,
        "--samples",
        str(args.samples),
        "--epochs",
        str(args.epochs),
        "--per-replica",
        str(args.per_replica),
    ]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
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
        raise SystemExit(f"{mode} run failed (exit {proc.returncode}):\n{err[-3000:]}")
    return json.loads(lines[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=2048)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--per-replica", type=int, default=32)
    parser.add_argument("--child", choices=["default", "mirrored"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    # The same global batch for both runs, so both do the same number of steps.
    global_batch = 2 * args.per_replica
    if args.child:
        print(json.dumps(child(args.child, args.samples, args.epochs, global_batch)))
        return 0
    runs = [run_child(mode, args) for mode in ("default", "mirrored")]
    default, mirrored = runs
    ratio = mirrored["examples_per_second"] / default["examples_per_second"]
    result = {
        "benchmark": "distribute",
        "machine": {
            "cpus": os.cpu_count(),
            "load_average": [round(v, 2) for v in os.getloadavg()],
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "samples": args.samples,
        "epochs": args.epochs,
        "global_batch": global_batch,
        "runs": runs,
        "mirrored_over_default_throughput": round(ratio, 3),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"{'strategy':<24}{'replicas':>9}{'first epoch s':>15}{'examples/s':>12}{'loss':>8}")
    for run in runs:
        name = f"{run['mode']} ({run['kind']})"
        print(
            f"{name:<24}{run['replicas']:>9}{run['first_epoch_seconds']:>15.2f}"
            f"{run['examples_per_second']:>12.1f}{run['final_loss']:>8.3f}"
        )
    print(f"mirrored / default throughput: {ratio:.2f}x  (load average {os.getloadavg()[0]:.1f})")
    print(f"wrote {RESULTS.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
