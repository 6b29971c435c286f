"""Benchmark: search a registry of 10,000 models.

Generates a folder registry of N manifests in a temporary directory, builds its index,
then measures in one process the median wall time of ``search("mobilenet")`` and
``search()`` (warm: the parsed index is reused while index.json is unchanged; uncached:
the index is re-read and re-parsed every time), and the wall time of a cold
``python -c`` subprocess that imports modelzoo and searches. Goal: <= 0.3 s.

Writes ``benchmarks/results/search.json`` and prints a one-line summary::

    python benchmarks/bench_search.py [--models 10000] [--runs 7]
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

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

GOAL_SECONDS = 0.3
FAMILIES = ["MobileNet", "ResNet", "EfficientNet", "ConvNeXt", "VGG", "DenseNet", "RegNet"]


def make_registry(root: Path, count: int) -> None:
    """Write ``count`` small, valid manifests under ``root/models``."""
    for i in range(count):
        family = FAMILIES[i % len(FAMILIES)]
        name = f"{family.lower()}_{i:05d}"
        doc = {
            "schema_version": 1,
            "name": name,
            "version": f"1.{i % 3}.0",
            "family": family,
            "summary": f"{family} variant {i}, synthetic benchmark model",
            "task": "image-classification",
            "license": "Apache-2.0",
            "tags": [family.lower(), "benchmark", "mobile" if i % 5 == 0 else "server"],
            "input": {"shape": [224, 224, 3], "min_size": 32, "preprocessing": "tf"},
            "labels": "imagenet",
            "build": {"kind": "keras-model"},
            "artifacts": {
                "full": {"url": "model.keras", "hash": "sha256:" + "0" * 64, "format": "keras"}
            },
        }
        folder = root / "models" / name / doc["version"]
        folder.mkdir(parents=True)
        (folder / "manifest.json").write_text(json.dumps(doc), encoding="utf-8")


def median_time(fn, runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def cold_run(code: str, env: dict[str, str], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks/results/search.json")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="mz-bench-search-") as tmp:
        root = Path(tmp) / "registry"
        env = dict(os.environ)
        env.update(
            MODELZOO_HOME=str(Path(tmp) / "home"),
            MODELZOO_REGISTRY=str(root),
            PYTHONPATH=str(REPO),
        )
        os.environ.update(env)

        start = time.perf_counter()
        make_registry(root, args.models)
        generate_s = time.perf_counter() - start

        from modelzoo.hub import index
        from modelzoo.hub.registry import search, write_index

        start = time.perf_counter()
        index_path = write_index(root)
        build_index_s = time.perf_counter() - start

        start = time.perf_counter()
        first = search("mobilenet")
        first_s = time.perf_counter() - start
        hits = len(first)
        total = len(search())

        warm_query = median_time(lambda: search("mobilenet"), args.runs)
        warm_all = median_time(lambda: search(), args.runs)

        def uncached(query):
            index._parsed.clear()
            search(query)

        uncached_query = median_time(lambda: uncached("mobilenet"), args.runs)
        uncached_all = median_time(lambda: uncached(None), args.runs)

        code = "from modelzoo.hub.registry import search; search('mobilenet')"
        cold_runs = max(3, args.runs // 2)
        cold = cold_run(code, env, cold_runs)
        baseline = cold_run("pass", env, cold_runs)
        import_only = cold_run("import modelzoo.hub.registry", env, cold_runs)

        result = {
            "benchmark": "search",
            "models": args.models,
            "runs": args.runs,
            "index_bytes": index_path.stat().st_size,
            "hits_mobilenet": hits,
            "entries_total": total,
            "generate_manifests_s": round(generate_s, 4),
            "build_index_s": round(build_index_s, 4),
            "first_search_s": round(first_s, 4),
            "warm_search_query_median_s": round(warm_query, 4),
            "warm_search_all_median_s": round(warm_all, 4),
            "uncached_search_query_median_s": round(uncached_query, 4),
            "uncached_search_all_median_s": round(uncached_all, 4),
            "cold_subprocess_search_median_s": round(cold, 4),
            "cold_subprocess_import_registry_median_s": round(import_only, 4),
            "cold_subprocess_python_baseline_median_s": round(baseline, 4),
            "goal_s": GOAL_SECONDS,
            "meets_goal": max(uncached_query, uncached_all, cold) <= GOAL_SECONDS,
            "python": platform.python_version(),
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
        }

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(
        f"search over {args.models} models: query {uncached_query * 1e3:.1f} ms "
        f"(warm {warm_query * 1e3:.1f} ms), all {uncached_all * 1e3:.1f} ms "
        f"(warm {warm_all * 1e3:.1f} ms), cold subprocess {cold * 1e3:.0f} ms "
        f"(python alone {baseline * 1e3:.0f} ms); goal <= {GOAL_SECONDS * 1e3:.0f} ms: "
        f"{'met' if result['meets_goal'] else 'MISSED'} -> {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
