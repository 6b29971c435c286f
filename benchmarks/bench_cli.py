"""Benchmark: CLI start-up latency — ``modelzoo search`` / ``info`` against ``import tensorflow``.

Run from the repository root::

    .venv/bin/python benchmarks/bench_cli.py [--repeat 7]

Each command runs as a fresh subprocess of the installed console script
(``.venv/bin/modelzoo``), every time with a new, empty ``MODELZOO_HOME`` and no other
``MODELZOO_*`` variable, exactly as a user's first call. In the same run, interleaved
with them, ``python -c "import tensorflow"`` sets the yardstick, and ``python -c pass``
shows the interpreter's own floor. Each repetition runs every command once, in a rotated
order, so that noise from other processes spreads evenly; the table shows medians and
the min–max spread.

One extra run of ``search`` under ``python -X importtime`` splits its import time by
top-level package, to show where the start-up goes.

Results go to ``benchmarks/results/cli.json``. Goal: search and info each <= 0.1x the
time of ``import tensorflow``.
"""

from __future__ import annotations

import argparse
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
RESULTS = HERE / "results" / "cli.json"
GOAL_RATIO = 0.1


def _bin(name: str) -> Path:
    """A script next to the running interpreter (the venv's ``bin/``)."""
    path = Path(sys.executable).parent / name
    if not path.exists():
        raise SystemExit(
            f"{path} not found: run this with the project's venv "
            "(.venv/bin/python benchmarks/bench_cli.py) after `pip install -e .`."
        )
    return path


def _commands() -> dict[str, list[str]]:
    modelzoo = str(_bin("modelzoo"))
    return {
        "python -c pass": [sys.executable, "-c", "pass"],
        "modelzoo search mobilenet": [modelzoo, "search", "mobilenet"],
        "modelzoo info vgg16": [modelzoo, "info", "vgg16"],
        "import tensorflow": [sys.executable, "-c", "import tensorflow"],
    }


def _clean_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELZOO_")}
    env["MODELZOO_HOME"] = str(home)
    return env


def _run_once(argv: list[str], work: Path) -> float:
    home = Path(tempfile.mkdtemp(prefix="home-", dir=work))
    try:
        start = time.perf_counter()
        subprocess.run(argv, env=_clean_env(home), check=True, capture_output=True)
        return time.perf_counter() - start
    finally:
        shutil.rmtree(home, ignore_errors=True)


def _import_breakdown(work: Path) -> dict[str, float]:
    """Self import time (ms) of ``modelzoo search`` grouped by top-level package (top 25)."""
    home = Path(tempfile.mkdtemp(prefix="home-", dir=work))
    code = (
        "import sys; sys.argv = ['modelzoo', 'search', 'mobilenet']\n"
        "from modelzoo.cli import main\n"
        "main()\n"
    )
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code],
        env=_clean_env(home), capture_output=True, text=True, check=True,
    )  # fmt: skip
    totals: dict[str, float] = {}
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, _cumulative, name = line[len("import time:") :].split("|")
        top = name.strip().split(".")[0]
        totals[top] = totals.get(top, 0.0) + int(self_us) / 1000
    top = sorted(totals.items(), key=lambda kv: -kv[1])[:25]
    return {name: round(ms, 1) for name, ms in top}


def run(repeat: int) -> dict:
    commands = _commands()
    names = list(commands)
    samples: dict[str, list[float]] = {name: [] for name in names}
    work = Path(tempfile.mkdtemp(prefix="mz-bench-cli-"))
    try:
        load_before = os.getloadavg()
        for rep in range(-1, repeat):  # rep -1 warms the page cache (.pyc, shared libs)
            shift = rep % len(names)
            for name in names[shift:] + names[:shift]:
                elapsed = _run_once(commands[name], work)
                if rep >= 0:
                    samples[name].append(elapsed)
        load_after = os.getloadavg()
        breakdown = _import_breakdown(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    median = {name: statistics.median(values) for name, values in samples.items()}
    tf = median["import tensorflow"]
    ratios = {f"{name} / import tensorflow": median[name] / tf for name in names}
    # the same ratio per repetition shows how much the noise moves it
    ratio_spread = {
        f"{name} / import tensorflow": [
            a / b for a, b in zip(samples[name], samples["import tensorflow"], strict=True)
        ]
        for name in ("modelzoo search mobilenet", "modelzoo info vgg16")
    }
    goals = {
        f"{name} <= {GOAL_RATIO}x import tensorflow": ratios[f"{name} / import tensorflow"]
        <= GOAL_RATIO
        for name in ("modelzoo search mobilenet", "modelzoo info vgg16")
    }
    return {
        "benchmark": "cli",
        "repeat": repeat,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "loadavg_before": load_before,
            "loadavg_after": load_after,
        },
        "median_s": median,
        "samples_s": samples,
        "ratios": ratios,
        "ratio_per_repetition": ratio_spread,
        "search_import_self_ms_by_package": breakdown,
        "goals": goals,
    }


def _table(result: dict) -> str:
    lines = [
        "| command | median s | min–max s | / import tensorflow |",
        "|---|---:|---:|---:|",
    ]
    for name, seconds in result["median_s"].items():
        values = result["samples_s"][name]
        ratio = result["ratios"][f"{name} / import tensorflow"]
        lines.append(
            f"| `{name}` | {seconds:.3f} | {min(values):.3f}–{max(values):.3f} | {ratio:.3f} |"
        )
    lines.append("")
    top = list(result["search_import_self_ms_by_package"].items())[:8]
    lines.append(
        "search, import self-time by package (ms): "
        + ", ".join(f"{name} {ms:.0f}" for name, ms in top)
    )
    lines.append("")
    lines += goal_lines(result["goals"])
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    result = run(args.repeat)
    return finish(result, args.out, _table(result))


if __name__ == "__main__":
    raise SystemExit(main())
