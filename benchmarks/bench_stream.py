"""Training from an image folder streamed from disk: peak memory at scale, speed vs in memory.

Generates folders of random-ish 224x224 JPEGs (5 classes; cached under
``/tmp/modelzoo-bench-stream``), then trains a frozen MobileNet alpha 0.25 (random
weights, ``weights=None``: only the shapes and the arithmetic matter here) cut at
``conv_pw_13_relu`` with ``TransferLearner``, each run in a fresh process so that its
peak RSS (``ru_maxrss``) is its own:

* ``stream``: ``fit("folder/")`` — files listed, decoded and resized by tf.data, the
  frozen base's features written to the cache in chunks and read back block by block.
* ``memory``: the old path — every image read into one float32 array
  (``modelzoo.read_images``), then ``fit(x, y)``.

Both with the feature cache (a fresh, empty one: a miss) and without it (``feature_cache=
False``: every epoch goes through the base). The speed comparison runs on a small folder
(both paths fit in memory), interleaved, medians of the repeats; the big folder (20,000
images by default; the in-memory path would need ~12 GB) runs the streaming path once.

Usage: ``.venv/bin/python benchmarks/bench_stream.py [--images 20000] [--small 1000]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import finish, goal_lines  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CACHE = Path(tempfile.gettempdir()) / "modelzoo-bench-stream"
CLASSES = 5
SIZE = 224


def _make_folder(root: Path, n: int, seed: int = 0) -> Path:
    """``n`` JPEGs in ``CLASSES`` sub-folders; reused when already complete (a marker file)."""
    import numpy as np
    from PIL import Image

    done = root / ".complete"
    if done.exists():
        return root
    rng = np.random.default_rng(seed)
    # Smooth random fields upsampled from 14x14 plus fine noise: JPEG sizes (~10-20 KB)
    # and decode costs like photos', at a fraction of the time of anything fancier.
    tints = rng.uniform(0.4, 1.0, (CLASSES, 3))
    for c in range(CLASSES):
        (root / f"class_{c}").mkdir(parents=True, exist_ok=True)
    noise = rng.integers(0, 24, (8, SIZE, SIZE, 3), dtype=np.uint8)
    for i in range(n):
        c = i % CLASSES
        low = rng.uniform(0, 255, (14, 14, 3)) * tints[c]
        img = np.kron(low, np.ones((16, 16, 1))).astype(np.uint8) + noise[i % 8]
        Image.fromarray(img).save(root / f"class_{c}" / f"{i:06d}.jpg", quality=85)
    done.write_text(str(n))
    return root


def _child(mode: str, folder: str, cache: bool, epochs: int, batch: int) -> dict:
    """One training run in this (fresh) process; returns timings and peak RSS."""
    import resource

    t_start = time.perf_counter()
    import numpy as np
    import tf_keras as keras

    import modelzoo as mz

    keras.utils.set_random_seed(0)
    base = keras.applications.MobileNet(
        alpha=0.25, include_top=False, weights=None, input_shape=(SIZE, SIZE, 3)
    )
    learner = mz.TransferLearner(
        base, "conv_pw_13_relu", num_classes=CLASSES, feature_cache=cache, hidden=(64,)
    )
    t0 = time.perf_counter()
    if mode == "stream":
        learner.fit(folder, epochs=epochs, batch_size=batch, verbose=0)
        n = learner.last_fit["examples"]
    else:
        listing = mz.ImageFolder.scan(folder)
        x = mz.read_images(listing.paths, (SIZE, SIZE))
        y = np.asarray(listing.labels)
        learner.fit(x, y, epochs=epochs, batch_size=batch, verbose=0)
        n = len(x)
    seconds = time.perf_counter() - t0
    return {
        "mode": mode,
        "feature_cache": cache,
        "images": n,
        "epochs": epochs,
        "seconds": round(seconds, 3),
        "images_per_s": round(n * epochs / seconds, 1),
        "startup_s": round(t0 - t_start, 2),
        "fit": learner.last_fit,
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def _run(mode: str, folder: Path, cache: bool, epochs: int, batch: int) -> dict:
    with tempfile.TemporaryDirectory() as home:  # an empty feature cache every run
        env = {**os.environ, "MODELZOO_HOME": home, "TF_CPP_MIN_LOG_LEVEL": "2"}
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        argv = [sys.executable, __file__, "--child", mode, str(folder), str(int(cache))]
        argv += [str(epochs), str(batch)]
        out = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"{mode} run failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20_000)
    parser.add_argument("--small", type=int, default=1_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats-only", action="store_true", help="skip the big folder")
    parser.add_argument("--big-only", action="store_true", help="skip the speed comparison")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.out is None:
        name = "stream_big.json" if args.big_only else "stream.json"
        args.out = ROOT / "benchmarks/results" / name
    if args.repeats_only:
        args.images = 0
    load_before = os.getloadavg()

    t = time.perf_counter()
    small = _make_folder(CACHE / f"jpeg{args.small}", args.small, seed=1)
    big = _make_folder(CACHE / f"jpeg{args.images}", args.images) if args.images else None
    generation_s = time.perf_counter() - t

    runs: list[dict] = []
    # Interleaved, the order rotated each repeat.
    for r in range(0 if args.big_only else args.repeats):
        order = [("stream", True), ("memory", True), ("stream", False), ("memory", False)]
        for mode, cache in order[r % 2 :] + order[: r % 2]:
            runs.append(_run(mode, small, cache, args.epochs, args.batch))
            print(json.dumps(runs[-1]), flush=True)

    def median(mode: str, cache: bool, key: str) -> float:
        values = [x[key] for x in runs if x["mode"] == mode and x["feature_cache"] == cache]
        return round(statistics.median(values), 2) if values else float("nan")

    speed = {
        f"cache_{'on' if cache else 'off'}": {
            "stream_images_per_s": median("stream", cache, "images_per_s"),
            "memory_images_per_s": median("memory", cache, "images_per_s"),
            "ratio": round(
                median("stream", cache, "images_per_s") / median("memory", cache, "images_per_s"),
                3,
            )
            if runs
            else None,
            "stream_peak_rss_mib": median("stream", cache, "peak_rss_mib"),
            "memory_peak_rss_mib": median("memory", cache, "peak_rss_mib"),
        }
        for cache in (True, False)
    }
    big_run = _run("stream", big, True, args.epochs, args.batch) if big else None
    if big_run:
        print(json.dumps(big_run), flush=True)
    in_memory_gib = (args.images * SIZE * SIZE * 3 * 4) / 2**30
    goals = {}
    if runs:
        goals["streaming within 10% of in memory (cache on)"] = speed["cache_on"]["ratio"] >= 0.9
        goals["streaming within 10% of in memory (cache off)"] = speed["cache_off"]["ratio"] >= 0.9
    if big_run:
        goals[f"peak RSS < 1.5 GiB on {args.images} images"] = big_run["peak_rss_mib"] < 1536
    result = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "loadavg_before": [round(v, 2) for v in load_before],
            "loadavg_after": [round(v, 2) for v in os.getloadavg()],
        },
        "generation_seconds": round(generation_s, 1),
        "small_folder_images": args.small,
        "speed": speed,
        "big": big_run,
        "in_memory_would_need_gib": round(in_memory_gib, 1),
        "runs": runs,
        "goals": goals,
    }
    lines = [
        "| path | cache | images/s (median) | peak RSS MiB |",
        "|---|---|---:|---:|",
    ]
    for cache in ("on", "off"):
        s = speed[f"cache_{cache}"]
        lines.append(
            f"| stream | {cache} | {s['stream_images_per_s']} | {s['stream_peak_rss_mib']} |"
        )
        lines.append(
            f"| memory | {cache} | {s['memory_images_per_s']} | {s['memory_peak_rss_mib']} |"
        )
    if big_run:
        lines.append(
            f"\n{args.images} images streamed: {big_run['images_per_s']} images/s, peak RSS "
            f"{big_run['peak_rss_mib']} MiB (in memory would need {in_memory_gib:.1f} GiB of "
            "pixels alone)"
        )
    lines += goal_lines(goals)
    return finish(result, args.out, "\n".join(lines))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        mode, folder, cache, epochs, batch = sys.argv[2:7]
        result = _child(mode, folder, bool(int(cache)), int(epochs), int(batch))
        print(json.dumps(result))
        raise SystemExit(0)
    raise SystemExit(main())
