"""Benchmark: parallel ranged downloads against curl and the single stream (issue 17).

Run from the repository root::

    .venv/bin/python benchmarks/bench_parallel.py [--size-mb 200] [--rate-mb 10] [--repeat 3]

A random file is served by ``tests/_server.py`` in its own process on 127.0.0.1. In the
throttled round the server caps EACH connection at ``--rate-mb`` MB/s (a paced
``sendfile`` loop, as object stores and CDNs cap per-connection throughput); the
unthrottled round is plain loopback. Methods, each in its own process, same run:

* ``curl``          ``curl -o FILE URL`` (one connection, no verification)
* ``modelzoo``      ``python -m modelzoo install big`` with the default parallelism
* ``modelzoo -p1``  ``python -m modelzoo install big --parallel 1`` (today's one stream)

Both modelzoo runs verify the published sha256 and install atomically into a fresh
``MODELZOO_HOME``. CPU seconds and peak RSS come from GNU ``time`` (the server is not
counted; modelzoo's figures include starting Python and the CLI). Results go to
``benchmarks/results/parallel.json``. Goals: throttled,
modelzoo >= 4x faster than curl; CPU per MB <= 1.2x the single stream; peak RSS < 100 MB;
unthrottled, parallel no slower than the single stream.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
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
RESULTS = HERE / "results" / "parallel.json"

_SERVER = """
import sys
sys.path.insert(0, sys.argv[1])
from _server import LocalServer
server = LocalServer(sys.argv[2])
print(server.url, flush=True)
for line in sys.stdin:  # "rate N" sets the per-connection cap (0 = none); EOF stops
    server.rate = int(line.split()[1]) or None
