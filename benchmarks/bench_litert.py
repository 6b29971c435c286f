"""Benchmark: LiteRT exports (float32, float16, dynamic, int8) against Keras, size and latency.

Run from the repository root::

    .venv/bin/python benchmarks/bench_litert.py [--repeat 50]

**Speed and size** on MobileNet v1 (alpha 1.0, 224x224, 1000 classes) with seeded random
stand-in weights (``weights=None``; speed and size do not depend on the values), wrapped
with MobileNet's preprocessing so it takes 0-255 pixels like a registry model. Each mode
is exported with :func:`modelzoo.export_litert` (int8 calibrated on 64 digit images
resized to 224, ``force=True`` because a random network's parity figures mean little).
Latency is for **batch 1** on the CPU: Keras ``model(x)`` (eager call), Keras
``model.predict(x)``, and each ``.tflite`` in the ``ai_edge_litert`` interpreter
(``set_tensor`` + ``invoke`` + ``get_tensor``, as many threads as CPUs, like
TensorFlow). Every method runs once untimed, then all methods take turns, ``repeat``
rounds; medians are reported (the machine is shared and its speed drifts).

**int8 agreement** on the bundled digits model (real weights, MobileNet alpha 0.25
32x32 pretrained on digits 0-4): int8 calibrated on 100 training images, then the
written ``.tflite`` and Keras both classify the whole held-out test set of digits 0-4
(``split_digits(range(5))``); reported: top-1 agreement and both accuracies.

Results go to ``benchmarks/results/litert.json``. Expected (issue 16): int8 about a
quarter of the float32 size and several times faster than Keras predict at batch 1.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import finish, goal_lines

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "litert.json"
MODES = ("none", "float16", "dynamic", "int8")
SEED = 0


def _digit_folder(root: Path, x: np.ndarray, y: np.ndarray) -> Path:
    """Write digit images (0-255 RGB) as PNGs, one sub-folder per class."""
    from PIL import Image

    for i, (img, label) in enumerate(zip(x.astype(np.uint8), y, strict=True)):
        folder = root / str(int(label))
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(folder / f"{i}.png")
    return root


def _interpreter(path: Path):
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path), num_threads=os.cpu_count())
    it.allocate_tensors()
    return it


def _lite_call(it):
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    scale, zero = inp["quantization"]

    def call(x):
        if inp["dtype"] == np.int8:
            x = np.clip(np.round(x / scale + zero), -128, 127)
        it.set_tensor(inp["index"], x.astype(inp["dtype"]))
        it.invoke()
        y = it.get_tensor(out["index"]).astype(np.float32)
        if out["dtype"] == np.int8:
            y = (y - out["quantization"][1]) * out["quantization"][0]
        return y

    return call


def speed(tmp: Path, repeat: int) -> dict:
    import tf_keras as keras

    import modelzoo
    from modelzoo.models.datasets import digits_to_rgb, load_digits
    from modelzoo.models.preprocessing import with_preprocessing

    keras.utils.set_random_seed(SEED)
    base = keras.applications.MobileNet(alpha=1.0, input_shape=(224, 224, 3), weights=None)
    model = with_preprocessing(base, "tf")
    keras_file = tmp / "mobilenet.keras"
    model.save(keras_file)
    x_all, y_all = load_digits()
    data = _digit_folder(tmp / "calib", digits_to_rgb(x_all[:64]), y_all[:64])

    exports = {}
    for mode in MODES:
        path = tmp / f"mobilenet_{mode}.tflite"
        t0 = time.perf_counter()
        result = modelzoo.export_litert(
            model, path, quantize=mode, data=data if mode == "int8" else None, force=True
        )
        exports[mode] = {
            "bytes": result.size,
            "export_seconds": round(time.perf_counter() - t0, 2),
            "parity": result.parity,
            "runtime": result.runtime,
        }
        print(f"exported {mode}: {result.size} bytes", flush=True)

    x = np.random.default_rng(SEED).uniform(0, 255, (1, 224, 224, 3)).astype(np.float32)
    methods = {
        "keras model(x)": lambda v: model(v, training=False).numpy(),
        "keras predict": lambda v: model.predict(v, verbose=0),
    }
    for mode in MODES:
        methods[f"litert {mode}"] = _lite_call(_interpreter(tmp / f"mobilenet_{mode}.tflite"))
    for call in methods.values():
        call(x)  # warm-up: tracing, allocation
    samples: dict[str, list[float]] = {name: [] for name in methods}
    for _ in range(repeat):
        for name, call in methods.items():
            t0 = time.perf_counter()
            call(x)
            samples[name].append(time.perf_counter() - t0)
    medians = {name: statistics.median(v) for name, v in samples.items()}
    return {
        "model": "MobileNet v1 alpha 1.0 224x224, 1000 classes, random weights, preprocessing "
        "'tf' baked in",
        "keras_file_bytes": keras_file.stat().st_size,
        "params": int(model.count_params()),
        "exports": exports,
        "latency_seconds": samples,
        "median_ms": {k: round(v * 1000, 2) for k, v in medians.items()},
        "size_vs_float32": {
            m: round(exports[m]["bytes"] / exports["none"]["bytes"], 3) for m in MODES
        },
        "speedup_vs_keras_predict": {
            m: round(medians["keras predict"] / medians[f"litert {m}"], 2) for m in MODES
        },
        "speedup_vs_keras_call": {
            m: round(medians["keras model(x)"] / medians[f"litert {m}"], 2) for m in MODES
        },
    }


def agreement(tmp: Path) -> dict:
    import modelzoo
    from modelzoo.models.datasets import digits_to_rgb, split_digits

    split = split_digits(range(5))
    x_test = digits_to_rgb(split.x_test).astype(np.float32)
    rng = np.random.default_rng(SEED)
    pick = rng.permutation(len(split.y_train))[:100]
    data = _digit_folder(
        tmp / "digits-train", digits_to_rgb(split.x_train[pick]), split.y_train[pick]
    )
    model = modelzoo.load("mobilenet_v1_0.25_32_digits", include_preprocessing=True)
    out = tmp / "digits_int8.tflite"
    result = modelzoo.export_litert(model, out, quantize="int8", data=data)
    call = _lite_call(_interpreter(out))
    lite = np.concatenate([call(x_test[i : i + 1]) for i in range(len(x_test))])
    keras_pred = model.predict(x_test, verbose=0).argmax(1)
    lite_pred = lite.argmax(1)
    return {
        "model": "mobilenet_v1_0.25_32_digits (bundled, real weights)",
        "test_images": int(len(x_test)),
        "calibration_images": 100,
        "bytes": result.size,
        "export_check": result.parity,
        "top1_agreement": float(np.mean(keras_pred == lite_pred)),
        "keras_accuracy": float(np.mean(keras_pred == split.y_test)),
        "int8_accuracy": float(np.mean(lite_pred == split.y_test)),
    }


def run(repeat: int) -> dict:
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        os.environ["MODELZOO_HOME"] = str(tmp / "home")  # the bundled registry: offline
        os.environ.setdefault("MODELZOO_DISABLE_PROGRESS_BARS", "1")
        fast = speed(tmp, repeat)
        digits = agreement(tmp)
    load_after = os.getloadavg()
    goals = {
        "int8 <= 0.3x the float32 size": fast["size_vs_float32"]["int8"] <= 0.3,
        "int8 >= 3x faster than Keras predict at batch 1": (
            fast["speedup_vs_keras_predict"]["int8"] >= 3
        ),
        "int8 top-1 agreement >= 98% on the digits test set": digits["top1_agreement"] >= 0.98,
    }
    return {
        "benchmark": "litert",
        "repeat": repeat,
        "seed": SEED,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "loadavg_before": load_before,
            "loadavg_after": load_after,
        },
        "speed": fast,
        "digits_int8": digits,
        "goals": goals,
    }


def _table(result: dict) -> str:
    fast, digits = result["speed"], result["digits_int8"]
    med = fast["median_ms"]
    lines = [
        f"MobileNet 1.0 224, batch 1, median of {result['repeat']} (ms); "
        f"Keras model(x) {med['keras model(x)']}, predict {med['keras predict']}; "
        f".keras file {fast['keras_file_bytes'] / 1e6:.1f} MB",
        "",
        "| mode | size MB | size / float32 | latency ms | vs predict | vs model(x) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for m in MODES:
        lines.append(
            f"| {m} | {fast['exports'][m]['bytes'] / 1e6:.2f} | {fast['size_vs_float32'][m]:.2f} "
            f"| {med[f'litert {m}']} | {fast['speedup_vs_keras_predict'][m]:.1f}x "
            f"| {fast['speedup_vs_keras_call'][m]:.1f}x |"
        )
    lines += [
        "",
        f"digits int8: top-1 agreement {digits['top1_agreement']:.2%} on "
        f"{digits['test_images']} test images; accuracy Keras {digits['keras_accuracy']:.2%}, "
        f"int8 {digits['int8_accuracy']:.2%}; {digits['bytes']} bytes",
        "",
        *goal_lines(result["goals"]),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    result = run(args.repeat)
    return finish(result, args.out, _table(result))


if __name__ == "__main__":
    sys.exit(main())
