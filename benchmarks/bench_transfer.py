"""Benchmark: training a head on cached bottleneck features against a plain ``fit``.

Run from the repository root::

    .venv/bin/python benchmarks/bench_transfer.py [--repeat 3] [--epochs 10] \\
        [--big-images 256] [--workload digits|mobilenet_1.0_96] [--pooling flatten|avg]

The same frozen base, the same head (modelzoo's default: Flatten, Dense 100 relu, Dense
softmax; ``--pooling avg`` puts global average pooling in place of Flatten), the same
data, the same seeds, 10 epochs, batch 32, three ways:

* ``cache miss``  ``TransferLearner(..., feature_cache=True)`` with an empty feature
  cache: its ``fit`` pushes the images through the base once (and stores the features),
  then trains the head on them;
* ``cache hit``   a second learner, same base and data: its ``fit`` finds the features on
  disk and trains the head only;
* ``plain``       ``feature_cache=False``: every epoch pushes every image through the base,
  which is what ``model.fit`` on the whole model does.

Two workloads, each in a temporary ``MODELZOO_HOME``:

* ``digits``: the bundled pretrained ``mobilenet_v1_0.25_32_digits`` cut at
  ``conv_pw_13_relu``, all ten digits (``split_digits(range(10))``: 1347 training images,
  32x32) with a new 10-way head; held-out test accuracy is compared between cached and
  plain training (goal: within 1 point);
* ``mobilenet_1.0_96``: MobileNet(alpha=1.0) at 96x96 with seeded random weights,
  published as a ``notop`` artifact in a temporary folder registry, on a few hundred
  digit images enlarged to 96x96; here the base dominates the cost. Random weights are
  fine for timing; accuracy parity is judged on the digits workload (here only the
  predictions of cached and plain training are compared, on 90 test images).

Only ``fit`` is timed (the learners are built outside the timed region; each includes
its own compile and first-call tracing). Each repetition runs the (miss, hit) pair and
``plain`` in alternating order; the table shows medians and min–max.

Results go to ``benchmarks/results/transfer.json``. Goal: plain / cached >= 5x.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _common import finish, goal_lines

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "transfer.json"
GOAL_SPEEDUP = 5.0
GOAL_ACCURACY_POINTS = 1.0
SEED = 0

DIGITS_BASE = "mobilenet_v1_0.25_32_digits"
BIG_BASE = "bench_mobilenet_1.0_96"
BIG_KWARGS = {"alpha": 1.0, "input_shape": [96, 96, 3]}
CUT = "conv_pw_13_relu"


def _publish_big(registry: Path) -> None:
    """A folder registry holding MobileNet 1.0 / 96 (random weights) as a notop artifact."""
    import tf_keras as keras

    from modelzoo.hub import registry as registry_module

    keras.utils.set_random_seed(SEED)
    kwargs = dict(BIG_KWARGS, input_shape=tuple(BIG_KWARGS["input_shape"]))
    model = keras.applications.MobileNet(include_top=False, weights=None, **kwargs)
    folder = registry / "models" / BIG_BASE / "1.0.0"
    folder.mkdir(parents=True)
    weights = folder / "notop.h5"
    model.save_weights(weights)
    manifest = {
        "schema_version": 1,
        "name": BIG_BASE,
        "version": "1.0.0",
        "family": "MobileNet",
        "summary": "MobileNet v1 1.0 at 96x96, random weights (transfer benchmark)",
        "license": "MIT",
        "input": {"shape": [96, 96, 3], "min_size": 32, "preprocessing": "tf"},
        "build": {"kind": "keras-application", "constructor": "MobileNet", "kwargs": BIG_KWARGS},
        "artifacts": {
            "notop": {
                "url": "notop.h5",
                "format": "h5-weights",
                "hash": "sha256:" + hashlib.sha256(weights.read_bytes()).hexdigest(),
                "size": weights.stat().st_size,
            }
        },
        "cut_points": [{"layer": CUT, "shape": [3, 3, 1024], "variant": "notop"}],
    }
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    registry_module.write_index(registry)
    del model
    keras.backend.clear_session()


def _workloads(big_images: int) -> dict[str, dict]:
    from modelzoo.models.datasets import digits_to_rgb, split_digits

    split = split_digits(range(10))
    # a few hundred images, every class, in a fixed order (stride through the split)
    stride = max(1, len(split.x_train) // big_images)
    pick = slice(0, stride * big_images, stride)
    return {
        "digits": {
            "base": DIGITS_BASE,
            "x": digits_to_rgb(split.x_train),
            "y": split.y_train,
            "x_test": digits_to_rgb(split.x_test),
            "y_test": split.y_test,
            "pretrained": True,
        },
        "mobilenet_1.0_96": {
            "base": BIG_BASE,
            "x": digits_to_rgb(split.x_train[pick], size=96),
            "y": split.y_train[pick],
            # random base: accuracy means nothing, only cached == plain is checked, so a
            # fifth of the test images (every class) is enough and keeps the run short
            "x_test": digits_to_rgb(split.x_test[::5], size=96),
            "y_test": split.y_test[::5],
            "pretrained": False,
        },
    }


def _learner(base: str, *, feature_cache: bool, pooling: str = "flatten"):
    import tf_keras as keras

    from modelzoo import TransferLearner

    keras.utils.set_random_seed(SEED)  # same base and head initialisation for every variant
    return TransferLearner(base, CUT, num_classes=10, feature_cache=feature_cache, pooling=pooling)


def _fit(learner, work: dict, epochs: int) -> tuple[float, float, dict]:
    import tf_keras as keras

    keras.utils.set_random_seed(SEED)  # same shuffles
    cpu_start = time.process_time()  # all threads of this process
    start = time.perf_counter()
    learner.fit(work["x"], work["y"], epochs=epochs, batch_size=32, verbose=0)
    elapsed = time.perf_counter() - start
    return elapsed, time.process_time() - cpu_start, dict(learner.last_fit)


def _fresh() -> None:
    import tf_keras as keras

    keras.backend.clear_session()
    gc.collect()


def _run_workload(work: dict, epochs: int, repeat: int) -> dict:
    import numpy as np

    from modelzoo import config

    samples: dict[str, list[float]] = {"cache miss": [], "cache hit": [], "plain": []}
    cpu: dict[str, list[float]] = {k: [] for k in samples}
    details: dict[str, list[dict]] = {k: [] for k in samples}
    accuracy: dict[str, list[float]] = {k: [] for k in samples}
    max_prob_diff: list[float] = []
    for rep in range(repeat):
        order = ["cached", "plain"] if rep % 2 == 0 else ["plain", "cached"]
        probs = {}
        for which in order:
            if which == "cached":
                shutil.rmtree(config.home() / "features", ignore_errors=True)
                runs = [("cache miss", "miss"), ("cache hit", "hit")]
            else:
                runs = [("plain", "off")]
            for key, expected in runs:
                learner = _learner(
                    work["base"], feature_cache=which == "cached", pooling=work["pooling"]
                )
                elapsed, cpu_s, last = _fit(learner, work, epochs)
                if last["feature_cache"] != expected:
                    raise RuntimeError(f"{key}: expected feature_cache={expected}, got {last}")
                samples[key].append(elapsed)
                cpu[key].append(cpu_s)
                details[key].append(last)
                acc = learner.evaluate(work["x_test"], work["y_test"])["accuracy"]
                accuracy[key].append(acc)
                if key in ("cache miss", "plain"):
                    probs[key] = learner.predict(work["x_test"])
                del learner
                _fresh()
        max_prob_diff.append(float(np.max(np.abs(probs["cache miss"] - probs["plain"]))))
    median = {k: statistics.median(v) for k, v in samples.items()}
    median_cpu = {k: statistics.median(v) for k, v in cpu.items()}
    plain_over = {
        key: [p / c for p, c in zip(samples["plain"], samples[key], strict=True)]
        for key in ("cache miss", "cache hit")
    }
    gap = [abs(a - b) * 100 for a, b in zip(accuracy["cache miss"], accuracy["plain"], strict=True)]
    return {
        "base": work["base"],
        "pretrained_base": work["pretrained"],
        "train_images": int(len(work["x"])),
        "test_images": int(len(work["x_test"])),
        "image_shape": list(work["x"].shape[1:]),
        "samples_s": samples,
        "median_s": median,
        "speedup": {
            "plain / cache miss": median["plain"] / median["cache miss"],
            "plain / cache hit": median["plain"] / median["cache hit"],
        },
        "speedup_per_repetition": plain_over,
        "samples_cpu_s": cpu,
        "median_cpu_s": median_cpu,
        "speedup_cpu": {
            "plain / cache miss": median_cpu["plain"] / median_cpu["cache miss"],
            "plain / cache hit": median_cpu["plain"] / median_cpu["cache hit"],
        },
        "fit_details": details,
        "test_accuracy": accuracy,
        "accuracy_gap_points_miss_vs_plain": gap,
        "max_abs_probability_diff_miss_vs_plain": max_prob_diff,
    }


def run(
    epochs: int,
    repeat: int,
    big_images: int,
    only: str | None = None,
    pooling: str = "flatten",
) -> dict:
    work_dir = Path(tempfile.mkdtemp(prefix="mz-bench-transfer-"))
    saved_env = dict(os.environ)
    saved_cwd = Path.cwd()
    try:
        for key in [k for k in os.environ if k.startswith("MODELZOO_")]:
            del os.environ[key]
        os.environ["MODELZOO_HOME"] = str(work_dir / "home")
        os.environ["MODELZOO_REGISTRY"] = str(work_dir / "registry")
        os.environ["MODELZOO_DISABLE_PROGRESS_BARS"] = "1"
        os.chdir(work_dir)  # no modelzoo.toml project above us
        _publish_big(work_dir / "registry")
        workloads = {
            name: dict(w, pooling=pooling)
            for name, w in _workloads(big_images).items()
            if only in (None, name)
        }
        # warm-up, untimed: install both bases, import and trace once
        for work in workloads.values():
            small = dict(work, x=work["x"][:64], y=work["y"][:64])
            _fit(_learner(work["base"], feature_cache=False, pooling=pooling), small, 1)
            _fresh()
        load_before = os.getloadavg()
        results = {name: _run_workload(w, epochs, repeat) for name, w in workloads.items()}
        load_after = os.getloadavg()
    finally:
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
        shutil.rmtree(work_dir, ignore_errors=True)
    goals = {}
    for name, res in results.items():
        goals[f"{name}: plain / cache miss >= {GOAL_SPEEDUP:g}x"] = (
            res["speedup"]["plain / cache miss"] >= GOAL_SPEEDUP
        )
    if "digits" in results:
        gap = max(results["digits"]["accuracy_gap_points_miss_vs_plain"])
        goals[f"digits: cached and plain test accuracy within {GOAL_ACCURACY_POINTS:g} point"] = (
            gap <= GOAL_ACCURACY_POINTS
        )
    return {
        "benchmark": "transfer",
        "epochs": epochs,
        "repeat": repeat,
        "batch_size": 32,
        "cut": CUT,
        "head": {"hidden": [100], "pooling": pooling},
        "seed": SEED,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "loadavg_before": load_before,
            "loadavg_after": load_after,
        },
        "workloads": results,
        "goals": goals,
    }


def _median_of(res: dict, variant: str, key: str) -> float:
    return statistics.median(d[key] for d in res["fit_details"][variant])


def _table(result: dict) -> str:
    lines = [
        "| workload | images | plain s | cache miss s (features + head) | cache hit s |"
        " plain / miss | plain / hit | same, CPU s | test acc. plain / cached |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, res in result["workloads"].items():
        med = res["median_s"]
        per = res["speedup_per_repetition"]
        acc = res["test_accuracy"]
        shape = "x".join(str(d) for d in res["image_shape"][:2])
        lines.append(
            f"| {name} | {res['train_images']} @ {shape} | {med['plain']:.2f} | "
            f"{med['cache miss']:.2f} ({_median_of(res, 'cache miss', 'features_seconds'):.2f}"
            f" + {_median_of(res, 'cache miss', 'train_seconds'):.2f}) | {med['cache hit']:.2f} | "
            f"{res['speedup']['plain / cache miss']:.1f}x "
            f"({min(per['cache miss']):.1f}–{max(per['cache miss']):.1f}) | "
            f"{res['speedup']['plain / cache hit']:.1f}x "
            f"({min(per['cache hit']):.1f}–{max(per['cache hit']):.1f}) | "
            f"{res['speedup_cpu']['plain / cache miss']:.1f}x / "
            f"{res['speedup_cpu']['plain / cache hit']:.1f}x | "
            f"{statistics.median(acc['plain']):.1%} / {statistics.median(acc['cache miss']):.1%} |"
        )
    lines.append("")
    lines += goal_lines(result["goals"])
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--big-images", type=int, default=256)
    parser.add_argument("--workload", choices=["digits", "mobilenet_1.0_96"], default=None)
    parser.add_argument(
        "--pooling", choices=["flatten", "avg"], default="flatten", help="the head's pooling"
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    result = run(args.epochs, args.repeat, args.big_images, args.workload, args.pooling)
    return finish(result, args.out, _table(result))


if __name__ == "__main__":
    sys.exit(main())
