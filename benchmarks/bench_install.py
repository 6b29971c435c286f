"""Benchmark: fetch + verify a ~100 MB file — modelzoo.hub.download against the usual tools.

Run from the repository root::

    .venv/bin/python benchmarks/bench_install.py [--size-mb 100] [--repeat 7]

A random file is served by ``tests/_server.py`` (``sendfile``, in its own process so it
does not share a GIL with the code being timed) on 127.0.0.1. Each repetition runs every
method once, in a rotated order, so that noise from other processes spreads evenly; the
table shows medians. Methods:

* ``curl``              ``curl -o`` (the transfer alone, no verification)
* ``sha256``            ``hashlib.file_digest`` of the file already on disk
* ``curl+sha256``       the two above one after the other: the bar to beat
* ``requests+sha256``   requests, 1 MiB ``iter_content``, hash and write in one thread
* ``modelzoo``          ``modelzoo.hub.download.download(..., expected=sha256)`` + move into place
* ``get_file``          ``tf_keras.utils.get_file(..., file_hash=sha256)`` (imported untimed)
* ``pooch``             ``pooch.retrieve(..., known_hash="sha256:...")``

Besides wall time, the table shows CPU seconds (this process's threads plus curl, not
the server), which stay comparable when the machine is busy with other work.

Results go to ``benchmarks/results/install.json``. Goal: modelzoo <= 1.25x curl+sha256,
and faster than get_file and pooch.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import logging
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
RESULTS = HERE / "results" / "install.json"
GOAL_VS_CURL_SHA = 1.25

_SERVER = """
import sys
sys.path.insert(0, sys.argv[1])
from _server import LocalServer
server = LocalServer(sys.argv[2])
print(server.url, flush=True)
sys.stdin.read()  # serve until the parent closes our stdin
server.close()
"""


def _make_file(folder: Path, size: int) -> tuple[Path, str]:
    path = folder / "weights.bin"
    digest = hashlib.sha256()
    with path.open("wb") as fh:
        remaining = size
        while remaining:
            block = os.urandom(min(remaining, 1 << 20))
            digest.update(block)
            fh.write(block)
            remaining -= len(block)
    return path, digest.hexdigest()


def _cpu_seconds() -> float:
    """CPU time of this process (all threads) plus finished children (curl); the
    server runs in another process and is not counted."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _sha256_file(path: Path) -> str:
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _methods(url: str, source: Path, sha: str, work: Path) -> dict:
    """name -> callable(out_dir) that fetches (and verifies) the file into out_dir."""

    def curl(out: Path) -> None:
        subprocess.run(["curl", "-sSf", "-o", str(out / "f.bin"), url], check=True)

    def sha256(out: Path) -> None:
        assert _sha256_file(source) == sha

    def curl_sha256(out: Path) -> None:
        curl(out)
        assert _sha256_file(out / "f.bin") == sha

    def requests_sha256(out: Path) -> None:
        import requests

        digest = hashlib.sha256()
        with (
            requests.get(url, stream=True, timeout=60) as response,
            (out / "f.bin").open("wb") as fh,
        ):
            for chunk in response.iter_content(1 << 20):
                digest.update(chunk)
                fh.write(chunk)
        assert digest.hexdigest() == sha

    def modelzoo(out: Path) -> None:
        from modelzoo.hub.download import download

        result = download(url, out / "f.bin.part", expected=f"sha256:{sha}", progress=False)
        os.replace(result.path, out / "f.bin")

    methods = {
        "curl": curl,
        "sha256": sha256,
        "curl+sha256": curl_sha256,
        "requests+sha256": requests_sha256,
        "modelzoo": modelzoo,
    }
    try:
        import tf_keras  # imported here, outside the timed region

        def get_file(out: Path) -> None:
            with contextlib.redirect_stdout(io.StringIO()):  # its Progbar prints
                tf_keras.utils.get_file(
                    "f.bin", origin=url, file_hash=sha, hash_algorithm="sha256",
                    cache_dir=str(out), cache_subdir=".",
                )  # fmt: skip

        methods["get_file"] = get_file
    except ImportError:
        print("tf_keras not installed: skipping get_file", file=sys.stderr)
    try:
        import pooch

        pooch.get_logger().setLevel(logging.WARNING)

        def pooch_retrieve(out: Path) -> None:
            pooch.retrieve(url, known_hash=f"sha256:{sha}", fname="f.bin", path=str(out))

        methods["pooch"] = pooch_retrieve
    except ImportError:
        print("pooch not installed: skipping pooch", file=sys.stderr)
    return methods


def run(size_mb: int, repeat: int) -> dict:
    os.environ["MODELZOO_DISABLE_PROGRESS_BARS"] = "1"
    work = Path(tempfile.mkdtemp(prefix="mz-bench-"))
    server = None
    try:
        served = work / "served"
        served.mkdir()
        source, sha = _make_file(served, size_mb * 1_000_000)
        server = subprocess.Popen(
            [sys.executable, "-c", _SERVER, str(ROOT / "tests"), str(served)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        url = server.stdout.readline().strip() + "/" + source.name
        methods = _methods(url, source, sha, work)
        names = list(methods)
        samples: dict[str, list[float]] = {name: [] for name in names}
        cpu: dict[str, list[float]] = {name: [] for name in names}
        load_before = os.getloadavg()
        for rep in range(-1, repeat):  # rep -1 warms caches, connections and imports
            order = names[rep % len(names) :] + names[: rep % len(names)]
            for name in order:
                out = work / f"out-{rep}-{name.replace('+', '_')}"
                out.mkdir()
                cpu_start = _cpu_seconds()
                start = time.perf_counter()
                methods[name](out)
                elapsed = time.perf_counter() - start
                cpu_used = _cpu_seconds() - cpu_start
                shutil.rmtree(out)
                if rep >= 0:
                    samples[name].append(elapsed)
                    cpu[name].append(cpu_used)
        load_after = os.getloadavg()
    finally:
        if server is not None:
            server.stdin.close()
            server.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)
    median = {name: statistics.median(values) for name, values in samples.items()}
    ratios = {f"modelzoo/{name}": median["modelzoo"] / median[name] for name in names}
    goals = {
        f"modelzoo <= {GOAL_VS_CURL_SHA}x curl+sha256": ratios["modelzoo/curl+sha256"]
        <= GOAL_VS_CURL_SHA,
    }
    for rival in ("get_file", "pooch"):
        if rival in median:
            goals[f"modelzoo faster than {rival}"] = median["modelzoo"] < median[rival]
    return {
        "benchmark": "install",
        "size_bytes": size_mb * 1_000_000,
        "repeat": repeat,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "loadavg_before": load_before,
            "loadavg_after": load_after,
        },
        "median_s": median,
        "median_cpu_s": {name: statistics.median(values) for name, values in cpu.items()},
        "samples_s": samples,
        "samples_cpu_s": cpu,
        "ratios": ratios,
        "goals": goals,
    }


def _table(result: dict) -> str:
    size_mb = result["size_bytes"] / 1e6
    lines = [
        "| method | median s | MB/s | modelzoo / method | CPU s |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, seconds in result["median_s"].items():
        ratio = result["ratios"][f"modelzoo/{name}"]
        cpu = result["median_cpu_s"][name]
        lines.append(
            f"| {name} | {seconds:.3f} | {size_mb / seconds:.0f} | {ratio:.2f} | {cpu:.3f} |"
        )
    lines.append("")
    lines += goal_lines(result["goals"])
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    result = run(args.size_mb, args.repeat)
    return finish(result, args.out, _table(result))


if __name__ == "__main__":
    raise SystemExit(main())