server.close()
"""


def _run(command: list[str], env: dict[str, str]) -> dict:
    """Run ``command`` under GNU time: wall seconds, CPU seconds and peak RSS (MB).

    GNU time forks the command from its own small process, so the peak RSS is the
    command's own (a child forked from this Python process would inherit its size).
    """
    with tempfile.NamedTemporaryFile("r", suffix=".time") as report:
        timed = ["/usr/bin/time", "-f", "%M %U %S", "-o", report.name, *command]
        started = time.perf_counter()
        done = subprocess.run(timed, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wall = time.perf_counter() - started
        if done.returncode != 0:
            raise SystemExit(f"{command[:4]} failed: {done.stderr.decode()[-2000:]}")
        rss_kb, user, system = report.read().split()[-3:]
    return {"wall_s": wall, "cpu_s": float(user) + float(system), "peak_rss_mb": int(rss_kb) / 1024}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=200)
    parser.add_argument("--rate-mb", type=float, default=10.0)
    parser.add_argument("--repeat", type=int, default=3, help="unthrottled repetitions")
    parser.add_argument("--no-throttled", action="store_true", help="skip the throttled round")
    args = parser.parse_args()
    size = args.size_mb * 1_000_000
    rate = int(args.rate_mb * 1_000_000)
    work = Path(tempfile.mkdtemp(prefix="bench-parallel-"))
    loadavg_before = os.getloadavg()
    try:
        served = work / "served"
        data_path = served / "models" / "big" / "1.0.0" / "full.h5"
        data_path.parent.mkdir(parents=True)
        with open(data_path, "wb") as fh:
            for _ in range(args.size_mb):
                fh.write(os.urandom(1_000_000))
        with open(data_path, "rb") as fh:
            sha = hashlib.file_digest(fh, "sha256").hexdigest()
        server = subprocess.Popen(
            [sys.executable, "-c", _SERVER, str(ROOT / "tests"), str(served)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        url = server.stdout.readline().strip()
        file_url = f"{url}/models/big/1.0.0/full.h5"
        manifest = {
            "schema_version": 1,
            "name": "big",
            "version": "1.0.0",
            "summary": "benchmark artifact",
            "family": "Bench",
            "license": "MIT",
            "tags": [],
            "input": {"shape": [8, 8, 3], "preprocessing": "none"},
            "labels": None,
            "build": {"kind": "keras-model"},
            "artifacts": {
                "full": {"url": file_url, "format": "h5", "hash": f"sha256:{sha}", "size": size}
            },
        }
        registry = work / "registry"
        (registry / "models" / "big" / "1.0.0").mkdir(parents=True)
        (registry / "models" / "big" / "1.0.0" / "manifest.json").write_text(json.dumps(manifest))
        sys.path.insert(0, str(ROOT))
        from modelzoo.hub.registry import write_index

        write_index(registry)

        def set_rate(value: int) -> None:
            server.stdin.write(f"rate {value}\n")
            server.stdin.flush()
            time.sleep(0.2)

        base = {**os.environ, "PYTHONPATH": str(ROOT), "MODELZOO_REGISTRY": str(registry)}
        base["MODELZOO_DISABLE_PROGRESS_BARS"] = "1"
        base.pop("MODELZOO_PARALLEL", None)

        def modelzoo(*extra: str) -> dict:
            home = work / "home"
            shutil.rmtree(home, ignore_errors=True)
            env = {**base, "MODELZOO_HOME": str(home)}
            command = [sys.executable, "-m", "modelzoo", "install", "big", *extra]
            result = _run(command, env)
            blob = next((home / "blobs").rglob("*.h5"))
            assert blob.stat().st_size == size
            shutil.rmtree(home)
            return result

        def curl() -> dict:
            target = work / "curl.out"
            result = _run(["curl", "-sS", "-o", str(target), file_url], base)
            assert target.stat().st_size == size
            target.unlink()
            return result

        methods = {
            "curl": curl,
            "modelzoo": modelzoo,
            "modelzoo -p1": lambda: modelzoo("--parallel", "1"),
        }
        rounds: dict[str, dict[str, list[dict]]] = {"throttled": {}, "unthrottled": {}}
        set_rate(rate)
        for name, method in methods.items():  # one run each: ~20 s per single stream
            if args.no_throttled:
                break
            print(f"throttled {name} ...", flush=True)
            rounds["throttled"][name] = [method()]
        set_rate(0)
        for i in range(args.repeat):
            order = list(methods)[i % 3 :] + list(methods)[: i % 3]
            for name in order:
                rounds["unthrottled"].setdefault(name, []).append(methods[name]())
        server.stdin.close()
        server.wait(timeout=30)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    mb = size / 1e6

    def summary(runs: list[dict]) -> dict:
        wall = statistics.median(r["wall_s"] for r in runs)
        cpu = statistics.median(r["cpu_s"] for r in runs)
        return {
            "wall_s": round(wall, 3),
            "mb_per_s": round(mb / wall, 1),
            "cpu_s": round(cpu, 3),
            "cpu_s_per_mb": round(cpu / mb, 5),
            "peak_rss_mb": round(max(r["peak_rss_mb"] for r in runs), 1),
            "runs": len(runs),
        }

    table = {r: {m: summary(v) for m, v in runs.items()} for r, runs in rounds.items()}
    if args.no_throttled:
        print(json.dumps(table["unthrottled"], indent=1))
        return 0
    t, u = table["throttled"], table["unthrottled"]
    speedup = t["curl"]["wall_s"] / t["modelzoo"]["wall_s"]
    cpu_ratio = t["modelzoo"]["cpu_s_per_mb"] / t["modelzoo -p1"]["cpu_s_per_mb"]
    loop_ratio = u["modelzoo"]["wall_s"] / u["modelzoo -p1"]["wall_s"]
    goals = {
        f"throttled: modelzoo >= 4x faster than curl (got {speedup:.2f}x)": speedup >= 4,
        f"CPU per MB <= 1.2x single stream (got {cpu_ratio:.2f}x)": cpu_ratio <= 1.2,
        f"peak RSS < 100 MB (got {t['modelzoo']['peak_rss_mb']:.0f} MB)": max(
            t["modelzoo"]["peak_rss_mb"], u["modelzoo"]["peak_rss_mb"]
        )
        < 100,
        f"unthrottled: parallel no slower than single stream (got {loop_ratio:.2f}x)": loop_ratio
        <= 1.05,
    }
    lines = [
        f"{args.size_mb} MB, per-connection cap {args.rate_mb:g} MB/s (throttled round)",
        "",
        "| round | method | wall s | MB/s | CPU s | CPU s/MB | peak RSS MB |",
        "|---|---|---|---|---|---|---|",
    ]
    for r, methods_ in table.items():
        for m, s in methods_.items():
            lines.append(
                f"| {r} | {m} | {s['wall_s']} | {s['mb_per_s']} | {s['cpu_s']} | "
                f"{s['cpu_s_per_mb']} | {s['peak_rss_mb']} |"
            )
    lines += ["", *goal_lines(goals)]
    result = {
        "benchmark": "parallel",
        "size_mb": args.size_mb,
        "rate_mb_per_connection": args.rate_mb,
        "results": table,
        "speedup_vs_curl": round(speedup, 2),
        "cpu_per_mb_vs_single": round(cpu_ratio, 3),
        "unthrottled_parallel_vs_single": round(loop_ratio, 3),
        "goals": goals,
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "loadavg_before": [round(x, 2) for x in loadavg_before],
            "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        },
    }
    return finish(result, RESULTS, "\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
