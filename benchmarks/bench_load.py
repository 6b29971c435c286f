"""Benchmark: ``modelzoo.load`` from a warm cache against raw tf_keras, time and peak memory.

Run from the repository root::

    .venv/bin/python benchmarks/bench_load.py [--repeat 15] [--mem-repeat 2]

Three models, all already installed in a temporary ``MODELZOO_HOME``:

* ``bench_mobilenet_1.0_224``: MobileNet(alpha=1.0, 224x224, 1000 classes) with seeded
  random weights (a ~17 MB ``full.h5``), published in a temporary folder registry;
* ``bench_resnet50``: ResNet50 (224x224, 1000 classes) the same way (a ~103 MB file);
* ``mobilenet_v1_0.25_32_digits``: the bundled offline model (~1 MB).

**Time** (one process). ``modelzoo`` is ``modelzoo.load(name)``: resolve the name, find
the install record, build the allow-listed constructor, scan the weights file, load it,
freeze; the scan also re-checks the file's sha256 against the install record (verify-on-
load, hashed on a thread over the same mapping the scanner reads). ``raw`` is what a user
would write by hand: the same
``tf_keras.applications`` constructor with ``weights=None`` and ``model.load_weights``
of the *same* cached file. Each variant runs once untimed first (imports, first-call
tracing), then the two alternate, ``repeat`` times each, with ``clear_session`` and a
garbage collection between calls (outside the timed region). The pieces modelzoo adds
(resolution, install record, safety scan with and without the sha256 check, the sha256
alone) are also timed on their own; "verify cost" is scan+verify minus scan, over the
median raw load.

**Peak memory** (Linux). Fresh subprocesses do only one thing each (``import tf_keras``,
or one raw load, or one ``modelzoo.load``) and report their ``ru_maxrss``, also split
into the import's peak and the load's own peak. They are started through ``sh`` so that
they do not inherit this process's peak as their starting ``ru_maxrss``.

Results go to ``benchmarks/results/load.json``. Goal: load overhead <= 10% including
the safety scan. The machine's speed drifts by tens of percent within a run, far more
than the difference sought, so the overhead is given three ways: the ratio of the
medians; the median of the ratios of paired runs (each modelzoo load against the raw
load next to it in time); and modelzoo's own steps (resolve + install record + scan +
freeze, each timed alone) over the median raw load: everything else ``load`` does is the
very same tf_keras code as ``raw``, so this last one is the steadiest estimate.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import finish, goal_lines

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results" / "load.json"
GOAL_OVERHEAD = 0.10

BIG = "bench_mobilenet_1.0_224"
BIG_KWARGS = {"alpha": 1.0, "input_shape": [224, 224, 3], "classes": 1000}
RESNET = "bench_resnet50"
RESNET_KWARGS = {"input_shape": [224, 224, 3], "classes": 1000}
DIGITS = "mobilenet_v1_0.25_32_digits"
#: name -> (constructor, kwargs) of the models published with random weights
PUBLISHED = {BIG: ("MobileNet", BIG_KWARGS), RESNET: ("ResNet50", RESNET_KWARGS)}

# One load in a fresh interpreter. Prints JSON (MiB): ru_maxrss after importing tf_keras
# (the import's peak); ru_maxrss at the end with the kernel's high-water mark reset after
# the import (write 5 to /proc/self/clear_refs), i.e. the peak of the load alone; the
# process's peak (the larger of the two: what ru_maxrss says without the reset); the RSS
# at the end.
_MEMORY_CHILD = """
import json, re, resource, sys

def maxrss():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

def rss():
    try:
        with open("/proc/self/status") as fh:
            return int(re.search(r"VmRSS:\\s+(\\d+)", fh.read()).group(1)) / 1024
    except (OSError, AttributeError):
        return None

mode, name, path, kwargs = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
constructor = sys.argv[5] if len(sys.argv) > 5 else "MobileNet"
import tf_keras as keras
import_peak = maxrss()
try:
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
    reset = True
except OSError:
    reset = False
if mode == "modelzoo":
    import modelzoo
    model = modelzoo.load(name)
elif mode == "raw":
    kwargs["input_shape"] = tuple(kwargs["input_shape"])
    model = getattr(keras.applications, constructor)(include_top=True, weights=None, **kwargs)
    model.load_weights(path)
end_peak = maxrss()
print(json.dumps({
    "process_peak": max(import_peak, end_peak),
    "import_peak": import_peak,
    "load_peak": end_peak if reset else None,
    "rss_after": rss(),
}))
"""

# Linux hands a process that was spawned straight from this (large) one the parent's
# peak RSS as its own starting ru_maxrss. Going through a shell that forks the child
# (the trailing "exit" stops it from exec-ing in place) gives the child a clean count.
_VIA_SHELL = ["sh", "-c", '"$@"; exit $?', "sh"]


def _publish(registry: Path, name: str) -> None:
    """Add to a folder registry one ``PUBLISHED`` model with random weights."""
    import tf_keras as keras

    from modelzoo.hub import registry as registry_module

    constructor, build_kwargs = PUBLISHED[name]
    keras.utils.set_random_seed(0)
    kwargs = dict(build_kwargs, input_shape=tuple(build_kwargs["input_shape"]))
    model = getattr(keras.applications, constructor)(include_top=True, weights=None, **kwargs)
    folder = registry / "models" / name / "1.0.0"
    folder.mkdir(parents=True)
    weights = folder / "full.h5"
    model.save_weights(weights)
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    manifest = {
        "schema_version": 1,
        "name": name,
        "version": "1.0.0",
        "family": constructor,
        "summary": f"{constructor} with random weights (load benchmark)",
        "license": "MIT",
        "input": {"shape": [224, 224, 3], "min_size": 32, "preprocessing": "tf"},
        "labels": "imagenet",
        "build": {"kind": "keras-application", "constructor": constructor, "kwargs": build_kwargs},
        "artifacts": {
            "full": {
                "url": "full.h5",
                "format": "h5-weights",
                "hash": f"sha256:{digest}",
                "size": weights.stat().st_size,
            }
        },
    }
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    registry_module.write_index(registry)
    del model
    keras.backend.clear_session()


def _fresh() -> None:
    import tf_keras as keras

    keras.backend.clear_session()
    gc.collect()


def _variants(name: str, blob: Path, kwargs: dict, constructor: str) -> dict:
    import tf_keras as keras

    import modelzoo

    build_kwargs = dict(kwargs, input_shape=tuple(kwargs["input_shape"]))

    def via_modelzoo():
        return modelzoo.load(name)

    def raw():
        ctor = getattr(keras.applications, constructor)
        model = ctor(include_top=True, weights=None, **build_kwargs)
        model.load_weights(str(blob))
        return model

    return {"modelzoo": via_modelzoo, "raw": raw}


def _pieces(name: str, blob: Path, model, sha256: str) -> dict:
    """What modelzoo.load adds around build + load_weights, each callable on its own."""
    from modelzoo.hub.hashes import file_digests
    from modelzoo.hub.install import ensure_installed
    from modelzoo.hub.project import resolve_in_context
    from modelzoo.models.loading import choose_variant
    from modelzoo.models.slicing import freeze
    from modelzoo.safety.scan import scan

    def resolve():
        return resolve_in_context(name)

    def record():
        resolved = resolve_in_context(name)
        return ensure_installed(resolved, choose_variant(resolved.manifest))

    def safety_scan():
        return scan(blob, expected_format="h5-weights")

    def scan_and_verify():  # what load does: sha256 hashed on a thread during the scan
        return scan(blob, expected_format="h5-weights", sha256=sha256)

    def sha256_alone():
        return file_digests(blob)

    return {
        "resolve": resolve,
        "resolve+record": record,
        "safety scan": safety_scan,
        "scan+verify": scan_and_verify,
        "sha256 alone": sha256_alone,
        "freeze": lambda: freeze(model),
    }


def _time_model(name: str, repeat: int) -> dict:
    from modelzoo.hub.install import ensure_installed
    from modelzoo.hub.project import resolve_in_context

    resolved = resolve_in_context(name)
    rec = ensure_installed(resolved, "full")
    blob = Path(rec.path)
    kwargs = dict(resolved.manifest.build.kwargs)
    constructor = resolved.manifest.build.constructor
    variants = _variants(name, blob, kwargs, constructor)
    pieces = _pieces(name, blob, variants["raw"](), rec.sha256)
    samples: dict[str, list[float]] = {k: [] for k in [*variants, *pieces]}
    cpu: dict[str, list[float]] = {k: [] for k in variants}
    for fn in (*variants.values(), *pieces.values()):  # warm-up, untimed
        fn()
        _fresh()
    for rep in range(repeat):
        order = list(variants) if rep % 2 == 0 else list(variants)[::-1]
        for key in order:
            cpu_start = time.process_time()  # all threads of this process
            start = time.perf_counter()
            model = variants[key]()
            samples[key].append(time.perf_counter() - start)
            cpu[key].append(time.process_time() - cpu_start)
            del model
            _fresh()
        for key, fn in pieces.items():
            start = time.perf_counter()
            fn()
            samples[key].append(time.perf_counter() - start)
    median = {k: statistics.median(v) for k, v in samples.items()}
    median_cpu = {k: statistics.median(v) for k, v in cpu.items()}
    added = median["resolve+record"] + median["scan+verify"] + median["freeze"]
    pairwise = [m / r for m, r in zip(samples["modelzoo"], samples["raw"], strict=True)]
    return {
        "blob": str(blob),
        "blob_bytes": blob.stat().st_size,
        "build_kwargs": kwargs,
        "constructor": constructor,
        "samples_s": samples,
        "median_s": median,
        "samples_cpu_s": cpu,
        "median_cpu_s": median_cpu,
        "overhead": median["modelzoo"] / median["raw"] - 1,
        "overhead_min": min(samples["modelzoo"]) / min(samples["raw"]) - 1,
        # each modelzoo run against the raw run next to it in time, which cancels the
        # machine's slow drift in speed
        "overhead_paired": statistics.median(pairwise) - 1,
        "overhead_cpu": median_cpu["modelzoo"] / median_cpu["raw"] - 1,
        # the same question answered from the parts: what modelzoo's own steps cost,
        # against the raw load (immune to the build's run-to-run noise)
        "added_steps_s": added,
        "overhead_of_added_steps": added / median["raw"],
        # verify-on-load alone: what the sha256 check adds to the scan, over a raw load
        "verify_s": median["scan+verify"] - median["safety scan"],
        "verify_share_of_raw": (median["scan+verify"] - median["safety scan"]) / median["raw"],
        "sha256_alone_share_of_raw": median["sha256 alone"] / median["raw"],
        "overhead_per_repetition": [p - 1 for p in pairwise],
    }


def _memory(models: dict[str, dict], repeat: int, env: dict[str, str]) -> dict:
    """Medians (MiB) over fresh processes that each do only one thing (Linux)."""
    jobs = [("import tf_keras only", "import", "-", "-", {}, "-")]
    for name, info in models.items():
        for mode in ("raw", "modelzoo"):
            jobs.append(
                (f"{name}: {mode}", mode, name, info["blob"], info["build_kwargs"],
                 info["constructor"])
            )  # fmt: skip
    samples: dict[str, list[dict]] = {label: [] for label, *_ in jobs}
    for rep in range(repeat):
        order = jobs if rep % 2 == 0 else jobs[::-1]
        for label, mode, name, blob, kwargs, constructor in order:
            proc = subprocess.run(
                [*_VIA_SHELL, sys.executable, "-c", _MEMORY_CHILD, mode, name, blob,
                 json.dumps(kwargs), constructor],
                env=env, capture_output=True, text=True, check=True,
            )  # fmt: skip
            samples[label].append(json.loads(proc.stdout.strip().splitlines()[-1]))
    median = {}
    for label, runs in samples.items():
        median[label] = {
            key: statistics.median(r[key] for r in runs) if runs[0][key] is not None else None
            for key in runs[0]
        }
    return {"samples_mib": samples, "median_mib": median}


def run(repeat: int, mem_repeat: int, names: list[str]) -> dict:
    work = Path(tempfile.mkdtemp(prefix="mz-bench-load-"))
    saved_env = dict(os.environ)
    saved_cwd = Path.cwd()
    try:
        for key in [k for k in os.environ if k.startswith("MODELZOO_")]:
            del os.environ[key]
        os.environ["MODELZOO_HOME"] = str(work / "home")
        os.environ["MODELZOO_REGISTRY"] = str(work / "registry")
        os.environ["MODELZOO_DISABLE_PROGRESS_BARS"] = "1"
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        os.chdir(work)  # no modelzoo.toml project above us
        for name in names:
            if name in PUBLISHED:
                _publish(work / "registry", name)
        import modelzoo

        for name in names:
            modelzoo.install(name)
        load_before = os.getloadavg()
        models = {name: _time_model(name, repeat) for name in names}
        memory = _memory(models, mem_repeat, dict(os.environ))
        load_after = os.getloadavg()
    finally:
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
        shutil.rmtree(work, ignore_errors=True)
    goals = {}
    for name, info in models.items():
        goals[f"{name}: load overhead <= {GOAL_OVERHEAD:.0%} (paired runs)"] = (
            info["overhead_paired"] <= GOAL_OVERHEAD
        )
        own = f"{name}: modelzoo's own steps incl. verify-on-load <= {GOAL_OVERHEAD:.0%} of raw"
        goals[own] = info["overhead_of_added_steps"] <= GOAL_OVERHEAD
    return {
        "benchmark": "load",
        "repeat": repeat,
        "memory_repeat": mem_repeat,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "loadavg_before": load_before,
            "loadavg_after": load_after,
            "maxrss_of_this_process_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        },
        "models": models,
        "memory": memory,
        "goals": goals,
    }


def _table(result: dict) -> str:
    lines = [
        "| model | weights MB | raw s | modelzoo s | overhead: medians | paired runs |"
        " per-rep min–max | CPU s medians | resolve+record ms | scan ms | scan+verify ms |"
        " sha256 alone ms | verify / raw | freeze ms | own steps / raw |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, info in result["models"].items():
        med = info["median_s"]
        per = info["overhead_per_repetition"]
        lines.append(
            f"| {name} | {info['blob_bytes'] / 1e6:.1f} | {med['raw']:.3f} | "
            f"{med['modelzoo']:.3f} | {info['overhead']:+.1%} | {info['overhead_paired']:+.1%} | "
            f"{min(per):+.1%} – {max(per):+.1%} | {info['overhead_cpu']:+.1%} | "
            f"{med['resolve+record'] * 1000:.1f} | {med['safety scan'] * 1000:.1f} | "
            f"{med['scan+verify'] * 1000:.1f} | {med['sha256 alone'] * 1000:.1f} | "
            f"{info['verify_share_of_raw']:.1%} | "
            f"{med['freeze'] * 1000:.1f} | {info['overhead_of_added_steps']:.1%} |"
        )
    lines += [
        "",
        "| process | peak RSS MiB (ru_maxrss) | peak during the load MiB | RSS after MiB |",
        "|---|---:|---:|---:|",
    ]

    def mib(value) -> str:
        return "n/a" if value is None else f"{value:.0f}"

    for label, m in result["memory"]["median_mib"].items():
        lines.append(
            f"| {label} | {mib(m['process_peak'])} | {mib(m['load_peak'])} | "
            f"{mib(m['rss_after'])} |"
        )
    lines.append("")
    lines += goal_lines(result["goals"])
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--mem-repeat", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--models", nargs="+", default=[BIG, RESNET, DIGITS])
    args = parser.parse_args(argv)
    result = run(args.repeat, args.mem_repeat, args.models)
    return finish(result, args.out, _table(result))


if __name__ == "__main__":
    raise SystemExit(main())
